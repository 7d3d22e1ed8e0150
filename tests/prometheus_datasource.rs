//! Datasource monitors against a real VictoriaMetrics (Debian's `victoria-metrics`) on
//! loopback: a replay over crafted data checked event by event, the same ticks run as live
//! checks give the same bytes, live checks through `tocsin serve`, and an outage of the data
//! source. Without the program the tests say "skipping" and pass.

mod common;

use common::replay::{live_lines, ObjectErrors};

use common::{free_port, program, Program, Tocsin};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// 2024-05-01T10:00:00Z
const BASE: i64 = 1_714_557_600;

/// A VictoriaMetrics on a free loopback port keeping its data in `dir`.
struct Vm {
    proc: Program,
    url: String,
    bin: std::path::PathBuf,
    args: Vec<String>,
    log: std::path::PathBuf,
}

impl Vm {
    fn start(dir: &Path) -> Option<Vm> {
        let bin = program(&["victoria-metrics", "victoria-metrics-prod"])?;
        let port = free_port();
        let args = vec![
            format!("-storageDataPath={}", dir.join("vm").display()),
            // The crafted data is from 2024: keep it.
            "-retentionPeriod=100y".into(),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            // Answer instant queries up to the second (its default hides the last 30 s).
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=ERROR".into(),
        ];
        let log = dir.join("vm.log");
        let proc = Program::start(&bin, &args, &log);
        let url = format!("http://127.0.0.1:{port}");
        proc.wait_ready(&format!("{url}/health"), 20);
        Some(Vm {
            proc,
            url,
            bin,
            args,
            log,
        })
    }

    fn restart(&mut self) {
        self.proc = Program::start(&self.bin, &self.args, &self.log);
        self.proc.wait_ready(&format!("{}/health", self.url), 20);
    }

    /// Imports Prometheus text lines (`name{labels} value ms`) and waits until they are
    /// searchable.
    fn import(&self, lines: &[String], expect_series: usize) {
        let body = lines.join("\n") + "\n";
        ureq::post(&format!("{}/api/v1/import/prometheus", self.url))
            .send_string(&body)
            .unwrap();
        ureq::get(&format!("{}/internal/force_flush", self.url))
            .call()
            .unwrap();
        // The export lists every stored series (one JSON line each) whatever its time.
        let ok = common::eventually(20, || {
            let text = ureq::get(&format!("{}/api/v1/export", self.url))
                .query("match[]", "cpu_usage")
                .call()
                .ok()?
                .into_string()
                .ok()?;
            (text.lines().count() >= expect_series).then_some(())
        });
        assert!(ok.is_some(), "VictoriaMetrics did not index the import");
    }
}

/// web01 runs hot (97) from 10:10 to 10:18 and stops reporting after 10:29; db01 stays at 20.
fn crafted() -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..60 {
        let ms = (BASE + i * 60) * 1000;
        if i < 30 {
            let v = if (10..=18).contains(&i) { 97 } else { 40 };
            lines.push(format!("cpu_usage{{host=\"web01\"}} {v} {ms}"));
        }
        lines.push(format!("cpu_usage{{host=\"db01\"}} 20 {ms}"));
    }
    lines
}

const MONITOR: &str = r#"
id = "vm-cpu"
name = "CPU from VM"
every = "1m"
interval = "1m"
[query]
datasource = "vm"
promql = "max_over_time(cpu_usage[1m])"
[rules]
critical = "Result > 90"
recovery = "Result < 50"
[nodata]
after = "5m"
[template]
title = "{{host}} cpu {{Result}}"
"#;

fn setup(dir: &Path, vm: &Vm) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("tocsin.toml");
    std::fs::write(
        &config,
        format!(
            "[[datasources]]\nid = \"vm\"\nurl = \"{}\"\ntimeout = \"5s\"\n",
            vm.url
        ),
    )
    .unwrap();
    let monitors = dir.join("monitors");
    std::fs::create_dir_all(&monitors).unwrap();
    std::fs::write(monitors.join("cpu.toml"), MONITOR).unwrap();
    (config, monitors)
}

