//! Planner tests on a real (in-memory) event store: which events get which outbox rows.

use super::*;
use crate::events::{Commit, EventDb};
use crate::model::event::field;
use std::sync::Arc;

fn config(toml_text: &str) -> Config {
    let c: Config = toml::from_str(toml_text).unwrap();
    c
}

fn db(cfg: &str) -> EventDb {
    let db = EventDb::scratch();
    db.set_hook(Arc::new(Notifier::new(&config(cfg)))).unwrap();
    db
}

fn ev(policy: &str, r: &str, status: &str, date: i64, tags: &str) -> Event {
    let mut e = Event::new();
    e.set(field::EVENT_ID, format!("event-{r}-{status}-{date}"));
    e.set("date", date);
    e.set(field::STATUS, status);
    e.set(field::SOURCE, "monitor");
    e.set(field::MONITOR_ID, policy);
    e.set(field::MONITOR_CHECKER_ID, "m1");
    e.set(field::MONITOR_CHECKER_EVENT_REF, r);
    e.set(field::DIMENSION_TAGS, tags);
    e.set(field::TITLE, format!("{status} title"));
    e
}

fn store(db: &EventDb, e: Event) -> Event {
    db.commit(Commit {
        events: vec![e],
        ..Default::default()
    })
    .unwrap()
    .pop()
    .expect("new event")
}

/// (event id, target url) of every outbox row, in order.
fn rows(db: &EventDb) -> Vec<(String, String)> {
    db.with_conn(|c| {
        let mut st = c.prepare("SELECT event_id, url FROM outbox ORDER BY id")?;
        let r = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        r.collect()
    })
    .unwrap()
}

const TWO_TARGETS: &str = r#"
[[policies]]
id = "oncall"
name = "On-call"
silent_timeout = "1h"
[[policies.targets]]
url = "http://a/hook"
statuses = ["critical"]
[[policies.targets]]
url = "http://b/hook"
"#;

