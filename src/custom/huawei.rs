//! Huawei Cloud Eye `POST /V1.0/{project_id}/events` (seed 002): every rule of the reporting
//! API, checked for every item before anything is stored.

use super::{custom_event_id, CustomEvent, Invalid};
use crate::model::event::Status;
use crate::model::Tags;
use serde_json::{json, Map, Value};

/// Largest batch.
pub const MAX_ITEMS: usize = 100;
/// Earliest accepted `time`: now − 1 h + 10 s (milliseconds before now).
pub const PAST_MS: i64 = 3_600_000 - 10_000;
/// Latest accepted `time`: now + 10 min − 10 s (milliseconds after now).
pub const FUTURE_MS: i64 = 600_000 - 10_000;

/// The Cloud Eye error code of a request that breaks a validation rule (HTTP 400).
pub const INVALID_CODE: &str = "CES.0014";

/// An error answer in Cloud Eye's shape (`error_code`, `error_msg`, plus tocsin's `error` and,
/// for a validation error, `index`, `field` and `rule`).
pub fn error_answer(code: &str, msg: &str, invalid: Option<&Invalid>) -> Value {
    let mut body = json!({"error_code": code, "error_msg": msg, "error": msg});
    if let Some(i) = invalid {
        body["index"] = json!(i.index);
        body["field"] = json!(i.field);
        body["rule"] = json!(i.rule);
    }
    body
}

/// The answer to a stored batch (HTTP 201): `[{event_id, event_name}]` in request order.
pub fn created_answer(batch: &[CustomEvent]) -> Value {
    batch
        .iter()
        .map(|ce| json!({"event_id": ce.id, "event_name": ce.name}))
        .collect()
}

fn is_letter_start(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

fn all_chars(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

fn word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Checks `service.item`: each part a letter first, 3 to 32 letters, digits or underscores.
pub fn valid_event_source(s: &str) -> bool {
    let Some((svc, item)) = s.split_once('.') else {
        return false;
    };
    [svc, item].iter().all(|p| {
        let n = p.chars().count();
        (3..=32).contains(&n) && is_letter_start(p) && all_chars(p, word)
    })
}

/// Checks an event name: a letter first, 1 to 64 letters, digits or underscores.
pub fn valid_event_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=64).contains(&n) && is_letter_start(s) && all_chars(s, word)
}

struct Item<'a> {
    idx: usize,
    obj: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Item<'a> {
    fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn err(&self, key: &str, rule: impl Into<String>) -> Invalid {
        Invalid::at(self.idx, self.field(key), rule)
    }

    /// A string field; JSON null counts as absent.
    fn str(&self, key: &str) -> Result<Option<&'a str>, Invalid> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    /// A string field that must match `rule` when present.
    fn checked(
        &self,
        key: &str,
        ok: impl Fn(&str) -> bool,
        rule: &str,
    ) -> Result<Option<&'a str>, Invalid> {
        match self.str(key)? {
            Some(s) if !ok(s) => Err(self.err(key, rule)),
            other => Ok(other),
        }
    }
}