fn replay(config: &Path, monitors: &Path, from: &str, to: &str) -> (String, String, bool) {
    let o = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--monitors")
        .arg(monitors)
        .args(["--from", from, "--to", to])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

#[test]
fn replay_over_a_datasource_is_checked_event_by_event_and_matches_live_checks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(vm) = Vm::start(dir.path()) else {
        return;
    };
    vm.import(&crafted(), 2);
    let (config, monitors) = setup(dir.path(), &vm);

    let (out, err, ok) = replay(
        &config,
        &monitors,
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:50:00Z",
    );
    assert!(ok, "replay failed: {err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(i64, String, String, String)> = events
        .iter()
        .map(|e| {
            (
                (e["date"].as_i64().unwrap() - BASE) / 60,
                e["df_status"].as_str().unwrap().to_string(),
                e["host"].as_str().unwrap().to_string(),
                e["df_monitor_checker_value"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let want: Vec<(i64, &str, &str, &str)> = vec![
        // the point at 10:10 is inside max_over_time's (10:09, 10:10]
        (10, "critical", "web01", "97"),
        (11, "critical", "web01", "97"),
        (12, "critical", "web01", "97"),
        (13, "critical", "web01", "97"),
        (14, "critical", "web01", "97"),
        (15, "critical", "web01", "97"),
        (16, "critical", "web01", "97"),
        (17, "critical", "web01", "97"),
        (18, "critical", "web01", "97"),
        // 40 < 50: recovered at once
        (19, "ok", "web01", "40"),
        // last present at 10:29, absent from 10:30; the gap is more than 5 minutes at 10:35
        (35, "nodata", "web01", ""),
    ];
    let want: Vec<(i64, String, String, String)> = want
        .into_iter()
        .map(|(m, s, h, v)| (m, s.into(), h.into(), v.into()))
        .collect();
    assert_eq!(got, want, "{out}");
    assert_eq!(events[0]["df_title"], "web01 cpu 97");
    assert_eq!(events[9]["df_issue_start_time"], BASE + 600);
    assert_eq!(events[0]["df_dimension_tags"], "{\"host\":\"web01\"}");

    // The same ticks as live checks (one instant query each) give the same bytes.
    let live = live_lines(
        &config,
        &monitors,
        BASE,
        BASE + 50 * 60,
        ObjectErrors::Allow,
    );
    assert_eq!(live, out, "live checks and the replay differ");

    // A replay longer than one range-query chunk (720 steps) gives the same events as two
    // replays cut at the chunk edge would not: compare with a one-minute-step live run over
    // 13 hours (only the first hour has data, so nodata and forgetting are covered too).
    let (long, err, ok) = replay(
        &config,
        &monitors,
        "2024-05-01T10:00:00Z",
        "2024-05-01T23:00:00Z",
    );
    assert!(ok, "{err}");
    assert_eq!(
        long,
        live_lines(
            &config,
            &monitors,
            BASE,
            BASE + 13 * 3600,
            ObjectErrors::Allow
        )
    );
}

#[test]
fn live_checks_read_the_datasource_and_survive_its_outage() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut vm) = Vm::start(dir.path()) else {
        return;
    };
    let now = common::now();
    let lines: Vec<String> = (1..=3)
        .flat_map(|k| {
            let ms = (now - k * 20) * 1000;
            [
                format!("cpu_usage{{host=\"web01\"}} 97 {ms}"),
                format!("cpu_usage{{host=\"db01\"}} 20 {ms}"),
            ]
        })
        .collect();
    vm.import(&lines, 2);
    let mut t = Tocsin::start(
        &dir.path().join("tocsin"),
        &format!(
            "[[datasources]]\nid = \"vm\"\nurl = \"{}\"\ntimeout = \"3s\"\n",
            vm.url
        ),
    );
    std::fs::write(
        t.dir.join("monitors/cpu.toml"),
        MONITOR
            .replace("every = \"1m\"", "manual = true")
            .replace("[1m]", "[5m]"),
    )
    .unwrap();
    let (code, body) = t.post_token("/api/v1/monitors/reload", b"", None);
    assert_eq!(code, 200, "{body}");

    let first = t.run("vm-cpu", None);
    assert_eq!(first["objects"], 2, "{first}");
    let ev = &first["events"][0];
    assert_eq!(ev["df_status"], "critical", "{first}");
    assert_eq!(ev["host"], "web01");
    assert_eq!(ev["df_monitor_checker_value"], "97");
    assert_eq!(first["events"].as_array().unwrap().len(), 1, "{first}");
    let start = ev["df_issue_start_time"].as_i64().unwrap();

    // Outage: the check fails visibly and changes nothing.
    vm.proc.kill();
    common::next_second();
    let (code, body) = t.post_token("/api/v1/monitors/vm-cpu/run", b"", None);
    assert!(code >= 500, "{code} {body}");
    assert!(body.contains("datasource \\\"vm\\\""), "{body}");
    let monitors = t.get("/api/v1/monitors");
    let m = monitors["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "vm-cpu")
        .cloned()
        .unwrap_or_else(|| panic!("{monitors}"));
    let last_error = m["last_error"].as_str().unwrap_or("");
    assert!(last_error.contains("datasource \"vm\""), "{m}");
    let issues = t.get("/api/v1/issues");
    assert_eq!(issues["issues"].as_array().unwrap().len(), 1, "{issues}");

    // Back: the open round goes on where it was (same issue start), no duplicate round.
    vm.restart();
    vm.import(&lines, 2);
    common::next_second();
    let again = t.run("vm-cpu", None);
    let ev = &again["events"][0];
    assert_eq!(ev["df_status"], "critical", "{again}");
    assert_eq!(ev["df_issue_start_time"].as_i64().unwrap(), start);
    let metrics = ureq::get(&format!("{}/metrics", t.url))
        .timeout(Duration::from_secs(5))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "tocsin_check_errors_total{monitor=\"vm-cpu\"} 1"),
        "{metrics}"
    );
    // Three queries: two answered, one refused by the outage.
    for want in [
        "tocsin_datasource_queries_total{datasource=\"vm\",outcome=\"ok\"} 2",
        "tocsin_datasource_queries_total{datasource=\"vm\",outcome=\"error\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == want), "{want}:\n{metrics}");
    }
    t.stop();
}

#[test]
fn check_names_an_unknown_datasource_and_bad_promql() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.toml");
    std::fs::write(
        &config,
        "[[datasources]]\nid = \"prom\"\nurl = \"http://127.0.0.1:9090\"\n",
    )
    .unwrap();
    let mons = dir.path().join("monitors");
    std::fs::create_dir_all(&mons).unwrap();
    // a.toml names "vm", which this config does not have.
    std::fs::write(mons.join("a.toml"), MONITOR).unwrap();
    std::fs::write(
        mons.join("b.toml"),
        MONITOR
            .replace("vm-cpu", "bad-promql")
            .replace("datasource = \"vm\"", "datasource = \"prom\"")
            .replace(
                "max_over_time(cpu_usage[1m])",
                "max_over_time(cpu_usage[1m]",
            ),
    )
    .unwrap();
    std::fs::write(
        mons.join("c.toml"),
        MONITOR
            .replace("vm-cpu", "matrix")
            .replace("datasource = \"vm\"", "datasource = \"prom\"")
            .replace("max_over_time(cpu_usage[1m])", "cpu_usage[5m]"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&config)
        .arg(&mons)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "a.toml:7: query.datasource: datasource = \"vm\": no such datasource (known: prom)"
        ),
        "{err}"
    );
    assert!(err.contains("b.toml:8: query.promql:"), "{err}");
    assert!(err.contains("not valid PromQL"), "{err}");
    assert!(err.contains("c.toml:8: query.promql:"), "{err}");
    assert!(err.contains("gives a matrix"), "{err}");
}

