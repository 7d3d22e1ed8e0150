//! The event centre's custom-event intake (docs/event-centre.md): four dialects — Huawei Cloud Eye
//! ([`huawei`]), Alibaba `PutCustomEvent` ([`alibaba`]), CloudEvents 1.0 ([`cloudevents`]) and
//! Guance ([`guance`]) — each validated whole, normalised into one [`CustomEvent`] and stored
//! as events of the one model (docs/events.md) with `df_source = "custom"`.
//!
//! A custom event with a fault status opens or continues a round keyed on its source, name and
//! resource ([`round_ref`]); an `ok` for the same key closes it. Event ids are deterministic in
//! each dialect's identity fields, so a re-sent event answers the same id and stores nothing new.

pub mod alibaba;
pub mod cloudevents;
pub mod guance;
pub mod huawei;
pub mod sign;

use crate::detect::ObjectState;
use crate::events::{Commit, EventDb, EventDbError};
use crate::model::event::{md5_hex, CustomFields, Event, Source, Status};
use crate::model::Tags;
use serde_json::Value;
use std::collections::hash_map::{Entry, HashMap};

/// One custom event, normalised from any dialect, ready to become an event (docs/events.md).
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

/// What happened to one event of a stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// `df_event_id`
    pub id: String,
    /// true when the event was new; false when the id was already stored (a re-send)
    pub fresh: bool,
}

/// Turns a validated batch into events (docs/events.md), works out their rounds and commits them in
/// one transaction. Returns one [`Stored`] per input event, in order.
///
/// Rounds are [`crate::detect`]'s: a key's state is rebuilt from its issue row the first time
/// the batch meets it, then stepped with each event of the key in batch order.
pub fn store_batch(db: &EventDb, batch: &[CustomEvent]) -> Result<Vec<Stored>, EventDbError> {
    // Two batches for one round key must not both read "no open round" and both open it.
    let _rounds = db.round_lock()?;
    let mut states: HashMap<String, ObjectState> = HashMap::new();
    let mut events = Vec::with_capacity(batch.len());
    for ce in batch {
        let mut ev = base_event(ce);
        if ce.status.is_fault() || ce.status.is_recovery() {
            let key_name = ce.key_name.as_deref().unwrap_or(&ce.name);
            let r = round_ref(&ce.source, key_name, &ce.resource);
            let state = match states.entry(r.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let round = db.issue(&r, ce.date)?.map(|i| i.round()).transpose()?;
                    e.insert(ObjectState::with_round(round))
                }
            };
            let emit = state.report(ce.status, ce.date, ce.id.clone());
            if let Some(issue) = &emit.issue {
                ev.set_event_ref(&r);
                ev.set_issue(issue.start, issue.duration, issue.fault_id.clone());
            }
            if let Some(sub_status) = emit.sub_status {
                ev.set_sub_status(sub_status);
            }
        }
        events.push(ev);
    }
    let fresh = db.commit(Commit {
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

/// The event (docs/events.md) of a custom event, without round fields.
pub fn base_event(ce: &CustomEvent) -> Event {
    let mut ev = Event::new();
    ev.set_id(ce.id.clone());
    ev.set_time(ce.date);
    ev.set_source(Source::Custom);
    ev.set_status(ce.status);
    ev.set_title(ce.title.clone());
    ev.set_message(ce.message.clone());
    ev.set_dimension_tags(&ce.tags);
    ev.set_custom(&CustomFields {
        name: &ce.name,
        group: &ce.group,
        source: &ce.source,
        resource: &ce.resource,
        dialect: ce.dialect,
    });
    for (k, v) in &ce.extra {
        ev.set(k, v.clone());
    }
    ev.set_detail(&ce.detail);
    ev.set_silent(false);
    ev.copy_tags_to_top(&ce.tags);
    ev
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
