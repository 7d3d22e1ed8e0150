//! The script engine through its public API, with a host implemented outside the crate.

use std::sync::Arc;

use tocsin::model::Tags;
use tocsin::script::{
    BotReport, CheckCtx, EventFilter, Limits, Points, ScriptEngine, ScriptError, ScriptHost,
};

/// Test double of the host interface: one `cpu` series per host.
struct Hosts {
    now: i64,
    cpu: Vec<(&'static str, f64)>,
}

fn tags(host: &str) -> Tags {
    Tags::from([("host".to_string(), host.to_string())])
}

impl ScriptHost for Hosts {
    fn query(
        &self,
        measurement: &str,
        _field: &str,
        _agg: &str,
        _by: &[String],
        _window_secs: i64,
    ) -> Result<Vec<(Tags, f64)>, String> {
        if measurement != "cpu" {
            return Err(format!("no measurement {measurement}"));
        }
        Ok(self.cpu.iter().map(|(h, v)| (tags(h), *v)).collect())
    }

    fn series(
        &self,
        _measurement: &str,
        _field: &str,
        _where: &Tags,
        window_secs: i64,
    ) -> Result<Vec<(Tags, Points)>, String> {
        Ok(self
            .cpu
            .iter()
            .map(|(h, v)| {
                (
                    tags(h),
                    vec![(self.now - window_secs, *v), (self.now - 1, *v)],
                )
            })
            .collect())
    }

    fn events(&self, _filter: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
        Ok(Vec::new())
    }

    fn now(&self) -> i64 {
        self.now
    }
}

#[test]
fn rules_checks_and_bots() {
    let engine = Arc::new(ScriptEngine::new(Limits::default()));
    let host = Hosts {
        now: 1_700_000_000,
        cpu: vec![("web01", 95.0), ("web02", 10.0)],
    };

    let rule = engine
        .compile_expr(r#"Result > 90 && tags.host != "db""#)
        .unwrap();
    let ctx = CheckCtx {
        result: Some(95.0),
        tags: tags("web01"),
        points: vec![(1, 95.0)],
    };
    assert!(engine.eval_rule(&rule, &ctx, &host).unwrap());

    let check = engine
        .compile_script(
            r#"let p = percentile(points, 95);
               if p > 90 { #{status: "critical", value: p, message: "hot"} } else { "ok" }"#,
            "cpu_check.rhai",
        )
        .unwrap();
    let out = engine.eval_check(&check, &ctx, &host).unwrap();
    assert_eq!(out.status, "critical");
    assert_eq!(out.value, Some(95.0));

    let bot = engine
        .compile_script(
            r#"for s in series("cpu", "usage", #{}, "10m") {
                   let v = avg(s.points);
                   report(#{title: `${s.tags.host} cpu`, message: `${v}`,
                            status: if v > 90 { "warning" } else { "ok" },
                            dimension_tags: s.tags});
               }"#,
            "inspect.rhai",
        )
        .unwrap();
    let reports = engine.run_bot(&bot, &host).unwrap();
    assert_eq!(
        reports[0],
        BotReport {
            title: "web01 cpu".into(),
            message: "95.0".into(),
            status: "warning".into(),
            dimension_tags: tags("web01"),
        }
    );
    assert_eq!(reports[1].status, "ok");

    let failing = engine
        .compile_script(r#"query("mem", "used", "avg", [], "5m")"#, "mem.rhai")
        .unwrap();
    match engine.run_bot(&failing, &host) {
        Err(ScriptError::Runtime { message }) => {
            assert!(message.contains("query()") && message.contains("no measurement mem"))
        }
        other => panic!("{other:?}"),
    }
}
