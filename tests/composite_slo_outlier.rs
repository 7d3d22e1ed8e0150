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

/// Runs `files` as monitors in `serve` over the points `lines(t0)` (line protocol, seconds,
/// written in one batch at `t0`) for `secs`, then replays the same points over the ticks the
/// server ran; asserts both gave the same events and returns the server's, sorted.
fn live_equals_replay(
    files: &[(&str, &str)],
    lines: impl Fn(i64) -> Vec<String>,
    secs: f64,
) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("monitors");
    std::fs::create_dir_all(&m).unwrap();
    for (name, body) in files {
        std::fs::write(m.join(name), body).unwrap();
    }
    let s = Server::start(dir.path(), "[host_input]\nenabled = false\n");
    let lines = lines(now());
    let (code, body) = s.post_token("/write?precision=s", lines.join("\n").as_bytes(), None);
    assert_eq!(code, 204, "{body}");
    std::thread::sleep(Duration::from_secs_f64(secs));
    let got = s.get("/api/v1/events?limit=1000");
    let mut live: Vec<Value> = got["events"].as_array().unwrap().clone();
    assert!(!live.is_empty(), "no events");
    live.sort_by_key(key);
    // From the first tick with an event (before it no object had state), to the last.
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
    let lp = dir.path().join("points.lp");
    std::fs::write(&lp, lines.join("\n")).unwrap();
    let replayed: Vec<_> = replay(&m, &lp, from, to).iter().map(key).collect();
    let keys: Vec<_> = live.iter().map(key).collect();
    assert_eq!(replayed, keys, "replay and serve differ");
    live
}

