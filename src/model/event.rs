//! The event record: one flat JSON object per event, and the one place that owns the `df_*`
//! field names (see docs/event-centre.md for what each field means).
//!
//! An [`Event`] stays an insertion-ordered JSON map so that storage, the API and `tocsin
//! replay` print fields in the order they were set, and so that events stored by older versions
//! (any set of keys) read back unchanged. Writers use the typed setters below instead of
//! naming fields; readers use the typed accessors.

use crate::model::Tags;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::model::ids::{canonical_tags, event_id, event_ref, md5_hex};
pub use crate::model::status::{Status, Sub, ALL_STATUSES};
pub use crate::model::template::{format_value, render_template, validate_template};

/// The field names of the event model, in one place.
pub mod field {
    /// the event's id
    pub const EVENT_ID: &str = "df_event_id";
    /// event time, seconds
    pub const DATE: &str = "date";
    /// event time again, seconds (Guance writes both)
    pub const TIMESTAMP: &str = "timestamp";
    /// the check window's length, seconds
    pub const DATE_RANGE: &str = "df_date_range";
    /// the check window's start, seconds
    pub const CHECK_RANGE_START: &str = "df_check_range_start";
    /// the check window's end, seconds
    pub const CHECK_RANGE_END: &str = "df_check_range_end";
    /// when the round (issue) started
    pub const ISSUE_START_TIME: &str = "df_issue_start_time";
    /// how long the round has lasted at this event
    pub const ISSUE_DURATION: &str = "df_issue_duration";
    /// the id of the round's first fault event
    pub const FAULT_ID: &str = "df_fault_id";
    /// `monitor` or `custom`
    pub const SOURCE: &str = "df_source";
    /// the event's status
    pub const STATUS: &str = "df_status";
    /// on a recovery, the last fault status of the round
    pub const SUB_STATUS: &str = "df_sub_status";
    /// link to the event in the API
    pub const EVENT_URL: &str = "df_event_url";
    /// canonical JSON of the dimension tags
    pub const DIMENSION_TAGS: &str = "df_dimension_tags";
    /// the notification policy's id
    pub const MONITOR_ID: &str = "df_monitor_id";
    /// the notification policy's name
    pub const MONITOR_NAME: &str = "df_monitor_name";
    /// the monitor type
    pub const MONITOR_TYPE: &str = "df_monitor_type";
    /// the checker kind
    pub const MONITOR_CHECKER: &str = "df_monitor_checker";
    /// `check` or `nodata`
    pub const MONITOR_CHECKER_SUB: &str = "df_monitor_checker_sub";
    /// the monitor's id
    pub const MONITOR_CHECKER_ID: &str = "df_monitor_checker_id";
    /// the monitor's name
    pub const MONITOR_CHECKER_NAME: &str = "df_monitor_checker_name";
    /// the checked value, formatted
    pub const MONITOR_CHECKER_VALUE: &str = "df_monitor_checker_value";
    /// the hash of the monitor's query
    pub const MONITOR_CHECKER_REF: &str = "df_monitor_checker_ref";
    /// the round key: one object of one monitor, or one custom-event resource
    pub const MONITOR_CHECKER_EVENT_REF: &str = "df_monitor_checker_event_ref";
    /// a bot's reference key
    pub const MONITOR_REF_KEY: &str = "df_monitor_ref_key";
    /// `crontab` or `async`
    pub const EXEC_MODE: &str = "df_exec_mode";
    /// `"true"` when a mute rule silenced the event
    pub const IS_SILENT: &str = "df_is_silent";
    /// JSON text with details of how the event came about
    pub const EVENT_DETAIL: &str = "df_event_detail";
    /// the title
    pub const TITLE: &str = "df_title";
    /// the message
    pub const MESSAGE: &str = "df_message";
    /// a custom event's name
    pub const EVENT_NAME: &str = "df_event_name";
    /// a custom event's group
    pub const EVENT_GROUP: &str = "df_event_group";
    /// a custom event's sender
    pub const EVENT_SOURCE: &str = "df_event_source";
    /// a custom event's resource
    pub const RESOURCE: &str = "df_resource";
    /// the dialect a custom event arrived in
    pub const EVENT_DIALECT: &str = "df_event_dialect";
    /// who recovered by hand: id
    pub const USER_ID: &str = "df_user_id";
    /// who recovered by hand: name
    pub const USER_NAME: &str = "df_user_name";
    /// who recovered by hand: email
    pub const USER_EMAIL: &str = "df_user_email";
}

