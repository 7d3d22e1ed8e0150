//! The detector rule kinds (`mutation` with its parameters, `forecast`, `range` with a learned
//! band) over the embedded store, through the real binary: crafted series whose exact events
//! are pinned (empty, single-point, flat and too-short histories included), the same events
//! from `tocsin replay`, `tocsin test` and `tocsin serve`, and `tocsin check` refusing every
//! bad parameter by name.

mod common;

use common::{now, Tocsin};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

/// 2024-05-06T00:00:00Z, a Monday.
const BASE: i64 = 1_714_953_600;

fn tocsin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("tocsin runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One input series in the notation of `tocsin test` files.
struct Series {
    measurement: &'static str,
    field: &'static str,
    tags: &'static [(&'static str, &'static str)],
    offset: i64,
    every: i64,
    values: &'static str,
}

impl Series {
    /// `(t, value)` of each sample, `t` from `start` (the expansion `tocsin test` does: `a`,
    /// `axn`, `a+bxn`, `a-bxn`, `_`, `_xn`).
    fn samples(&self, start: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let mut slot = 0i64;
        for tok in self.values.split_whitespace() {
            let (head, n) = match tok.split_once('x') {
                Some((h, n)) => (h, n.parse::<i64>().unwrap() + 1),
                None => (tok, 1),
            };
            if head == "_" {
                slot += if tok == "_" { 1 } else { n - 1 };
                continue;
            }
            let (a, b) = match head[1..].find(['+', '-']) {
                Some(i) => {
                    let (a, b) = head.split_at(i + 1);
                    (a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap())
                }
                None => (head.parse::<f64>().unwrap(), 0.0),
            };
            for k in 0..n {
                out.push((start + self.offset + slot * self.every, a + b * k as f64));
                slot += 1;
            }
        }
        out
    }

    /// Line protocol, seconds, shifted by `shift`.
    fn line_protocol(&self, start: i64, shift: i64) -> String {
        let tags: String = self.tags.iter().map(|(k, v)| format!(",{k}={v}")).collect();
        self.samples(start)
            .iter()
            .map(|(t, v)| {
                format!(
                    "{}{tags} {}={v} {}\n",
                    self.measurement,
                    self.field,
                    t + shift
                )
            })
            .collect()
    }

    /// As a `series` entry of a test file.
    fn toml(&self) -> String {
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect();
        format!(
            "{{ measurement = {:?}, field = {:?}, tags = {{ {} }}, offset = \"{}s\", interval = \"{}s\", values = {:?} }}",
            self.measurement,
            self.field,
            tags.join(", "),
            self.offset,
            self.every,
            self.values
        )
    }
}

/// A crafted case: a monitor, its input from `BASE`, the replayed span (offsets from `BASE`)
/// and the events it must give: `(at, status, issue start, issue duration, value)`.
struct Case {
    name: &'static str,
    monitor: &'static str,
    series: Vec<Series>,
    span: (i64, i64),
    expect: Vec<(i64, &'static str, i64, i64, &'static str)>,
}

const M: i64 = 60;
const H: i64 = 3600;
const D: i64 = 86_400;

const WOW: &str = include_str!("../monitors/request-rate-wow.toml");
const BAND: &str = include_str!("../monitors/latency-band.toml");
const FORECAST: &str = include_str!("../monitors/disk-full-forecast.toml");

const MINUTELY_MUTATION: &str = r#"
id = "jump"
every = "1m"
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "mutation"
critical = "Result < 5"
"#;

const WHEN_BOTH: &str = r#"
id = "when"
every = "1m"
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "mutation"
direction = "both"
when = "Current > 10"
critical = "Result > 10"
"#;

const PERCENT_BOTH: &str = r#"
id = "pct"
every = "1m"
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "mutation"
diff = "percent"
direction = "both"
critical = "Result > 10"
"#;

const HOLT: &str = r#"
id = "holt"
every = "1m"
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "forecast"
method = "holt"
lookback = "10m"
threshold = 95
horizon = "1h"
critical = "Result < 1"
"#;

const PERCENTILE_BAND: &str = r#"
id = "pband"
every = "1m"
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "range"
band = "percentile"
percentiles = [10, 90]
baseline = "10m"
min_history = 5
critical = "Result > 3"
"#;

const LEGACY_RANGE: &str = r#"
id = "z"
every = "1m"
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "range"
baseline = "5m"
critical = "Result > 3"
warning = "Result < -1"
"#;

fn q(values: &'static str) -> Series {
    Series {
        measurement: "q",
        field: "v",
        tags: &[("k", "a")],
        offset: 0,
        every: M,
        values,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "week over week: a drop to 40% warns, is critical, recovers; tiny is held back",
            monitor: WOW,
            series: vec![
                Series {
                    measurement: "http",
                    field: "requests_per_second",
                    tags: &[("service", "api")],
                    offset: 30,
                    every: 10 * M,
                    values: "100x1079 40x11 100x20",
                },
                Series {
                    measurement: "http",
                    field: "requests_per_second",
                    tags: &[("service", "tiny")],
                    offset: 30,
                    every: 10 * M,
                    values: "0.5x1079 0.1x11 0.5x20",
                },
            ],
            span: (0, 7 * D + 16 * H),
            expect: vec![
                (7 * D + 12 * H + 40 * M, "warning", 7 * D + 12 * H + 40 * M, 0, "40"),
                (7 * D + 12 * H + 50 * M, "warning", 7 * D + 12 * H + 40 * M, 10 * M, "50"),
                (7 * D + 13 * H, "critical", 7 * D + 12 * H + 40 * M, 20 * M, "60"),
                (7 * D + 13 * H + 10 * M, "critical", 7 * D + 12 * H + 40 * M, 30 * M, "60"),
                (7 * D + 13 * H + 20 * M, "critical", 7 * D + 12 * H + 40 * M, 40 * M, "60"),
                (7 * D + 13 * H + 30 * M, "critical", 7 * D + 12 * H + 40 * M, 50 * M, "60"),
                (7 * D + 13 * H + 40 * M, "critical", 7 * D + 12 * H + 40 * M, H, "60"),
                (7 * D + 13 * H + 50 * M, "critical", 7 * D + 12 * H + 40 * M, H + 10 * M, "60"),
                (7 * D + 14 * H, "critical", 7 * D + 12 * H + 40 * M, H + 20 * M, "60"),
                (7 * D + 14 * H + 10 * M, "warning", 7 * D + 12 * H + 40 * M, H + 30 * M, "50"),
                (7 * D + 14 * H + 20 * M, "warning", 7 * D + 12 * H + 40 * M, H + 40 * M, "40"),
                (7 * D + 14 * H + 30 * M, "ok", 7 * D + 12 * H + 40 * M, H + 50 * M, "30"),
            ],
        },
        Case {
            // Before the past had to exist, Result was 0 here and `Result < 5` fired at 1m.
            name: "mutation without a past value judges nothing; a single point nothing at all",
            monitor: MINUTELY_MUTATION,
            series: vec![
                q("10 12 30"),
                Series {
                    tags: &[("k", "single")],
                    ..q("7")
                },
            ],
            span: (M, 5 * M),
            expect: vec![
                (2 * M, "critical", 2 * M, 0, "2"),
                (3 * M, "ok", 2 * M, M, "18"),
            ],
        },
        Case {
            // 20 → 50 is critical; 50 → 5 is a change of 45, but 5 is not above 10: the
            // precondition holds the check back, so it is clean and the round closes.
            name: "when holds a quiet window back and lets an open round recover",
            monitor: WHEN_BOTH,
            series: vec![q("20 20 50 5 5")],
            span: (M, 6 * M),
            expect: vec![
                (3 * M, "critical", 3 * M, 0, "30"),
                (4 * M, "ok", 3 * M, M, "45"),
            ],
        },
        Case {
            name: "percent change: flat is 0, a change from 0 has no percentage",
            monitor: PERCENT_BOTH,
            series: vec![
                q("50x5 54 60 60"),
                Series {
                    tags: &[("k", "zero")],
                    ..q("0x3 5 5")
                },
            ],
            span: (M, 9 * M),
            // 50 → 54 (checked at 7m) is 8%, 54 → 60 (at 8m) is 11.1%
            expect: vec![(8 * M, "critical", 8 * M, 0, "11.111111"), (9 * M, "ok", 8 * M, M, "0")],
        },
        Case {
            name: "disk-full forecast: warns a day ahead, critical 4 h ahead, recovers after cleanup",
            monitor: FORECAST,
            series: vec![
                Series {
                    measurement: "disk",
                    field: "used_percent",
                    tags: &[("host", "db01"), ("path", "/")],
                    offset: 30,
                    every: 10 * M,
                    values: "40+1x55 20x40",
                },
                Series {
                    measurement: "disk",
                    field: "used_percent",
                    tags: &[("host", "db01"), ("path", "/var")],
                    offset: 30,
                    every: 10 * M,
                    values: "70x95",
                },
                Series {
                    measurement: "disk",
                    field: "used_percent",
                    tags: &[("host", "db02"), ("path", "/")],
                    offset: 30,
                    every: 10 * M,
                    values: "90",
                },
            ],
            span: (0, 11 * H),
            expect: vec![], // filled in below: one warning every 10 minutes is long to write out
        },
        Case {
            name: "Holt needs three points; then the level at the window end is across",
            monitor: HOLT,
            series: vec![q("90 92 94")],
            span: (M, 4 * M),
            expect: vec![(3 * M, "critical", 3 * M, 0, "0")],
        },
        Case {
            name: "seasonal latency band: 300 ms at 03:30 is critical, 200 ms at noon is not",
            monitor: BAND,
            series: vec![
                Series {
                    measurement: "http",
                    field: "latency_p95_ms",
                    tags: &[("service", "api")],
                    offset: 30 * M,
                    every: H,
                    values: "105x7 205x11 105x3 95x7 195x11 95x3 105x7 205x11 105x3 95x7 195x11 95x3 105x7 205x11 105x3 100x2 300 100x3 200x11 100x3",
                },
                Series {
                    measurement: "http",
                    field: "latency_p95_ms",
                    tags: &[("service", "flat")],
                    offset: 30 * M,
                    every: H,
                    values: "100x95 900",
                },
            ],
            span: (0, 6 * D),
            expect: vec![
                (5 * D + 3 * H + 40 * M, "critical", 5 * D + 3 * H + 40 * M, 0, "37.620705"),
                (5 * D + 3 * H + 50 * M, "critical", 5 * D + 3 * H + 40 * M, 10 * M, "37.620705"),
                (5 * D + 4 * H, "critical", 5 * D + 3 * H + 40 * M, 20 * M, "37.620705"),
                (5 * D + 4 * H + 10 * M, "critical", 5 * D + 3 * H + 40 * M, 30 * M, "37.620705"),
                (5 * D + 4 * H + 20 * M, "critical", 5 * D + 3 * H + 40 * M, 40 * M, "37.620705"),
                (5 * D + 4 * H + 30 * M, "critical", 5 * D + 3 * H + 40 * M, 50 * M, "37.620705"),
                (5 * D + 4 * H + 40 * M, "ok", 5 * D + 3 * H + 40 * M, H, "0"),
            ],
        },
        Case {
            name: "percentile band needs five samples, then 30 is 18 spreads above [10, 12]",
            monitor: PERCENTILE_BAND,
            series: vec![q("10 12 10 12 10 12 30"), Series { tags: &[("k", "flat")], ..q("5x5 9") }],
            span: (M, 8 * M),
            expect: vec![(7 * M, "critical", 7 * M, 0, "18")],
        },
        Case {
            // The z-score against the points of the 5 minutes before, as before band
            // parameters existed: 1 2 1 2 1 (mean 1.4, sd 0.49), then 9 is 15.5 sd above;
            // then 0 against 2 1 2 1 9 (mean 3, sd 3.03) is -0.99, not below -1: recovered.
            // Before there are points (1m) or spread (2m), Result is 0, as it always was.
            name: "range without band parameters is the z-score it always was",
            monitor: LEGACY_RANGE,
            series: vec![q("1 2 1 2 1 9 0")],
            span: (M, 8 * M),
            expect: vec![
                (6 * M, "critical", 6 * M, 0, "15.513435"),
                (7 * M, "ok", 6 * M, M, "-0.989071"),
            ],
        },
    ]
}

