//! Alibaba CloudMonitor `PutCustomEvent` (seed 004), RPC style: `EventInfo.N.*` parameters in
//! the query string or a form body (what `aliyun-python-sdk-cms` sends), or a JSON body
//! `{"EventInfo": [...]}`. Answers `{Code, Message, RequestId}`, errors in the same shape.

use super::sign::form_pairs;
use super::{custom_event_id, CustomEvent};
use crate::model::event::Status;
use crate::model::Tags;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Largest batch (`N` of `EventInfo.N` is 1 to 50).
pub const MAX_ITEMS: usize = 50;

/// An Alibaba-style error: HTTP status, `Code`, `Message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AliError {
    /// HTTP status
    pub status: u16,
    /// `Code`
    pub code: String,
    /// `Message`
    pub message: String,
}

fn bad(code: &str, message: impl Into<String>) -> AliError {
    AliError {
        status: 400,
        code: code.into(),
        message: message.into(),
    }
}

fn request_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// An answer body in Alibaba's shape: `{Code, Message, RequestId}` (a fresh request id).
pub fn answer(code: &str, message: &str) -> Value {
    json!({"Code": code, "Message": message, "RequestId": request_id()})
}

/// The answer to a stored request (HTTP 200).
pub fn success_answer() -> Value {
    answer("200", "success")
}

impl AliError {
    /// The error's answer body.
    pub fn answer(&self) -> Value {
        answer(&self.code, &self.message)
    }
}

/// One `EventInfo` item as given (strings; `Time` may have been a JSON number).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawItem {
    /// `N` (1-based) or the JSON array position + 1
    pub n: usize,
    /// fields by name
    pub fields: BTreeMap<String, String>,
}

/// The parameters and items of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// every query, form and flat JSON parameter (signed ones included)
    pub params: BTreeMap<String, String>,
    /// items from a JSON `EventInfo` array, if given that way
    pub json_items: Option<Vec<RawItem>>,
}

const FIELDS: &[&str] = &["EventName", "Content", "Time", "GroupId"];

/// Reads query, form or JSON parameters.
pub fn read_request(query: &str, content_type: &str, body: &[u8]) -> Result<Request, AliError> {
    let mut r = Request::default();
    for (k, v) in form_pairs(query) {
        r.params.insert(k, v);
    }
    let ct = content_type.to_ascii_lowercase();
    let trimmed = body
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .copied()
        .next();
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(r);
    }
    if ct.contains("json") || (trimmed == Some(b'{') && !ct.contains("form")) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| bad("InvalidParameter", format!("body: not valid JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(bad(
                "InvalidParameter",
                "body: must be a JSON object {\"EventInfo\": [...]}",
            ));
        };
        for (k, v) in &obj {
            if k == "EventInfo" {
                continue;
            }
            match v {
                Value::String(s) => {
                    r.params.insert(k.clone(), s.clone());
                }
                Value::Number(n) => {
                    r.params.insert(k.clone(), n.to_string());
                }
                _ => return Err(bad("InvalidParameter", format!("{k}: must be a string"))),
            }
        }
        if let Some(list) = obj.get("EventInfo") {
            let Value::Array(list) = list else {
                return Err(bad(
                    "InvalidParameter",
                    "EventInfo: must be an array of objects",
                ));
            };
            let mut items = Vec::new();
            for (i, it) in list.iter().enumerate() {
                let n = i + 1;
                let Value::Object(o) = it else {
                    return Err(bad(
                        "InvalidParameter",
                        format!("EventInfo.{n}: must be an object"),
                    ));
                };
                items.push(RawItem {
                    n,
                    fields: json_fields(n, o)?,
                });
            }
            r.json_items = Some(items);
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") || ct.is_empty() {
        let text = std::str::from_utf8(body)
            .map_err(|_| bad("InvalidParameter", "body: form body is not UTF-8"))?;
        for (k, v) in form_pairs(text) {
            r.params.insert(k, v);
        }
    } else {
        return Err(bad(
            "InvalidParameter",
            format!("body: Content-Type {content_type:?} is not a form or JSON body"),
        ));
    }
    Ok(r)
}

fn json_fields(n: usize, o: &Map<String, Value>) -> Result<BTreeMap<String, String>, AliError> {
    let mut f = BTreeMap::new();
    for (k, v) in o {
        if !FIELDS.contains(&k.as_str()) {
            return Err(bad(
                "InvalidParameter",
                format!(
                    "EventInfo.{n}.{k}: unknown field (expected EventName, Content, Time, GroupId)"
                ),
            ));
        }
        let s = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(x) if k == "Time" || k == "GroupId" => x.to_string(),
            _ => {
                return Err(bad(
                    "InvalidParameter",
                    format!("EventInfo.{n}.{k}: must be a string"),
                ))
            }
        };
        f.insert(k.clone(), s);
    }
    Ok(f)
}

