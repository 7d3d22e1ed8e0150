//! `tocsin test`: monitor unit tests in the spirit of promtool's `test rules`, in TOML.
//!
//! A test file names monitor files, and holds cases: input series in expanding notation and
//! the events expected at evaluation times. Checks run on a scratch store through the same
//! [`Runner`] as `serve`.

use crate::check::{ExecMode, MonitorState, Runner};
use crate::events::EventDb;
use crate::ingest::lineproto::{FieldValue, Point};
use crate::model::event::field;
use crate::model::event::Event;
use crate::model::time::{format_duration, format_time, parse_duration, parse_time};
use crate::model::Tags;
use crate::monitor::{load, LoadContext, Monitor, Schedule};
use crate::script::ScriptEngine;
use crate::store::Store;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// monitor files or directories, relative to the test file
    pub monitors: Vec<PathBuf>,
    /// scripts directory, relative to the test file (default: `../../scripts`, then `scripts`)
    pub scripts: Option<PathBuf>,
    /// config file for policies, relative to the test file
    pub config: Option<PathBuf>,
    /// the cases
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

/// One case: inputs and expectations on a fresh store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// shown in reports
    pub name: Option<String>,
    /// time of the first sample (RFC 3339 or Unix seconds; default 0)
    pub start: Option<String>,
    /// spacing of samples (default `1m`)
    pub interval: Option<String>,
    /// input series
    #[serde(default)]
    pub series: Vec<Series>,
    /// expectations
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// One input series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// measurement
    pub measurement: String,
    /// field key
    pub field: String,
    /// tags
    #[serde(default)]
    pub tags: Tags,
    /// values in expanding notation: `1 2 _ 3+1x4 5x3 _x2`
    pub values: String,
    /// first sample at start + offset (default `0s`)
    pub offset: Option<String>,
    /// spacing for this series (default: the case's interval)
    pub interval: Option<String>,
}

/// Events expected at one evaluation time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// evaluation time: offset from start (`"5m"`) or RFC 3339
    pub at: String,
    /// the monitor (needed when the file loads several)
    pub monitor: Option<String>,
    /// the events; `[]` means no event
    pub events: Vec<ExpectedEvent>,
}

/// One expected event; fields left out are not compared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    /// `df_status`
    pub status: String,
    /// dimension tags (exact)
    pub tags: Option<Tags>,
    /// `df_issue_start_time` as an offset from start or RFC 3339
    pub issue_start: Option<String>,
    /// `df_issue_duration`
    pub issue_duration: Option<String>,
    /// `df_sub_status`
    pub sub_status: Option<String>,
    /// `df_monitor_checker_sub`
    pub sub: Option<String>,
    /// `df_monitor_checker_value`
    pub value: Option<toml::Value>,
    /// `df_title` (exact)
    pub title: Option<String>,
    /// `df_message` (exact)
    pub message: Option<String>,
}

/// The outcome of one file.
#[derive(Debug, Default)]
pub struct FileResult {
    /// expectations checked
    pub checked: usize,
    /// failure reports, one per failed expectation
    pub failures: Vec<String>,
}

