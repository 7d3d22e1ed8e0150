//! Deterministic ids: md5, canonical dimension tags, event refs and monitor event ids.

use crate::model::status::{Status, Sub};
use crate::model::Tags;
use md5::{Digest, Md5};

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
}
