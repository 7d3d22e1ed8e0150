//! The event centre's custom-event intake (SPEC §6): four dialects — Huawei Cloud Eye
//! ([`huawei`]), Alibaba `PutCustomEvent` ([`alibaba`]), CloudEvents 1.0 ([`cloudevents`]) and
//! Guance ([`guance`]) — each validated whole, normalised into one [`CustomEvent`] and stored
//! as events of SPEC §5 with `df_source = "custom"`.
//!
//! A custom event with a fault status opens or continues a round keyed on its source, name and
//! resource ([`round_ref`]); an `ok` for the same key closes it. Event ids are deterministic in
//! each dialect's identity fields, so a re-sent event answers the same id and stores nothing new.

pub mod alibaba;
pub mod cloudevents;
pub mod guance;
pub mod huawei;
pub mod sign;

use crate::events::{Commit, EventDb, EventDbError};
use crate::http::{ApiError, AppState};
use crate::model::event::{canonical_tags, md5_hex, Event, Status};
use crate::model::Tags;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// The routes of the four custom-event endpoints, merged into [`crate::http::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/V1.0/:project_id/events", post(huawei::handle))
        .route("/", post(alibaba::handle).get(alibaba::handle))
        .route("/v1/cloudevents", post(cloudevents::handle))
        .route("/api/v1/events/create", post(guance::handle))
}

/// One custom event, normalised from any dialect, ready to become a SPEC §5 event.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomEvent {
    /// dialect name: `huawei`, `alibaba`, `cloudevents`, `guance`
    pub dialect: &'static str,
    /// `df_event_id`, deterministic in the dialect's identity fields
    pub id: String,
    /// `date` in Unix seconds
    pub date: i64,
    /// `df_status`
    pub status: Status,
    /// `df_title`
    pub title: String,
    /// `df_message`
    pub message: String,
    /// event name (`df_event_name`, the stats `name` column; part of the round key)
    pub name: String,
    /// event source (`df_event_source`; part of the round key)
    pub source: String,
    /// the name in the round key when it is not `name` (Guance events with tags key on the tags)
    pub key_name: Option<String>,
    /// resource the event is about (`df_resource`; part of the round key)
    pub resource: String,
    /// group (`df_event_group`, the stats `group` column)
    pub group: String,
    /// tags: copied to the top level and into `df_dimension_tags`
    pub tags: Tags,
    /// the original item, kept as `df_event_detail`
    pub detail: Value,
    /// further dialect fields (`df_project_id`, ...)
    pub extra: Vec<(String, Value)>,
}

/// The deterministic id of a custom event: `event-` + md5 of the dialect name and the identity
/// fields, one per line.
pub fn custom_event_id(dialect: &str, fields: &[&str]) -> String {
    let mut s = String::from(dialect);
    for f in fields {
        s.push('\n');
        s.push_str(f);
    }
    format!("event-{}", md5_hex(&s))
}

/// The round key of a custom event: md5 of `"custom\n" + source + "\n" + name + "\n" + resource`.
pub fn round_ref(source: &str, name: &str, resource: &str) -> String {
    md5_hex(&format!("custom\n{source}\n{name}\n{resource}"))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What happened to one event of a stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// `df_event_id`
    pub id: String,
    /// true when the event was new; false when the id was already stored (a re-send)
    pub fresh: bool,
}

/// Serialises read-the-open-round + commit so that two requests for one round key cannot
/// both open it.
static ROUND_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Turns a validated batch into SPEC §5 events, works out their rounds and commits them in
/// one transaction. Returns one [`Stored`] per input event, in order.
pub fn store_batch(db: &EventDb, batch: &[CustomEvent]) -> Result<Vec<Stored>, EventDbError> {
    let _g = ROUND_LOCK.lock();
    // Open rounds as the batch goes: ref -> (start, fault id, last fault status).
    let mut open: HashMap<String, Option<(i64, String, String)>> = HashMap::new();
    let mut events = Vec::with_capacity(batch.len());
    for ce in batch {
        let mut ev = base_event(ce);
        if ce.status.is_fault() || ce.status.is_recovery() {
            let key_name = ce.key_name.as_deref().unwrap_or(&ce.name);
            let r = round_ref(&ce.source, key_name, &ce.resource);
            if !open.contains_key(&r) {
                let row = db.issue(&r, ce.date)?;
                open.insert(
                    r.clone(),
                    row.map(|i| (i.issue_start, i.fault_id, i.status)),
                );
            }
            let slot = open.get_mut(&r).expect("inserted above");
            if ce.status.is_fault() {
                let (start, fault) = match slot {
                    Some((s, f, st)) => {
                        *st = ce.status.as_str().to_string();
                        (*s, f.clone())
                    }
                    None => {
                        *slot = Some((ce.date, ce.id.clone(), ce.status.as_str().to_string()));
                        (ce.date, ce.id.clone())
                    }
                };
                set_round(&mut ev, &r, start, ce.date, &fault);
            } else if let Some((start, fault, last)) = slot.take() {
                set_round(&mut ev, &r, start, ce.date, &fault);
                ev.set("df_sub_status", last);
            }
        }
        events.push(ev);
    }
    let fresh = db.commit(&Commit {
        events,
        ..Default::default()
    })?;
    let fresh_ids: std::collections::HashSet<&str> = fresh.iter().map(|e| e.id()).collect();
    Ok(batch
        .iter()
        .map(|ce| Stored {
            id: ce.id.clone(),
            fresh: fresh_ids.contains(ce.id.as_str()),
        })
        .collect())
}