/// Where an event came from (`df_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// a monitor's check
    Monitor,
    /// a pushed custom event
    Custom,
}

impl Source {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Monitor => "monitor",
            Source::Custom => "custom",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Source> {
        [Source::Monitor, Source::Custom]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// How a check was started (`df_exec_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// on the schedule
    Crontab,
    /// on demand
    Async,
}

impl ExecMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Crontab => "crontab",
            ExecMode::Async => "async",
        }
    }
}

/// One event of the Guance model as a flat JSON object (absent fields omitted).
///
/// Kept as an ordered JSON map so that every dialect (monitor, custom, manual) shares one
/// representation and storage and delivery never need to know the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event(pub Map<String, Value>);

impl Event {
    /// An empty event.
    pub fn new() -> Event {
        Event(Map::new())
    }

    /// Sets a field by name. Model fields have typed setters; this is for names the model
    /// does not own (a custom event's extra fields).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        // An existing key keeps its position (preserve_order), which replay output relies on.
        self.0.insert(key.to_string(), value.into());
    }

    /// Sets a field when the value is present.
    pub fn set_opt<V: Into<Value>>(&mut self, key: &str, value: Option<V>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// An integer field.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(Value::as_i64)
    }

    // ---- typed setters, in the order a monitor event sets them ----

    /// `df_event_id`.
    pub fn set_id(&mut self, id: impl Into<String>) {
        self.set(field::EVENT_ID, id.into());
    }

    /// `date` and `timestamp`.
    pub fn set_time(&mut self, t: i64) {
        self.set(field::DATE, t);
        self.set(field::TIMESTAMP, t);
    }

    /// `df_date_range`, `df_check_range_start`, `df_check_range_end`.
    pub fn set_check_range(&mut self, range: i64, start: i64, end: i64) {
        self.set(field::DATE_RANGE, range);
        self.set(field::CHECK_RANGE_START, start);
        self.set(field::CHECK_RANGE_END, end);
    }

    /// `df_issue_start_time`, `df_issue_duration`, `df_fault_id`.
    pub fn set_issue(&mut self, start: i64, duration: i64, fault_id: impl Into<String>) {
        self.set(field::ISSUE_START_TIME, start);
        self.set(field::ISSUE_DURATION, duration);
        self.set(field::FAULT_ID, fault_id.into());
    }

    /// `df_source`.
    pub fn set_source(&mut self, s: Source) {
        self.set(field::SOURCE, s.as_str());
    }

    /// `df_status`.
    pub fn set_status(&mut self, s: Status) {
        self.set(field::STATUS, s.as_str());
    }

    /// `df_sub_status`.
    pub fn set_sub_status(&mut self, s: Status) {
        self.set(field::SUB_STATUS, s.as_str());
    }

    /// `df_event_url`: `<base>/#/events/<id>`, the event's page in the web console.
    pub fn set_event_url(&mut self, base: &str, id: &str) {
        let url = format!("{}/#/events/{id}", base.trim_end_matches('/'));
        self.set(field::EVENT_URL, url);
    }

    /// `df_dimension_tags`, as canonical JSON.
    pub fn set_dimension_tags(&mut self, tags: &Tags) {
        self.set(field::DIMENSION_TAGS, canonical_tags(tags));
    }

    /// `df_monitor_id` and `df_monitor_name`: the notification policy.
    pub fn set_policy(&mut self, id: &str, name: &str) {
        self.set(field::MONITOR_ID, id);
        self.set(field::MONITOR_NAME, name);
    }

    /// `df_monitor_type`, `df_monitor_checker`, `df_monitor_checker_sub`,
    /// `df_monitor_checker_id`, `df_monitor_checker_name`.
    pub fn set_checker(&mut self, mtype: &str, checker: &str, sub: Sub, id: &str, name: &str) {
        self.set(field::MONITOR_TYPE, mtype);
        self.set(field::MONITOR_CHECKER, checker);
        self.set(field::MONITOR_CHECKER_SUB, sub.as_str());
        self.set(field::MONITOR_CHECKER_ID, id);
        self.set(field::MONITOR_CHECKER_NAME, name);
    }

    /// `df_monitor_checker_value`, formatted as templates show it.
    pub fn set_value(&mut self, v: f64) {
        self.set(field::MONITOR_CHECKER_VALUE, format_value(v));
    }

    /// Drops `df_monitor_checker_value` (a manual recovery shows no value).
    pub fn remove_value(&mut self) {
        self.0.remove(field::MONITOR_CHECKER_VALUE);
    }

    /// `df_monitor_checker_ref`.
    pub fn set_checker_ref(&mut self, r: &str) {
        self.set(field::MONITOR_CHECKER_REF, r);
    }

    /// `df_monitor_checker_event_ref`: the round key.
    pub fn set_event_ref(&mut self, r: &str) {
        self.set(field::MONITOR_CHECKER_EVENT_REF, r);
    }

    /// `df_monitor_ref_key`.
    pub fn set_ref_key(&mut self, k: &str) {
        self.set(field::MONITOR_REF_KEY, k);
    }

    /// `df_exec_mode`.
    pub fn set_exec_mode(&mut self, mode: ExecMode) {
        self.set(field::EXEC_MODE, mode.as_str());
    }

    /// `df_is_silent` (`"true"` / `"false"`).
    pub fn set_silent(&mut self, silent: bool) {
        self.set(field::IS_SILENT, if silent { "true" } else { "false" });
    }

    /// `df_event_detail`: JSON text.
    pub fn set_detail(&mut self, detail: &Value) {
        self.set(field::EVENT_DETAIL, detail.to_string());
    }

    /// `df_title`.
    pub fn set_title(&mut self, t: impl Into<String>) {
        self.set(field::TITLE, t.into());
    }

    /// `df_message`.
    pub fn set_message(&mut self, m: impl Into<String>) {
        self.set(field::MESSAGE, m.into());
    }

    /// The custom-event fields: `df_event_name`, `df_event_group`, `df_event_source`,
    /// `df_resource` (when not empty) and `df_event_dialect`.
    pub fn set_custom(&mut self, c: &CustomFields<'_>) {
        self.set(field::EVENT_NAME, c.name);
        self.set(field::EVENT_GROUP, c.group);
        self.set(field::EVENT_SOURCE, c.source);
        if !c.resource.is_empty() {
            self.set(field::RESOURCE, c.resource);
        }
        self.set(field::EVENT_DIALECT, c.dialect);
    }

    /// `df_user_id`, `df_user_name`, `df_user_email`: who recovered by hand.
    pub fn set_user(&mut self, id: &str, name: &str, email: &str) {
        self.set(field::USER_ID, id);
        self.set(field::USER_NAME, name);
        self.set(field::USER_EMAIL, email);
    }

    /// Copies each dimension tag to the top level, unless the name is taken by a field.
    pub fn copy_tags_to_top(&mut self, tags: &Tags) {
        for (k, v) in tags {
            if !self.0.contains_key(k) {
                self.set(k, v.clone());
            }
        }
    }

    /// A new event holding the identity fields of `last` (monitor, tags, source, names and
    /// every non-`df_` field), for an event that continues `last`'s round.
    pub fn identity_of(last: &Event) -> Event {
        let mut ev = Event::new();
        for (k, v) in &last.0 {
            if !k.starts_with("df_")
                || k.starts_with("df_monitor")
                || k == field::DIMENSION_TAGS
                || k == field::SOURCE
                || k.starts_with("df_event_")
            {
                ev.0.insert(k.clone(), v.clone());
            }
        }
        ev
    }

    // ---- typed accessors ----

    /// `df_event_id`.
    pub fn id(&self) -> &str {
        self.str(field::EVENT_ID).unwrap_or("")
    }

    /// `date`.
    pub fn date(&self) -> i64 {
        self.int(field::DATE).unwrap_or(0)
    }

    /// `df_status`.
    pub fn status(&self) -> Option<Status> {
        self.str(field::STATUS).and_then(Status::parse)
    }

    /// `df_status` as stored (also when it is not a known status).
    pub fn status_str(&self) -> Option<&str> {
        self.str(field::STATUS)
    }

    /// `df_sub_status` as stored.
    pub fn sub_status(&self) -> Option<&str> {
        self.str(field::SUB_STATUS)
    }

    /// `df_source` as stored.
    pub fn source(&self) -> Option<&str> {
        self.str(field::SOURCE)
    }

    /// `df_monitor_checker_event_ref` (or the custom-event round key).
    pub fn event_ref(&self) -> &str {
        self.str(field::MONITOR_CHECKER_EVENT_REF).unwrap_or("")
    }

    /// `df_dimension_tags` (canonical JSON text).
    pub fn dimension_tags(&self) -> Option<&str> {
        self.str(field::DIMENSION_TAGS)
    }

    /// `df_issue_start_time`.
    pub fn issue_start(&self) -> Option<i64> {
        self.int(field::ISSUE_START_TIME)
    }

    /// `df_issue_duration`.
    pub fn issue_duration(&self) -> Option<i64> {
        self.int(field::ISSUE_DURATION)
    }

    /// `df_fault_id`.
    pub fn fault_id(&self) -> Option<&str> {
        self.str(field::FAULT_ID)
    }

    /// `df_monitor_id`: the notification policy.
    pub fn policy_id(&self) -> Option<&str> {
        self.str(field::MONITOR_ID)
    }

    /// `df_monitor_checker_id`.
    pub fn checker_id(&self) -> Option<&str> {
        self.str(field::MONITOR_CHECKER_ID)
    }

    /// `df_monitor_checker_name`.
    pub fn checker_name(&self) -> Option<&str> {
        self.str(field::MONITOR_CHECKER_NAME)
    }

    /// `df_event_name` (custom events).
    pub fn event_name(&self) -> Option<&str> {
        self.str(field::EVENT_NAME)
    }

    /// `df_title`.
    pub fn title(&self) -> Option<&str> {
        self.str(field::TITLE)
    }

    /// `df_message`.
    pub fn message(&self) -> Option<&str> {
        self.str(field::MESSAGE)
    }

    /// `df_event_url`.
    pub fn event_url(&self) -> Option<&str> {
        self.str(field::EVENT_URL)
    }

    /// `df_is_silent` as stored (`"true"` when muted).
    pub fn silent(&self) -> Option<&str> {
        self.str(field::IS_SILENT)
    }

    /// The JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

