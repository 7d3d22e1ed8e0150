//! What scripts hand back: the return value of a check script and the map passed to `report()`,
//! checked against their allowed shapes and turned into [`CheckOutcome`] and [`BotReport`].

use rhai::{Dynamic, Map};

use super::convert::{number, show, type_name};
use super::{BotReport, CheckOutcome, ScriptError, STATUSES};
use crate::model::Tags;

fn status_of(value: &Dynamic, what: &str) -> Result<String, String> {
    let Ok(s) = value.as_immutable_string_ref() else {
        return Err(format!(
            "{what} must be a status string (one of {}), got {} {}",
            STATUSES.join(", "),
            type_name(value),
            show(value)
        ));
    };
    if STATUSES.contains(&s.as_str()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{what} {:?} is not a status; use one of {}",
            s.as_str(),
            STATUSES.join(", ")
        ))
    }
}

/// A check script's return value: a status string, `#{status, value, message}` or `()`.
pub(super) fn check_outcome(value: Dynamic) -> Result<CheckOutcome, ScriptError> {
    if value.is_unit() {
        return Ok(CheckOutcome {
            status: "ok".into(),
            value: None,
            message: None,
        });
    }
    if value.is_string() {
        let status = status_of(&value, "the returned status").map_err(ScriptError::BadReturn)?;
        return Ok(CheckOutcome {
            status,
            value: None,
            message: None,
        });
    }
    let Some(map) = value.read_lock::<Map>().map(|m| m.clone()) else {
        return Err(ScriptError::BadReturn(format!(
            "a check script must return a status string ({}), a map #{{status, value, message}} \
             or (), got {} {}",
            STATUSES.join(", "),
            type_name(&value),
            show(&value)
        )));
    };
    let bad = |m: String| ScriptError::BadReturn(m);
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "status" | "value" | "message"))
    {
        return Err(bad(format!(
            "unknown key `{k}` in the returned map; allowed keys are status, value, message"
        )));
    }
    let status = match map.get("status") {
        None => {
            return Err(bad(format!(
                "the returned map has no `status`; add status: one of {}",
                STATUSES.join(", ")
            )))
        }
        Some(s) => status_of(&s.clone().flatten(), "`status`").map_err(bad)?,
    };
    let value = match map.get("value").map(|v| v.clone().flatten()) {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(number(&v).ok_or_else(|| {
            bad(format!(
                "`value` must be a number or (), got {} {}",
                type_name(&v),
                show(&v)
            ))
        })?),
    };
    let message = match map.get("message").map(|v| v.clone().flatten()) {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) if v.is_string() => Some(v.to_string()),
        Some(v) => {
            return Err(bad(format!(
                "`message` must be a string or (), got {} {}",
                type_name(&v),
                show(&v)
            )))
        }
    };
    Ok(CheckOutcome {
        status,
        value,
        message,
    })
}

/// The map given to `report(...)`: `#{title, message, status, dimension_tags}`.
pub(super) fn bot_report(map: Map) -> Result<BotReport, String> {
    if let Some(k) = map.keys().find(|k| {
        !matches!(
            k.as_str(),
            "title" | "message" | "status" | "dimension_tags"
        )
    }) {
        return Err(format!(
            "report(): unknown key `{k}`; allowed keys are title, message, status, dimension_tags"
        ));
    }
    let text = |key: &str| -> String {
        match map.get(key).map(|v| v.clone().flatten()) {
            None => String::new(),
            Some(v) if v.is_unit() => String::new(),
            Some(v) => v.to_string(),
        }
    };
    let status = match map.get("status") {
        None => {
            return Err(format!(
                "report(): `status` is missing; use one of {}",
                STATUSES.join(", ")
            ))
        }
        Some(s) => status_of(&s.clone().flatten(), "report(): `status`")?,
    };
    let dimension_tags = match map.get("dimension_tags").map(|v| v.clone().flatten()) {
        None => Tags::new(),
        Some(v) if v.is_unit() => Tags::new(),
        Some(v) => match v.read_lock::<Map>() {
            Some(m) => m
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone().flatten().to_string()))
                .collect(),
            None => {
                return Err(format!(
                "report(): `dimension_tags` must be a map of strings like #{{host: \"web01\"}}, \
                     got {} {}",
                type_name(&v),
                show(&v)
            ))
            }
        },
    };
    Ok(BotReport {
        title: text("title"),
        message: text("message"),
        status,
        dimension_tags,
    })
}
