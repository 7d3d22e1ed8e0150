//! Integration tests that run the real `tocsin` binary: check, replay, test, write.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("tocsin runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn shipped_monitors_pass_check() {
    let o = run(&["check", "monitors"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "check failed:\n{out}\n{err}");
    assert!(out.contains("0 error(s)"), "{out}");
    for id in [
        "host-cpu",
        "host-mem",
        "host-disk",
        "host-load",
        "disk-forecast",
        "request-rate-wow",
        "latency-band",
        "disk-full-forecast",
    ] {
        assert!(
            out.contains(&format!("ok  {id}")),
            "{id} missing from\n{out}"
        );
    }
}

#[test]
fn check_reports_file_line_field_value_and_allowed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cpu.toml",
        "id = \"cpu\"\nevery = \"1m\"\n\n[query]\nmeasurement = \"cpu\"\nfield = \"usage\"\nagg = \"avrage\"\n\n[rules]\ncritical = \"Result > 90\"\n",
    );
    write(
        dir.path(),
        "cron.toml",
        "cron = \"61 * * * *\"\n[query]\nmeasurement = \"cpu\"\nfield = \"usage\"\n[rules]\ncritical = \"Result >\"\n[nodata]\naction = \"panic\"\n",
    );
    write(
        dir.path(),
        "good.toml",
        "every = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"usage\"\n[rules]\ncritical = \"Result > 90\"\n",
    );
    write(
        dir.path(),
        "typo.toml",
        "every = \"1m\"\nintervall = \"5m\"\n",
    );
    let o = run(&["check", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let cpu = dir.path().join("cpu.toml");
    assert!(
        err.contains(&format!(
            "{}:7: query.agg: agg = \"avrage\": expected one of avg, min, max",
            cpu.display()
        )),
        "{err}"
    );
    assert!(err.contains("cron.toml:1: cron"), "{err}");
    assert!(err.contains("cron.toml:6: rules.critical"), "{err}");
    assert!(
        err.contains(
            "cron.toml:8: nodata.action: action = \"panic\": expected one of none, nodata, ok"
        ),
        "{err}"
    );
    assert!(
        err.contains("typo.toml:2:") && err.contains("intervall"),
        "{err}"
    );
    // the valid monitor still loads
    assert!(out.contains("ok  good"), "{out}");
}

#[test]
fn check_rejects_duplicate_ids_and_missing_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let body = "id = \"same\"\nevery = \"1m\"\n[query]\nmeasurement = \"m\"\nfield = \"f\"\n[rules]\nwarning = \"Result > 1\"\n";
    write(dir.path(), "a.toml", body);
    write(dir.path(), "b.toml", body);
    write(
        dir.path(),
        "c.toml",
        "type = \"bot_obs\"\nevery = \"1m\"\nscript = \"nope.rhai\"\n",
    );
    let o = run(&[
        "check",
        dir.path().to_str().unwrap(),
        "--scripts",
        dir.path().to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("b.toml:1: id") && err.contains("already used"),
        "{err}"
    );
    assert!(
        err.contains("c.toml:3: rules.script") && err.contains("not found"),
        "{err}"
    );
}

fn replay(args: &[&str]) -> (Output, Vec<Value>) {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    let o = run(&all);
    let events = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    (o, events)
}

#[test]
fn replay_of_the_shipped_example_is_deterministic_and_ordered() {
    let args = [
        "--monitors",
        "monitors",
        "--metrics",
        "tests/data/example.lp",
        "--from",
        "2024-05-01T10:00:00Z",
        "--to",
        "2024-05-01T10:50:00Z",
    ];
    let (o, events) = replay(&args);
    assert!(o.status.success(), "{}", text(&o).1);
    let (o2, again) = replay(&args);
    assert!(o2.status.success());
    assert_eq!(o.stdout, o2.stdout, "same input, same output");
    let key = |e: &Value| {
        (
            e["date"].as_i64().unwrap(),
            e["df_monitor_checker_id"].as_str().unwrap().to_string(),
            e["df_monitor_checker_event_ref"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    assert!(
        events.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "ordered by date, monitor, ref"
    );
    assert_eq!(events.len(), again.len());
    let summary: Vec<(String, String, i64, i64)> = events
        .iter()
        .map(|e| {
            (
                e["df_monitor_checker_id"].as_str().unwrap().to_string(),
                e["df_status"].as_str().unwrap().to_string(),
                e["date"].as_i64().unwrap() - 1_714_557_600,
                e["df_issue_start_time"].as_i64().unwrap() - 1_714_557_600,
            )
        })
        .collect();
    let m = |id: &str, s: &str, date_min: i64, start_min: i64| {
        (id.to_string(), s.to_string(), date_min * 60, start_min * 60)
    };
    let expected = vec![
        // CPU: 97% from 10:10; 5-minute average 70.2 at 10:13 (warning, streak 1), 83.6 at 10:14
        m("host-cpu", "error", 14, 14),
        m("host-cpu", "critical", 15, 14),
        m("host-cpu", "critical", 16, 14),
        m("host-cpu", "critical", 17, 14),
        m("host-cpu", "critical", 18, 14),
        m("host-cpu", "error", 19, 14),
        m("host-cpu", "warning", 20, 14),
        // 62.8 at 10:21 is clean but not below 60; 51.4 and 40 make two clean checks
        m("host-cpu", "ok", 23, 14),
        // web01's last point is 10:29:30; the gap [10:30, 10:40) is seen at 10:40
        m("host-cpu", "nodata", 40, 40),
        m("host-mem", "nodata", 40, 40),
    ];
    // host-overload (a composite of host-cpu and host-mem) counts their nodata rounds as
    // open: web01 is critical from 10:40, every check until the end.
    let mut expected = expected;
    expected.extend((40..=50).map(|t| m("host-overload", "critical", t, 40)));
    expected.sort();
    let mut summary = summary;
    summary.sort();
    assert_eq!(summary, expected, "{summary:#?}");
    let first = &events[0];
    for f in [
        "df_event_id",
        "date",
        "timestamp",
        "df_date_range",
        "df_check_range_start",
        "df_check_range_end",
        "df_issue_start_time",
        "df_issue_duration",
        "df_fault_id",
        "df_source",
        "df_status",
        "df_title",
        "df_message",
        "df_dimension_tags",
        "df_monitor_id",
        "df_monitor_name",
        "df_monitor_type",
        "df_monitor_checker",
        "df_monitor_checker_sub",
        "df_monitor_checker_id",
        "df_monitor_checker_name",
        "df_monitor_checker_value",
        "df_monitor_checker_ref",
        "df_monitor_checker_event_ref",
        "df_event_detail",
        "df_exec_mode",
        "host",
    ] {
        assert!(first.get(f).is_some(), "field {f} missing in {first}");
    }
    assert_eq!(first["df_dimension_tags"], r#"{"host":"web01"}"#);
    assert_eq!(first["df_exec_mode"], "crontab");
    assert_eq!(
        first["df_check_range_end"].as_i64().unwrap()
            - first["df_check_range_start"].as_i64().unwrap(),
        300
    );
    let ok = events.iter().find(|e| e["df_status"] == "ok").unwrap();
    assert_eq!(ok["df_sub_status"], "warning");
    assert_eq!(ok["df_fault_id"], first["df_event_id"]);
    assert_eq!(ok["df_issue_duration"], 540);
}

#[test]
fn replay_rejects_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.lp",
        "cpu,host=a usage=1 1\ncpu,host=a usage=oops 2\n",
    );
    let (o, _) = replay(&[
        "--monitors",
        "monitors",
        "--metrics",
        bad.to_str().unwrap(),
        "--from",
        "0",
        "--to",
        "60",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("bad.lp: line 2:"), "{}", text(&o).1);
    let (o, _) = replay(&[
        "--monitors",
        "monitors",
        "--metrics",
        "tests/data/example.lp",
        "--from",
        "yesterday",
        "--to",
        "60",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("--from") && text(&o).1.contains("RFC 3339"),
        "{}",
        text(&o).1
    );
    let (o, _) = replay(&[
        "--monitors",
        "monitors",
        "--metrics",
        "tests/data/example.lp",
        "--from",
        "100",
        "--to",
        "60",
    ]);
    assert!(!o.status.success());
    let (o, _) = replay(&[
        "--monitors",
        "monitors",
        "--metrics",
        "/nonexistent.lp",
        "--from",
        "0",
        "--to",
        "60",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("cannot read /nonexistent.lp"),
        "{}",
        text(&o).1
    );
}

#[test]
fn replay_runs_bots_and_counts_seconds_precision() {
    let dir = tempfile::tempdir().unwrap();
    let mut lp = String::new();
    for i in 0..120 {
        lp.push_str(&format!(
            "disk,host=h1,path=/data,fstype=ext4 used_percent={} {}\n",
            50.0 + i as f64 * 0.5,
            i * 60
        ));
    }
    let metrics = write(dir.path(), "disk.lp", &lp);
    let (o, events) = replay(&[
        "--monitors",
        "monitors/disk-forecast.toml",
        "--metrics",
        metrics.to_str().unwrap(),
        "--from",
        "600",
        "--to",
        "1200",
        "--precision",
        "s",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(!events.is_empty());
    assert_eq!(events[0]["df_monitor_type"], "bot_obs");
    assert_eq!(events[0]["df_monitor_ref_key"], "disk-forecast");
    assert_eq!(
        events[0]["df_status"], "critical",
        "30 points an hour from 55%: full in 1.5 h"
    );
    assert_eq!(
        events[0]["df_dimension_tags"],
        r#"{"host":"h1","path":"/data"}"#
    );
}

#[test]
fn shipped_monitor_tests_pass() {
    let mut files: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/monitors"))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.ends_with(".toml"))
            .collect();
    files.sort();
    assert!(files.len() >= 5, "every shipped monitor has tests");
    let mut args = vec!["test".to_string()];
    args.extend(files);
    let o = bin().args(&args).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "monitor tests failed:\n{out}\n{err}");
    assert!(out.contains(" 0 failure(s)"), "{out}");
}

#[test]
fn failing_monitor_test_prints_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let monitors = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitors/host-cpu.toml");
    let t = write(
        dir.path(),
        "t.toml",
        &format!(
            "monitors = [{:?}]\n[[tests]]\nseries = [{{ measurement = \"cpu\", field = \"usage_total\", tags = {{ host = \"a\", cpu = \"cpu-total\" }}, values = \"99x10\" }}]\nexpect = [{{ at = \"2m\", events = [] }}, {{ at = \"3m\", events = [{{ status = \"warning\" }}] }}]\n",
            monitors.display().to_string()
        ),
    );
    let o = run(&["test", t.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("expected") && out.contains("actual"), "{out}");
    assert!(
        out.contains("(no event)") && out.contains("critical {\"host\":\"a\"}"),
        "{out}"
    );
    assert!(out.contains("2 failure(s)"), "{out}");
}

#[test]
fn write_loads_points_offline() {
    let dir = tempfile::tempdir().unwrap();
    let lp = write(
        dir.path(),
        "m.lp",
        "cpu,host=a usage=1 1700000000\ncpu,host=b usage=2 1700000000\n",
    );
    let data = dir.path().join("data");
    let o = run(&[
        "write",
        lp.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--precision",
        "s",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("stored 2 sample(s)"));
    assert!(data.join("metrics.db").exists());
    let o = run(&[
        "write",
        lp.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--precision",
        "x",
    ]);
    assert!(!o.status.success());
}

#[test]
fn check_knows_policies_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.toml",
        "policy = \"oncall\"\nevery = \"1m\"\n[query]\nmeasurement = \"m\"\nfield = \"f\"\n[rules]\nwarning = \"Result > 1\"\n",
    );
    let o = run(&["check", dir.path().join("m.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o)
            .1
            .contains("m.toml:1: policy: policy = \"oncall\": unknown policy; known: default"),
        "{}",
        text(&o).1
    );
    let cfg = write(
        dir.path(),
        "tocsin.toml",
        "[[policies]]\nid = \"oncall\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:1/hook\"\n",
    );
    let o = run(&[
        "check",
        dir.path().join("m.toml").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[policies]]\nid = \"p\"\n[[policies.targets]]\nurl = \"ftp://x\"\n",
    );
    let o = run(&[
        "check",
        dir.path().join("m.toml").to_str().unwrap(),
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("expected an http:// or https:// URL"),
        "{}",
        text(&o).1
    );
}