#[test]
fn silent_timeout_holds_repeats_sends_changes_and_recoveries() {
    let db = db(TWO_TARGETS);
    store(&db, ev("oncall", "r1", "critical", 1000, "{}"));
    store(&db, ev("oncall", "r1", "critical", 1060, "{}")); // repeat within 1h: held
    store(&db, ev("oncall", "r1", "error", 1120, "{}")); // change: only b takes error
    store(&db, ev("oncall", "r1", "critical", 1180, "{}")); // change again for b; a: same status within 1h
    store(&db, ev("oncall", "r1", "critical", 1180 + 3700, "{}")); // an hour after both sends: both again
    store(&db, ev("oncall", "r1", "ok", 5000, "{}")); // recovery to both (a's filter has no ok)
    store(&db, ev("oncall", "r1", "ok", 5060, "{}")); // no round any more: to b only (its statuses)
    let got = rows(&db);
    let want: Vec<(String, String)> = [
        ("event-r1-critical-1000", "http://a/hook"),
        ("event-r1-critical-1000", "http://b/hook"),
        ("event-r1-error-1120", "http://b/hook"),
        ("event-r1-critical-1180", "http://b/hook"),
        ("event-r1-critical-4880", "http://a/hook"),
        ("event-r1-critical-4880", "http://b/hook"),
        ("event-r1-ok-5000", "http://a/hook"),
        ("event-r1-ok-5000", "http://b/hook"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn recovery_only_goes_to_targets_that_got_the_fault() {
    let db = db(r#"
[[policies]]
id = "p"
[[policies.targets]]
url = "http://crit-only/"
statuses = ["critical", "ok"]
[[policies.targets]]
url = "http://warn-only/"
statuses = ["warning", "ok"]
"#);
    store(&db, ev("p", "r", "critical", 100, "{}"));
    store(&db, ev("p", "r", "ok", 200, "{}"));
    assert_eq!(
        rows(&db),
        vec![
            (
                "event-r-critical-100".to_string(),
                "http://crit-only/".to_string()
            ),
            (
                "event-r-ok-200".to_string(),
                "http://crit-only/".to_string()
            ),
        ]
    );
}

#[test]
fn tag_filters_same_key_any_value_different_keys_all() {
    let db = db(r#"
[[policies]]
id = "p"
[[policies.targets]]
url = "http://t/"
tags = { env = ["prod", "staging"], team = "db" }
"#);
    store(
        &db,
        ev("p", "r1", "critical", 1, r#"{"env":"prod","team":"db"}"#),
    );
    store(
        &db,
        ev("p", "r2", "critical", 1, r#"{"env":"staging","team":"db"}"#),
    );
    store(
        &db,
        ev("p", "r3", "critical", 1, r#"{"env":"dev","team":"db"}"#),
    );
    store(
        &db,
        ev("p", "r4", "critical", 1, r#"{"env":"prod","team":"web"}"#),
    );
    store(&db, ev("p", "r5", "critical", 1, r#"{"env":"prod"}"#));
    let ids: Vec<String> = rows(&db).into_iter().map(|r| r.0).collect();
    assert_eq!(ids, vec!["event-r1-critical-1", "event-r2-critical-1"]);
}

#[test]
fn one_off_mute_marks_silent_and_the_recovery_after_it_is_sent() {
    let db = db(r#"
[[policies]]
id = "p"
[[policies.targets]]
url = "http://t/"
[[policies.mutes]]
start = "1000"
end = "2000"
monitors = ["m1"]
"#);
    let e = store(&db, ev("p", "r", "critical", 1500, "{}"));
    assert_eq!(e.silent(), Some("true"));
    assert!(rows(&db).is_empty(), "muted events are sent nowhere");
    let e = store(&db, ev("p", "r", "ok", 2500, "{}"));
    assert_eq!(e.silent(), None);
    assert_eq!(
        rows(&db),
        vec![("event-r-ok-2500".to_string(), "http://t/".to_string())]
    );
    // the stored event carries the flag too
    assert_eq!(
        db.event("event-r-critical-1500").unwrap().unwrap().silent(),
        Some("true")
    );
}

#[test]
fn a_fault_after_its_mute_is_sent_even_within_silent_timeout() {
    let db = db(r#"
[[policies]]
id = "p"
silent_timeout = "1d"
[[policies.targets]]
url = "http://t/"
[[policies.mutes]]
start = "1000"
end = "2000"
"#);
    store(&db, ev("p", "r", "critical", 1500, "{}"));
    store(&db, ev("p", "r", "critical", 2100, "{}"));
    store(&db, ev("p", "r", "critical", 2200, "{}"));
    let ids: Vec<String> = rows(&db).into_iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        vec!["event-r-critical-2100"],
        "not retroactive, then silent_timeout applies"
    );
}

#[test]
fn cron_mute_repeats_and_is_scoped_by_tags() {
    // every day 02:00 for one hour (UTC)
    let db = db(r#"
[[policies]]
id = "p"
[[policies.targets]]
url = "http://t/"
[[policies.mutes]]
cron = "0 2 * * *"
duration = "1h"
tags = { env = "dev" }
"#);
    let day = 1_714_521_600; // 2024-05-01T00:00:00Z
    let e = store(
        &db,
        ev(
            "p",
            "r1",
            "critical",
            day + 2 * 3600 + 600,
            r#"{"env":"dev"}"#,
        ),
    );
    assert_eq!(e.silent(), Some("true"));
    let e = store(
        &db,
        ev(
            "p",
            "r2",
            "critical",
            day + 86_400 + 2 * 3600 + 10,
            r#"{"env":"dev"}"#,
        ),
    );
    assert_eq!(e.silent(), Some("true"), "repeats the next day");
    let e = store(
        &db,
        ev(
            "p",
            "r3",
            "critical",
            day + 3 * 3600 + 1,
            r#"{"env":"dev"}"#,
        ),
    );
    assert_eq!(e.silent(), None, "after the hour");
    let e = store(
        &db,
        ev(
            "p",
            "r4",
            "critical",
            day + 2 * 3600 + 600,
            r#"{"env":"prod"}"#,
        ),
    );
    assert_eq!(e.silent(), None, "other tags are not muted");
    let ids: Vec<String> = rows(&db).into_iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        vec![
            format!("event-r3-critical-{}", day + 3 * 3600 + 1),
            format!("event-r4-critical-{}", day + 7800)
        ]
    );
}

#[test]
fn custom_events_use_the_default_policy_and_a_resend_is_not_queued_twice() {
    let db = db(r#"
[[policies]]
id = "default"
[[policies.targets]]
url = "http://t/"
statuses = ["critical", "info"]
"#);
    let mut e = ev("x", "", "info", 10, "{}");
    e.0.remove(field::MONITOR_ID);
    e.set(field::SOURCE, "custom");
    store(&db, e.clone());
    assert!(db
        .commit(Commit {
            events: vec![e],
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    assert_eq!(rows(&db).len(), 1);
    // an unknown policy sends nothing
    store(&db, ev("nope", "r", "critical", 1, "{}"));
    assert_eq!(rows(&db).len(), 1);
}

#[test]
fn payload_shapes() {
    let mut e = ev("p", "r", "ok", 2000, r#"{"host":"web01"}"#);
    e.set(field::SUB_STATUS, "critical");
    e.set(field::ISSUE_START_TIME, 1000);
    e.set(field::MONITOR_CHECKER_NAME, "CPU");
    let am = payload::alertmanager(&e, "p");
    assert_eq!(am["version"], "4");
    assert_eq!(am["status"], "resolved");
    assert_eq!(am["alerts"][0]["status"], "resolved");
    assert_eq!(am["alerts"][0]["labels"]["alertname"], "CPU");
    assert_eq!(am["alerts"][0]["labels"]["host"], "web01");
    assert_eq!(am["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(am["alerts"][0]["startsAt"], "1970-01-01T00:16:40Z");
    assert_eq!(am["alerts"][0]["endsAt"], "1970-01-01T00:33:20Z");
    assert_eq!(am["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(am["alerts"][0]["annotations"]["summary"], "ok title");
    let dt = payload::dingtalk(&e, "On-call");
    assert_eq!(dt["msgtype"], "markdown");
    assert_eq!(dt["markdown"]["title"], "ok title");
    assert!(dt["markdown"]["text"]
        .as_str()
        .unwrap()
        .contains("[OK] ok title"));
    let json: serde_json::Value =
        serde_json::from_str(&payload::render(Format::Json, &e, "p", "P")).unwrap();
    assert_eq!(json["df_event_id"], "event-r-ok-2000");
}
