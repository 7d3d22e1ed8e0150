//! CloudEvents 1.0 over HTTP (`POST /v1/cloudevents`): binary mode (`ce-*` headers, the body
//! is `data`), structured mode (`application/cloudevents+json`) and batch mode
//! (`application/cloudevents-batch+json`). Tencent EventBridge extensions (`region`, `status`,
//! `tags`, `resource`, `subject`) become tags; `source` + `id` identify an event.

use super::{custom_event_id, truncate_chars, value_text, CustomEvent, Invalid, Stored};
use crate::model::event::Status;
use crate::model::Tags;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Largest accepted event (serialised), in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CeError {
    /// a rule was broken (400)
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// an event over [`MAX_EVENT_BYTES`] (413)
    #[error("event {index} is {size} bytes: events over 64 KiB are refused")]
    TooLarge {
        /// position in the batch (0 for a single event)
        index: usize,
        /// its size
        size: usize,
    },
}

fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json_type(ct: &str) -> bool {
    let m = media_type(ct);
    m == "application/json" || m == "text/json" || m.ends_with("+json")
}

/// Reads the events of a request in whichever mode it uses, as structured JSON objects.
/// `content_type` is the Content-Type header (empty when absent); `headers` are all headers as
/// (lower-case name, value) in the order received (binary mode reads the `ce-*` ones).
pub fn read_events(
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<Map<String, Value>>, CeError> {
    let ct = content_type;
    let mt = media_type(ct);
    let binary = headers.iter().any(|(k, _)| k.starts_with("ce-"));
    if mt == "application/cloudevents-batch+json" {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Invalid::whole("body", format!("batch must be a JSON array: {e}")))?;
        return batch(v);
    }
    if mt == "application/cloudevents+json" || (!binary && is_json_type(ct)) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Invalid::whole("body", format!("structured event must be JSON: {e}")))?;
        return match v {
            Value::Object(o) => {
                if body.len() > MAX_EVENT_BYTES {
                    return Err(CeError::TooLarge {
                        index: 0,
                        size: body.len(),
                    });
                }
                Ok(vec![o])
            }
            Value::Array(_) if mt != "application/cloudevents+json" => batch(v),
            _ => Err(Invalid::whole("body", "structured event must be a JSON object").into()),
        };
    }
    if !binary {
        return Err(Invalid::whole(
            "body",
            "no CloudEvent: expected ce-* headers (binary mode) or Content-Type application/cloudevents+json or application/cloudevents-batch+json",
        )
        .into());
    }
    // binary mode
    let mut o = Map::new();
    let mut size = body.len();
    for (k, raw) in headers {
        let Some(name) = k.strip_prefix("ce-") else {
            continue;
        };
        size += k.len() + raw.len();
        o.insert(
            name.to_string(),
            Value::String(super::sign::percent_decode(raw)),
        );
    }
    if size > MAX_EVENT_BYTES {
        return Err(CeError::TooLarge { index: 0, size });
    }
    if !ct.is_empty() {
        o.insert("datacontenttype".into(), json!(ct));
    }
    if !body.is_empty() {
        let as_json = if ct.is_empty() || is_json_type(ct) {
            serde_json::from_slice::<Value>(body).ok()
        } else {
            None
        };
        match (as_json, std::str::from_utf8(body)) {
            (Some(v), _) => {
                o.insert("data".into(), v);
            }
            (None, Ok(s)) => {
                o.insert("data".into(), json!(s));
            }
            (None, Err(_)) => {
                o.insert(
                    "data_base64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(body)),
                );
            }
        }
    }
    Ok(vec![o])
}

fn batch(v: Value) -> Result<Vec<Map<String, Value>>, CeError> {
    let Value::Array(items) = v else {
        return Err(Invalid::whole("body", "batch must be a JSON array of events").into());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, it) in items.into_iter().enumerate() {
        let Value::Object(o) = it else {
            return Err(Invalid::at(i, "event", "must be a JSON object").into());
        };
        let size = serde_json::to_string(&o).map(|s| s.len()).unwrap_or(0);
        if size > MAX_EVENT_BYTES {
            return Err(CeError::TooLarge { index: i, size });
        }
        out.push(o);
    }
    Ok(out)
}

