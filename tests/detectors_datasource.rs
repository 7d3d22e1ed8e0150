//! Objectives (`type = "slo"`) and DBSCAN outliers over a data source: a real VictoriaMetrics
//! (Debian's `victoria-metrics`) on loopback; the replay (range-query chunks) gives the same
//! bytes as the same ticks run as live checks (instant queries). Without the program the tests
//! say "skipping" and pass.

mod common;

use common::replay::{live_lines, replay_ok, ObjectErrors};

use common::vm::Vm;
use serde_json::Value;
use std::path::Path;

/// 2024-05-01T10:00:00Z
const BASE: i64 = 1_714_557_600;

/// Writes the config (data source `vm`) and the monitor; their paths.
fn setup(dir: &Path, url: &str, monitor: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("tocsin.toml");
    std::fs::write(
        &config,
        format!("[[datasources]]\nid = \"vm\"\nurl = \"{url}\"\ntimeout = \"5s\"\n"),
    )
    .unwrap();
    let monitors = dir.join("monitors");
    std::fs::create_dir_all(&monitors).unwrap();
    std::fs::write(monitors.join("m.toml"), monitor).unwrap();
    (config, monitors)
}

fn statuses(out: &str) -> Vec<(i64, String)> {
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            (
                (e["date"].as_i64().unwrap() - BASE) / 60,
                e["df_status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const SLO: &str = r#"
id = "api-slo"
type = "slo"
every = "1m"
[slo]
target = 99.9
window = "2h"
datasource = "vm"
good = "sum by (service) (increase(http_requests_total{code=\"200\"}[$window]))"
total = "sum by (service) (increase(http_requests_total[$window]))"
[[slo.burn]]
level = "critical"
rate = 14.4
long = "1h"
short = "5m"
[[slo.burn]]
level = "warning"
rate = 6
long = "2h"
short = "30m"
"#;

#[test]
fn an_objective_over_a_datasource_replays_as_it_runs_live() {
    let dir = tempfile::tempdir().unwrap();
    // Counters a minute apart for two hours: 1000 requests a minute, 300 of them failing from
    // 10:60 to 10:69 (minutes after BASE).
    let mut lines = Vec::new();
    let (mut ok, mut bad) = (0, 0);
    for i in 0..120 {
        ok += if (60..70).contains(&i) { 700 } else { 1000 };
        bad += if (60..70).contains(&i) { 300 } else { 0 };
        let ms = (BASE + i * 60) * 1000;
        lines.push(format!(
            "http_requests_total{{service=\"api\",code=\"200\"}} {ok} {ms}"
        ));
        lines.push(format!(
            "http_requests_total{{service=\"api\",code=\"500\"}} {bad} {ms}"
        ));
    }
    let Some(vm) = Vm::start(dir.path()) else {
        return;
    };
    vm.import(&lines, "http_requests_total", 2);
    let (config, monitors) = setup(dir.path(), &vm.url, SLO);
    let (from, to) = (BASE + 50 * 60, BASE + 119 * 60);
    let out = replay_ok(&config, &monitors, from, to);
    assert_eq!(
        out,
        live_lines(&config, &monitors, from, to, ObjectErrors::Refuse),
        "replay and live differ"
    );
    let got = statuses(&out);
    let at = |m: i64| got.iter().find(|(t, _)| *t == m).map(|(_, s)| s.as_str());
    assert_eq!(
        got.first().map(|g| g.0),
        Some(61),
        "nothing before the failures: {got:?}"
    );
    assert_eq!(at(66), Some("critical"), "{got:?}");
    assert_eq!(
        at(80),
        Some("warning"),
        "the fast pair's short window is clean: {got:?}"
    );
    assert_eq!(got.last().map(|g| g.1.as_str()), Some("ok"), "{got:?}");
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["df_monitor_checker"], "slo");
    let d: Value = serde_json::from_str(first["df_event_detail"].as_str().unwrap()).unwrap();
    assert!(
        d["slo"]["error_budget_remaining"].as_f64().unwrap() < 100.0,
        "{d}"
    );
}

const OUTLIER: &str = r#"
id = "vm-odd"
every = "1m"
interval = "10m"
[query]
datasource = "vm"
promql = "cpu_usage"
[rules]
kind = "outlier"
algorithm = "dbscan"
warning = "Result > 0"
"#;

#[test]
fn dbscan_over_a_datasource_reads_the_window_series_and_replays_as_live() {
    let dir = tempfile::tempdir().unwrap();
    // a, b, c climb together; d stays at 20 until 10:30, then climbs with them.
    let mut lines = Vec::new();
    for i in 0..60 {
        let ms = (BASE + i * 60) * 1000;
        let climb = 20 + i;
        for (host, v) in [("a", climb), ("b", climb + 1), ("c", climb - 1)] {
            lines.push(format!("cpu_usage{{host=\"{host}\"}} {v} {ms}"));
        }
        let d = if i < 30 { 20 } else { climb };
        lines.push(format!("cpu_usage{{host=\"d\"}} {d} {ms}"));
    }
    let Some(vm) = Vm::start(dir.path()) else {
        return;
    };
    vm.import(&lines, "cpu_usage", 4);
    let (config, monitors) = setup(dir.path(), &vm.url, OUTLIER);
    let (from, to) = (BASE + 5 * 60, BASE + 55 * 60);
    let out = replay_ok(&config, &monitors, from, to);
    assert_eq!(
        out,
        live_lines(&config, &monitors, from, to, ObjectErrors::Refuse),
        "replay and live differ"
    );
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["host"] == "d"), "{out}");
    let got = statuses(&out);
    assert_eq!(
        got.last().map(|g| g.1.as_str()),
        Some("ok"),
        "d rejoins the fleet: {got:?}"
    );
    let d: Value = serde_json::from_str(events[0]["df_event_detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["outlier"]["fleet_size"], 3, "{d}");
}
