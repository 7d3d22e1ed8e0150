//! `tocsin silence add|list|expire`: runtime silences through the server's API (admin token
//! from `TOCSIN_ADMIN_TOKEN` for add and expire).

use super::client::{table, Client};
use crate::model::time::{format_time, parse_time_or_ago};
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

/// What `tocsin silence add` was given.
pub struct AddArgs {
    /// `key=value` matchers: `monitor`, `status` or a dimension tag
    pub matchers: Vec<String>,
    /// how long, e.g. `1h`
    pub duration: Option<String>,
    /// start (default now)
    pub start: Option<String>,
    /// end instead of duration
    pub end: Option<String>,
    /// who
    pub created_by: String,
    /// why
    pub comment: Option<String>,
}

/// Parses `key=value` matchers; the error names the bad one.
fn matchers(list: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for m in list {
        match m.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.is_empty() => {
                out.insert(k.trim().to_string(), json!(v));
            }
            _ => bail!("--match {m:?}: expected key=value, e.g. monitor=host-cpu or host=web01"),
        }
    }
    if out.is_empty() {
        bail!("give at least one --match key=value (monitor, status or a dimension tag)");
    }
    Ok(out)
}

/// `tocsin silence add`.
pub fn add(c: &Client, a: &AddArgs, as_json: bool) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let mut body = json!({
        "matchers": matchers(&a.matchers)?,
        "created_by": a.created_by,
        "comment": a.comment.clone().unwrap_or_default(),
    });
    if let Some(d) = &a.duration {
        body["duration"] = json!(d);
    }
    for (key, v) in [("start", &a.start), ("end", &a.end)] {
        if let Some(v) = v {
            let t = parse_time_or_ago(v, now).map_err(|e| anyhow::anyhow!("--{key}: {e}"))?;
            body[key] = json!(t);
        }
    }
    let v = c.post("/api/v1/silences", body)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}  {}  until {}",
            v["id"].as_str().unwrap_or(""),
            v["state"].as_str().unwrap_or(""),
            v["end"].as_i64().map(format_time).unwrap_or_default()
        );
    }
    Ok(())
}

/// `tocsin silence list`.
pub fn list(c: &Client, all: bool, as_json: bool) -> Result<()> {
    let p = if all {
        vec![("all", "true".to_string())]
    } else {
        vec![]
    };
    let v = c.get("/api/v1/silences", &p)?;
    let silences = v["silences"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&silences)?);
        return Ok(());
    }
    if silences.is_empty() {
        println!("no silences");
        return Ok(());
    }
    let text = |s: &Value, k: &str| s[k].as_str().unwrap_or("").to_string();
    let time = |s: &Value, k: &str| s[k].as_i64().map(format_time).unwrap_or_default();
    print!(
        "{}",
        table(
            &["ID", "STATE", "MATCHERS", "START", "END", "BY", "COMMENT"],
            silences
                .iter()
                .map(|s| vec![
                    text(s, "id"),
                    text(s, "state"),
                    s["matchers"].to_string(),
                    time(s, "start"),
                    time(s, "end"),
                    text(s, "created_by"),
                    text(s, "comment"),
                ])
                .collect(),
        )
    );
    Ok(())
}

/// `tocsin silence expire ID`.
pub fn expire(c: &Client, id: &str, as_json: bool) -> Result<()> {
    let v = c.delete(&format!("/api/v1/silences/{id}"))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{id}  expired");
    }
    Ok(())
}
