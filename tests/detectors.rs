//! Detectors beyond thresholds (composite, slo, outlier) through the real binary: `tocsin
//! check` refuses every bad parameter naming file, line and field, and `serve`, `replay` and
//! `tocsin test` give the same events.

mod common;

use common::{now, Tocsin as Server};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `tocsin check` over files `(name, body)` in a fresh directory: the exit code and stderr
/// with the directory's path cut out.
fn check(files: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let o = bin()
        .args(["check", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let prefix = format!("{}/", dir.path().display());
    (o.status.code(), stderr(&o).replace(&prefix, ""))
}

/// Asserts that `tocsin check` refuses `body` with an error that starts with `want` (file,
/// line, field) and contains `why`.
fn refused(files: &[(&str, &str)], want: &str, why: &str) {
    let (code, err) = check(files);
    assert_eq!(code, Some(1), "{want}: {err}");
    assert!(
        err.lines().any(|l| l.starts_with(want) && l.contains(why)),
        "want {want:?} with {why:?} in:\n{err}"
    );
}

const CPU: &str = "id = \"cpu\"\nevery = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\nby = \"host\"\n[rules]\ncritical = \"Result > 90\"\n";
const MEM: &str = "id = \"mem\"\nevery = \"1m\"\n[query]\nmeasurement = \"mem\"\nfield = \"u\"\nby = \"host\"\n[rules]\ncritical = \"Result > 90\"\n";

fn composite(rules: &str) -> String {
    format!("id = \"both\"\nevery = \"1m\"\n[rules]\nkind = \"composite\"\n{rules}")
}

#[test]
fn composite_check_refuses_every_bad_value() {
    let with = |body: String| {
        vec![
            ("cpu.toml", CPU),
            ("mem.toml", MEM),
            ("c.toml", Box::leak(body.into_boxed_str()) as &str),
        ]
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            composite("critical = \"cpu && (mem\"\n"),
            "c.toml:5: rules.critical",
            "column 12: unexpected the end of the expression: expected `)`",
        ),
        (
            composite("critical = \"cpu & mem\"\n"),
            "c.toml:5: rules.critical",
            "column 5: a single `&`",
        ),
        (
            composite("warning = \"cpu && disk\"\n"),
            "c.toml:5: rules.warning",
            "no monitor \"disk\" is loaded",
        ),
        (
            composite("critical = \"!cpu\"\n"),
            "c.toml:5: rules.critical",
            "holds when no monitor has an open round",
        ),
        (
            composite("critical = \"cpu || !mem\"\n"),
            "c.toml:5: rules.critical",
            "holds when no monitor has an open round",
        ),
        (
            composite("trigger_after = 0\ncritical = \"cpu\"\n"),
            "c.toml:5: rules.trigger_after",
            "expected an integer from 1 to 10000",
        ),
        (
            composite("recover_after = -1\ncritical = \"cpu\"\n"),
            "c.toml:5: rules.recover_after",
            "expected an integer from 0 to 10000",
        ),
        (
            composite("critical = \"cpu\"\nrecovery = \"Result < 1\"\n"),
            "c.toml:6: rules.recovery",
            "recover_after",
        ),
        (
            composite("critical = \"cpu\"\nbaseline = \"1h\"\n"),
            "c.toml:6: rules.baseline",
            "reads no window",
        ),
        (
            composite("critical = \"cpu\"\nscript = \"x.rhai\"\n"),
            "c.toml:6: rules.script",
            "no script",
        ),
        (
            composite("critical = \"cpu\"\n[nodata]\nafter = \"5m\"\n"),
            "c.toml:6: nodata",
            "no gaps",
        ),
        (
            composite("trigger_after = 2\n"),
            "c.toml:3: rules",
            "no rule",
        ),
    ];
    for (body, want, why) in cases {
        refused(&with(body), want, why);
    }
    // The same expression is fine once every id is loaded.
    let (code, err) = check(&with(composite("critical = \"cpu && (mem || !cpu)\"\n")));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn composite_cycles_and_chains_through_broken_monitors_are_refused() {
    let a = "id = \"a\"\nevery = \"1m\"\n[rules]\nkind = \"composite\"\ncritical = \"b && cpu\"\n";
    let b = "id = \"b\"\nevery = \"1m\"\n[rules]\nkind = \"composite\"\ncritical = \"cpu\"\nwarning = \"a\"\n";
    let (code, err) = check(&[("cpu.toml", CPU), ("a.toml", a), ("b.toml", b)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("a.toml:5: rules.critical: critical = \"b && cpu\": composites depend on each other in a cycle"), "{err}");
    assert!(
        err.contains(
            "b.toml:6: rules.warning: warning = \"a\": composites depend on each other in a cycle"
        ),
        "{err}"
    );
    // A composite of itself.
    let own =
        "id = \"own\"\nevery = \"1m\"\n[rules]\nkind = \"composite\"\ncritical = \"cpu && own\"\n";
    refused(
        &[("cpu.toml", CPU), ("own.toml", own)],
        "own.toml:5: rules.critical",
        "cycle",
    );
    // A broken input is not loaded, so the composite naming it is refused too, and so is a
    // composite naming that composite.
    let broken = "id = \"cpu\"\nevery = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\n[rules]\ncritical = \"Result >\"\n";
    let up = "id = \"up\"\nevery = \"1m\"\n[rules]\nkind = \"composite\"\ncritical = \"a\"\n";
    let a = "id = \"a\"\nevery = \"1m\"\n[rules]\nkind = \"composite\"\ncritical = \"cpu\"\n";
    let (code, err) = check(&[("cpu.toml", broken), ("a.toml", a), ("up.toml", up)]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("a.toml:5: rules.critical: critical = \"cpu\": no monitor \"cpu\" is loaded"),
        "{err}"
    );
    assert!(
        err.contains("up.toml:5: rules.critical: critical = \"a\": no monitor \"a\" is loaded"),
        "{err}"
    );
}

/// The replay's events as JSON.
fn replay(monitors: &Path, metrics: &Path, from: i64, to: i64) -> Vec<Value> {
    let o = bin()
        .arg("replay")
        .arg("--monitors")
        .arg(monitors)
        .arg("--metrics")
        .arg(metrics)
        .args([
            "--precision",
            "s",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What two runs must agree on for one event.
fn key(e: &Value) -> (i64, String, String, i64, i64, String) {
    (
        e["date"].as_i64().unwrap(),
        e["df_monitor_checker_id"].as_str().unwrap().to_string(),
        e["df_status"].as_str().unwrap().to_string(),
        e["df_issue_start_time"].as_i64().unwrap_or(-1),
        e["df_issue_duration"].as_i64().unwrap_or(-1),
        e["df_monitor_checker_value"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

const LIVE_CPU: &str = "id = \"cpu\"\nevery = \"1s\"\ninterval = \"3s\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\nby = \"host\"\n[rules]\ncritical = \"Result > 90\"\n";
const LIVE_MEM: &str = "id = \"mem\"\nevery = \"1s\"\ninterval = \"3s\"\n[query]\nmeasurement = \"mem\"\nfield = \"u\"\nby = \"host\"\n[rules]\ncritical = \"Result > 90\"\n";
// Its id sorts before its inputs': the scheduler reaches it first, and must wait for them.
const LIVE_BOTH: &str = "id = \"a-both\"\nevery = \"1s\"\n[rules]\nkind = \"composite\"\ncritical = \"cpu && mem\"\nwarning = \"cpu\"\n";

#[test]
fn a_composite_sees_its_inputs_of_the_same_tick_in_serve_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("monitors");
    std::fs::create_dir_all(&m).unwrap();
    for (name, body) in [
        ("cpu.toml", LIVE_CPU),
        ("mem.toml", LIVE_MEM),
        ("a-both.toml", LIVE_BOTH),
    ] {
        std::fs::write(m.join(name), body).unwrap();
    }
    let s = Server::start(dir.path(), "[host_input]\nenabled = false\n");
    // One batch, so both inputs open at the same tick: cpu for hosts x and y, mem for x.
    let t0 = now();
    // 99 for three seconds, then 10 (the rounds recover once the window holds only 10s).
    let lines: Vec<String> = (0..6)
        .flat_map(|i| {
            let (t, v) = (t0 - 1 + i, if i < 3 { 99 } else { 10 });
            [
                format!("cpu,host=x u={v} {t}"),
                format!("cpu,host=y u={v} {t}"),
                format!("mem,host=x u={v} {t}"),
            ]
        })
        .collect();
    let (code, body) = s.post_token("/write?precision=s", lines.join("\n").as_bytes(), None);
    assert_eq!(code, 204, "{body}");
    std::thread::sleep(Duration::from_millis(9500));
    let got = s.get("/api/v1/events?limit=500");
    let mut live: Vec<Value> = got["events"].as_array().unwrap().clone();
    live.sort_by_key(key);
    let first = |id: &str| {
        live.iter()
            .find(|e| e["df_monitor_checker_id"] == id)
            .unwrap_or_else(|| panic!("no event of {id}: {got}"))
            .clone()
    };
    let (cpu, both) = (first("cpu"), first("a-both"));
    assert_eq!(
        both["date"], cpu["date"],
        "the composite ran after its inputs, at their tick"
    );
    assert_eq!(both["df_monitor_checker"], "composite");
    let detail: Value = serde_json::from_str(both["df_event_detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["composite"]["cpu"], true, "{detail}");

    // The same points replayed over the ticks the server ran give the same events.
    let lp = dir.path().join("points.lp");
    std::fs::write(&lp, lines.join("\n")).unwrap();
    let from = live
        .iter()
        .map(|e| e["date"].as_i64().unwrap())
        .min()
        .unwrap();
    let to = live
        .iter()
        .map(|e| e["date"].as_i64().unwrap())
        .max()
        .unwrap();
    let replayed: Vec<_> = replay(&m, &lp, from, to).iter().map(key).collect();
    let live: Vec<_> = live
        .iter()
        .map(key)
        .filter(|k| k.0 >= from && k.0 <= to)
        .collect();
    assert_eq!(replayed, live, "replay and serve differ");
    assert!(
        live.iter().any(|k| k.1 == "a-both" && k.2 == "critical")
            && live.iter().any(|k| k.1 == "a-both" && k.2 == "warning")
            && live.iter().any(|k| k.1 == "a-both" && k.2 == "ok"),
        "host x critical, y warning, then both recover: {live:?}"
    );
}
