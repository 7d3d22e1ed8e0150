//! Check tests in process, stepped through time like Prometheus' alerting rule tests: a metric
//! series, one check per step, and the events each step must store.

use super::*;
use crate::ingest::lineproto::{parse, Precision};
use crate::monitor::{parse_monitor, LoadContext};
use std::path::Path;

/// A monitor, a scratch metric store and a scratch event store.
struct Bench {
    runner: Runner,
    m: Monitor,
    st: MonitorState,
    _dir: tempfile::TempDir,
}

impl Bench {
    /// Loads `monitor` (TOML); `script` is written as `bot.rhai` in the scripts directory.
    fn new(monitor: &str, script: Option<&str>) -> Bench {
        Bench::with_limits(monitor, script, Default::default())
    }

    /// [`Bench::new`] with a script engine of the given sandbox limits.
    fn with_limits(monitor: &str, script: Option<&str>, limits: crate::script::Limits) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        if let Some(s) = script {
            std::fs::write(dir.path().join("bot.rhai"), s).unwrap();
        }
        let engine = Arc::new(ScriptEngine::new(limits));
        let ctx = LoadContext {
            scripts_dir: dir.path(),
            policies: &[],
            engine: &engine,
            datasources: None,
        };
        let m = parse_monitor(monitor, Path::new("m.toml"), "m", &ctx).expect("monitor parses");
        let runner = Runner {
            store: Arc::new(Store::scratch()),
            db: Arc::new(EventDb::scratch()),
            engine,
            policies: PolicyNames::new().into(),
            public_url: None,
            workers: Default::default(),
            datasources: Default::default(),
        };
        let st = runner.load_state(&m).unwrap();
        Bench {
            runner,
            m,
            st,
            _dir: dir,
        }
    }

    /// Writes `cpu,host=<host> u=<v> <t>` (seconds) for each (t, v).
    fn series(&self, host: &str, points: &[(i64, f64)]) {
        let lp: String = points
            .iter()
            .map(|(t, v)| format!("cpu,host={host} u={v} {t}\n"))
            .collect();
        let pts = parse(lp.as_bytes(), Precision::Seconds, 0).unwrap();
        self.runner.store.write(&pts).unwrap();
    }

    /// Runs one check at `t`; returns the stored events as `status` strings.
    fn step(&mut self, t: i64) -> Vec<String> {
        self.events(t)
            .iter()
            .map(|e| e.status_str().unwrap().to_string())
            .collect()
    }

    /// Runs one check at `t`; returns the stored events.
    fn events(&mut self, t: i64) -> Vec<Event> {
        let rep = self
            .runner
            .run(&self.m, &mut self.st, t, ExecMode::Crontab)
            .unwrap();
        assert!(rep.errors.is_empty(), "errors at {t}: {:?}", rep.errors);
        rep.events
    }

    /// Steps from `from` every `every` seconds; `expect[i]` is what step i must store.
    fn run_steps(&mut self, from: i64, every: i64, expect: &[&[&str]]) {
        for (i, want) in expect.iter().enumerate() {
            let t = from + i as i64 * every;
            assert_eq!(self.step(t), *want, "step {i} at t={t}");
        }
    }
}

const THRESHOLD: &str = r#"
id = "cpu"
name = "CPU"
every = "1m"
interval = "1m"
delay = "0s"
[query]
measurement = "cpu"
field = "u"
by = ["host"]
[rules]
critical = "Result > 90"
trigger_after = 2
recover_after = 2
"#;

#[test]
fn threshold_with_trigger_after_and_recover_after() {
    let mut b = Bench::new(THRESHOLD, None);
    // One point per minute, at the start of each minute's window [t-60, t).
    let values = [10.0, 95.0, 95.0, 95.0, 10.0, 10.0, 10.0];
    let pts: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (60 * i as i64, *v))
        .collect();
    b.series("a", &pts);
    b.run_steps(
        60,
        60,
        &[
            &[],           // 10
            &[],           // 95: first faulty check, trigger_after = 2
            &["critical"], // 95: second faulty check
            &["critical"], // 95: the round continues
            &[],           // 10: first clean check, recover_after = 2
            &["ok"],       // 10: second clean check
            &[],           // 10: no round open
        ],
    );
    // The recovery closes the round the first critical opened.
    let evs = b
        .runner
        .db
        .events(&crate::events::EventQuery::default())
        .unwrap();
    let first = evs
        .iter()
        .find(|e| e.status_str() == Some("critical") && e.date() == 180);
    let ok = evs.iter().find(|e| e.status_str() == Some("ok")).unwrap();
    assert_eq!(ok.fault_id(), first.map(|e| e.id()));
    assert_eq!(ok.sub_status(), Some("critical"));
    assert_eq!(ok.issue_start(), Some(180));
    assert_eq!(ok.str("host"), Some("a"));
    assert_eq!(ok.str("df_monitor_checker_value"), Some("10"));
}