/// Validates a whole request body and turns it into events. `now` is in milliseconds.
pub fn parse_batch(project_id: &str, body: &[u8], now: i64) -> Result<Vec<CustomEvent>, Invalid> {
    let n = project_id.chars().count();
    if !(1..=64).contains(&n) {
        return Err(Invalid::whole("project_id", "must be 1 to 64 characters"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Invalid::whole(
            "body",
            format!("must be a JSON array of EventItem objects: {e}"),
        )
    })?;
    let Value::Array(items) = v else {
        return Err(Invalid::whole(
            "body",
            "must be a JSON array of EventItem objects",
        ));
    };
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(Invalid::whole(
            "body",
            format!("array length must be 1 to {MAX_ITEMS}, got {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| parse_item(project_id, i, it, now))
        .collect()
}

fn parse_item(project_id: &str, idx: usize, it: &Value, now: i64) -> Result<CustomEvent, Invalid> {
    let Value::Object(obj) = it else {
        return Err(Invalid::at(
            idx,
            "item",
            "must be a JSON object (EventItem)",
        ));
    };
    let top = Item {
        idx,
        obj,
        prefix: "",
    };
    let name = top
        .checked(
            "event_name",
            valid_event_name,
            "must start with a letter and have 1 to 64 characters, only letters, digits and underscores",
        )?
        .ok_or_else(|| top.err("event_name", "required"))?;
    let source = top
        .checked(
            "event_source",
            valid_event_source,
            "must be service.item, each part starting with a letter and 3 to 32 characters of letters, digits and underscores",
        )?
        .ok_or_else(|| top.err("event_source", "required"))?;
    let time = match obj.get("time") {
        None | Some(Value::Null) => return Err(top.err("time", "required")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| top.err("time", "must be an integer: Unix time in milliseconds"))?,
    };
    if time < now - PAST_MS || time > now + FUTURE_MS {
        return Err(top.err(
            "time",
            format!(
                "must be within [now - 1h + 10s, now + 10min - 10s] (Unix ms {}..={}), got {time}",
                now - PAST_MS,
                now + FUTURE_MS
            ),
        ));
    }
    let detail = match obj.get("detail") {
        None | Some(Value::Null) => return Err(top.err("detail", "required")),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(top.err("detail", "must be a JSON object")),
    };
    let d = Item {
        idx,
        obj: detail,
        prefix: "detail.",
    };
    let content = d.checked(
        "content",
        |s| s.chars().count() <= 4096,
        "must be at most 4096 characters",
    )?;
    let group_id = d.checked(
        "group_id",
        |s| s.chars().count() == 24,
        "must be a resource group ID of 24 characters",
    )?;
    let resource_id = d.checked(
        "resource_id",
        |s| {
            s.chars().count() <= 128
                && all_chars(s, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')
                })
        },
        "must be at most 128 characters, only letters, digits, underscores, hyphens and colons",
    )?;
    let resource_name = d.checked(
        "resource_name",
        |s| {
            s.chars().count() <= 128
                && all_chars(s, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
                })
        },
        "must be at most 128 characters, only letters, digits, underscores, hyphens and periods",
    )?;
    let state = d.checked(
        "event_state",
        |s| matches!(s, "normal" | "warning" | "incident"),
        "must be one of normal, warning, incident",
    )?;
    let level = d.checked(
        "event_level",
        |s| matches!(s, "Critical" | "Major" | "Minor" | "Info"),
        "must be one of Critical, Major, Minor, Info",
    )?;
    let user = d.checked(
        "event_user",
        |s| {
            s.chars().count() <= 64
                && all_chars(s, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ')
                })
        },
        "must be at most 64 characters, only letters, digits, underscores, hyphens and spaces",
    )?;
    let etype = d.checked(
        "event_type",
        |s| s == "EVENT.CUSTOM",
        "only EVENT.CUSTOM can be reported (EVENT.SYS is for system events)",
    )?;
    let sub = d.checked(
        "sub_event_type",
        |s| matches!(s, "SUB_EVENT.OPS" | "SUB_EVENT.PLAN" | "SUB_EVENT.CUSTOM"),
        "must be one of SUB_EVENT.OPS, SUB_EVENT.PLAN, SUB_EVENT.CUSTOM",
    )?;
    if etype.is_some() && sub.is_some_and(|s| s != "SUB_EVENT.CUSTOM") {
        return Err(d.err(
            "sub_event_type",
            "must be SUB_EVENT.CUSTOM when event_type is EVENT.CUSTOM",
        ));
    }
    let mut tags = Tags::new();
    match detail.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(dims)) => {
            if dims.len() > 4 {
                return Err(d.err("dimensions", "at most 4 dimensions"));
            }
            for (j, dim) in dims.iter().enumerate() {
                let Value::Object(o) = dim else {
                    return Err(d.err(
                        &format!("dimensions[{j}]"),
                        "must be an object {name, value}",
                    ));
                };
                let get = |k: &str, max: usize| -> Result<String, Invalid> {
                    let f = format!("dimensions[{j}].{k}");
                    match o.get(k) {
                        Some(Value::String(s)) if (1..=max).contains(&s.chars().count()) => {
                            Ok(s.clone())
                        }
                        Some(Value::String(_)) => {
                            Err(d.err(&f, format!("must be 1 to {max} characters")))
                        }
                        None | Some(Value::Null) => Err(d.err(&f, "required")),
                        Some(_) => Err(d.err(&f, "must be a string")),
                    }
                };
                let (k, v) = (get("name", 32)?, get("value", 256)?);
                tags.insert(k, v);
            }
        }
        Some(_) => return Err(d.err("dimensions", "must be an array of {name, value}")),
    }
    if let Some(r) = resource_id.filter(|s| !s.is_empty()) {
        tags.entry("resource_id".into()).or_insert_with(|| r.into());
    }
    if let Some(r) = resource_name.filter(|s| !s.is_empty()) {
        tags.entry("resource_name".into())
            .or_insert_with(|| r.into());
    }

    let status = match (state, level) {
        (Some("normal"), _) => Status::Ok,
        (_, Some("Critical")) => Status::Critical,
        (_, Some("Major")) => Status::Error,
        (_, Some("Minor")) => Status::Warning,
        (_, Some(_)) => Status::Info,
        (Some("incident"), None) => Status::Critical,
        (Some("warning"), None) => Status::Warning,
        _ => Status::Info,
    };
    let o = |s: Option<&str>| s.unwrap_or("").to_string();
    let id = custom_event_id(
        "huawei",
        &[
            &time.to_string(),
            project_id,
            source,
            name,
            &o(etype),
            &o(sub),
            &o(state),
            &o(level),
            &o(user),
            &o(resource_id),
            &o(resource_name),
        ],
    );
    let resource = resource_id
        .filter(|s| !s.is_empty())
        .or(resource_name)
        .unwrap_or("")
        .to_string();
    let message = match content.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => format!("{name} from {source}"),
    };
    let mut detail_out = it.clone();
    detail_out["project_id"] = json!(project_id);
    let mut extra = vec![("df_project_id".to_string(), json!(project_id))];
    for (k, v) in [
        ("df_event_level", level),
        ("df_event_state", state),
        ("df_event_type", etype),
        ("df_sub_event_type", sub),
        ("df_event_user", user),
        ("df_resource_id", resource_id),
        ("df_resource_name", resource_name),
    ] {
        if let Some(v) = v {
            extra.push((k.to_string(), json!(v)));
        }
    }
    Ok(CustomEvent {
        dialect: "huawei",
        id,
        date: time.div_euclid(1000),
        status,
        title: name.to_string(),
        message,
        name: name.to_string(),
        source: source.to_string(),
        key_name: None,
        resource,
        group: o(group_id),
        tags,
        detail: detail_out,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_742_264_993_000;

    fn one(item: Value) -> Result<Vec<CustomEvent>, Invalid> {
        parse_batch("p1", json!([item]).to_string().as_bytes(), NOW)
    }

    #[test]
    fn seed_example_maps() {
        let v = one(json!({ "event_name": "systemInvaded", "event_source": "financial.System", "time": NOW, "detail": { "content": "The financial system was invaded", "group_id": "rg15221211517051YWWkEnVd", "resource_id": "1234567890sjgggad", "resource_name": "ecs001", "event_state": "normal", "event_level": "Major", "event_user": "xiaokong", "event_type": "EVENT.CUSTOM", "sub_event_type": "SUB_EVENT.CUSTOM", "dimensions": [ { "name": "instance_id", "value": "instance_xxx" } ] } })).unwrap();
        let e = &v[0];
        assert_eq!(e.status, Status::Ok);
        assert_eq!(e.date, NOW / 1000);
        assert_eq!(e.group, "rg15221211517051YWWkEnVd");
        assert_eq!(e.resource, "1234567890sjgggad");
        assert_eq!(e.tags["instance_id"], "instance_xxx");
        assert!(e.id.starts_with("event-") && e.id.len() == 38);
        assert_eq!(created_answer(&v)[0]["event_name"], "systemInvaded");
        let bad = Invalid::at(0, "time", "required");
        assert_eq!(error_answer(INVALID_CODE, "x", Some(&bad))["field"], "time");
    }

    #[test]
    fn rules() {
        let base =
            || json!({"event_name": "a", "event_source": "abc.def", "time": NOW, "detail": {}});
        let bad = |f: &dyn Fn(&mut Value), field: &str| {
            let mut v = base();
            f(&mut v);
            let e = one(v).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert_eq!(e.index, Some(0));
        };
        assert!(one(base()).is_ok());
        bad(&|v| v["event_name"] = json!("1a"), "event_name");
        bad(&|v| v["event_name"] = json!("a".repeat(65)), "event_name");
        bad(&|v| v["event_source"] = json!("ab.def"), "event_source");
        bad(&|v| v["event_source"] = json!("abc"), "event_source");
        bad(&|v| v["time"] = json!(NOW - 3_600_000 + 9_000), "time");
        bad(&|v| v["time"] = json!(NOW + 600_000 - 9_000), "time");
        bad(&|v| v["detail"] = Value::Null, "detail");
        bad(
            &|v| v["detail"]["content"] = json!("x".repeat(4097)),
            "detail.content",
        );
        bad(
            &|v| v["detail"]["group_id"] = json!("short"),
            "detail.group_id",
        );
        bad(
            &|v| v["detail"]["resource_id"] = json!("a b"),
            "detail.resource_id",
        );
        bad(
            &|v| v["detail"]["resource_name"] = json!("a:b"),
            "detail.resource_name",
        );
        bad(
            &|v| v["detail"]["event_state"] = json!("bad"),
            "detail.event_state",
        );
        bad(
            &|v| v["detail"]["event_level"] = json!("major"),
            "detail.event_level",
        );
        bad(
            &|v| v["detail"]["event_user"] = json!("a.b"),
            "detail.event_user",
        );
        bad(
            &|v| v["detail"]["event_type"] = json!("EVENT.SYS"),
            "detail.event_type",
        );
        bad(
            &|v| v["detail"]["sub_event_type"] = json!("X"),
            "detail.sub_event_type",
        );
        bad(
            &|v| v["detail"]["dimensions"] = json!([{"name": "", "value": "v"}]),
            "detail.dimensions[0].name",
        );
        bad(
            &|v| v["detail"]["dimensions"] = json!([{"name": "n", "value": "v".repeat(257)}]),
            "detail.dimensions[0].value",
        );
        bad(
            &|v| v["detail"]["dimensions"] = json!([{"name":"a","value":"1"},{"name":"b","value":"1"},{"name":"c","value":"1"},{"name":"d","value":"1"},{"name":"e","value":"1"}]),
            "detail.dimensions",
        );
        assert!(valid_event_source("a_1.b_2c"));
        assert!(!valid_event_source(&format!("abc.{}", "d".repeat(33))));
    }

    #[test]
    fn statuses() {
        let st = |d: Value| {
            one(json!({"event_name": "a", "event_source": "abc.def", "time": NOW, "detail": d}))
                .unwrap()[0]
                .status
        };
        assert_eq!(st(json!({"event_level": "Critical"})), Status::Critical);
        assert_eq!(st(json!({"event_level": "Major"})), Status::Error);
        assert_eq!(st(json!({"event_level": "Minor"})), Status::Warning);
        assert_eq!(st(json!({"event_level": "Info"})), Status::Info);
        assert_eq!(st(json!({"event_state": "incident"})), Status::Critical);
        assert_eq!(
            st(json!({"event_state": "normal", "event_level": "Critical"})),
            Status::Ok
        );
        assert_eq!(st(json!({})), Status::Info);
    }
}
