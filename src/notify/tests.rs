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
        c.rows("SELECT event_id, url FROM outbox ORDER BY id", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
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
        serde_json::from_str(&payload::render(Format::Json, &e, "p", "P").unwrap()).unwrap();
    assert_eq!(json["df_event_id"], "event-r-ok-2000");
}

// ---- alertmanager_api ----

const AM: &str = r#"
[[policies]]
id = "p"
[[policies.targets]]
url = "http://am:9093/"
format = "alertmanager_api"
resend = "1m"
"#;

/// A fault or recovery of round `r` that started at 1000.
fn am_ev(r: &str, status: &str, date: i64) -> Event {
    let mut e = ev("p", r, status, date, r#"{"host":"web01"}"#);
    e.set(field::MONITOR_CHECKER_NAME, "CPU");
    e.set(field::ISSUE_START_TIME, 1000);
    e
}

/// (url, stored body) of every outbox row, in order.
fn bodies(db: &EventDb) -> Vec<(String, String)> {
    db.with_conn(|c| {
        c.rows("SELECT url, body FROM outbox ORDER BY id", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
    })
    .unwrap()
}

/// The body the worker would post now for outbox row `i` (0-based).
fn posted(db: &EventDb, i: usize, now_ms: i64) -> Vec<serde_json::Value> {
    let (_, stored) = bodies(db).swap_remove(i);
    let target = db
        .with_conn(|c| {
            c.row("SELECT target FROM outbox ORDER BY id LIMIT 1", &[])?
                .expect("an outbox row")
                .text(0)
        })
        .unwrap();
    let text = db
        .with_conn(|c| alertmanager::finish(c, &target, &stored, now_ms))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn resend_list(db: &EventDb, n: &Notifier, now_ms: i64) -> Vec<serde_json::Value> {
    let t = &n.alertmanager_targets()[0];
    db.with_conn(|c| alertmanager::open_alerts(c, t, now_ms))
        .unwrap()
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap())
        .collect()
}

const NOW_MS: i64 = 1_000_000; // 1970-01-01T00:16:40Z

#[test]
fn alertmanager_api_fires_changes_level_in_one_post_and_recovers_with_the_old_labels() {
    let n = Notifier::new(&config(AM));
    assert_eq!(
        n.alertmanager_targets(),
        vec![alertmanager::AmTarget {
            key: n.policies[0].targets[0].key.clone(),
            url: "http://am:9093/api/v2/alerts".into(),
            secret: None,
            timeout_ms: 10_000,
            resend_ms: 60_000,
        }]
    );
    let db = db(AM);

    // fire: one alert, endsAt four resends after it is sent
    store(&db, am_ev("r1", "error", 1000));
    assert_eq!(bodies(&db)[0].0, "http://am:9093/api/v2/alerts");
    let p = posted(&db, 0, NOW_MS);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["labels"]["alertname"], "CPU");
    assert_eq!(p[0]["labels"]["monitor"], "m1");
    assert_eq!(p[0]["labels"]["severity"], "error");
    assert_eq!(p[0]["labels"]["host"], "web01");
    assert_eq!(p[0]["annotations"]["summary"], "error title");
    assert_eq!(p[0]["annotations"]["df_event_id"], "event-r1-error-1000");
    assert_eq!(p[0]["startsAt"], "1970-01-01T00:16:40Z");
    assert_eq!(p[0]["endsAt"], "1970-01-01T00:20:40.000Z", "now + 4 x 1m");
    // stamped at send time: a retry an hour later is not already expired
    let later = posted(&db, 0, NOW_MS + 3_600_000);
    assert_eq!(later[0]["endsAt"], "1970-01-01T01:20:40.000Z");
    let open = resend_list(&db, &n, NOW_MS);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["labels"], p[0]["labels"]);
    assert_eq!(open[0]["endsAt"], "1970-01-01T00:20:40.000Z");

    // a repeat of the level re-fires the same alert, nothing ends
    store(&db, am_ev("r1", "error", 1030));
    let p = posted(&db, 1, NOW_MS);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["labels"]["severity"], "error");

    // level change: the old alert ends at the change, the new one fires, in one request
    store(&db, am_ev("r1", "critical", 1060));
    let p = posted(&db, 2, NOW_MS);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0]["labels"]["severity"], "error");
    assert_eq!(
        p[0]["endsAt"], "1970-01-01T00:17:40Z",
        "ended at the change"
    );
    assert_eq!(p[1]["labels"]["severity"], "critical");
    assert_eq!(p[1]["startsAt"], "1970-01-01T00:16:40Z", "same round start");
    assert_eq!(p[1]["endsAt"], "1970-01-01T00:20:40.000Z");
    let open = resend_list(&db, &n, NOW_MS);
    assert_eq!(open.len(), 1, "one alert per round");
    assert_eq!(open[0]["labels"]["severity"], "critical");
    // an out-of-order retry of the first fire no longer fires the error level
    assert!(posted(&db, 0, NOW_MS).is_empty());

    // recovery: the last level sent, ended at the recovery time, with the recovery's annotations
    let mut ok = am_ev("r1", "ok", 1120);
    ok.set(field::SUB_STATUS, "critical");
    store(&db, ok);
    let p = posted(&db, 3, NOW_MS);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0]["labels"]["severity"], "critical",
        "not ok: matched by labels"
    );
    assert_eq!(p[0]["labels"]["alertname"], "CPU");
    assert_eq!(p[0]["endsAt"], "1970-01-01T00:18:40Z");
    assert_eq!(p[0]["annotations"]["df_event_id"], "event-r1-ok-1120");
    assert!(
        resend_list(&db, &n, NOW_MS).is_empty(),
        "nothing left to re-send"
    );
    // a late retry of the change still ends the error level, and fires nothing
    let p = posted(&db, 2, NOW_MS);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["labels"]["severity"], "error");
}