const NODATA: &str = r#"
id = "cpu"
name = "CPU"
every = "1m"
interval = "1m"
delay = "0s"
[query]
measurement = "cpu"
field = "u"
by = ["host"]
[rules]
critical = "Result > 90"
[nodata]
after = "2m"
action = "nodata"
"#;

#[test]
fn nodata_gap_opens_and_data_closes() {
    let mut b = Bench::new(NODATA, None);
    // data at 0 and 60, then nothing until 300
    b.series("a", &[(0, 10.0), (60, 10.0), (300, 10.0)]);
    b.run_steps(
        60,
        60,
        &[
            &[],            // t=60: point at 0
            &[],            // t=120: point at 60
            &[],            // t=180: lookback [60,180) still holds 60
            &["nodata"],    // t=240: lookback [120,240) empty: the gap starts
            &[],            // t=300: the gap goes on, one nodata per gap
            &["nodata_ok"], // t=360: the point at 300 is back
        ],
    );
    let evs = b
        .runner
        .db
        .events(&crate::events::EventQuery::default())
        .unwrap();
    let nd = evs
        .iter()
        .find(|e| e.status_str() == Some("nodata"))
        .unwrap();
    assert_eq!(nd.str("df_monitor_checker_sub"), Some("nodata"));
    assert_eq!(
        nd.str("df_monitor_checker_value"),
        None,
        "nodata shows no value"
    );
}

#[test]
fn as_zero_evaluates_a_gap_as_zero() {
    let text = NODATA
        .replace("action = \"nodata\"", "action = \"as_zero\"")
        .replace("critical = \"Result > 90\"", "critical = \"Result < 1\"");
    let mut b = Bench::new(&text, None);
    b.series("a", &[(0, 10.0), (60, 10.0)]);
    b.run_steps(60, 60, &[&[], &[], &[], &["critical"], &["critical"]]);
    let evs = b.events(420);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].str("df_monitor_checker_sub"), Some("nodata"));
    assert_eq!(evs[0].str("df_monitor_checker_value"), Some("0"));
}

#[test]
fn mutation_compares_with_the_previous_window() {
    let text = THRESHOLD
        .replace("[rules]", "[rules]\nkind = \"mutation\"")
        .replace("critical = \"Result > 90\"", "critical = \"Result > 20\"")
        .replace("trigger_after = 2\nrecover_after = 2\n", "");
    let mut b = Bench::new(&text, None);
    b.series(
        "a",
        &[(0, 10.0), (60, 15.0), (120, 50.0), (180, 55.0), (240, 55.0)],
    );
    // Result = this window - previous window: 5, 35, 5, 0; recover_after defaults to 1
    b.run_steps(120, 60, &[&[], &["critical"], &["ok"], &[]]);
    let evs = b
        .runner
        .db
        .events(&crate::events::EventQuery::default())
        .unwrap();
    let c = evs
        .iter()
        .find(|e| e.status_str() == Some("critical"))
        .unwrap();
    assert_eq!(c.str("df_monitor_checker_value"), Some("35"));
}

const BOT: &str = r#"
id = "bot"
name = "Bot"
type = "bot_obs"
every = "1m"
script = "bot.rhai"
"#;

#[test]
fn bot_reports_carry_title_and_message_onto_faults_and_recovery() {
    // The bot reports host "a": critical while the latest value is above 90, ok otherwise.
    let script = r#"
        for s in series("cpu", "u", #{host: "a"}, "1m") {
            let v = s.points[s.points.len() - 1][1];
            if v > 90.0 {
                report(#{status: "critical", dimension_tags: s.tags,
                         title: `hot ${v}`, message: "too hot"});
            } else {
                report(#{status: "ok", dimension_tags: s.tags,
                         title: `cool ${v}`, message: "cooled down"});
            }
        }
    "#;
    let mut b = Bench::new(BOT, Some(script));
    b.series("a", &[(0, 10.0), (60, 95.0), (120, 95.0), (180, 10.0)]);
    b.run_steps(60, 60, &[&[], &["critical"], &["critical"], &["ok"]]);
    let evs = b
        .runner
        .db
        .events(&crate::events::EventQuery::default())
        .unwrap();
    let crit = evs
        .iter()
        .find(|e| e.status_str() == Some("critical"))
        .unwrap();
    assert_eq!(crit.title(), Some("hot 95.0"));
    assert_eq!(crit.message(), Some("too hot"));
    let ok = evs.iter().find(|e| e.status_str() == Some("ok")).unwrap();
    assert_eq!(
        ok.title(),
        Some("cool 10.0"),
        "the ok report's title, not a default"
    );
    assert_eq!(ok.message(), Some("cooled down"));
    assert_eq!(ok.str("df_monitor_ref_key"), Some("bot"));
}

// ---- host calls stay inside the evaluation's budget: an oversized series() or query()
// fails on the number of matching series, before any point is read.