/// Expands promtool notation: `a+bxn` is a, a+b, …, a+nb (n+1 values); `axn` is a repeated
/// n+1 times; `_` is a missing sample, `_xn` n missing samples.
pub fn expand(values: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("bad repeat in {tok:?}: expected _xN"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        if let Some((head, n)) = tok.rsplit_once('x') {
            let n: usize = n
                .parse()
                .map_err(|_| format!("bad repeat in {tok:?}: expected a+bxN or axN"))?;
            // head is `a`, `a+b` or `a-b` (a may itself be negative or have an exponent)
            let split = head
                .char_indices()
                .skip(1)
                .find(|(i, c)| {
                    (*c == '+' || *c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i);
            let (a, b) = match split {
                Some(i) => {
                    let a: f64 = head[..i]
                        .parse()
                        .map_err(|_| format!("bad number in {tok:?}"))?;
                    let b: f64 = head[i + 1..]
                        .parse()
                        .map_err(|_| format!("bad step in {tok:?}"))?;
                    (a, if &head[i..=i] == "-" { -b } else { b })
                }
                None => (
                    head.parse().map_err(|_| format!("bad number in {tok:?}"))?,
                    0.0,
                ),
            };
            for k in 0..=n {
                out.push(Some(a + b * k as f64));
            }
            continue;
        }
        out.push(Some(tok.parse().map_err(|_| {
            format!("bad value {tok:?}: expected a number, _, a+bxN, axN or _xN")
        })?));
    }
    Ok(out)
}

fn offset_or_time(s: &str, start: i64) -> Result<i64, String> {
    if let Ok(d) = parse_duration(s) {
        return Ok(start + d);
    }
    parse_time(s)
        .map_err(|_| format!("bad time {s:?}: expected an offset such as \"5m\" or RFC 3339"))
}

fn describe(e: &Event, start: i64) -> String {
    let mut s = e.str(field::STATUS).unwrap_or("?").to_string();
    if let Some(t) = e.str(field::DIMENSION_TAGS) {
        s.push(' ');
        s.push_str(t);
    }
    if let Some(st) = e.int("df_issue_start_time") {
        s.push_str(&format!(" start={}", format_duration(st - start)));
    }
    if let Some(d) = e.int("df_issue_duration") {
        s.push_str(&format!(" duration={}", format_duration(d)));
    }
    if let Some(v) = e.str(field::SUB_STATUS) {
        s.push_str(&format!(" sub_status={v}"));
    }
    if let Some(v) = e.str(field::MONITOR_CHECKER_VALUE) {
        s.push_str(&format!(" value={v}"));
    }
    s
}

fn describe_expected(x: &ExpectedEvent) -> String {
    let mut s = x.status.clone();
    if let Some(t) = &x.tags {
        s.push(' ');
        s.push_str(&crate::model::event::canonical_tags(t));
    }
    if let Some(v) = &x.issue_start {
        s.push_str(&format!(" start={v}"));
    }
    if let Some(v) = &x.issue_duration {
        s.push_str(&format!(" duration={v}"));
    }
    if let Some(v) = &x.sub_status {
        s.push_str(&format!(" sub_status={v}"));
    }
    if let Some(v) = &x.value {
        s.push_str(&format!(" value={v}"));
    }
    s
}

fn matches(x: &ExpectedEvent, e: &Event, start: i64) -> Result<bool, String> {
    if e.str(field::STATUS) != Some(x.status.as_str()) {
        return Ok(false);
    }
    if let Some(t) = &x.tags {
        if e.str(field::DIMENSION_TAGS) != Some(crate::model::event::canonical_tags(t).as_str()) {
            return Ok(false);
        }
    }
    if let Some(v) = &x.issue_start {
        if e.int("df_issue_start_time") != Some(offset_or_time(v, start)?) {
            return Ok(false);
        }
    }
    if let Some(v) = &x.issue_duration {
        if e.int("df_issue_duration") != Some(parse_duration(v)?) {
            return Ok(false);
        }
    }
    if let Some(v) = &x.sub_status {
        if e.str(field::SUB_STATUS) != Some(v.as_str()) {
            return Ok(false);
        }
    }
    if let Some(v) = &x.sub {
        if e.str(field::MONITOR_CHECKER_SUB) != Some(v.as_str()) {
            return Ok(false);
        }
    }
    if let Some(v) = &x.value {
        let got = e
            .str(field::MONITOR_CHECKER_VALUE)
            .and_then(|s| s.parse::<f64>().ok());
        let want = match v {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            toml::Value::String(s) => s.parse().ok(),
            _ => None,
        };
        match (got, want) {
            (Some(g), Some(w)) if (g - w).abs() <= 1e-9 * w.abs().max(1.0) => {}
            _ => return Ok(false),
        }
    }
    if let Some(v) = &x.title {
        if e.str(field::TITLE) != Some(v.as_str()) {
            return Ok(false);
        }
    }
    if let Some(v) = &x.message {
        if e.str(field::MESSAGE) != Some(v.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs one test file.
pub fn run_file(path: &Path) -> Result<FileResult, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let tf: TestFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .unwrap_or(1);
        format!("{}:{}: {}", path.display(), line, e.message())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let scripts = match &tf.scripts {
        Some(s) => dir.join(s),
        None => {
            let guess = dir.join("../../scripts");
            if guess.is_dir() {
                guess
            } else {
                PathBuf::from("scripts")
            }
        }
    };
    let config = match &tf.config {
        Some(c) => crate::config::Config::load(&dir.join(c))?,
        None => crate::config::Config::default(),
    };
    let engine = Arc::new(ScriptEngine::new(Default::default()));
    let policy_ids = config.policy_ids();
    let datasource_ids = config.datasource_ids();
    let ctx = LoadContext {
        scripts_dir: &scripts,
        policies: &policy_ids,
        engine: &engine,
        datasources: Some(&datasource_ids),
    };
    let paths: Vec<PathBuf> = tf.monitors.iter().map(|m| dir.join(m)).collect();
    let loaded = load(&paths, &ctx);
    if !loaded.errors.is_empty() {
        return Err(loaded
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"));
    }
    if loaded.monitors.is_empty() {
        return Err(format!(
            "{}: no monitors loaded from {:?}",
            path.display(),
            tf.monitors
        ));
    }
    let mut result = FileResult::default();
    for (ci, case) in tf.tests.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("case {}", ci + 1));
        let label = format!("{} [{}]", path.display(), name);
        run_case(
            case,
            &loaded.monitors,
            &engine,
            &config,
            &label,
            &mut result,
        )?;
    }
    Ok(result)
}

fn run_case(
    case: &TestCase,
    monitors: &[Monitor],
    engine: &Arc<ScriptEngine>,
    config: &crate::config::Config,
    label: &str,
    result: &mut FileResult,
) -> Result<(), String> {
    let start = match &case.start {
        Some(s) => parse_time(s).map_err(|e| format!("{label}: start: {e}"))?,
        None => 0,
    };
    let step = parse_duration(case.interval.as_deref().unwrap_or("1m"))
        .map_err(|e| format!("{label}: interval: {e}"))?;
    let store = Arc::new(Store::scratch());
    let mut points = Vec::new();
    for s in &case.series {
        let vals = expand(&s.values)
            .map_err(|e| format!("{label}: series {}.{}: {e}", s.measurement, s.field))?;
        let off = parse_duration(s.offset.as_deref().unwrap_or("0s"))
            .map_err(|e| format!("{label}: offset: {e}"))?;
        let sstep = match &s.interval {
            Some(i) => parse_duration(i).map_err(|e| format!("{label}: series interval: {e}"))?,
            None => step,
        };
        for (i, v) in vals.iter().enumerate() {
            if let Some(v) = v {
                points.push(Point {
                    measurement: s.measurement.clone(),
                    tags: s.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    fields: vec![(s.field.clone(), FieldValue::Float(*v))],
                    time: (start + off + sstep * i as i64) * 1_000_000_000,
                });
            }
        }
    }
    store.write(&points).map_err(|e| format!("{label}: {e}"))?;
    let runner = Runner {
        store,
        db: Arc::new(EventDb::scratch_events()),
        engine: engine.clone(),
        policies: config.policy_names().into(),
        public_url: config.public_url.clone(),
        workers: Default::default(),
        datasources: Default::default(),
    };
    // Resolve expectations.
    let mut expects: Vec<(i64, String, &Expect)> = Vec::new();
    for x in &case.expect {
        let at = offset_or_time(&x.at, start).map_err(|e| format!("{label}: expect.at: {e}"))?;
        let monitor = match &x.monitor {
            Some(m) => {
                if !monitors.iter().any(|mm| &mm.id == m) {
                    return Err(format!("{label}: expect.monitor {m:?} is not loaded"));
                }
                m.clone()
            }
            None if monitors.len() == 1 => monitors[0].id.clone(),
            None => {
                return Err(format!(
                    "{label}: expect at {}: name the monitor (several are loaded)",
                    x.at
                ))
            }
        };
        expects.push((at, monitor, x));
    }
    let last = expects.iter().map(|e| e.0).max().unwrap_or(start);
    // Scheduled ticks, plus expectation times for manual monitors.
    let mut ticks: Vec<(i64, usize)> = crate::cli::replay::schedule(monitors, start, last);
    for (at, mid, _) in &expects {
        if let Some(i) = monitors.iter().position(|m| &m.id == mid) {
            if matches!(monitors[i].schedule, Schedule::Manual) && !ticks.contains(&(*at, i)) {
                ticks.push((*at, i));
            }
        }
    }
    crate::cli::replay::order(monitors, &mut ticks);
    let mut states: HashMap<usize, MonitorState> = HashMap::new();
    let mut got: BTreeMap<(i64, String), Vec<Event>> = BTreeMap::new();
    let mut ran: std::collections::HashSet<(i64, String)> = Default::default();
    for (t, i) in ticks {
        let m = &monitors[i];
        let mode = if matches!(m.schedule, Schedule::Manual) {
            ExecMode::Async
        } else {
            ExecMode::Crontab
        };
        let rep = runner
            .run(m, states.entry(i).or_default(), t, mode)
            .map_err(|e| format!("{label}: {} at {}: {e}", m.id, format_time(t)))?;
        for e in &rep.errors {
            eprintln!("{label}: {} at {}: {e}", m.id, format_time(t));
        }
        ran.insert((t, m.id.clone()));
        got.entry((t, m.id.clone())).or_default().extend(rep.events);
    }
    for (at, mid, x) in expects {
        result.checked += 1;
        let actual = got.get(&(at, mid.clone())).cloned().unwrap_or_default();
        let when = format!("{} ({})", x.at, format_time(at));
        if !ran.contains(&(at, mid.clone())) {
            result.failures.push(format!(
                "{label}: monitor {mid} has no evaluation at {when}; its schedule never fires then"
            ));
            continue;
        }
        // Each expected event must match a distinct actual event, and nothing else may occur.
        let mut used = vec![false; actual.len()];
        let mut ok = actual.len() == x.events.len();
        if ok {
            for xe in &x.events {
                let mut found = false;
                for (i, e) in actual.iter().enumerate() {
                    if !used[i] && matches(xe, e, start).map_err(|e| format!("{label}: {e}"))? {
                        used[i] = true;
                        found = true;
                        break;
                    }
                }
                ok &= found;
            }
        }
        if !ok {
            let want: Vec<String> = x.events.iter().map(describe_expected).collect();
            let have: Vec<String> = actual.iter().map(|e| describe(e, start)).collect();
            result.failures.push(side_by_side(
                &format!("{label}: monitor {mid} at {when}"),
                &want,
                &have,
            ));
        }
    }
    Ok(())
}

fn side_by_side(head: &str, want: &[String], have: &[String]) -> String {
    let width = want.iter().map(String::len).max().unwrap_or(0).max(10);
    let mut out = format!("{head}\n  {:<width$} | actual\n", "expected");
    let n = want.len().max(have.len()).max(1);
    for i in 0..n {
        let w = want
            .get(i)
            .map(String::as_str)
            .unwrap_or(if i == 0 && want.is_empty() {
                "(no event)"
            } else {
                ""
            });
        let h = have
            .get(i)
            .map(String::as_str)
            .unwrap_or(if i == 0 && have.is_empty() {
                "(no event)"
            } else {
                ""
            });
        out.push_str(&format!("  {w:<width$} | {h}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        assert_eq!(
            expand("1+1x3").unwrap(),
            vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)]
        );
        assert_eq!(expand("5x2").unwrap(), vec![Some(5.0); 3]);
        assert_eq!(
            expand("10-2x2").unwrap(),
            vec![Some(10.0), Some(8.0), Some(6.0)]
        );
        assert_eq!(expand("-1+1x1").unwrap(), vec![Some(-1.0), Some(0.0)]);
        assert_eq!(
            expand("_ 1 _x2 2.5").unwrap(),
            vec![None, Some(1.0), None, None, Some(2.5)]
        );
        assert_eq!(expand("1e2+1x1").unwrap(), vec![Some(100.0), Some(101.0)]);
        assert!(expand("abc").is_err());
        assert!(expand("1x").is_err());
    }

    #[test]
    fn side_by_side_shows_both() {
        let s = side_by_side("h", &["critical".into()], &[]);
        assert!(s.contains("critical") && s.contains("(no event)"), "{s}");
    }
}