impl Request {
    /// The parameters the signature covers: every parameter, plus JSON items flattened to
    /// `EventInfo.N.Field`.
    pub fn signed_params(&self) -> BTreeMap<String, String> {
        let mut p = self.params.clone();
        for it in self.json_items.iter().flatten() {
            for (k, v) in &it.fields {
                p.insert(format!("EventInfo.{}.{k}", it.n), v.clone());
            }
        }
        p
    }

    /// The items, from `EventInfo.N.*` parameters or the JSON array.
    pub fn items(&self) -> Result<Vec<RawItem>, AliError> {
        let mut by_n: BTreeMap<usize, RawItem> = BTreeMap::new();
        for (k, v) in &self.params {
            let Some(rest) = k.strip_prefix("EventInfo.") else {
                continue;
            };
            let (n, field) = rest.split_once('.').ok_or_else(|| {
                bad(
                    "InvalidParameter",
                    format!("{k}: expected EventInfo.N.Field"),
                )
            })?;
            let n: usize = n
                .parse()
                .ok()
                .filter(|n| (1..=MAX_ITEMS).contains(n))
                .ok_or_else(|| {
                    bad(
                        "InvalidParameter",
                        format!("{k}: N must be 1 to {MAX_ITEMS}"),
                    )
                })?;
            if !FIELDS.contains(&field) {
                return Err(bad(
                    "InvalidParameter",
                    format!("{k}: unknown field (expected EventName, Content, Time, GroupId)"),
                ));
            }
            let it = by_n.entry(n).or_insert_with(|| RawItem {
                n,
                ..Default::default()
            });
            it.fields.insert(field.to_string(), v.clone());
        }
        let items: Vec<RawItem> = match &self.json_items {
            Some(j) if !by_n.is_empty() => {
                let _ = j;
                return Err(bad(
                    "InvalidParameter",
                    "EventInfo: give items either as EventInfo.N.* parameters or as a JSON array, not both",
                ));
            }
            Some(j) => j.clone(),
            None => by_n.into_values().collect(),
        };
        if items.is_empty() {
            return Err(bad(
                "MissingParameter",
                "The input parameter \"EventInfo\" that is mandatory for processing this request is not supplied.",
            ));
        }
        if items.len() > MAX_ITEMS {
            return Err(bad(
                "InvalidParameter",
                format!("EventInfo: at most {MAX_ITEMS} items, got {}", items.len()),
            ));
        }
        Ok(items)
    }
}

/// Parses `Time`: `yyyyMMddTHHmmss.SSSZ` (`20171013T170923.456+0800`) or Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = match s.strip_suffix('Z') {
        Some(p) => format!("{p}+0000"),
        None => s.to_string(),
    };
    ["%Y%m%dT%H%M%S%.f%z", "%Y%m%dT%H%M%S%z"]
        .iter()
        .find_map(|f| chrono::DateTime::parse_from_str(&s, f).ok())
        .map(|t| t.timestamp_millis())
}

/// Validates the items and turns them into events. `now` is in milliseconds.
pub fn to_events(items: &[RawItem], now: i64) -> Result<Vec<CustomEvent>, AliError> {
    items
        .iter()
        .map(|it| {
            let n = it.n;
            let need = |k: &str| -> Result<String, AliError> {
                match it.fields.get(k) {
                    Some(v) if !v.is_empty() => Ok(v.clone()),
                    _ => Err(bad(
                        "MissingParameter",
                        format!("EventInfo.{n}.{k}: required (the input parameter that is mandatory for processing this request is not supplied)"),
                    )),
                }
            };
            let name = need("EventName")?;
            let content = need("Content")?;
            let time_ms = match it.fields.get("Time").filter(|s| !s.is_empty()) {
                None => now,
                Some(t) => parse_time(t).ok_or_else(|| {
                    bad(
                        "InvalidParameter",
                        format!("EventInfo.{n}.Time: {t:?} must be yyyyMMddTHHmmss.SSSZ (e.g. 20171013T170923.456+0800) or Unix milliseconds"),
                    )
                })?,
            };
            let group = it
                .fields
                .get("GroupId")
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| "0".into());
            let id = custom_event_id("alibaba", &[&name, &content, &time_ms.to_string(), &group]);
            let mut tags = Tags::new();
            tags.insert("group_id".into(), group.clone());
            let detail = json!({"EventName": name, "Content": content, "Time": it.fields.get("Time"), "GroupId": group});
            Ok(CustomEvent {
                dialect: "alibaba",
                id,
                date: time_ms.div_euclid(1000),
                status: Status::Info,
                title: name.clone(),
                message: content,
                name,
                source: "alibaba".into(),
                key_name: None,
                resource: String::new(),
                group,
                tags,
                detail,
                extra: vec![],
            })
        })
        .collect()
}