/// The fields a custom event adds to the model (see [`Event::set_custom`]).
#[derive(Debug, Clone, Copy)]
pub struct CustomFields<'a> {
    /// `df_event_name`
    pub name: &'a str,
    /// `df_event_group`
    pub group: &'a str,
    /// `df_event_source`
    pub source: &'a str,
    /// `df_resource` (omitted when empty)
    pub resource: &'a str,
    /// `df_event_dialect`
    pub dialect: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_keep_insertion_order_and_positions() {
        let mut ev = Event::new();
        ev.set_id("event-1");
        ev.set_time(60);
        ev.set_status(Status::Critical);
        ev.set_title("a");
        ev.set_status(Status::Ok);
        let keys: Vec<&str> = ev.0.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["df_event_id", "date", "timestamp", "df_status", "df_title"]
        );
        assert_eq!(ev.status(), Some(Status::Ok));
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"df_event_id":"event-1","date":60,"timestamp":60,"df_status":"ok","df_title":"a"}"#
        );
    }

    #[test]
    fn reads_what_older_versions_stored() {
        let text = r#"{"df_event_id":"e","date":5,"df_status":"nodata","old_field":1,"host":"a"}"#;
        let ev: Event = serde_json::from_str(text).unwrap();
        assert_eq!(ev.id(), "e");
        assert_eq!(ev.status(), Some(Status::Nodata));
        assert_eq!(ev.title(), None);
        assert_eq!(serde_json::to_string(&ev).unwrap(), text);
    }

    #[test]
    fn identity_keeps_round_fields_only() {
        let mut last = Event::new();
        last.set_id("e1");
        last.set_status(Status::Critical);
        last.set_source(Source::Monitor);
        last.set_checker("metric", "threshold", Sub::Check, "m1", "CPU");
        last.set_value(95.0);
        last.set("host", "web01");
        let ev = Event::identity_of(&last);
        // df_event_* names are identity fields, so the id comes along until the caller
        // sets the new one (position kept, as older versions did).
        assert_eq!(ev.id(), "e1");
        assert_eq!(ev.status(), None);
        assert_eq!(ev.source(), Some("monitor"));
        assert_eq!(ev.checker_id(), Some("m1"));
        assert_eq!(ev.str("host"), Some("web01"));
        // identity_of copies df_monitor_*, including the value; recovery removes it.
        let mut ev = ev;
        ev.remove_value();
        assert_eq!(ev.str(field::MONITOR_CHECKER_VALUE), None);
    }

    #[test]
    fn url_and_silence() {
        let mut ev = Event::new();
        ev.set_event_url("http://x/", "event-1");
        ev.set_silent(false);
        assert_eq!(ev.event_url(), Some("http://x/#/events/event-1"));
        assert_eq!(ev.silent(), Some("false"));
        assert_eq!(Source::parse("custom"), Some(Source::Custom));
        assert_eq!(Source::parse("x"), None);
    }
}