#[test]
fn a_composite_sees_its_inputs_of_the_same_tick_in_serve_and_replay() {
    // 99 for three seconds, then 10 (the rounds recover once the window holds only 10s);
    // one batch, so both inputs open at the same tick: cpu for hosts x and y, mem for x.
    let lines = |t0: i64| -> Vec<String> {
        (0..6)
            .flat_map(|i| {
                let (t, v) = (t0 - 1 + i, if i < 3 { 99 } else { 10 });
                [
                    format!("cpu,host=x u={v} {t}"),
                    format!("cpu,host=y u={v} {t}"),
                    format!("mem,host=x u={v} {t}"),
                ]
            })
            .collect()
    };
    let live = live_equals_replay(
        &[
            ("cpu.toml", LIVE_CPU),
            ("mem.toml", LIVE_MEM),
            ("a-both.toml", LIVE_BOTH),
        ],
        lines,
        9.5,
    );
    let first = |id: &str| {
        live.iter()
            .find(|e| e["df_monitor_checker_id"] == id)
            .unwrap_or_else(|| panic!("no event of {id}: {live:?}"))
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
    let keys: Vec<_> = live.iter().map(key).collect();
    assert!(
        keys.iter().any(|k| k.1 == "a-both" && k.2 == "critical")
            && keys.iter().any(|k| k.1 == "a-both" && k.2 == "warning")
            && keys.iter().any(|k| k.1 == "a-both" && k.2 == "ok"),
        "host x critical, y warning, then both recover: {keys:?}"
    );
}

fn slo(body: &str) -> String {
    format!("id = \"s\"\ntype = \"slo\"\nevery = \"1m\"\n{body}")
}

const SLO_STORE: &str = "good = { measurement = \"http\", field = \"ok\" }\ntotal = { measurement = \"http\", field = \"requests\" }\n";

#[test]
fn slo_check_refuses_every_bad_value() {
    let cases: Vec<(String, &str, &str)> = vec![
        (slo(&format!("[slo]\ntarget = 100\n{SLO_STORE}")), "s.toml:5: slo.target", "above 0 and below 100"),
        (slo(&format!("[slo]\ntarget = 0\n{SLO_STORE}")), "s.toml:5: slo.target", "above 0 and below 100"),
        (slo(&format!("[slo]\ntarget = \"high\"\n{SLO_STORE}")), "s.toml:5: slo.target", "invalid type"),
        (slo(&format!("[slo]\n{SLO_STORE}")), "s.toml:4: slo.target", "missing"),
        (slo(&format!("[slo]\ntarget = 99\nwindow = \"0s\"\n{SLO_STORE}")), "s.toml:6: slo.window", "longer than 0s"),
        (slo(&format!("[slo]\ntarget = 99\nwindow = \"month\"\n{SLO_STORE}")), "s.toml:6: slo.window", "window = \"month\""),
        (slo("[slo]\ntarget = 99\ngood = { measurement = \"http\", field = \"ok\" }\n"), "s.toml:4: slo.total", "missing"),
        (slo("[slo]\ntarget = 99\ngood = { measurement = \"http\" }\ntotal = { measurement = \"http\", field = \"r\" }\n"), "s.toml:6: slo.good", "missing field `field`"),
        (slo("[slo]\ntarget = 99\ngood = \"sum(ok[$window])\"\ntotal = { measurement = \"http\", field = \"r\" }\n"), "s.toml:6: slo.good", "needs slo.datasource"),
        (slo("[slo]\ntarget = 99\ngood = { measurement = \"http\", field = \"ok\", where = { host = \"~[\" } }\ntotal = { measurement = \"http\", field = \"r\" }\n"), "s.toml:6: slo.good.where.host", "\"~[\""),
        (slo(&format!("[slo]\ntarget = 99\nby = [\"a\", \"a\"]\n{SLO_STORE}")), "s.toml:6: slo.by", "distinct"),
        (slo("[slo]\ntarget = 99\ndatasource = \"prom\"\ngood = \"sum(rate(ok[5m]))\"\ntotal = \"sum(rate(all[$window]))\"\n"), "s.toml:7: slo.good", "has no $window"),
        (slo("[slo]\ntarget = 99\ndatasource = \"prom\"\ngood = \"sum(rate(ok[$window])\"\ntotal = \"sum(rate(all[$window]))\"\n"), "s.toml:7: slo.good", "not valid PromQL"),
        (slo("[slo]\ntarget = 99\ndatasource = \"prom\"\ngood = \"sum(ok[$window])\"\ntotal = { measurement = \"h\", field = \"r\" }\n"), "s.toml:8: slo.total", "expected a PromQL string"),
        (slo("[slo]\ntarget = 99\ndatasource = \"prom\"\nby = [\"a\"]\ngood = \"sum(increase(ok[$window]))\"\ntotal = \"sum(increase(all[$window]))\"\n"), "s.toml:7: slo.by", "not with a datasource"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}burn = []\n")), "s.toml:8: slo.burn", "empty"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[[slo.burn]]\nlevel = \"page\"\nrate = 2\nlong = \"1h\"\nshort = \"5m\"\n")), "s.toml:9: slo.burn.level", "expected one of critical, error, warning, info"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[[slo.burn]]\nlevel = \"ok\"\nrate = 2\nlong = \"1h\"\nshort = \"5m\"\n")), "s.toml:9: slo.burn.level", "expected one of"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[[slo.burn]]\nlevel = \"warning\"\nrate = 0\nlong = \"1h\"\nshort = \"5m\"\n")), "s.toml:10: slo.burn.rate", "above 0"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[[slo.burn]]\nlevel = \"warning\"\nlong = \"1h\"\nshort = \"5m\"\n")), "s.toml:8: slo.burn.rate", "missing"),
        (slo(&format!("[slo]\ntarget = 99\nwindow = \"1d\"\n{SLO_STORE}[[slo.burn]]\nlevel = \"warning\"\nrate = 2\nlong = \"2d\"\nshort = \"5m\"\n")), "s.toml:12: slo.burn.long", "at most the objective's window"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[[slo.burn]]\nlevel = \"warning\"\nrate = 2\nlong = \"1h\"\nshort = \"1h\"\n")), "s.toml:12: slo.burn.short", "shorter than long"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[[slo.burn]]\nlevel = \"warning\"\nrate = 2\nlong = \"1h\"\nshort = \"5 min\"\n")), "s.toml:12: slo.burn.short", "short = \"5 min\""),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[rules]\ncritical = \"Result > 1\"\n")), "s.toml:9: rules.critical", "[[slo.burn]]"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[rules]\ntrigger_after = 0\n")), "s.toml:9: rules.trigger_after", "from 1 to 10000"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[nodata]\nafter = \"5m\"\n")), "s.toml:8: nodata", "remove [nodata]"),
        (slo(&format!("[slo]\ntarget = 99\n{SLO_STORE}[query]\nmeasurement = \"x\"\n")), "s.toml:8: query", "remove [query]"),
        (format!("id = \"s\"\nevery = \"1m\"\n[slo]\ntarget = 99\n{SLO_STORE}"), "s.toml:3: slo", "type = \"slo\""),
        (format!("id = \"s\"\ntype = \"slo\"\nevery = \"1m\"\ninterval = \"5m\"\n[slo]\ntarget = 99\n{SLO_STORE}"), "s.toml:4: interval", "remove it"),
    ];
    for (body, want, why) in cases {
        refused(&[("s.toml", Box::leak(body.into_boxed_str()))], want, why);
    }
    let (code, err) = check(&[(
        "s.toml",
        &slo(&format!(
            "[slo]\ntarget = 99.5\nwindow = \"7d\"\n{SLO_STORE}"
        )),
    )]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn slo_replay_explains_the_budget_and_matches_the_shipped_test() {
    let dir = tempfile::tempdir().unwrap();
    // The series of the shipped test's first case, from 2024-01-01T00:00:00Z.
    let start = 1_704_067_200;
    let mut lp = String::new();
    for i in 0..=120 {
        let t = start + 30 + 60 * i;
        let ok = if (60..=69).contains(&i) { 700 } else { 1000 };
        lp.push_str(&format!("http,service=api requests=1000,ok={ok} {t}\n"));
    }
    let metrics = dir.path().join("http.lp");
    std::fs::write(&metrics, lp).unwrap();
    let events = replay(
        Path::new("monitors/api-availability.toml"),
        &metrics,
        start + 60 * 60,
        start + 101 * 60,
    );
    let got: Vec<(i64, String)> = events
        .iter()
        .map(|e| {
            (
                (e["date"].as_i64().unwrap() - start) / 60,
                e["df_status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want: Vec<(i64, String)> = vec![(62, "warning".into())];
    want.extend((63..=74).map(|m| (m, "critical".into())));
    want.extend((75..=99).map(|m| (m, "warning".into())));
    want.push((100, "ok".into()));
    assert_eq!(got, want);
    let critical = &events[1];
    assert_eq!(critical["df_monitor_checker"], "slo");
    assert_eq!(critical["df_monitor_type"], "slo");
    let d: Value = serde_json::from_str(critical["df_event_detail"].as_str().unwrap()).unwrap();
    let slo = &d["slo"];
    // 900 of 63000 requests failed against a budget of 1 in 1000: 13.3 budgets spent.
    assert_eq!(slo["total"], 63_000.0);
    assert_eq!(slo["good"], 62_100.0);
    let left = slo["error_budget_remaining"].as_f64().unwrap();
    assert!((left - 100.0 * (1.0 - 900.0 / 63.0)).abs() < 1e-6, "{d}");
    assert_eq!(slo["burn"][0]["fires"], true);
    assert_eq!(slo["burn"][0]["long"], "1h");
    assert!((slo["burn"][0]["short_burn"].as_f64().unwrap() - 180.0).abs() < 1e-6);
    assert_eq!(d["matched_rule"], "burn > 14.4 over 1h and 5m");
}

const LIVE_SLO: &str = "id = \"fast\"\ntype = \"slo\"\nevery = \"1s\"\n[slo]\ntarget = 99\nwindow = \"1m\"\ngood = { measurement = \"http\", field = \"ok\" }\ntotal = { measurement = \"http\", field = \"requests\" }\nby = \"service\"\n[[slo.burn]]\nlevel = \"critical\"\nrate = 10\nlong = \"20s\"\nshort = \"3s\"\n[[slo.burn]]\nlevel = \"warning\"\nrate = 2\nlong = \"40s\"\nshort = \"6s\"\n";

#[test]
fn slo_serve_and_replay_give_the_same_events() {
    // 100 requests a second for 20 s, of which 80 fail for 4 s in the middle (and another
    // service that never fails).
    let lines = |t0: i64| -> Vec<String> {
        (0..20)
            .flat_map(|i| {
                let t = t0 - 12 + i;
                let ok = if (10..14).contains(&i) { 20 } else { 100 };
                [
                    format!("http,service=api requests=100,ok={ok} {t}"),
                    format!("http,service=web requests=100,ok=100 {t}"),
                ]
            })
            .collect()
    };
    let live = live_equals_replay(&[("fast.toml", LIVE_SLO)], lines, 11.0);
    let statuses: Vec<&str> = live
        .iter()
        .map(|e| e["df_status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"critical") && statuses.contains(&"warning"),
        "{statuses:?}"
    );
    assert!(
        live.iter().all(|e| e["service"] == "api"),
        "web never burns"
    );
}

fn outlier(rules: &str) -> String {
    format!("id = \"o\"\nevery = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\nby = \"host\"\n[rules]\n{rules}warning = \"Result > 0\"\n")
}

#[test]
fn outlier_check_refuses_every_bad_value() {
    let cases = [
        (
            outlier("kind = \"outlier\"\nalgorithm = \"kmeans\"\n"),
            "o.toml:9: rules.algorithm",
            "expected one of mad, dbscan",
        ),
        (
            outlier("kind = \"outlier\"\nalgorithm = \"dbscan\"\ntolerance = 0\n"),
            "o.toml:10: rules.tolerance",
            "above 0",
        ),
        (
            outlier("kind = \"outlier\"\nalgorithm = \"dbscan\"\ntolerance = -1.5\n"),
            "o.toml:10: rules.tolerance",
            "above 0",
        ),
        (
            outlier("kind = \"outlier\"\nalgorithm = \"dbscan\"\ntolerance = \"wide\"\n"),
            "o.toml:10: rules.tolerance",
            "invalid type",
        ),
        (
            outlier("kind = \"outlier\"\ntolerance = 2\n"),
            "o.toml:9: rules.tolerance",
            "only for algorithm = \"dbscan\"",
        ),
        (
            outlier("kind = \"outlier\"\nalgorithm = \"mad\"\ntolerance = 2\n"),
            "o.toml:10: rules.tolerance",
            "only for algorithm = \"dbscan\"",
        ),
        (
            outlier("algorithm = \"dbscan\"\n"),
            "o.toml:8: rules.algorithm",
            "only for kind = \"outlier\"",
        ),
        (
            outlier("kind = \"threshold\"\ntolerance = 3\n"),
            "o.toml:9: rules.tolerance",
            "only for kind = \"outlier\"",
        ),
    ];
    for (body, want, why) in cases {
        refused(&[("o.toml", Box::leak(body.into_boxed_str()))], want, why);
    }
    for ok in [
        "kind = \"outlier\"\nalgorithm = \"dbscan\"\ntolerance = 0.5\n",
        "kind = \"outlier\"\nalgorithm = \"mad\"\n",
        "kind = \"outlier\"\n",
    ] {
        let (code, err) = check(&[("o.toml", &outlier(ok))]);
        assert_eq!(code, Some(0), "{ok}: {err}");
    }
}

const LIVE_OUTLIER: &str = "id = \"odd\"\nevery = \"1s\"\ninterval = \"10s\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\nby = \"host\"\n[rules]\nkind = \"outlier\"\nalgorithm = \"dbscan\"\ntolerance = 3\nwarning = \"Result > 0\"\n";

#[test]
fn dbscan_outliers_in_serve_and_replay_and_their_detail() {
    // Three hosts climb together for 14 s; d stays flat at 20.
    let lines = |t0: i64| -> Vec<String> {
        (0..14)
            .flat_map(|i| {
                let t = t0 - 10 + i;
                let climb = 20 + 3 * i;
                [
                    format!("cpu,host=a u={climb} {t}"),
                    format!("cpu,host=b u={} {t}", climb + 1),
                    format!("cpu,host=c u={} {t}", climb - 1),
                    format!("cpu,host=d u=20 {t}"),
                ]
            })
            .collect()
    };
    let live = live_equals_replay(&[("odd.toml", LIVE_OUTLIER)], lines, 6.0);
    assert!(
        live.iter().all(|e| e["host"] == "d"),
        "only d is odd: {live:?}"
    );
    let w = live
        .iter()
        .find(|e| e["df_status"] == "warning")
        .expect("d faults");
    let d: Value = serde_json::from_str(w["df_event_detail"].as_str().unwrap()).unwrap();
    let o = &d["outlier"];
    assert_eq!(o["algorithm"], "dbscan");
    assert_eq!(o["is_outlier"], true);
    assert_eq!(o["fleet_size"], 3);
    assert_eq!(o["objects"], 4);
    let (dist, eps) = (o["distance"].as_f64().unwrap(), o["eps"].as_f64().unwrap());
    assert!(dist > eps && eps > 0.0, "{o}");
    assert_eq!(d["matched_rule"], "Result > 0");
}

#[test]
fn slo_refuses_a_script() {
    refused(
        &[(
            "s.toml",
            &slo(&format!(
                "script = \"x.rhai\"\n[slo]\ntarget = 99\n{SLO_STORE}"
            )),
        )],
        "s.toml:4: script",
        "[[slo.burn]]",
    );
}

#[test]
fn slo_default_pairs_need_a_window_of_six_hours() {
    refused(
        &[(
            "s.toml",
            &slo(&format!("[slo]\ntarget = 99\nwindow = \"1h\"\n{SLO_STORE}")),
        )],
        "s.toml:6: slo.window",
        "default burn pairs",
    );
}

/// The shipped test files of the new kinds, replayed: every expectation of `tocsin test`
/// holds for the replay's events at that time too (status, tags, round start, duration).
#[test]
fn replay_meets_the_expectations_of_the_shipped_tests() {
    use tocsin::cli::testing::{expand, TestFile};
    use tocsin::model::time::{parse_duration, parse_time};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["host-overload", "api-availability", "host-cpu-outlier"] {
        let path = root.join(format!("tests/monitors/{file}.toml"));
        let tf: TestFile = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let monitors = dir.path().join("monitors");
        std::fs::create_dir_all(&monitors).unwrap();
        for m in &tf.monitors {
            let src = path.parent().unwrap().join(m);
            std::fs::copy(&src, monitors.join(src.file_name().unwrap())).unwrap();
        }
        for case in &tf.tests {
            let start = parse_time(case.start.as_deref().unwrap()).unwrap();
            let step = parse_duration(case.interval.as_deref().unwrap_or("1m")).unwrap();
            let mut lp = String::new();
            for s in &case.series {
                let off = parse_duration(s.offset.as_deref().unwrap_or("0s")).unwrap();
                let tags: String = s.tags.iter().map(|(k, v)| format!(",{k}={v}")).collect();
                for (i, v) in expand(&s.values).unwrap().iter().enumerate() {
                    if let Some(v) = v {
                        let t = start + off + step * i as i64;
                        lp.push_str(&format!("{}{tags} {}={v} {t}\n", s.measurement, s.field));
                    }
                }
            }
            let metrics = dir.path().join("m.lp");
            std::fs::write(&metrics, lp).unwrap();
            let at = |x: &str| start + parse_duration(x).unwrap();
            let last = case.expect.iter().map(|x| at(&x.at)).max().unwrap();
            let events = replay(&monitors, &metrics, start, last);
            let name = case.name.clone().unwrap_or_default();
            for x in &case.expect {
                let t = at(&x.at);
                let mid = x.monitor.clone().unwrap_or_else(|| tf_single(&monitors));
                let got: Vec<&Value> = events
                    .iter()
                    .filter(|e| e["date"] == t && e["df_monitor_checker_id"] == mid.as_str())
                    .collect();
                assert_eq!(
                    got.len(),
                    x.events.len(),
                    "{file} [{name}] {mid} at {}: {got:?}",
                    x.at
                );
                for (want, e) in x.events.iter().zip(&got) {
                    let ctx = format!("{file} [{name}] {mid} at {}", x.at);
                    assert_eq!(e["df_status"], want.status.as_str(), "{ctx}");
                    if let Some(s) = &want.issue_start {
                        assert_eq!(e["df_issue_start_time"], at(s), "{ctx}");
                    }
                    if let Some(d) = &want.issue_duration {
                        assert_eq!(e["df_issue_duration"], parse_duration(d).unwrap(), "{ctx}");
                    }
                    if let Some(tags) = &want.tags {
                        let canonical = serde_json::to_string(tags).unwrap();
                        assert_eq!(e["df_dimension_tags"], canonical.as_str(), "{ctx}");
                    }
                }
            }
        }
    }
}

/// The id of the only monitor file in `dir`.
fn tf_single(dir: &Path) -> String {
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert_eq!(files.len(), 1, "name the monitor");
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn a_composite_refuses_outlier_parameters_and_an_objective_refuses_them_too() {
    let body = composite("critical = \"cpu\"\nalgorithm = \"dbscan\"\ntolerance = 2\n");
    refused(
        &[("cpu.toml", CPU), ("c.toml", &body)],
        "c.toml:6: rules.algorithm",
        "no window",
    );
    refused(
        &[("cpu.toml", CPU), ("c.toml", &body)],
        "c.toml:7: rules.tolerance",
        "no window",
    );
    let body = slo(&format!(
        "[slo]\ntarget = 99\n{SLO_STORE}[rules]\nalgorithm = \"dbscan\"\n"
    ));
    refused(
        &[("s.toml", &body)],
        "s.toml:9: rules.algorithm",
        "[[slo.burn]]",
    );
}

#[test]
fn a_composite_with_an_slo_section_is_refused() {
    let body = format!("{}[slo]\ntarget = 99\n", composite("critical = \"cpu\"\n"));
    refused(
        &[("cpu.toml", CPU), ("c.toml", &body)],
        "c.toml:6: slo",
        "no objective",
    );
}

#[test]
fn a_composite_with_a_query_keeps_its_older_meaning() {
    // A threshold whose Rhai rules may call host functions: `cpu && mem` would be Rhai here.
    let old = "id = \"old\"\nevery = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\n[rules]\nkind = \"composite\"\ncritical = \"Result > 90 && tags.len() == 0\"\n";
    let (code, err) = check(&[("old.toml", old)]);
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.toml"), old).unwrap();
    let lp = dir.path().join("m.lp");
    std::fs::write(&lp, "cpu u=95 1700000010\n").unwrap();
    let events = replay(
        &dir.path().join("old.toml"),
        &lp,
        1_700_000_040,
        1_700_000_040,
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["df_status"], "critical");
    assert_eq!(events[0]["df_monitor_checker"], "custom_metric");
    assert_eq!(events[0]["df_monitor_checker_value"], "95");
}
