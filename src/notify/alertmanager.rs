//! `format = "alertmanager_api"`: alerts posted to Alertmanager's own API
//! (`{url}/api/v2/alerts`), the way Prometheus sends them.
//!
//! Alertmanager identifies an alert by its label set and resolves it by itself once `endsAt`
//! passes, so a firing alert is posted again every `resend` with `endsAt` [`LEAD_RESENDS`]
//! resends ahead. Three pieces share the `am_open` table, which holds per (target, round) the
//! alert Alertmanager was last given for that round (a postable alert without `endsAt`):
//!
//! - [`plan`] runs in the planner, inside the event's transaction. A fault inserts or replaces
//!   the round's row; a level change (any change of labels) also ends the alert it replaces; a
//!   recovery deletes the row and ends that alert, under the labels it was sent with. Its
//!   result is the outbox body: an envelope listing the alerts this event starts or ends.
//! - [`finish`] turns that envelope into the posted body right before each attempt: `endsAt`
//!   is stamped at send time (a row retried after an outage must not arrive already expired),
//!   and a firing alert whose round has meanwhile ended or changed level is dropped, so an
//!   out-of-order retry cannot bring it back.
//! - [`open_alerts`] is the re-send list the worker posts every `resend`. Re-sends are direct
//!   POSTs, not outbox rows: the next one comes anyway, and a row per minute per target would
//!   bury the deliveries that matter. They read `am_open`, so after a restart the open alerts
//!   are re-sent at once.
//!
//! Envelope (the stored outbox body):
//! `{"lead_ms": N, "alerts": [{"alert": A, "ends_at": secs} | {"alert": A, "open": ref} | {"alert": A}]}`
//! — ended at `ends_at`; firing while `am_open` still holds it for `ref`; firing for `lead_ms`
//! after it is sent (an event that opens no round: `info`, custom events without a round key).

use super::payload::rfc3339;
use crate::args;
use crate::events::{Sql, SqlError};
use crate::model::event::{field, Event};
use crate::model::Tags;
use serde_json::{json, Map, Value};

/// `endsAt` of a firing alert is this many resends ahead (Prometheus uses 4 × its resend delay),
/// so Alertmanager keeps the alert through a few missed re-sends.
pub const LEAD_RESENDS: i64 = 4;

/// At most this many alerts per re-send request.
pub const RESEND_BATCH: usize = 500;

/// An `alertmanager_api` target as the re-send loop needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmTarget {
    /// target key (`policy#index:urlhash`), as in `am_open` and the outbox
    pub key: String,
    /// `{base}/api/v2/alerts`
    pub url: String,
    /// signing secret
    pub secret: Option<String>,
    /// request timeout
    pub timeout_ms: i64,
    /// re-send period
    pub resend_ms: i64,
}

impl AmTarget {
    /// How far ahead `endsAt` of a firing alert is.
    pub fn lead_ms(&self) -> i64 {
        self.resend_ms * LEAD_RESENDS
    }
}

/// A valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): other characters become `_`, and
/// a leading digit (or an empty name) gets a `_` in front.
pub fn label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// The labels of an event's alert: `alertname` (the monitor's name; for custom events the event
/// name, else the title, else the source), `monitor` (its id), `severity`; for custom events
/// `event_source` and `resource`, which with the name make their round key; then the dimension
/// tags under valid label names. A tag whose name is taken gets a `tag_` prefix (and `_` until
/// free), so it neither overrides those labels nor merges two objects into one alert.
pub fn labels(ev: &Event, severity: &str) -> Map<String, Value> {
    let mut labels = Map::new();
    let name = nonempty(ev.checker_name())
        .or(nonempty(ev.event_name()))
        .or(nonempty(ev.title()))
        .or(nonempty(ev.source()))
        .unwrap_or("tocsin");
    labels.insert("alertname".into(), json!(name));
    match nonempty(ev.checker_id()) {
        Some(m) => {
            labels.insert("monitor".into(), json!(m));
        }
        None => {
            if let Some(s) = nonempty(ev.str(field::EVENT_SOURCE)) {
                labels.insert("event_source".into(), json!(s));
            }
            // Guance events key on their tags; the tag labels already say it.
            if let Some(r) =
                nonempty(ev.str(field::RESOURCE)).filter(|r| Some(*r) != ev.dimension_tags())
            {
                labels.insert("resource".into(), json!(r));
            }
        }
    }
    labels.insert("severity".into(), json!(severity));
    let tags: Tags = ev
        .dimension_tags()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    // Valid names first, so a sanitised name never takes the place of a tag spelled that way.
    // Alertmanager drops empty labels anyway; skipping them keeps the label set as it stores it.
    let (valid, renamed): (Vec<_>, Vec<_>) = tags
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .partition(|(k, _)| label_name(k) == **k);
    for (k, v) in valid.into_iter().chain(renamed) {
        let mut name = label_name(k);
        if labels.contains_key(&name) {
            name = format!("tag_{name}");
        }
        while labels.contains_key(&name) {
            name.push('_');
        }
        labels.insert(name, json!(v));
    }
    labels
}