/// The events of a replay as `(at, status, issue start, duration, value)` from `BASE`.
type Summary = Vec<(i64, String, i64, i64, String)>;

fn summary(events: &[Value]) -> Summary {
    events
        .iter()
        .map(|e| {
            (
                e["date"].as_i64().unwrap() - BASE,
                e["df_status"].as_str().unwrap().to_string(),
                e["df_issue_start_time"].as_i64().unwrap() - BASE,
                e["df_issue_duration"].as_i64().unwrap(),
                e["df_monitor_checker_value"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

/// Writes the case's monitor and input into `dir`; replays the span.
fn replay(dir: &Path, c: &Case, monitor: &str) -> Vec<Value> {
    let mfile = dir.join("monitor.toml");
    std::fs::write(&mfile, monitor).unwrap();
    let lp: String = c.series.iter().map(|s| s.line_protocol(BASE, 0)).collect();
    let lpfile = dir.join("input.lp");
    std::fs::write(&lpfile, lp).unwrap();
    let (from, to) = ((BASE + c.span.0).to_string(), (BASE + c.span.1).to_string());
    let o = tocsin(&[
        "replay",
        "--monitors",
        mfile.to_str().unwrap(),
        "--metrics",
        lpfile.to_str().unwrap(),
        "--from",
        &from,
        "--to",
        &to,
        "--precision",
        "s",
    ]);
    assert!(o.status.success(), "{}: {}", c.name, text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `tocsin test` file expecting, at every tick of the span, exactly the replay's events.
fn test_file(c: &Case, every: i64, events: &[Value]) -> String {
    let mut out = String::from("monitors = [\"monitor.toml\"]\n\n[[tests]]\n");
    let _ = writeln!(out, "name = {:?}\nstart = \"{BASE}\"", c.name);
    let series: Vec<String> = c.series.iter().map(Series::toml).collect();
    let _ = writeln!(
        out,
        "series = [\n  {},\n]\nexpect = [",
        series.join(",\n  ")
    );
    let first = (c.span.0 + every - 1).div_euclid(every) * every;
    let mut at = first.max(every);
    while at <= c.span.1 {
        let here: Vec<String> = events
            .iter()
            .filter(|e| e["date"].as_i64() == Some(BASE + at))
            .map(|e| {
                let mut s = format!(
                    "{{ status = {}, tags = {}, issue_start = \"{}s\", issue_duration = \"{}s\"",
                    e["df_status"],
                    e["df_dimension_tags"].as_str().unwrap(),
                    e["df_issue_start_time"].as_i64().unwrap() - BASE,
                    e["df_issue_duration"]
                );
                if let Some(v) = e["df_monitor_checker_value"].as_str() {
                    let _ = write!(s, ", value = {v}");
                }
                if let Some(v) = e["df_sub_status"].as_str() {
                    let _ = write!(s, ", sub_status = {v:?}");
                }
                s + " }"
            })
            .collect();
        let _ = writeln!(
            out,
            "  {{ at = \"{at}s\", events = [{}] }},",
            here.join(", ")
        );
        at += every;
    }
    out + "]\n"
}

/// `{"k": "a"}`-style tags in a test file are a TOML inline table.
fn tags_as_toml(file: String) -> String {
    // df_dimension_tags is JSON (`{"service":"api"}`): make it `{ service = "api" }`.
    let re = regex::Regex::new(r#"tags = \{([^}]*)\}"#).unwrap();
    re.replace_all(&file, |caps: &regex::Captures| {
        let inner = caps[1].replace("\":", "\" = ");
        let inner = regex::Regex::new(r#""([A-Za-z_][A-Za-z0-9_]*)" = "#)
            .unwrap()
            .replace_all(&inner, "$1 = ");
        format!("tags = {{ {inner} }}")
    })
    .into_owned()
}

fn id_of(monitor: &str) -> String {
    let line = monitor.lines().find(|l| l.starts_with("id")).expect("id");
    line.split('"').nth(1).unwrap().to_string()
}

fn every_of(monitor: &str) -> i64 {
    let line = monitor
        .lines()
        .find(|l| l.starts_with("every"))
        .expect("every");
    match line.split('"').nth(1).unwrap() {
        "1m" => M,
        "10m" => 10 * M,
        other => panic!("every = {other}"),
    }
}

#[test]
fn crafted_series_give_the_pinned_events_in_replay_and_test() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let events = replay(dir.path(), &c, c.monitor);
        let got = summary(&events);
        if c.monitor == FORECAST {
            forecast_events(&got);
        } else {
            let want: Summary = c
                .expect
                .iter()
                .map(|(a, s, st, d, v)| (*a, s.to_string(), *st, *d, v.to_string()))
                .collect();
            assert_eq!(got, want, "{}", c.name);
        }
        // `tocsin test` over the same input: the same events at every tick, none elsewhere.
        let file = tags_as_toml(test_file(&c, every_of(c.monitor), &events));
        let tfile = dir.path().join("case.toml");
        std::fs::write(&tfile, &file).unwrap();
        let o = tocsin(&["test", tfile.to_str().unwrap()]);
        assert!(o.status.success(), "{}:\n{}\n{file}", c.name, text(&o));
        assert!(text(&o).contains(" 0 failure(s)"), "{}", text(&o));
    }
}

/// The forecast case: db01:/ warns from 00:20 (one point is no trend, at 00:10), critical
/// from 05:20 to 09:30, warning at 09:40, ok at 09:50; /var (flat) and db02 (one point)
/// never.
fn forecast_events(got: &Summary) {
    let mut want: Summary = Vec::new();
    let mut t = 20 * M;
    while t <= 9 * H + 40 * M {
        let status = if (5 * H + 20 * M..=9 * H + 30 * M).contains(&t) {
            "critical"
        } else {
            "warning"
        };
        want.push((t, status.into(), 20 * M, t - 20 * M, String::new()));
        t += 10 * M;
    }
    want.push((
        9 * H + 50 * M,
        "ok".into(),
        20 * M,
        9 * H + 30 * M,
        "24".into(),
    ));
    let without_values: Summary = got
        .iter()
        .map(|(a, s, st, d, v)| {
            let v = if s == "ok" { v.clone() } else { String::new() };
            (*a, s.clone(), *st, *d, v)
        })
        .collect();
    assert_eq!(without_values, want);
    // (95 - 41.95) / 6 at 00:20; 0 once the latest point is at 95 (09:20)
    assert_eq!(got[0].4, "8.841667");
    let at = |t: i64| got.iter().find(|e| e.0 == t).unwrap().4.clone();
    assert_eq!(at(9 * H + 20 * M), "0");
}

#[test]
fn detail_explains_each_decision() {
    let all = cases();
    let detector = |name_part: &str, at: i64| -> Value {
        let c = all.iter().find(|c| c.name.contains(name_part)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let events = replay(dir.path(), c, c.monitor);
        let e = events
            .iter()
            .find(|e| e["date"].as_i64() == Some(BASE + at))
            .unwrap_or_else(|| panic!("no event at {at} in {}", c.name));
        let d: Value = serde_json::from_str(e["df_event_detail"].as_str().unwrap()).unwrap();
        let shown: f64 = e["df_monitor_checker_value"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((d["result"].as_f64().unwrap() - shown).abs() < 1e-6, "{d}");
        d["detector"].clone()
    };
    let d = detector("week over week", 7 * D + 13 * H);
    assert_eq!(d["kind"], "mutation");
    assert_eq!(d["current"], 40.0);
    assert_eq!(d["past"], 100.0);
    assert_eq!(d["change"], -60.0);
    assert_eq!(d["compare_seconds"], 7 * D);
    assert_eq!(
        (d["diff"].as_str(), d["direction"].as_str()),
        (Some("percent"), Some("down"))
    );
    assert_eq!(
        (d["when"].as_str(), d["when_holds"].as_bool()),
        (Some("Current > 1"), Some(true))
    );

    let d = detector("disk-full", 20 * M);
    assert_eq!(d["kind"], "forecast");
    assert_eq!(
        (d["method"].as_str(), d["points"].as_i64()),
        (Some("linear"), Some(2))
    );
    assert_eq!(d["threshold"], 95.0);
    assert_eq!(d["last"], 41.0);
    assert!((d["level"].as_f64().unwrap() - 41.95).abs() < 1e-9, "{d}");
    assert!(
        (d["slope_per_hour"].as_f64().unwrap() - 6.0).abs() < 1e-9,
        "{d}"
    );
    assert_eq!(d["horizon_hours"], 24.0);

    let d = detector("seasonal latency", 5 * D + 3 * H + 40 * M);
    assert_eq!(d["kind"], "range");
    assert_eq!(
        (d["samples"].as_i64(), d["season_seconds"].as_i64()),
        (Some(5), Some(D))
    );
    assert_eq!(
        (d["centre"].as_f64(), d["current"].as_f64()),
        (Some(101.0), Some(300.0))
    );
    assert!((d["upper"].as_f64().unwrap() - (101.0 + 3.0 * 24f64.sqrt())).abs() < 1e-9);
    assert_eq!(d["outside"], "above");

    // A mutation without the new parameters keeps its df_event_detail as it was.
    let d = detector("without a past", 2 * M);
    assert!(d.is_null(), "{d}");
}

/// Every bad value of every detector parameter, and a parameter of another kind, refused by
/// `tocsin check` with its line and field.
#[test]
fn check_refuses_every_bad_detector_parameter() {
    let head = "every = \"1m\"\ninterval = \"1m\"\n[query]\nmeasurement = \"m\"\nfield = \"f\"\n[rules]\ncritical = \"Result > 1\"\n";
    // (kind, the bad line, field, part of the message)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "mutation",
            "compare = \"0s\"",
            "rules.compare",
            "must be longer than 0s",
        ),
        (
            "mutation",
            "compare = \"1 week\"",
            "rules.compare",
            "bad duration",
        ),
        (
            "mutation",
            "diff = \"ratio\"",
            "rules.diff",
            "expected one of value, percent",
        ),
        (
            "mutation",
            "direction = \"sideways\"",
            "rules.direction",
            "expected one of signed, up, down, both",
        ),
        (
            "mutation",
            "when = \"Result > 1\"",
            "rules.when",
            "comparisons of Current",
        ),
        (
            "mutation",
            "when = \"Current >\"",
            "rules.when",
            "comparisons of Current",
        ),
        (
            "mutation",
            "when = \"tags.host == 1\"",
            "rules.when",
            "comparisons of Current",
        ),
        (
            "forecast",
            "method = \"cubic\"\nthreshold = 9",
            "rules.method",
            "expected one of linear, holt",
        ),
        (
            "forecast",
            "lookback = \"0s\"\nthreshold = 9",
            "rules.lookback",
            "must be longer than 0s",
        ),
        (
            "forecast",
            "horizon = \"soon\"\nthreshold = 9",
            "rules.horizon",
            "bad duration",
        ),
        (
            "forecast",
            "direction = \"both\"\nthreshold = 9",
            "rules.direction",
            "expected one of up, down",
        ),
        (
            "forecast",
            "method = \"holt\"\nalpha = 1.5\nthreshold = 9",
            "rules.alpha",
            "(0, 1]",
        ),
        (
            "forecast",
            "method = \"holt\"\nbeta = 0\nthreshold = 9",
            "rules.beta",
            "(0, 1]",
        ),
        (
            "forecast",
            "alpha = 0.5\nthreshold = 9",
            "rules.alpha",
            "method = \"holt\" only",
        ),
        (
            "forecast",
            "threshold = nan",
            "rules.threshold",
            "a finite number",
        ),
        (
            "forecast",
            "lookback = \"1h\"",
            "rules.threshold",
            "needs the level",
        ),
        (
            "range",
            "band = \"iqr\"",
            "rules.band",
            "expected one of stddev, percentile",
        ),
        ("range", "k = 0", "rules.k", "above 0"),
        (
            "range",
            "band = \"percentile\"\nk = 2",
            "rules.k",
            "band = \"stddev\" only",
        ),
        (
            "range",
            "band = \"percentile\"\npercentiles = [95, 5]",
            "rules.percentiles",
            "0 <= low < high <= 100",
        ),
        (
            "range",
            "band = \"percentile\"\npercentiles = [5]",
            "rules.percentiles",
            "[low, high]",
        ),
        (
            "range",
            "band = \"percentile\"\npercentiles = [5, 101]",
            "rules.percentiles",
            "[low, high]",
        ),
        (
            "range",
            "percentiles = [5, 95]",
            "rules.percentiles",
            "band = \"percentile\" only",
        ),
        (
            "range",
            "season = \"1w\"",
            "rules.season",
            "longer than baseline",
        ),
        (
            "range",
            "season = \"30s\"\nbaseline = \"1h\"",
            "rules.season",
            "at least the window",
        ),
        (
            "range",
            "season = \"0s\"",
            "rules.season",
            "must be longer than 0s",
        ),
        (
            "range",
            "min_history = 0",
            "rules.min_history",
            "from 1 to 100000",
        ),
        (
            "range",
            "side = \"left\"",
            "rules.side",
            "expected one of both, above, below",
        ),
        (
            "threshold",
            "compare = \"1w\"",
            "rules.compare",
            "applies to kind = \"mutation\" only",
        ),
        (
            "mutation",
            "lookback = \"1h\"",
            "rules.lookback",
            "applies to kind = \"forecast\" only",
        ),
        (
            "forecast",
            "season = \"1d\"\nthreshold = 9",
            "rules.season",
            "applies to kind = \"range\" only",
        ),
        (
            "outlier",
            "direction = \"up\"",
            "rules.direction",
            "kind = \"mutation\" or kind = \"forecast\"",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (kind, line, ..)) in cases.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("c{i:02}.toml")),
            format!("{head}kind = \"{kind}\"\n{line}\n"),
        )
        .unwrap();
    }
    let o = tocsin(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    for (i, (_, line, field, msg)) in cases.iter().enumerate() {
        // The bad value is on line 9 (after the kind), or on the line it names.
        let file = format!("c{i:02}.toml");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(&file)).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(": {field}: ")) && l.contains(msg)),
            "{line}: want {field} / {msg}, got {lines:#?}"
        );
        if *msg != "needs the level" {
            let n = line
                .lines()
                .position(|l| l.starts_with(field.trim_start_matches("rules.")))
                .map_or(9, |p| 9 + p);
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(&format!("{file}:{n}: {field}"))),
                "{line}: line {n}: {lines:#?}"
            );
        }
    }
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{} file(s): 0 valid", cases.len())),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `tocsin serve` gives the same decision as `tocsin replay` at the same second: the three
/// shipped detectors, run by hand over the same input moved to the present.
#[test]
fn serve_decides_as_replay_does() {
    let all = cases();
    // (case, the offset from BASE whose input is moved to now, object)
    let picks = [
        ("week over week", 7 * D + 13 * H, "api"),
        ("disk-full", 5 * H + 20 * M, "db01"),
        ("seasonal latency", 5 * D + 3 * H + 40 * M, "api"),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    for (part, ..) in &picks {
        let c = all.iter().find(|c| c.name.contains(part)).unwrap();
        // Manual in serve; the same monitor every second in the replay, so that it runs at
        // exactly the second serve ran it.
        let manual = c.monitor.replace("every = \"10m\"", "manual = true");
        std::fs::write(
            dir.path()
                .join(format!("monitors/{}.toml", id_of(c.monitor))),
            &manual,
        )
        .unwrap();
    }
    let mut server = Tocsin::start(
        dir.path(),
        "[retention]\nmetrics = \"30d\"\n[host_input]\nenabled = false\n",
    );
    let mut inputs = Vec::new();
    for (part, at, _) in &picks {
        let c = all.iter().find(|c| c.name.contains(part)).unwrap();
        let id = id_of(c.monitor);
        let shift = now() - (BASE + at);
        let lp: String = c
            .series
            .iter()
            .map(|s| s.line_protocol(BASE, shift))
            .collect();
        let (code, body) = server.post_token("/v1/write/metric?precision=s", lp.as_bytes(), None);
        assert_eq!(code, 200, "{body}");
        inputs.push((c, id, lp));
    }
    for ((c, id, lp), (_, _, object)) in inputs.iter().zip(&picks) {
        let ran = server.run(id, None);
        let live = ran["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["df_dimension_tags"].as_str().unwrap().contains(object))
            .unwrap_or_else(|| panic!("{}: no event in {ran}", c.name))
            .clone();
        let t = live["date"].as_i64().unwrap();
        let rdir = tempfile::tempdir().unwrap();
        let every = c.monitor.replace("every = \"10m\"", "every = \"1s\"");
        std::fs::write(rdir.path().join("m.toml"), every).unwrap();
        std::fs::write(rdir.path().join("in.lp"), lp).unwrap();
        let o = tocsin(&[
            "replay",
            "--monitors",
            rdir.path().join("m.toml").to_str().unwrap(),
            "--metrics",
            rdir.path().join("in.lp").to_str().unwrap(),
            "--from",
            &t.to_string(),
            "--to",
            &t.to_string(),
            "--precision",
            "s",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let replayed: Value = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| e["df_dimension_tags"] == live["df_dimension_tags"])
            .unwrap_or_else(|| panic!("{}: replay at {t} has no event", c.name));
        for f in [
            "df_status",
            "df_monitor_checker_value",
            "df_check_range_start",
            "df_check_range_end",
            "df_title",
        ] {
            assert_eq!(live[f], replayed[f], "{}: {f}", c.name);
        }
        let detail = |e: &Value| -> Value {
            serde_json::from_str::<Value>(e["df_event_detail"].as_str().unwrap()).unwrap()
                ["detector"]
                .clone()
        };
        assert!(!detail(&live).is_null());
        assert_eq!(detail(&live), detail(&replayed), "{}", c.name);
        assert_eq!(live["df_exec_mode"], "async");
    }
    assert!(server.stop().success());
}