/// Maps a Tencent `status` extension (or a df status name) to a status: `"1"`, `abnormal`,
/// `alarm`, `firing` → critical; `"0"`, `normal`, `resolved`, `recovered` → ok; df status
/// names as themselves; anything else → info.
pub fn map_status(s: Option<&str>) -> Status {
    let Some(s) = s else { return Status::Info };
    let l = s.trim().to_ascii_lowercase();
    match l.as_str() {
        "1" | "abnormal" | "alarm" | "firing" => Status::Critical,
        "0" | "normal" | "resolved" | "recovered" => Status::Ok,
        other => Status::parse(other).unwrap_or(Status::Info),
    }
}

fn time_of(i: usize, v: Option<&Value>, now: i64) -> Result<i64, Invalid> {
    match v {
        None | Some(Value::Null) => Ok(now.div_euclid(1000)),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp())
            .map_err(|_| Invalid::at(i, "time", format!("{s:?} is not an RFC 3339 timestamp"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|ms| ms.div_euclid(1000))
            .ok_or_else(|| Invalid::at(i, "time", "must be RFC 3339 or Unix milliseconds")),
        Some(_) => Err(Invalid::at(
            i,
            "time",
            "must be RFC 3339 or Unix milliseconds",
        )),
    }
}

/// Validates one structured event and normalises it. `now` is in milliseconds.
pub fn to_event(i: usize, o: &Map<String, Value>, now: i64) -> Result<CustomEvent, Invalid> {
    let req = |k: &str| -> Result<String, Invalid> {
        match o.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(Invalid::at(i, k, "must not be empty")),
            None | Some(Value::Null) => Err(Invalid::at(i, k, "required")),
            Some(_) => Err(Invalid::at(i, k, "must be a string")),
        }
    };
    let id = req("id")?;
    let source = req("source")?;
    let spec = req("specversion")?;
    if spec != "1.0" {
        return Err(Invalid::at(
            i,
            "specversion",
            format!("must be \"1.0\", got {spec:?}"),
        ));
    }
    let ctype = req("type")?;
    for k in ["datacontenttype", "dataschema", "subject"] {
        if let Some(v) = o.get(k) {
            if !v.is_string() && !v.is_null() {
                return Err(Invalid::at(i, k, "must be a string"));
            }
        }
    }
    if o.contains_key("data") && o.contains_key("data_base64") {
        return Err(Invalid::at(
            i,
            "data_base64",
            "give data or data_base64, not both",
        ));
    }
    if let Some(b) = o.get("data_base64") {
        let ok = b
            .as_str()
            .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
        if !ok {
            return Err(Invalid::at(i, "data_base64", "must be a base64 string"));
        }
    }
    let date = time_of(i, o.get("time"), now)?;
    let mut tags = Tags::new();
    const CORE: &[&str] = &[
        "id",
        "source",
        "specversion",
        "type",
        "datacontenttype",
        "dataschema",
        "time",
        "data",
        "data_base64",
        "tags",
    ];
    for (k, v) in o {
        if CORE.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        let text = match v {
            Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(","),
            other => value_text(other),
        };
        tags.insert(k.clone(), text);
    }
    match o.get("tags") {
        Some(Value::Object(t)) => {
            for (k, v) in t {
                tags.entry(k.clone()).or_insert_with(|| value_text(v));
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => {
            tags.insert("tags".into(), value_text(other));
        }
    }
    let subject = o.get("subject").and_then(Value::as_str).unwrap_or("");
    let status = map_status(tags.get("status").map(String::as_str));
    let data_text = match (o.get("data"), o.get("data_base64")) {
        (Some(d), _) => value_text(d),
        (None, Some(b)) => format!("(binary data, base64: {} chars)", value_text(b).len()),
        _ => String::new(),
    };
    let message = if data_text.is_empty() {
        format!("{ctype} from {source}")
    } else {
        truncate_chars(&data_text, 4096)
    };
    let title = if subject.is_empty() {
        ctype.clone()
    } else {
        format!("{ctype}: {subject}")
    };
    Ok(CustomEvent {
        dialect: "cloudevents",
        id: custom_event_id("cloudevents", &[&source, &id]),
        date,
        status,
        title,
        message,
        name: ctype.clone(),
        source: source.clone(),
        key_name: None,
        resource: subject.to_string(),
        group: String::new(),
        tags,
        detail: Value::Object(o.clone()),
        extra: vec![
            ("df_cloudevent_id".into(), json!(id)),
            ("df_cloudevent_type".into(), json!(ctype)),
        ],
    })
}

/// Reads and validates every event of a request (see [`read_events`]). `now` is in ms.
pub fn parse(
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
) -> Result<Vec<CustomEvent>, CeError> {
    read_events(content_type, headers, body)?
        .iter()
        .enumerate()
        .map(|(i, o)| to_event(i, o, now).map_err(CeError::from))
        .collect()
}

/// The answer to a stored batch: how many were accepted and stored, and each event's id.
pub fn answer(batch: &[CustomEvent], stored: &[Stored]) -> Value {
    let events: Vec<Value> = batch
        .iter()
        .zip(stored)
        .map(|(ce, s)| {
            json!({"id": ce.detail["id"], "source": ce.source, "event_id": s.id, "duplicate": !s.fresh})
        })
        .collect();
    let fresh = stored.iter().filter(|s| s.fresh).count();
    json!({"accepted": batch.len(), "stored": fresh, "events": events})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tencent() -> Map<String, Value> {
        serde_json::from_value(json!({
            "specversion":"1.0", "id":"13a3f42d-7258-4ada-da6d-023a333b4662",
            "source":"cvm.cloud.tencent", "type":"cvm:ErrorEvent:ping_unreachable",
            "subject":"ins-sjdksjk", "time": 1615430559146u64, "region":"ap-guangzhou",
            "resource":["qcs::eb:ap-guangzhou:uid1250000000:eventbusid/eventruleid"],
            "datacontenttype":"application/json;charset=utf-8",
            "tags":{"key1":"value1","key2":"value2"}, "status":"1",
            "data":{"appId":"1250000011","instanceId":"ins-sjdksjk"}
        }))
        .unwrap()
    }

    #[test]
    fn tencent_event_maps() {
        let e = to_event(0, &tencent(), 0).unwrap();
        assert_eq!(e.status, Status::Critical);
        assert_eq!(e.date, 1_615_430_559);
        assert_eq!(e.tags["region"], "ap-guangzhou");
        assert_eq!(e.tags["key1"], "value1");
        assert_eq!(e.tags["subject"], "ins-sjdksjk");
        assert!(e.tags["resource"].starts_with("qcs::eb"));
        assert_eq!(e.resource, "ins-sjdksjk");
        assert_eq!(
            e.id,
            custom_event_id(
                "cloudevents",
                &["cvm.cloud.tencent", "13a3f42d-7258-4ada-da6d-023a333b4662"]
            )
        );
    }

    #[test]
    fn required_attributes() {
        for k in ["id", "source", "specversion", "type"] {
            let mut o = tencent();
            o.remove(k);
            assert_eq!(to_event(3, &o, 0).unwrap_err().field, k);
        }
        let mut o = tencent();
        o.insert("specversion".into(), json!("0.3"));
        assert!(to_event(0, &o, 0).unwrap_err().rule.contains("1.0"));
        assert_eq!(map_status(Some("0")), Status::Ok);
        assert_eq!(map_status(Some("warning")), Status::Warning);
        assert_eq!(map_status(Some("whatever")), Status::Info);
    }

    #[test]
    fn modes() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let binary = h(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "x%201"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]);
        let e = parse("text/plain", &binary, b"hello", 9_000).unwrap();
        assert_eq!((e[0].message.as_str(), e[0].date), ("hello", 9));
        assert_eq!(e[0].detail["id"], "x 1");
        let body = serde_json::to_vec(&Value::Object(tencent())).unwrap();
        let e = parse("application/cloudevents+json", &[], &body, 0).unwrap();
        assert_eq!(e[0].status, Status::Critical);
        let batch = json!([tencent(), tencent()]).to_string();
        let e = parse(
            "application/cloudevents-batch+json",
            &[],
            batch.as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        let stored: Vec<Stored> = e
            .iter()
            .map(|c| Stored {
                id: c.id.clone(),
                fresh: true,
            })
            .collect();
        assert_eq!(answer(&e, &stored)["stored"], 2);
        assert!(matches!(
            parse("text/plain", &[], b"x", 0),
            Err(CeError::Invalid(_))
        ));
        let big = "y".repeat(MAX_EVENT_BYTES + 1);
        assert!(matches!(
            parse("", &binary, big.as_bytes(), 0),
            Err(CeError::TooLarge { .. })
        ));
    }
}