#[test]
fn a_slow_datasource_holds_up_only_its_own_monitor() {
    // A "data source" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let t = Tocsin::start(
        dir.path(),
        &format!("[[datasources]]\nid = \"vm\"\nurl = \"{url}\"\ntimeout = \"4s\"\n"),
    );
    std::fs::write(
        t.dir.join("monitors/cpu.toml"),
        MONITOR.replace("every = \"1m\"", "manual = true"),
    )
    .unwrap();
    std::fs::write(t.dir.join("monitors/count.toml"), common::COUNTER).unwrap();
    let (code, body) = t.post_token("/api/v1/monitors/reload", b"", None);
    assert_eq!(code, 200, "{body}");
    let slow_url = format!("{}/api/v1/monitors/vm-cpu/run", t.url);
    let slow = std::thread::spawn(move || match ureq::post(&slow_url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    });
    std::thread::sleep(Duration::from_millis(300));
    // The other monitor runs and answers while the slow one still waits for its data source.
    let fast = t.run("count", None);
    assert_eq!(fast["monitor"], "count");
    assert!(
        !slow.is_finished(),
        "the slow check ended before its timeout"
    );
    let (code, body) = slow.join().unwrap();
    assert!(code >= 500, "{code} {body}");
    assert!(body.contains("datasource \\\"vm\\\""), "{body}");
    drop(silent);
}
