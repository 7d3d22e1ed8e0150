//! Unit tests of the script engine: sandbox, rules, check scripts, bots and host functions.

use super::engine::check_scope;
use super::*;
use rhai::Dynamic;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Test double of the host interface: canned answers, records the calls it gets.
struct FakeHost {
    now: i64,
    value: f64,
    fail: bool,
    calls: Mutex<Vec<String>>,
}

impl FakeHost {
    fn new(now: i64, value: f64) -> FakeHost {
        FakeHost {
            now,
            value,
            fail: false,
            calls: Mutex::new(Vec::new()),
        }
    }
    fn failing() -> FakeHost {
        FakeHost {
            fail: true,
            ..FakeHost::new(0, 0.0)
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl ScriptHost for FakeHost {
    fn query(
        &self,
        measurement: &str,
        field: &str,
        agg: &str,
        by: &[String],
        window_secs: i64,
    ) -> Result<Vec<(Tags, f64)>, String> {
        self.calls.lock().unwrap().push(format!(
            "query {measurement} {field} {agg} {by:?} {window_secs}"
        ));
        if self.fail {
            return Err("store is closed".into());
        }
        Ok(vec![
            (tags(&[("host", "a")]), self.value),
            (tags(&[("host", "b")]), self.value + 1.0),
        ])
    }

    fn series(
        &self,
        measurement: &str,
        field: &str,
        where_: &Tags,
        window_secs: i64,
    ) -> Result<Vec<(Tags, Points)>, String> {
        self.calls.lock().unwrap().push(format!(
            "series {measurement} {field} {where_:?} {window_secs}"
        ));
        if self.fail {
            return Err("store is closed".into());
        }
        Ok(vec![(
            where_.clone(),
            vec![(self.now - 20, 1.0), (self.now - 10, 3.0)],
        )])
    }

    fn events(&self, filter: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("events {filter:?}"));
        if self.fail {
            return Err("store is closed".into());
        }
        Ok(vec![serde_json::json!({
            "df_status": filter.status.clone().unwrap_or_else(|| "critical".into()),
            "date": 1_700_000_000,
            "df_issue_duration": 1.5,
            "df_is_silent": false,
            "df_event_detail": null,
            "list": [1, "x"],
            "obj": {"host": "web01"}
        })])
    }

    fn now(&self) -> i64 {
        self.now
    }
}

fn engine() -> ScriptEngine {
    ScriptEngine::new(Limits::default())
}

fn ctx(result: Option<f64>) -> CheckCtx {
    CheckCtx {
        result,
        tags: tags(&[("host", "web01"), ("region", "eu")]),
        points: vec![(100, 10.0), (110, 20.0), (120, 30.0)],
    }
}

fn rule(e: &ScriptEngine, src: &str, c: &CheckCtx) -> Result<bool, ScriptError> {
    let host = FakeHost::new(1000, 5.0);
    e.eval_rule(&e.compile_expr(src)?, c, &host)
}

fn check(e: &ScriptEngine, src: &str, c: &CheckCtx) -> Result<CheckOutcome, ScriptError> {
    let host = FakeHost::new(1000, 5.0);
    e.eval_check(&e.compile_script(src, "t.rhai")?, c, &host)
}

/// Evaluate a script and return its value as a rhai Dynamic via a check-free path.
fn value(e: &ScriptEngine, src: &str) -> Result<Dynamic, ScriptError> {
    let host = FakeHost::new(1000, 5.0);
    let c = e.compile_script(src, "v.rhai")?;
    let mut scope = check_scope(&ctx(Some(1.0)));
    e.run(&c, &mut scope, &host, false).map(|(v, _)| v)
}

fn float(e: &ScriptEngine, src: &str) -> f64 {
    let v = value(e, src).unwrap();
    v.as_float()
        .unwrap_or_else(|t| panic!("{src}: not a float but {t}: {v}"))
}

#[test]
fn send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ScriptEngine>();
    assert_send_sync::<Compiled>();
    assert_send_sync::<ScriptError>();
    assert_send_sync::<Limits>();
}

#[test]
fn rules_over_result_tags_points() {
    let e = engine();
    let c = ctx(Some(95.0));
    assert!(rule(&e, "Result > 90", &c).unwrap());
    assert!(!rule(&e, "Result > 95.5", &c).unwrap());
    assert!(rule(&e, r#"Result > 90 && tags.host != "x""#, &c).unwrap());
    assert!(!rule(&e, r#"Result > 90 && tags.host == "x""#, &c).unwrap());
    assert!(rule(&e, r#"tags["region"] == "eu""#, &c).unwrap());
    assert!(rule(&e, "points.len() == 3 && points[2][1] == 30.0", &c).unwrap());
    assert!(rule(&e, "avg(points) == 20.0", &c).unwrap());
    assert!(rule(&e, "max(points) > 25 && min(points) < 15", &c).unwrap());
    // a missing tag is (), unequal to any string
    assert!(rule(&e, r#"tags.missing != "x""#, &c).unwrap());
    assert!(rule(&e, "Result == ()", &ctx(None)).unwrap());
}

#[test]
fn rule_must_be_bool() {
    let e = engine();
    let c = ctx(Some(95.0));
    for (src, ty) in [("Result", "float"), ("1", "int"), (r#""x""#, "string")] {
        match rule(&e, src, &c) {
            Err(ScriptError::BadReturn(m)) => {
                assert!(m.contains(ty) && m.contains("true or false"), "{m}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn rule_on_unknown_result_explains() {
    let e = engine();
    // comparing () with a number is false either way, so an unknown Result fires no rule
    assert_eq!(rule(&e, "Result > 90", &ctx(None)), Ok(false));
    assert_eq!(rule(&e, "Result < 90", &ctx(None)), Ok(false));
    match rule(&e, "Result + 1 > 90", &ctx(None)) {
        Err(ScriptError::Runtime { message }) => {
            assert!(message.contains("unknown"), "{message}");
            assert!(message.contains("line 1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn compile_errors_carry_position() {
    let e = engine();
    match e.compile_script("let x = 1;\nlet y = (2 + ;\n", "bad.rhai") {
        Err(ScriptError::Compile { line, column, .. }) => {
            assert_eq!(line, 2);
            assert!(column > 0);
        }
        other => panic!("{other:?}"),
    }
    // statements are not rule expressions
    assert!(matches!(
        e.compile_expr("let x = 1; x"),
        Err(ScriptError::Compile { .. })
    ));
    // strict variables: a typo is a compile error
    match e.compile_expr("Reslt > 90") {
        Err(ScriptError::Compile {
            line,
            column,
            message,
        }) => {
            assert_eq!((line, column), (1, 1));
            assert!(message.contains("Reslt"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_and_import_rejected_at_compile() {
    let e = engine();
    for src in [
        r#"eval("1")"#,
        r#"let x = eval("1"); x"#,
        r#"import "x" as y; 1"#,
    ] {
        match e.compile_script(src, "s.rhai") {
            Err(ScriptError::Compile { line, message, .. }) => {
                assert_eq!(line, 1, "{src}: {message}");
                assert!(message.contains("sandbox"), "{src}: {message}");
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    assert!(matches!(
        e.compile_expr(r#"eval("true")"#),
        Err(ScriptError::Compile { .. })
    ));
}

#[test]
fn eval_not_reachable_through_fn_pointers() {
    let e = engine();
    for src in [
        r#"let f = Fn("eval"); f.call("1")"#,
        r#"call(Fn("eval"), "1")"#,
    ] {
        match check(&e, src, &ctx(Some(1.0))) {
            Err(ScriptError::Compile { .. }) | Err(ScriptError::Runtime { .. }) => {}
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn check_returns_string_map_or_unit() {
    let e = engine();
    let c = ctx(Some(95.0));
    let o = check(&e, r#"if Result > 90 { "critical" } else { "ok" }"#, &c).unwrap();
    assert_eq!(o.status, "critical");
    assert_eq!((o.value, o.message), (None, None));

    let o = check(
        &e,
        r#"let v = avg(points); #{status: "warning", value: v, message: `avg ${v}`}"#,
        &c,
    )
    .unwrap();
    assert_eq!(
        o,
        CheckOutcome {
            status: "warning".into(),
            value: Some(20.0),
            message: Some("avg 20.0".into())
        }
    );
    let o = check(&e, r#"#{status: "info", value: 3}"#, &c).unwrap();
    assert_eq!((o.status.as_str(), o.value), ("info", Some(3.0)));

    let o = check(&e, "let x = 1;", &c).unwrap();
    assert_eq!(o.status, "ok");
    let o = check(&e, "if Result > 1000 { return \"error\"; }", &c).unwrap();
    assert_eq!(o.status, "ok");
    let o = check(
        &e,
        r#"fn lvl(x) { if x > 90 { "error" } else { "ok" } } lvl(Result)"#,
        &c,
    )
    .unwrap();
    assert_eq!(o.status, "error");
}

#[test]
fn check_bad_returns() {
    let e = engine();
    let c = ctx(Some(95.0));
    for (src, needle) in [
        (r#""bad""#, "critical"),
        (r#""nodata""#, "ok, info, warning, error, critical"),
        ("42", "int"),
        ("[1]", "array"),
        (r#"#{value: 1}"#, "no `status`"),
        (r#"#{status: "ok", valu: 1}"#, "unknown key `valu`"),
        (r#"#{status: "ok", value: "x"}"#, "`value` must be a number"),
        (
            r#"#{status: "ok", message: 5}"#,
            "`message` must be a string",
        ),
        (r#"#{status: 1}"#, "status string"),
    ] {
        match check(&e, src, &c) {
            Err(ScriptError::BadReturn(m)) => assert!(m.contains(needle), "{src}: {m}"),
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn runtime_errors_have_position() {
    let e = engine();
    match check(&e, "let x = 1;\nlet y = x.nope();\n\"ok\"", &ctx(None)) {
        Err(ScriptError::Runtime { message }) => {
            assert!(message.contains("line 2"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match check(&e, r#"throw "boom""#, &ctx(None)) {
        Err(ScriptError::Runtime { message }) => assert!(message.contains("boom"), "{message}"),
        other => panic!("{other:?}"),
    }
    // an error inside a script function is unwrapped to its cause
    match check(&e, "fn f() { 1 / 0 }\nf()", &ctx(None)) {
        Err(ScriptError::Runtime { message }) => {
            assert!(message.contains("zero"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_query() {
    let e = engine();
    let host = FakeHost::new(1000, 5.0);
    let src = r#"
            let rows = query("cpu", "usage", "avg", ["host"], "5m");
            let worst = max(rows);
            let b = rows.filter(|r| r.tags.host == "b")[0].value;
            #{status: if worst > 5.5 { "warning" } else { "ok" }, value: b + rows.len()}
        "#;
    let o = e
        .eval_check(&e.compile_script(src, "q").unwrap(), &ctx(None), &host)
        .unwrap();
    assert_eq!(o.status, "warning");
    assert_eq!(o.value, Some(8.0));
    assert_eq!(host.calls(), vec![r#"query cpu usage avg ["host"] 300"#]);

    // window as seconds, by empty, by as a single string, compound duration
    let c = e
        .compile_script(
            r#"query("m", "f", "max", [], 90); query("m", "f", "p99", "host", "1h30m"); "ok""#,
            "q",
        )
        .unwrap();
    let host = FakeHost::new(1000, 5.0);
    e.eval_check(&c, &ctx(None), &host).unwrap();
    assert_eq!(
        host.calls(),
        vec!["query m f max [] 90", r#"query m f p99 ["host"] 5400"#]
    );
}

#[test]
fn host_series() {
    let e = engine();
    let host = FakeHost::new(1000, 5.0);
    let src = r#"
            let s = series("cpu", "usage", #{host: "web01"}, "30s");
            let fit = linear_fit(s[0].points);
            #{status: "ok", value: fit.slope, message: s[0].tags.host + " " + s[0].points[1][0]}
        "#;
    let o = e
        .eval_check(&e.compile_script(src, "s").unwrap(), &ctx(None), &host)
        .unwrap();
    assert_eq!(o.value, Some(0.2));
    assert_eq!(o.message.as_deref(), Some("web01 990"));
    assert_eq!(
        host.calls(),
        vec![r#"series cpu usage {"host": "web01"} 30"#]
    );
}

#[test]
fn host_events_and_now() {
    let e = engine();
    let host = FakeHost::new(10_000, 5.0);
    let src = r#"
            let ev = events(#{status: "error", monitor: "m1", since: "1h"});
            let e0 = ev[0];
            let ok = e0.df_status == "error" && e0.date == 1700000000 && e0.df_issue_duration == 1.5
                && e0.df_is_silent == false && e0.df_event_detail == () && e0.list[1] == "x"
                && e0.obj.host == "web01" && now() == 10000;
            events(#{source: "custom", since: 5});
            events(#{since: "2023-11-14T22:13:20Z"});
            events();
            if ok { "ok" } else { "critical" }
        "#;
    let o = e
        .eval_check(&e.compile_script(src, "ev").unwrap(), &ctx(None), &host)
        .unwrap();
    assert_eq!(o.status, "ok");
    let calls = host.calls();
    assert_eq!(calls.len(), 4);
    assert!(
        calls[0].contains(r#"status: Some("error")"#),
        "{}",
        calls[0]
    );
    assert!(calls[0].contains(r#"monitor: Some("m1")"#), "{}", calls[0]);
    assert!(calls[0].contains("since: Some(6400)"), "{}", calls[0]);
    assert!(
        calls[1].contains(r#"source: Some("custom")"#),
        "{}",
        calls[1]
    );
    assert!(calls[1].contains("since: Some(5)"), "{}", calls[1]);
    assert!(calls[2].contains("since: Some(1700000000)"), "{}", calls[2]);
    assert!(calls[3].contains("since: None"), "{}", calls[3]);
}

#[test]
fn host_argument_errors() {
    let e = engine();
    for (src, needle) in [
        (r#"query("m", "f", "avg", [], "5 minutes")"#, "window"),
        (r#"query("m", "f", "avg", [], 0)"#, "window"),
        (r#"query("m", "f", "avg", [1], "5m")"#, "tag names"),
        (r#"series("m", "f", "host", "5m")"#, "where"),
        (r#"events(#{stat: "ok"})"#, "unknown filter key `stat`"),
        (r#"events(#{since: "yesterday"})"#, "since"),
        (r#"report(#{status: "ok"})"#, "only available in bots"),
    ] {
        match check(&e, src, &ctx(None)) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains(needle), "{src}: {message}");
                assert!(message.contains("line 1"), "{src}: {message}");
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn host_errors_name_the_function() {
    let e = engine();
    let host = FakeHost::failing();
    for (src, func) in [
        (r#"query("m", "f", "avg", [], "5m")"#, "query()"),
        (r#"series("m", "f", #{}, "5m")"#, "series()"),
        (r#"events(#{})"#, "events()"),
    ] {
        let c = e.compile_script(src, "h").unwrap();
        match e.eval_check(&c, &ctx(None), &host) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains(func), "{message}");
                assert!(message.contains("store is closed"), "{message}");
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn helpers() {
    let e = engine();
    assert_eq!(float(&e, "avg([1, 2, 3.0, 6])"), 3.0);
    assert_eq!(float(&e, "sum([1, 2, 3])"), 6.0);
    assert_eq!(float(&e, "min([4, -2.5, 3])"), -2.5);
    assert_eq!(float(&e, "max([4, -2.5, 3])"), 4.0);
    assert_eq!(float(&e, "stddev([2, 4, 4, 4, 5, 5, 7, 9])"), 2.0);
    assert_eq!(float(&e, "stddev([5])"), 0.0);
    assert_eq!(float(&e, "percentile([1, 2, 3, 4], 50)"), 2.5);
    assert_eq!(float(&e, "percentile([4, 1, 3, 2], 0)"), 1.0);
    assert_eq!(float(&e, "percentile([4, 1, 3, 2], 100)"), 4.0);
    assert!((float(&e, "percentile([10, 20, 30, 40, 50], 90.0)") - 46.0).abs() < 1e-9);
    assert_eq!(float(&e, "percentile([7], 99)"), 7.0);
    // points and query rows work directly
    assert_eq!(float(&e, "avg(points)"), 20.0);
    assert_eq!(float(&e, "sum([#{value: 1}, #{value: 2.5}])"), 3.5);
    // empty input gives ()
    for f in [
        "avg([])",
        "sum([])",
        "min([])",
        "max([])",
        "stddev([])",
        "percentile([], 50)",
        "linear_fit([])",
        "linear_fit([[1, 2]])",
        "linear_fit([[1, 2], [1, 3]])",
    ] {
        assert!(value(&e, f).unwrap().is_unit(), "{f}");
    }
    // rhai's two-number min/max still work
    let v = value(&e, "[min(3, 5), max(3, 5), min(1.5, 2.0), max(2, 7.5)]").unwrap();
    assert_eq!(v.to_string(), "[3, 5, 1.5, 7.5]");
    // linear fit
    let v = value(
        &e,
        "let f = linear_fit([[0, 1], [1, 3], [2, 5]]); [f.slope, f.intercept]",
    )
    .unwrap();
    assert_eq!(v.to_string(), "[2.0, 1.0]");
    let v = value(&e, "let f = linear_fit([[0, 1.0], [2, 1]]); f.slope").unwrap();
    assert_eq!(v.as_float().unwrap(), 0.0);
    // errors
    for (src, needle) in [
        (r#"avg([1, "x"])"#, "avg(): item 1 is string"),
        ("percentile([1], 101)", "0 to 100"),
        (r#"percentile([1], "x")"#, "0 to 100"),
        ("linear_fit([1, 2])", "[x, y] pairs"),
    ] {
        match value(&e, src) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains(needle), "{src}: {message}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn bots_report() {
    let e = engine();
    let host = FakeHost::new(1000, 95.0);
    let src = r#"
            for r in query("cpu", "usage", "avg", ["host"], "5m") {
                if r.value > 90 {
                    report(#{title: `${r.tags.host} busy`, message: "m", status: "critical",
                             dimension_tags: #{host: r.tags.host, core: 3}});
                }
            }
            report(#{status: "ok"});
        "#;
    let c = e.compile_script(src, "bot.rhai").unwrap();
    let reports = e.run_bot(&c, &host).unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(
        reports[0],
        BotReport {
            title: "a busy".into(),
            message: "m".into(),
            status: "critical".into(),
            dimension_tags: tags(&[("core", "3"), ("host", "a")]),
        }
    );
    assert_eq!(
        reports[1].dimension_tags,
        tags(&[("core", "3"), ("host", "b")])
    );
    assert_eq!(
        reports[2],
        BotReport {
            title: String::new(),
            message: String::new(),
            status: "ok".into(),
            dimension_tags: Tags::new(),
        }
    );
    // no reports is fine
    let c = e.compile_script("let x = 1;", "quiet.rhai").unwrap();
    assert!(e.run_bot(&c, &host).unwrap().is_empty());

    for (src, needle) in [
        (r#"report(#{status: "nodata"})"#, "not a status"),
        (r#"report(#{title: "t"})"#, "`status` is missing"),
        (
            r#"report(#{status: "ok", tags: #{}})"#,
            "unknown key `tags`",
        ),
        (
            r#"report(#{status: "ok", dimension_tags: "h"})"#,
            "dimension_tags",
        ),
    ] {
        let c = e.compile_script(src, "bad.rhai").unwrap();
        match e.run_bot(&c, &host) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains(needle), "{src}: {message}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    // a failing bot reports nothing, and later runs start clean
    let c = e
        .compile_script(r#"report(#{status: "error"}); throw "x";"#, "f.rhai")
        .unwrap();
    assert!(e.run_bot(&c, &host).is_err());
    let c = e
        .compile_script(r#"report(#{status: "info"});"#, "g.rhai")
        .unwrap();
    assert_eq!(e.run_bot(&c, &host).unwrap().len(), 1);
}

#[test]
fn endless_loop_stops() {
    let e = engine();
    for src in [
        "loop {}",
        "let i = 0; while true { i += 1; }",
        "fn f() { loop { } } f()",
    ] {
        let start = Instant::now();
        let r = check(&e, src, &ctx(None));
        assert!(
            matches!(r, Err(ScriptError::Limit(_)) | Err(ScriptError::Timeout)),
            "{src}: {r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(3), "{src}");
    }
}

#[test]
fn time_limit_stops_without_operation_limit() {
    let e = ScriptEngine::new(Limits {
        max_operations: 0,
        time_limit: Duration::from_millis(100),
        ..Limits::default()
    });
    let start = Instant::now();
    let r = check(&e, "loop {}", &ctx(None));
    assert_eq!(r, Err(ScriptError::Timeout));
    assert!(start.elapsed() < Duration::from_secs(2));
    // try/catch cannot swallow the timeout
    let r = check(&e, "try { loop {} } catch { }\n\"ok\"", &ctx(None));
    assert_eq!(r, Err(ScriptError::Timeout));
    // the engine is fine afterwards
    assert_eq!(check(&e, r#""info""#, &ctx(None)).unwrap().status, "info");
}

#[test]
fn deep_recursion_fails() {
    let e = engine();
    match check(&e, "fn f(n) { f(n + 1) }\nf(0)", &ctx(None)) {
        Err(ScriptError::Limit(m)) => assert!(m.contains("nested"), "{m}"),
        other => panic!("{other:?}"),
    }
    // deeply nested expressions are refused at compile time
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert!(matches!(
        e.compile_expr(&deep),
        Err(ScriptError::Compile { .. })
    ));
}

#[test]
fn pathological_sources_are_refused() {
    let e = engine();
    let n = 100_000;
    for src in [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        format!("{}1{}", "{".repeat(n), "}".repeat(n)),
        format!("{}1{}", "#{a:".repeat(n), "}".repeat(n)),
        format!("1{}", " + 1".repeat(n)),
        "-".repeat(n) + "1",
        "!".repeat(n) + "true",
    ] {
        let r = e.compile_script(&src, "deep.rhai");
        assert!(
            matches!(r, Err(ScriptError::Compile { .. })),
            "{}",
            &src[..10]
        );
        let r = e.compile_expr(&src);
        assert!(
            matches!(r, Err(ScriptError::Compile { .. })),
            "{}",
            &src[..10]
        );
    }
}

#[test]
fn huge_values_fail() {
    let e = engine();
    for src in [
        r#"let s = "x"; loop { s += s; }"#,
        r#"let a = []; loop { a.push(1); }"#,
        // Rhai checks a map's size when it is next used, not on `m[k] = v` itself
        r#"let m = #{}; for i in 0..20000 { m[`k${i}`] = i; } m.len()"#,
        r#"let m = #{}; for i in 0..20000 { let o = #{}; o[`k${i}`] = i; m += o; }"#,
        "let a = [1]; a.pad(100000, 0);",
        r#""ab".pad(1000000, "x")"#,
    ] {
        match check(&e, src, &ctx(None)) {
            Err(ScriptError::Limit(m)) => assert!(m.contains("too large"), "{src}: {m}"),
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn print_and_debug_do_not_panic() {
    let e = engine();
    let o = check(&e, r#"print("hello"); debug(#{a: 1}); "ok""#, &ctx(None)).unwrap();
    assert_eq!(o.status, "ok");
}

#[test]
fn compiled_reused_many_times() {
    let e = engine();
    let host = FakeHost::new(1000, 5.0);
    let c = e
        .compile_expr(r#"Result > 90 && tags.host != "x" && avg(points) > 1"#)
        .unwrap();
    let start = Instant::now();
    for i in 0..1000 {
        let cx = CheckCtx {
            result: Some(i as f64 / 10.0),
            ..ctx(None)
        };
        assert_eq!(e.eval_rule(&c, &cx, &host).unwrap(), i > 900);
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let c2 = c.clone();
    assert!(Arc::ptr_eq(&c.ast, &c2.ast));
}

#[test]
fn concurrent_evaluations_use_their_own_host() {
    let e = Arc::new(engine());
    let c = e
        .compile_script(
            r#"let v = query("m", "f", "avg", [], "1m")[0].value;
                   let i = 0; while i < 200 { i += 1; }
                   #{status: "ok", value: v + now()}"#,
            "c.rhai",
        )
        .unwrap();
    let handles: Vec<_> = [(1_000i64, 1.0f64), (2_000, 2.0)]
        .into_iter()
        .map(|(now, value)| {
            let e = e.clone();
            let c = c.clone();
            std::thread::spawn(move || {
                let host = FakeHost::new(now, value);
                for _ in 0..200 {
                    let o = e.eval_check(&c, &CheckCtx::default(), &host).unwrap();
                    assert_eq!(o.value, Some(now as f64 + value));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A host whose `query` evaluates another script on the same engine (re-entrancy).
struct NestedHost<'a> {
    engine: &'a ScriptEngine,
    inner: Compiled,
}

impl ScriptHost for NestedHost<'_> {
    fn query(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[String],
        _: i64,
    ) -> Result<Vec<(Tags, f64)>, String> {
        let inner_host = FakeHost::new(7, 0.0);
        let o = self
            .engine
            .eval_check(&self.inner, &CheckCtx::default(), &inner_host)
            .map_err(|e| e.to_string())?;
        Ok(vec![(Tags::new(), o.value.unwrap_or(-1.0))])
    }
    fn series(&self, _: &str, _: &str, _: &Tags, _: i64) -> Result<Vec<(Tags, Points)>, String> {
        Ok(Vec::new())
    }
    fn events(&self, _: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
        Ok(Vec::new())
    }
    fn now(&self) -> i64 {
        42
    }
}

#[test]
fn reentrant_evaluation_on_one_thread() {
    let e = engine();
    let inner = e
        .compile_script(r#"#{status: "ok", value: now()}"#, "inner")
        .unwrap();
    let host = NestedHost { engine: &e, inner };
    let outer = e
        .compile_script(
            r#"let a = now(); let b = query("m", "f", "avg", [], 60)[0].value; let c = now();
                   #{status: "ok", value: a * 10000 + b * 100 + c}"#,
            "outer",
        )
        .unwrap();
    let o = e.eval_check(&outer, &CheckCtx::default(), &host).unwrap();
    assert_eq!(o.value, Some(42.0 * 10000.0 + 700.0 + 42.0));
}

/// Windows go through the one duration parser of `model::time`; the forms scripts relied on
/// still parse and the malformed ones are still refused.
#[test]
fn window_durations() {
    let w = |s: &str| convert::window_arg("query", &Dynamic::from(s.to_string()));
    assert_eq!(w("30s"), Ok(30));
    assert_eq!(w("5m"), Ok(300));
    assert_eq!(w("1h30m"), Ok(5400));
    assert_eq!(w("2d"), Ok(172_800));
    assert_eq!(w("1w"), Ok(604_800));
    assert_eq!(w("45"), Ok(45));
    assert_eq!(convert::window_arg("query", &Dynamic::from_int(60)), Ok(60));
    for bad in ["", "m", "5x", "5 m", "-5m", "1.5h", "0s", "0"] {
        let err = w(bad).unwrap_err();
        assert!(err.contains("positive duration"), "{bad}: {err}");
    }
}

/// Every rule in the native subset answers exactly as Rhai does for finite values (Rhai's mixed
/// float/integer comparisons of NaN and infinities are its own, so those stay with Rhai); rules
/// outside the subset stay with Rhai.
#[test]
fn native_rules_agree_with_rhai() {
    let engine = ScriptEngine::default();
    let host = FakeHost::new(0, 0.0);
    let rules = [
        "Result > 90",
        "Result >= 90",
        "Result < 90",
        "Result <= 90.5",
        "Result == 0",
        "Result != 0",
        "90 < Result",
        "-5 >= Result",
        "Result > 80 && Result <= 90",
        "Result < 10 || Result > 90",
        "!(Result > 50)",
        "!(Result > 50) && (Result != 3 || Result == 3.0)",
        "Result > 9007199254740993",
    ];
    let values = [
        0.0,
        3.0,
        -5.0,
        -5.5,
        10.0,
        50.0,
        80.0,
        85.0,
        89.999,
        90.0,
        90.5,
        91.0,
        1e300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        9007199254740992.0,
    ];
    for src in rules {
        let c = engine.compile_expr(src).unwrap();
        let native = c
            .native()
            .unwrap_or_else(|| panic!("{src} should be native"));
        for v in values {
            let ctx = CheckCtx {
                result: Some(v),
                tags: tags(&[("host", "a")]),
                points: vec![(1, v)],
            };
            let rhai = engine.eval_rule(&c, &ctx, &host).unwrap();
            if v.is_finite() {
                assert_eq!(native.eval(v), rhai, "{src} with Result = {v}");
            }
        }
    }
    for src in ["Result > 90 && tags.host == \"a\"", "points.len() > 0"] {
        assert!(
            engine.compile_expr(src).unwrap().native().is_none(),
            "{src}"
        );
    }
}