/// Checks `Action`: only `PutCustomEvent` is served.
pub fn check_action(req: &Request) -> Result<(), AliError> {
    match req.params.get("Action").map(String::as_str) {
        Some("PutCustomEvent") => Ok(()),
        None => Err(bad(
            "MissingParameter",
            "The input parameter \"Action\" that is mandatory for processing this request is not supplied.",
        )),
        Some(a) => Err(AliError {
            status: 404,
            code: "InvalidAction.NotFound".into(),
            message: format!("Specified api {a:?} is not found: tocsin serves PutCustomEvent"),
        }),
    }
}

/// Checks the action, then validates the items and turns them into events. `now` is in ms.
pub fn parse(req: &Request, now: i64) -> Result<Vec<CustomEvent>, AliError> {
    check_action(req)?;
    to_events(&req.items()?, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            parse_time("20171013T170923.456+0800"),
            Some(1_507_885_763_456)
        );
        assert_eq!(parse_time("1552199984000"), Some(1_552_199_984_000));
        assert_eq!(parse_time("20171013T090923Z"), Some(1_507_885_763_000));
        assert_eq!(parse_time("2017-10-13"), None);
    }

    #[test]
    fn query_form_and_json() {
        let q = "Action=PutCustomEvent&EventInfo.1.EventName=a&EventInfo.1.Content=c&EventInfo.2.EventName=b&EventInfo.2.Content=d%20e&EventInfo.2.GroupId=7";
        let r = read_request(q, "", b"").unwrap();
        let ev = to_events(&r.items().unwrap(), 1_000_000).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].group.as_str(), ev[0].date), ("0", 1000));
        assert_eq!((ev[1].message.as_str(), ev[1].group.as_str()), ("d e", "7"));
        let r = read_request(
            "Action=PutCustomEvent",
            "application/x-www-form-urlencoded",
            q.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.items().unwrap().len(), 2);
        let body = br#"{"EventInfo":[{"EventName":"x","Content":"y","Time":1552199984000}]}"#;
        let r = read_request("Action=PutCustomEvent", "application/json", body).unwrap();
        let ev = to_events(&r.items().unwrap(), 0).unwrap();
        assert_eq!(ev[0].date, 1_552_199_984);
        assert_eq!(r.signed_params()["EventInfo.1.Time"], "1552199984000");
    }

    #[test]
    fn errors() {
        let req = |q: &str| read_request(q, "", b"").unwrap();
        assert_eq!(
            parse(&req("EventInfo.1.EventName=a"), 0).unwrap_err().code,
            "MissingParameter"
        );
        let e = parse(&req("Action=DescribeX"), 0).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "InvalidAction.NotFound"));
        let ok = parse(
            &req("Action=PutCustomEvent&EventInfo.1.EventName=a&EventInfo.1.Content=b"),
            7_000,
        )
        .unwrap();
        assert_eq!(ok[0].date, 7);
        assert_eq!(e.answer()["Code"], "InvalidAction.NotFound");
        assert_eq!(success_answer()["Code"], "200");
        let items = |q: &str| read_request(q, "", b"").unwrap().items();
        assert_eq!(
            items("Action=PutCustomEvent").unwrap_err().code,
            "MissingParameter"
        );
        assert!(items("EventInfo.51.EventName=a")
            .unwrap_err()
            .message
            .contains("1 to 50"));
        assert!(items("EventInfo.1.Nope=a")
            .unwrap_err()
            .message
            .contains("unknown"));
        let e = to_events(&items("EventInfo.1.EventName=a").unwrap(), 0).unwrap_err();
        assert!(e.message.contains("EventInfo.1.Content"), "{e}");
        let e = to_events(
            &items("EventInfo.1.EventName=a&EventInfo.1.Content=b&EventInfo.1.Time=x").unwrap(),
            0,
        )
        .unwrap_err();
        assert!(e.message.contains("EventInfo.1.Time"), "{e}");
        let many: Vec<Value> = (0..51)
            .map(|_| json!({"EventName": "a", "Content": "b"}))
            .collect();
        let body = json!({"EventInfo": many}).to_string();
        let r = read_request("", "application/json", body.as_bytes()).unwrap();
        assert!(r.items().unwrap_err().message.contains("at most 50"));
    }
}
