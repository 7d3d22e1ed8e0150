//! Conversions between Rhai `Dynamic` values and Rust/JSON values, and the parsing of
//! host-function arguments (windows, tag lists and maps, event filters) with errors that name the
//! function, the argument and what would be accepted.

use rhai::{Array, Dynamic, EvalAltResult, Map, NativeCallContext, FLOAT, INT};

use super::EventFilter;
use crate::model::time::parse_duration;
use crate::model::Tags;

/// The error type of Rhai native functions.
pub(super) type RhaiErr = Box<EvalAltResult>;

/// A runtime error at the position of the native call `ctx`.
pub(super) fn rt_err(ctx: &NativeCallContext, msg: impl Into<String>) -> RhaiErr {
    EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), ctx.call_position()).into()
}

pub(super) fn type_name(v: &Dynamic) -> &'static str {
    match v.type_name() {
        "i64" | "i32" => "int",
        "f64" | "f32" => "float",
        other => other,
    }
}

pub(super) fn show(v: &Dynamic) -> String {
    let s = if v.is_string() {
        format!("{:?}", v.to_string())
    } else if v.is_unit() {
        "()".to_string()
    } else {
        v.to_string()
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(60).collect();
        format!("`{cut}…`")
    } else {
        format!("`{s}`")
    }
}

pub(super) fn number(v: &Dynamic) -> Option<f64> {
    if let Ok(f) = v.as_float() {
        Some(f)
    } else if let Ok(i) = v.as_int() {
        Some(i as f64)
    } else {
        None
    }
}

pub(super) fn tags_to_map(tags: &Tags) -> Map {
    tags.iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect()
}

pub(super) fn points_to_array(points: &[(i64, f64)]) -> Array {
    points
        .iter()
        .map(|&(ts, v)| {
            Dynamic::from_array(vec![Dynamic::from_int(ts as INT), Dynamic::from_float(v)])
        })
        .collect()
}

pub(super) fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i as INT),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN) as FLOAT),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Value::Object(o) => Dynamic::from_map(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

pub(super) fn window_arg(func: &str, v: &Dynamic) -> Result<i64, String> {
    let secs = if let Ok(i) = v.as_int() {
        Some(i)
    } else if let Ok(s) = v.as_immutable_string_ref() {
        parse_duration(&s).ok()
    } else {
        None
    };
    match secs {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{func}(): window must be a positive duration such as \"30s\", \"5m\", \"1h\" or a \
             number of seconds, got {} {}",
            type_name(v),
            show(v)
        )),
    }
}

pub(super) fn string_list(func: &str, what: &str, v: &Dynamic) -> Result<Vec<String>, String> {
    if v.is_unit() {
        return Ok(Vec::new());
    }
    if v.is_string() {
        return Ok(vec![v.to_string()]);
    }
    let Some(arr) = v.read_lock::<Array>() else {
        return Err(format!(
            "{func}(): {what} must be an array of tag names like [\"host\"], got {} {}",
            type_name(v),
            show(v)
        ));
    };
    arr.iter()
        .map(|x| {
            let x = x.clone().flatten();
            if x.is_string() {
                Ok(x.to_string())
            } else {
                Err(format!(
                    "{func}(): {what} must hold tag names (strings), got {} {}",
                    type_name(&x),
                    show(&x)
                ))
            }
        })
        .collect()
}

pub(super) fn string_map(func: &str, what: &str, v: &Dynamic) -> Result<Tags, String> {
    if v.is_unit() {
        return Ok(Tags::new());
    }
    let Some(map) = v.read_lock::<Map>() else {
        return Err(format!(
            "{func}(): {what} must be a map of tag values like #{{host: \"web01\"}}, got {} {}",
            type_name(v),
            show(v)
        ));
    };
    map.iter()
        .map(|(k, x)| {
            let x = x.clone().flatten();
            if x.is_string() || x.is_int() || x.is_bool() {
                Ok((k.to_string(), x.to_string()))
            } else {
                Err(format!(
                    "{func}(): {what}.{k} must be a string, got {} {}",
                    type_name(&x),
                    show(&x)
                ))
            }
        })
        .collect()
}

fn opt_string(key: &str, v: &Dynamic) -> Result<Option<String>, String> {
    if v.is_unit() {
        Ok(None)
    } else if v.is_string() {
        Ok(Some(v.to_string()))
    } else {
        Err(format!(
            "events(): `{key}` must be a string, got {} {}",
            type_name(v),
            show(v)
        ))
    }
}

pub(super) fn event_filter(map: &Map, now: i64) -> Result<EventFilter, String> {
    let mut filter = EventFilter::default();
    for (k, v) in map {
        let v = v.clone().flatten();
        match k.as_str() {
            "status" => filter.status = opt_string("status", &v)?,
            "monitor" => filter.monitor = opt_string("monitor", &v)?,
            "source" => filter.source = opt_string("source", &v)?,
            "since" => filter.since = since_arg(&v, now)?,
            other => {
                return Err(format!(
                    "events(): unknown filter key `{other}`; allowed keys are status, monitor, \
                     source, since"
                ))
            }
        }
    }
    Ok(filter)
}

/// `since`: Unix seconds (int), RFC 3339 text, or a duration back from `now()` ("1h").
fn since_arg(v: &Dynamic, now: i64) -> Result<Option<i64>, String> {
    if v.is_unit() {
        return Ok(None);
    }
    if let Ok(i) = v.as_int() {
        return Ok(Some(i));
    }
    if let Ok(s) = v.as_immutable_string_ref() {
        if let Ok(d) = parse_duration(&s) {
            return Ok(Some(now - d));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
            return Ok(Some(t.timestamp()));
        }
    }
    Err(format!(
        "events(): `since` must be Unix seconds, an RFC 3339 time or a duration back from now() \
         such as \"1h\", got {} {}",
        type_name(v),
        show(v)
    ))
}