fn set_round(ev: &mut Event, r: &str, start: i64, date: i64, fault: &str) {
    ev.set("df_monitor_checker_event_ref", r.to_string());
    ev.set("df_issue_start_time", start);
    ev.set("df_issue_duration", (date - start).max(0));
    ev.set("df_fault_id", fault.to_string());
}

/// The SPEC §5 event of a custom event, without round fields.
pub fn base_event(ce: &CustomEvent) -> Event {
    let mut ev = Event::new();
    ev.set("df_event_id", ce.id.clone());
    ev.set("date", ce.date);
    ev.set("timestamp", ce.date);
    ev.set("df_source", "custom");
    ev.set("df_status", ce.status.as_str());
    ev.set("df_title", ce.title.clone());
    ev.set("df_message", ce.message.clone());
    ev.set("df_dimension_tags", canonical_tags(&ce.tags));
    ev.set("df_event_name", ce.name.clone());
    ev.set("df_event_group", ce.group.clone());
    ev.set("df_event_source", ce.source.clone());
    if !ce.resource.is_empty() {
        ev.set("df_resource", ce.resource.clone());
    }
    ev.set("df_event_dialect", ce.dialect);
    for (k, v) in &ce.extra {
        ev.set(k, v.clone());
    }
    ev.set(
        "df_event_detail",
        serde_json::to_string(&ce.detail).expect("JSON value serialises"),
    );
    ev.set("df_is_silent", "false");
    ev.copy_tags_to_top(&ce.tags);
    ev
}

/// Stores a batch off the async runtime and counts the new events.
pub async fn store(st: &AppState, batch: Vec<CustomEvent>) -> Result<Vec<Stored>, ApiError> {
    let db = st.engine.runner.db.clone();
    let out = tokio::task::spawn_blocking(move || store_batch(&db, &batch))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let n = out.iter().filter(|s| s.fresh).count() as u64;
    st.engine
        .metrics
        .custom_events
        .fetch_add(n, Ordering::Relaxed);
    Ok(out)
}

/// A validation failure: which item (if the batch has items), which field, which rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{field}: {rule}", index.map(|i| format!("[{i}].")).unwrap_or_default())]
pub struct Invalid {
    /// 0-based index of the item in the batch, if the error is about one item
    pub index: Option<usize>,
    /// the field (dotted path inside the item)
    pub field: String,
    /// the rule it broke
    pub rule: String,
}

impl Invalid {
    /// An error about field `field` of item `index`.
    pub fn at(index: usize, field: impl Into<String>, rule: impl Into<String>) -> Invalid {
        Invalid {
            index: Some(index),
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// An error about the request as a whole.
    pub fn whole(field: impl Into<String>, rule: impl Into<String>) -> Invalid {
        Invalid {
            index: None,
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The generic JSON error of SPEC §6: `{error, index, field, rule}`.
    pub fn to_api(&self) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({
                "error": self.to_string(), "index": self.index, "field": self.field, "rule": self.rule,
            }),
            retry_after: None,
        }
    }
}

/// Renders a JSON value as tag or message text: strings as they are, others as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Cuts a string to at most `n` characters.
pub fn truncate_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, date: i64, status: Status) -> CustomEvent {
        CustomEvent {
            dialect: "test",
            id: id.into(),
            date,
            status,
            title: "t".into(),
            message: "m".into(),
            name: "disk".into(),
            source: "app.web".into(),
            key_name: None,
            resource: "r1".into(),
            group: String::new(),
            tags: Tags::new(),
            detail: Value::Null,
            extra: vec![],
        }
    }

    #[test]
    fn rounds_open_continue_and_close() {
        let db = EventDb::scratch();
        let r = round_ref("app.web", "disk", "r1");
        let out = store_batch(
            &db,
            &[
                ev("event-a", 100, Status::Warning),
                ev("event-b", 160, Status::Critical),
            ],
        )
        .unwrap();
        assert!(out.iter().all(|s| s.fresh));
        let i = db.issue(&r, 200).unwrap().unwrap();
        assert_eq!(
            (i.issue_start, i.fault_id.as_str(), i.status.as_str()),
            (100, "event-a", "critical")
        );
        let b = db.event("event-b").unwrap().unwrap();
        assert_eq!(b.int("df_issue_duration"), Some(60));
        // the same event again: nothing new
        let again = store_batch(&db, &[ev("event-b", 160, Status::Critical)]).unwrap();
        assert!(!again[0].fresh);
        store_batch(&db, &[ev("event-c", 400, Status::Ok)]).unwrap();
        assert!(db.issue(&r, 400).unwrap().is_none());
        let c = db.event("event-c").unwrap().unwrap();
        assert_eq!(c.int("df_issue_start_time"), Some(100));
        assert_eq!(c.int("df_issue_duration"), Some(300));
        assert_eq!(c.str("df_sub_status"), Some("critical"));
        // ok without an open round: plain event, no ref
        store_batch(&db, &[ev("event-d", 500, Status::Ok)]).unwrap();
        assert_eq!(db.event("event-d").unwrap().unwrap().event_ref(), "");
        // info: no ref
        store_batch(&db, &[ev("event-e", 600, Status::Info)]).unwrap();
        assert_eq!(db.event("event-e").unwrap().unwrap().event_ref(), "");
    }

    #[test]
    fn ids_and_text_helpers() {
        assert_eq!(
            custom_event_id("x", &["a", "b"]),
            format!("event-{}", md5_hex("x\na\nb"))
        );
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
        let e = Invalid::at(2, "event_name", "required");
        assert_eq!(e.to_string(), "[2].event_name: required");
        assert_eq!(Invalid::whole("body", "x").to_string(), "body: x");
    }
}