/// An event as a postable alert without `endsAt`: [`labels`]; annotations `summary`
/// (`df_title`), `description` (`df_message`), `df_event_id`, `df_event_url` (those present);
/// `startsAt` the round's start (else the event time); `generatorURL` the event URL if any.
pub fn alert(ev: &Event, severity: &str) -> Value {
    let mut a = json!({
        "labels": labels(ev, severity),
        "annotations": annotations(ev),
        "startsAt": rfc3339(ev.issue_start().unwrap_or(ev.date())),
    });
    if let Some(u) = ev.event_url() {
        a["generatorURL"] = json!(u);
    }
    a
}

fn annotations(ev: &Event) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in [
        ("summary", ev.title()),
        ("description", ev.message()),
        (field::EVENT_ID, Some(ev.id())),
        (field::EVENT_URL, ev.event_url()),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    m
}

/// Whether two alerts are the same alert in Alertmanager (labels) of the same round (start).
fn same_alert(a: &Value, b: &Value) -> bool {
    a["labels"] == b["labels"] && a["startsAt"] == b["startsAt"]
}

/// `ends_at` for ending `a` at `date`: never before its start (Alertmanager refuses that).
fn ends_at(a: &Value, date: i64) -> i64 {
    let start = a["startsAt"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or(date, |d| d.timestamp());
    date.max(start)
}

fn held(conn: &mut dyn Sql, target: &str, r: &str) -> Result<Option<Value>, SqlError> {
    let text = conn
        .row(
            "SELECT alert FROM am_open WHERE target = ?1 AND ref = ?2",
            args![target, r],
        )?
        .map(|row| row.text(0))
        .transpose()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Plans what an event sends to one `alertmanager_api` target and keeps `am_open` (see the
/// module notes); `None` when there is nothing to send. `last_sent` is the round's last fault
/// status in `notify_sent`, used when Alertmanager was never given the round (a muted fault).
/// Called only for events the planner decided to send, and for every recovery of a round the
/// target took, muted or not: the row goes either way, and an unsent end expires by itself.
pub(crate) fn plan(
    tx: &mut dyn Sql,
    target: &str,
    lead_ms: i64,
    ev: &Event,
    last_sent: Option<&str>,
) -> Result<Option<String>, SqlError> {
    let Some(status) = ev.status() else {
        return Ok(None);
    };
    let r = ev.event_ref();
    let mut items = Vec::new();
    if r.is_empty() || !(status.is_fault() || status.is_recovery()) {
        if status.is_recovery() {
            // no round, so nothing of it is held by Alertmanager
            return Ok(None);
        }
        items.push(json!({"alert": alert(ev, status.as_str())}));
    } else if status.is_recovery() {
        let ended = match held(tx, target, r)? {
            // The labels and start Alertmanager holds; the recovery's annotations and link.
            Some(mut a) => {
                a["annotations"] = Value::Object(annotations(ev));
                match ev.event_url() {
                    Some(u) => a["generatorURL"] = json!(u),
                    None => {
                        a.as_object_mut().map(|o| o.remove("generatorURL"));
                    }
                }
                a
            }
            None => alert(ev, last_sent.or(ev.sub_status()).unwrap_or(status.as_str())),
        };
        tx.exec(
            "DELETE FROM am_open WHERE target = ?1 AND ref = ?2",
            args![target, r],
        )?;
        items.push(json!({"ends_at": ends_at(&ended, ev.date()), "alert": ended}));
    } else {
        let new = alert(ev, status.as_str());
        if let Some(old) = held(tx, target, r)? {
            if !same_alert(&old, &new) {
                // One alert per round: the old level ends as the new one fires, in one POST.
                items.push(json!({"ends_at": ends_at(&old, ev.date()), "alert": old}));
            }
        }
        tx.exec(
            "INSERT INTO am_open(target, ref, alert) VALUES (?1, ?2, ?3) \
             ON CONFLICT(target, ref) DO UPDATE SET alert = excluded.alert",
            args![target, r, new.to_string()],
        )?;
        items.push(json!({"open": r, "alert": new}));
    }
    Ok(Some(
        json!({"lead_ms": lead_ms, "alerts": items}).to_string(),
    ))
}

/// `ms` as RFC 3339 with milliseconds.
fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The body to post now for a stored envelope of `target` (see the module notes). Text that is
/// not an envelope is posted as it is.
pub fn finish(
    conn: &mut dyn Sql,
    target: &str,
    stored: &str,
    now_ms: i64,
) -> Result<String, SqlError> {
    let Ok(env) = serde_json::from_str::<Value>(stored) else {
        return Ok(stored.to_string());
    };
    let Some(items) = env["alerts"].as_array() else {
        return Ok(stored.to_string());
    };
    let until = rfc3339_ms(now_ms + env["lead_ms"].as_i64().unwrap_or(0));
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut a = item["alert"].clone();
        if let Some(t) = item["ends_at"].as_i64() {
            a["endsAt"] = json!(rfc3339(t));
        } else if let Some(r) = item["open"].as_str() {
            if !held(conn, target, r)?.is_some_and(|h| same_alert(&h, &a)) {
                continue;
            }
            a["endsAt"] = json!(until);
        } else {
            a["endsAt"] = json!(until);
        }
        out.push(a);
    }
    Ok(Value::Array(out).to_string())
}

/// The re-send list of a target: its open alerts with `endsAt` = now + lead, in batches of at
/// most [`RESEND_BATCH`], as request bodies.
pub fn open_alerts(conn: &mut dyn Sql, t: &AmTarget, now_ms: i64) -> Result<Vec<String>, SqlError> {
    let until = json!(rfc3339_ms(now_ms + t.lead_ms()));
    let rows = conn.rows(
        "SELECT alert FROM am_open WHERE target = ?1 ORDER BY ref",
        args![&t.key],
    )?;
    let mut alerts = Vec::new();
    for row in rows {
        if let Ok(mut a) = serde_json::from_str::<Value>(&row.text(0)?) {
            a["endsAt"] = until.clone();
            alerts.push(a);
        }
    }
    Ok(alerts
        .chunks(RESEND_BATCH)
        .map(|c| Value::Array(c.to_vec()).to_string())
        .collect())
}

/// Forgets the open alerts of targets no longer configured: nothing would re-send or end them,
/// and Alertmanager resolves them by itself when their `endsAt` passes.
pub(crate) fn prune(conn: &mut dyn Sql, keep: &[String]) -> Result<(), SqlError> {
    let targets = conn.rows("SELECT DISTINCT target FROM am_open", &[])?;
    for t in targets {
        let t = t.text(0)?;
        if !keep.contains(&t) {
            conn.exec("DELETE FROM am_open WHERE target = ?1", args![t])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Status;

    fn monitor_event(tags: &str) -> Event {
        let mut e = Event::new();
        e.set_id("event-1");
        e.set_time(2000);
        e.set_status(Status::Critical);
        e.set(field::MONITOR_CHECKER_ID, "m1");
        e.set(field::MONITOR_CHECKER_NAME, "CPU");
        e.set(field::DIMENSION_TAGS, tags);
        e.set_title("CPU high");
        e.set_message("95 %");
        e.set(field::ISSUE_START_TIME, 1000);
        e
    }

    #[test]
    fn label_names_are_sanitised_to_prometheus_names() {
        for (given, want) in [
            ("host", "host"),
            ("Host_9", "Host_9"),
            ("_x", "_x"),
            ("host.name", "host_name"),
            ("k8s-pod", "k8s_pod"),
            ("9lives", "_9lives"),
            ("zoné", "zon_"),
            ("", "_"),
        ] {
            assert_eq!(label_name(given), want, "{given:?}");
        }
    }

    #[test]
    fn tags_become_labels_without_overriding_the_fixed_ones_or_each_other() {
        let e = monitor_event(
            r#"{"a.b":"1","a_b":"2","alertname":"x","empty":"","host":"web01","severity":"y"}"#,
        );
        let l = labels(&e, "critical");
        assert_eq!(l["alertname"], "CPU", "the monitor's name");
        assert_eq!(l["monitor"], "m1", "the monitor's id");
        assert_eq!(l["severity"], "critical");
        assert_eq!(l["host"], "web01");
        assert_eq!(l["a_b"], "2", "the tag spelled a_b keeps its name");
        assert_eq!(l["tag_a_b"], "1", "a.b sanitises to a taken name");
        assert_eq!(l["tag_alertname"], "x");
        assert_eq!(l["tag_severity"], "y");
        assert!(!l.contains_key("empty"), "empty labels are dropped");
        assert_eq!(l.len(), 8, "{l:?}");
    }

    #[test]
    fn custom_events_are_named_by_event_name_and_keyed_by_source_and_resource() {
        let mut e = Event::new();
        e.set_status(Status::Error);
        e.set(field::EVENT_NAME, "disk full");
        e.set(field::EVENT_SOURCE, "ecs");
        e.set(field::RESOURCE, "i-1");
        e.set_title("Disk full on i-1");
        e.set(field::DIMENSION_TAGS, r#"{"region":"eu"}"#);
        let l = labels(&e, "error");
        assert_eq!(l["alertname"], "disk full");
        assert_eq!(l["event_source"], "ecs");
        assert_eq!(l["resource"], "i-1");
        assert_eq!(l["region"], "eu");
        assert!(!l.contains_key("monitor"));
        // no name: the title, then the source
        e.0.remove(field::EVENT_NAME);
        assert_eq!(labels(&e, "error")["alertname"], "Disk full on i-1");
        e.0.remove(field::TITLE);
        e.set(field::SOURCE, "custom");
        assert_eq!(labels(&e, "error")["alertname"], "custom");
        // Guance events key on their tags: no resource label repeating them
        e.set(field::RESOURCE, r#"{"region":"eu"}"#);
        assert!(!labels(&e, "error").contains_key("resource"));
    }

    #[test]
    fn alerts_carry_annotations_start_and_link_when_present() {
        let mut e = monitor_event("{}");
        let a = alert(&e, "critical");
        assert_eq!(a["startsAt"], "1970-01-01T00:16:40Z", "the round's start");
        assert_eq!(
            a["annotations"],
            json!({"summary": "CPU high", "description": "95 %", "df_event_id": "event-1"})
        );
        assert!(a.get("generatorURL").is_none(), "no URL without public_url");
        assert!(a.get("endsAt").is_none(), "stamped when sent");
        e.set_event_url("http://tocsin:9530", "event-1");
        e.0.remove(field::ISSUE_START_TIME);
        let a = alert(&e, "critical");
        assert_eq!(a["generatorURL"], "http://tocsin:9530/#/events/event-1");
        assert_eq!(
            a["annotations"]["df_event_url"],
            "http://tocsin:9530/#/events/event-1"
        );
        assert_eq!(
            a["startsAt"], "1970-01-01T00:33:20Z",
            "no round: the event time"
        );
    }
}
