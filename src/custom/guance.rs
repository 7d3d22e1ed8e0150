//! Guance custom events (`POST /api/v1/events/create`): `date` (ms), `status`, `title`,
//! `message`, `customTags`. One object, or an array of them validated as one batch.
//!
//! Round key: source `guance`, and the `customTags` (canonical JSON) as the resource; when
//! there are no tags, the title is the name instead.

use super::{custom_event_id, CustomEvent, Invalid, Stored};
use crate::model::event::{canonical_tags, Status};
use crate::model::Tags;
use serde_json::{json, Value};

/// Largest batch when an array is posted.
pub const MAX_ITEMS: usize = 1000;

/// Validates a request body (object or array) and turns it into events. `now` is in ms.
pub fn parse(body: &[u8], now: i64) -> Result<(Vec<CustomEvent>, bool), Invalid> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::whole("body", format!("must be a JSON object: {e}")))?;
    let (items, many) = match v {
        Value::Array(a) => (a, true),
        other => (vec![other], false),
    };
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(Invalid::whole(
            "body",
            format!("array length must be 1 to {MAX_ITEMS}"),
        ));
    }
    let evs = items
        .iter()
        .enumerate()
        .map(|(i, it)| item(i, it, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((evs, many))
}

fn item(i: usize, it: &Value, now: i64) -> Result<CustomEvent, Invalid> {
    let Value::Object(o) = it else {
        return Err(Invalid::at(i, "event", "must be a JSON object"));
    };
    let s = |k: &str| -> Result<Option<String>, Invalid> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Invalid::at(i, k, "must be a string")),
        }
    };
    let title = s("title")?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Invalid::at(i, "title", "required, a non-empty string"))?;
    let message = s("message")?.unwrap_or_default();
    let status = match s("status")? {
        None => Status::Info,
        Some(st) => Status::parse(&st).ok_or_else(|| {
            Invalid::at(
                i,
                "status",
                format!("{st:?} is not one of ok, info, warning, error, critical, nodata, nodata_ok, nodata_as_ok, manual_ok"),
            )
        })?,
    };
    let date_ms = match o.get("date") {
        None | Some(Value::Null) => now,
        Some(v) => v.as_i64().filter(|d| *d >= 0).ok_or_else(|| {
            Invalid::at(i, "date", "must be an integer: Unix time in milliseconds")
        })?,
    };
    let mut tags = Tags::new();
    match o.get("customTags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            for (k, v) in t {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => {
                        return Err(Invalid::at(
                            i,
                            format!("customTags.{k}"),
                            "must be a string, number or boolean",
                        ))
                    }
                };
                if k.is_empty() {
                    return Err(Invalid::at(i, "customTags", "tag names must not be empty"));
                }
                tags.insert(k.clone(), text);
            }
        }
        Some(_) => {
            return Err(Invalid::at(
                i,
                "customTags",
                "must be an object of tag: value",
            ))
        }
    }
    let canon = canonical_tags(&tags);
    let id = custom_event_id(
        "guance",
        &[
            &date_ms.to_string(),
            status.as_str(),
            &title,
            &message,
            &canon,
        ],
    );
    // With tags, the tags identify the object (titles differ between fault and recovery).
    let (key_name, resource) = if tags.is_empty() {
        (None, String::new())
    } else {
        (Some(String::new()), canon)
    };
    Ok(CustomEvent {
        dialect: "guance",
        id,
        date: date_ms.div_euclid(1000),
        status,
        title: title.clone(),
        message,
        name: title,
        source: "guance".into(),
        key_name,
        resource,
        group: String::new(),
        tags,
        detail: it.clone(),
        extra: vec![],
    })
}

/// The answer to a stored request: `content` is one `{df_event_id, duplicate}`, or an array
/// of them when an array was posted.
pub fn answer(stored: &[Stored], many: bool) -> Value {
    let list: Vec<Value> = stored
        .iter()
        .map(|s| json!({"df_event_id": s.id, "duplicate": !s.fresh}))
        .collect();
    let content = if many {
        Value::Array(list)
    } else {
        list.into_iter().next().unwrap_or(Value::Null)
    };
    json!({"code": 200, "success": true, "errorCode": "", "message": "", "content": content})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_rules() {
        let (v, many) = parse(br#"{"date": 1700000000123, "status": "critical", "title": "CPU", "message": "high", "customTags": {"host": "web01", "n": 3}}"#, 0).unwrap();
        assert!(!many);
        let e = &v[0];
        assert_eq!((e.date, e.status), (1_700_000_000, Status::Critical));
        assert_eq!(e.tags["n"], "3");
        assert_eq!(e.resource, r#"{"host":"web01","n":"3"}"#);
        let err = |b: &str| parse(b.as_bytes(), 0).unwrap_err().field;
        assert_eq!(err(r#"{"status": "ok"}"#), "title");
        assert_eq!(err(r#"{"title": "t", "status": "bad"}"#), "status");
        assert_eq!(err(r#"{"title": "t", "date": "x"}"#), "date");
        assert_eq!(
            err(r#"{"title": "t", "customTags": {"a": [1]}}"#),
            "customTags.a"
        );
        let (v, _) = parse(br#"{"title": "t"}"#, 5_000).unwrap();
        let stored = [Stored {
            id: v[0].id.clone(),
            fresh: false,
        }];
        assert_eq!(answer(&stored, false)["content"]["duplicate"], true);
        assert!(answer(&stored, true)["content"].is_array());
        assert_eq!(
            (v[0].date, v[0].status, v[0].name.as_str()),
            (5, Status::Info, "t")
        );
    }
}
