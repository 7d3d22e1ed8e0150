//! Host calls of scripts stay inside the evaluation's budget: an oversized `series()` or
//! `query()` fails on the number of matching series, before any point is read.

use super::*;
use crate::ingest::lineproto::{parse, Precision};
use crate::monitor::{parse_monitor, LoadContext};
use crate::script::Limits;
use std::path::Path;

fn bot_over(series: usize, max_array_size: usize, script: &str) -> Result<CheckReport, CheckError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bot.rhai"), script).unwrap();
    let engine = Arc::new(ScriptEngine::new(Limits {
        max_array_size,
        ..Default::default()
    }));
    let ctx = LoadContext {
        scripts_dir: dir.path(),
        policies: &[],
        engine: &engine,
    };
    let m = parse_monitor(
        "type = \"bot_obs\"\nevery = \"1m\"\nscript = \"bot.rhai\"\n",
        Path::new("m.toml"),
        "m",
        &ctx,
    )
    .expect("monitor parses");
    let runner = Runner {
        store: Arc::new(Store::scratch()),
        db: Arc::new(EventDb::scratch()),
        engine,
        policies: PolicyNames::new(),
        public_url: None,
    };
    let lp: String = (0..series)
        .map(|i| format!("cpu,host=h{i} u=1 1000\n"))
        .collect();
    runner
        .store
        .write(&parse(lp.as_bytes(), Precision::Seconds, 0).unwrap())
        .unwrap();
    let mut st = runner.load_state(&m).unwrap();
    runner.run(&m, &mut st, 1060, ExecMode::Crontab)
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
