//! The event model of SPEC §5: statuses, refs, deterministic ids, templates and the event record.

use crate::model::Tags;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// `df_status` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// recovered by the rules
    Ok,
    /// informational; opens no issue
    Info,
    /// fault, lowest level
    Warning,
    /// fault
    Error,
    /// fault, highest level
    Critical,
    /// no data for an object that had data
    Nodata,
    /// data returned after `nodata`
    NodataOk,
    /// the gap closed the round (`[nodata] action = "ok"`)
    NodataAsOk,
    /// recovered by hand
    ManualOk,
}

/// Every status, in documentation order.
pub const ALL_STATUSES: &[Status] = &[
    Status::Ok,
    Status::Info,
    Status::Warning,
    Status::Error,
    Status::Critical,
    Status::Nodata,
    Status::NodataOk,
    Status::NodataAsOk,
    Status::ManualOk,
];

impl Status {
    /// The wire name (`"nodata_ok"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warning => "warning",
            Status::Error => "error",
            Status::Critical => "critical",
            Status::Nodata => "nodata",
            Status::NodataOk => "nodata_ok",
            Status::NodataAsOk => "nodata_as_ok",
            Status::ManualOk => "manual_ok",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        ALL_STATUSES.iter().copied().find(|st| st.as_str() == s)
    }

    /// Fault statuses open or continue a round: critical, error, warning, nodata.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Status::Critical | Status::Error | Status::Warning | Status::Nodata
        )
    }

    /// Recovery-class statuses close a round: ok, nodata_ok, nodata_as_ok, manual_ok.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            Status::Ok | Status::NodataOk | Status::NodataAsOk | Status::ManualOk
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `df_monitor_checker_sub`: the stage that produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sub {
    /// rule evaluation
    Check,
    /// nodata handling
    Nodata,
}

impl Sub {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::Check => "check",
            Sub::Nodata => "nodata",
        }
    }
}

/// Lowercase hex MD5 of `s`.
pub fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// The canonical JSON of a tag set: keys in byte order, compact, string values.
pub fn canonical_tags(tags: &Tags) -> String {
    // BTreeMap<String, _> iterates in byte order of the keys, which is what we need.
    serde_json::to_string(tags).expect("string map serialises")
}

/// `df_monitor_checker_event_ref` = md5(checker id + "\n" + canonical dimension tags).
pub fn event_ref(checker_id: &str, dimension_tags_json: &str) -> String {
    md5_hex(&format!("{checker_id}\n{dimension_tags_json}"))
}

/// The deterministic id of a monitor event: the same (ref, date, status, sub) always gives the
/// same id, so a check re-run after a crash cannot store an event twice.
pub fn event_id(event_ref: &str, date: i64, status: Status, sub: Sub) -> String {
    format!(
        "event-{}",
        md5_hex(&format!(
            "{event_ref}|{date}|{}|{}",
            status.as_str(),
            sub.as_str()
        ))
    )
}

/// Formats a value as `df_monitor_checker_value` and templates show it: `95`, `95.5`.
pub fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() {
        // Trim float noise such as 0.30000000000000004 to a readable width.
        let s = format!("{:.6}", v);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v}")
    }
}

/// Renders `{{ name }}` placeholders from `vars`; unknown names render as empty strings.
pub fn render_template(template: &str, vars: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = after[..close].trim();
                if let Some(v) = vars.get(name) {
                    match v {
                        Value::String(s) => out.push_str(s),
                        Value::Null => {}
                        other => out.push_str(&other.to_string()),
                    }
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks that a template's placeholders are well formed (`{{` closed by `}}`).
pub fn validate_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                if after[..close].trim().is_empty() {
                    return Err(
                        "empty placeholder {{ }}: expected a tag name, Result or a df_ field"
                            .into(),
                    );
                }
                rest = &after[close + 2..];
            }
            None => return Err("unclosed placeholder: \"{{\" without \"}}\"".into()),
        }
    }
    Ok(())
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

    /// Sets a field.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
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

    /// `df_event_id`.
    pub fn id(&self) -> &str {
        self.str("df_event_id").unwrap_or("")
    }

    /// `date`.
    pub fn date(&self) -> i64 {
        self.int("date").unwrap_or(0)
    }

    /// `df_status`.
    pub fn status(&self) -> Option<Status> {
        self.str("df_status").and_then(Status::parse)
    }

    /// `df_monitor_checker_event_ref` (or the custom-event round key).
    pub fn event_ref(&self) -> &str {
        self.str("df_monitor_checker_event_ref").unwrap_or("")
    }

    /// Copies each dimension tag to the top level, unless the name is taken by a field.
    pub fn copy_tags_to_top(&mut self, tags: &Tags) {
        for (k, v) in tags {
            if !self.0.contains_key(k) {
                self.set(k, v.clone());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_tags_sorted_compact() {
        let mut t = Tags::new();
        t.insert("z".into(), "1".into());
        t.insert("B".into(), "x\"y".into());
        t.insert("a".into(), "2".into());
        assert_eq!(canonical_tags(&t), r#"{"B":"x\"y","a":"2","z":"1"}"#);
        assert_eq!(canonical_tags(&Tags::new()), "{}");
    }

    #[test]
    fn event_ref_is_md5_of_id_newline_tags() {
        // md5("host-cpu\n{\"host\":\"web01\"}") computed independently with coreutils md5sum
        assert_eq!(
            event_ref("host-cpu", r#"{"host":"web01"}"#),
            "5d32565fe65949289774d62cc3c4f611"
        );
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("a\nb"), "8cdeb44417f3c26826595d5820cf5700");
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = event_id("r", 60, Status::Critical, Sub::Check);
        assert_eq!(a, event_id("r", 60, Status::Critical, Sub::Check));
        assert_ne!(a, event_id("r", 60, Status::Error, Sub::Check));
        assert_ne!(a, event_id("r", 60, Status::Critical, Sub::Nodata));
        assert_ne!(a, event_id("r", 120, Status::Critical, Sub::Check));
        assert!(a.starts_with("event-") && a.len() == 38);
    }

    #[test]
    fn templates() {
        let mut m = Map::new();
        m.insert("host".into(), "web01".into());
        m.insert("Result".into(), "95".into());
        m.insert("df_status".into(), "critical".into());
        assert_eq!(
            render_template(
                "{{ host }}: CPU {{Result}}% [{{ df_status }}] {{ nope }}!",
                &m
            ),
            "web01: CPU 95% [critical] !"
        );
        assert_eq!(render_template("a {{ b", &m), "a {{ b");
        assert!(validate_template("{{ host }}").is_ok());
        assert!(validate_template("{{ host").is_err());
        assert!(validate_template("{{ }}").is_err());
    }

    #[test]
    fn values_and_statuses() {
        assert_eq!(format_value(95.0), "95");
        assert_eq!(format_value(95.5), "95.5");
        assert_eq!(format_value(0.1 + 0.2), "0.3");
        for s in ALL_STATUSES {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
        assert!(Status::Nodata.is_fault() && !Status::Info.is_fault());
        assert!(Status::ManualOk.is_recovery() && !Status::Critical.is_recovery());
    }
}