fn bot_over(series: usize, max_array_size: usize, script: &str) -> Result<CheckReport, CheckError> {
    let limits = crate::script::Limits {
        max_array_size,
        ..Default::default()
    };
    let mut b = Bench::with_limits(
        "type = \"bot_obs\"\nevery = \"1m\"\nscript = \"bot.rhai\"\n",
        Some(script),
        limits,
    );
    for i in 0..series {
        b.series(&format!("h{i}"), &[(1000, 1.0)]);
    }
    b.runner.run(&b.m, &mut b.st, 1060, ExecMode::Crontab)
}

const SERIES_BOT: &str = r#"
let s = series("cpu", "u", #{}, "5m");
report(#{ dimension_tags: #{ n: `${s.len()}` }, status: "ok" });
"#;

#[test]
fn series_over_the_array_limit_fails_on_matching_series() {
    let err = bot_over(60, 50, SERIES_BOT).unwrap_err().to_string();
    assert!(err.contains("series() matching series: 60 items"), "{err}");
    assert!(err.contains("more than the 50"), "{err}");
}

#[test]
fn series_within_the_limit_answers() {
    let rep = bot_over(10, 50, SERIES_BOT).unwrap();
    assert_eq!(rep.objects, 1);
    assert_eq!(rep.errors, Vec::<String>::new());
}

#[test]
fn query_may_read_more_series_than_items_but_not_without_bound() {
    let q = r#"
let r = query("cpu", "u", "avg", [], "5m");
report(#{ dimension_tags: #{ n: `${r.len()}` }, status: "ok" });
"#;
    // 60 series into one group: within 10 series per item of a 10-item limit
    assert!(bot_over(60, 10, q).is_ok());
    let err = bot_over(120, 10, q).unwrap_err().to_string();
    assert!(err.contains("query() matching series: 120 items"), "{err}");
}

/// State rows are written when detection state changes, not for a newer `last_seen` alone; a
/// crontab check that writes state records its tick in the same commit; restoring the stored
/// state gives the same detection.
#[test]
fn only_changed_states_are_stored_with_their_tick() {
    let mut b = Bench::new(THRESHOLD, None);
    let pts: Vec<(i64, f64)> = (0..6)
        .map(|i| (60 * i, if i == 2 { 95.0 } else { 10.0 }))
        .collect();
    b.series("a", &pts);
    let stored = |b: &Bench| b.runner.db.load_states("cpu").unwrap();
    let tick = |b: &Bench| b.runner.db.get_kv(&last_tick_key("cpu")).unwrap();
    assert_eq!(b.step(60), Vec::<String>::new());
    // a new object: stored, with the tick of the check that stored it
    assert_eq!(stored(&b)[0].state.fault_streak, 0);
    assert_eq!(tick(&b).as_deref(), Some("60"));
    assert_eq!(b.step(120), Vec::<String>::new());
    // only last_seen moved (within the same hour): nothing written, not even the tick
    assert_eq!(stored(&b)[0].state.last_seen, Some(0));
    assert_eq!(tick(&b).as_deref(), Some("60"));
    assert_eq!(b.step(180), Vec::<String>::new());
    // a fault streak: written, with its tick
    assert_eq!(stored(&b)[0].state.fault_streak, 1);
    assert_eq!(tick(&b).as_deref(), Some("180"));
    // what a restart restores detects as the in-memory state would
    let restored = b.runner.load_state(&b.m).unwrap();
    let (_, mem) = &b.st.objects.values().next().unwrap();
    let (_, disk) = &restored.objects.values().next().unwrap();
    assert!(mem.same_but_last_seen(disk), "{mem:?} vs {disk:?}");
    // an async run records no tick
    b.runner.run(&b.m, &mut b.st, 240, ExecMode::Async).unwrap();
    assert_eq!(tick(&b).as_deref(), Some("180"));
}

/// Retention removes a series and frees its id; a series written next may get that id. The
/// monitor's resolved objects must follow: the new series is its own object with its own tags,
/// never a continuation of the removed one.
#[test]
fn objects_follow_series_that_retention_removed_and_ids_reused() {
    let mut b = Bench::new(THRESHOLD, None);
    let day = 86_400;
    b.series("a", &[(10, 95.0)]);
    b.step(60);
    let a_ref = b.st.objects.keys().next().unwrap().clone();
    b.runner.store.drop_before(day * 1_000_000_000).unwrap();
    b.series("b", &[(day + 10, 95.0), (day + 70, 95.0)]);
    assert_eq!(b.step(day + 60), Vec::<String>::new());
    let evs = b.events(day + 120);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].dimension_tags(), Some(r#"{"host":"b"}"#));
    let b_obj: Vec<_> =
        b.st.objects
            .iter()
            .filter(|(r, _)| **r != a_ref)
            .map(|(_, (tags, _))| tags.get("host").cloned())
            .collect();
    assert_eq!(b_obj, vec![Some("b".to_string())]);
    // silent for longer than forget_after by now, a is gone
    assert!(!b.st.objects.contains_key(&a_ref));
}