#[test]
fn alertmanager_api_mutes_send_nothing_and_the_recovery_after_ends_the_muted_level() {
    let db = db(&format!(
        "{AM}[[policies.mutes]]\nstart = \"1000\"\nend = \"2000\"\n"
    ));
    store(&db, am_ev("r1", "warning", 1500));
    assert!(bodies(&db).is_empty(), "muted faults are not sent");
    let open: i64 = db
        .with_conn(|c| c.int("SELECT COUNT(*) FROM am_open", &[]))
        .unwrap();
    assert_eq!(open, 0, "nor re-sent");
    store(&db, am_ev("r1", "ok", 2500));
    let p = posted(&db, 0, NOW_MS);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["labels"]["severity"], "warning");
    assert_eq!(p[0]["endsAt"], "1970-01-01T00:41:40Z");
}

#[test]
fn alertmanager_api_events_without_a_round_fire_once_and_are_not_re_sent() {
    let cfg = r#"
[[policies]]
id = "default"
[[policies.targets]]
url = "http://am:9093"
format = "alertmanager_api"
resend = "10s"
statuses = ["info", "ok", "critical"]
"#;
    let n = Notifier::new(&config(cfg));
    let db = db(cfg);
    let mut e = ev("x", "", "info", 10, "{}");
    e.0.remove(field::MONITOR_ID);
    e.0.remove(field::MONITOR_CHECKER_ID);
    e.set(field::SOURCE, "custom");
    e.set(field::EVENT_NAME, "deploy");
    store(&db, e.clone());
    let p = posted(&db, 0, NOW_MS);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["labels"]["alertname"], "deploy");
    assert_eq!(p[0]["labels"]["severity"], "info");
    assert_eq!(p[0]["endsAt"], "1970-01-01T00:17:20.000Z", "now + 4 x 10s");
    assert!(resend_list(&db, &n, NOW_MS).is_empty());
    // an ok without a round ends nothing, so nothing is sent
    let mut ok = e;
    ok.set(field::EVENT_ID, "event-ok");
    ok.set(field::STATUS, "ok");
    store(&db, ok);
    assert_eq!(bodies(&db).len(), 1);
}

#[test]
fn alertmanager_api_open_alerts_of_removed_targets_are_forgotten() {
    let db = db(AM);
    store(&db, am_ev("r1", "critical", 1000));
    let count = |db: &EventDb| -> i64 {
        db.with_conn(|c| c.int("SELECT COUNT(*) FROM am_open", &[]))
            .unwrap()
    };
    assert_eq!(count(&db), 1);
    // the same target again (a restart): kept
    db.set_hook(Arc::new(Notifier::new(&config(AM)))).unwrap();
    assert_eq!(count(&db), 1);
    db.set_hook(Arc::new(Notifier::new(&config(TWO_TARGETS))))
        .unwrap();
    assert_eq!(count(&db), 0);
}
