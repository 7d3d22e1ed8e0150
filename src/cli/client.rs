//! Admin commands that talk to a running server: `run`, `events`, `issues`, `recover`.

use crate::model::time::{format_duration, format_time, parse_time_or_ago};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

/// A connection to a running server.
pub struct Client {
    base: String,
    admin: Option<String>,
    read: Option<String>,
    agent: ureq::Agent,
}

/// Which token a request sends, and the variable that holds it (for the error hints).
#[derive(Clone, Copy)]
enum Use {
    Read,
    Admin,
}

fn env_token(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|t| !t.is_empty())
}

impl Client {
    /// A client for `server` (e.g. `http://127.0.0.1:9530`). Admin requests (run, recover)
    /// send `TOCSIN_ADMIN_TOKEN`; reads (events, issues) send `TOCSIN_READ_TOKEN`, else the
    /// admin token, which reads too. Tokens come from the environment only, not from flags,
    /// so they stay out of process lists and shell history.
    pub fn new(server: &str) -> Client {
        Client {
            base: server.trim_end_matches('/').to_string(),
            admin: env_token("TOCSIN_ADMIN_TOKEN"),
            read: env_token("TOCSIN_READ_TOKEN"),
            agent: ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(60))
                .build(),
        }
    }

    fn auth(&self, r: ureq::Request, what: Use) -> ureq::Request {
        let token = match what {
            Use::Read => self.read.as_ref().or(self.admin.as_ref()),
            Use::Admin => self.admin.as_ref(),
        };
        match token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    fn answer(
        &self,
        what: &str,
        token: Use,
        res: Result<ureq::Response, ureq::Error>,
    ) -> Result<Value> {
        match res {
            Ok(r) => r
                .into_json::<Value>()
                .map_err(|e| anyhow!("{what}: unreadable answer from {}: {e}", self.base)),
            Err(ureq::Error::Status(code, r)) => {
                let body = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
                    .unwrap_or(body);
                let hint = match (code, token) {
                    (401, Use::Admin) => " (set TOCSIN_ADMIN_TOKEN)",
                    (403, Use::Admin) => " (TOCSIN_ADMIN_TOKEN is wrong)",
                    (401, Use::Read) => " (set TOCSIN_READ_TOKEN or TOCSIN_ADMIN_TOKEN)",
                    (403, Use::Read) if self.read.is_some() => " (TOCSIN_READ_TOKEN is wrong)",
                    (403, Use::Read) => " (TOCSIN_ADMIN_TOKEN is wrong)",
                    _ => "",
                };
                bail!("{what}: server answered {code}: {msg}{hint}")
            }
            Err(e) => bail!(
                "{what}: cannot reach tocsin at {}: {e} (is `tocsin serve` running? see --server)",
                self.base
            ),
        }
    }

    /// GET with query parameters (a read: the read token, else the admin token).
    pub fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value> {
        let mut r = self.auth(self.agent.get(&format!("{}{path}", self.base)), Use::Read);
        for (k, v) in params {
            r = r.query(k, v);
        }
        self.answer(path, Use::Read, r.call())
    }

    /// DELETE (an admin request: the admin token).
    pub fn delete(&self, path: &str) -> Result<Value> {
        let r = self.auth(
            self.agent.delete(&format!("{}{path}", self.base)),
            Use::Admin,
        );
        self.answer(path, Use::Admin, r.call())
    }

    /// POST a JSON body (an admin request: the admin token).
    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self.auth(self.agent.post(&format!("{}{path}", self.base)), Use::Admin);
        self.answer(path, Use::Admin, r.send_json(body))
    }
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<width$}", width = w[i])
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    }
}

/// Renders events as a table.
pub fn events_table(events: &[Value]) -> String {
    table(
        &["DATE", "STATUS", "SOURCE", "MONITOR", "TAGS", "TITLE"],
        events
            .iter()
            .map(|e| {
                vec![
                    e.get("date")
                        .and_then(Value::as_i64)
                        .map(format_time)
                        .unwrap_or_default(),
                    s(e, "df_status"),
                    s(e, "df_source"),
                    s(e, "df_monitor_checker_id"),
                    s(e, "df_dimension_tags"),
                    s(e, "df_title"),
                ]
            })
            .collect(),
    )
}

/// `tocsin run ID`.
pub fn run(c: &Client, id: &str, as_json: bool) -> Result<()> {
    let v = c.post(&format!("/api/v1/monitors/{id}/run"), json!({}))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "ran {id}: {} object(s), {} event(s)",
        v.get("objects").and_then(Value::as_u64).unwrap_or(0),
        events.len()
    );
    if !events.is_empty() {
        print!("{}", events_table(&events));
    }
    for e in v
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        eprintln!("error: {}", e.as_str().unwrap_or_default());
    }
    Ok(())
}

/// Filters of `tocsin events`.
#[derive(Debug, Default)]
pub struct EventsArgs {
    /// status
    pub status: Option<String>,
    /// monitor id
    pub monitor: Option<String>,
    /// source
    pub source: Option<String>,
    /// since (RFC 3339 or Unix seconds)
    pub since: Option<String>,
    /// at most
    pub limit: Option<usize>,
}

/// `tocsin events`.
pub fn events(c: &Client, a: &EventsArgs, as_json: bool) -> Result<()> {
    let mut p: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &a.status {
        // Checked here, so a typo is an error and not an empty table.
        for name in v.split(',').map(str::trim) {
            if crate::model::event::Status::parse(name).is_none() {
                bail!(
                    "--status {name:?}: expected one of {} (several with commas)",
                    crate::model::event::ALL_STATUSES
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        p.push(("status", v.clone()));
    }
    if let Some(v) = &a.monitor {
        p.push(("monitor", v.clone()));
    }
    if let Some(v) = &a.source {
        p.push(("source", v.clone()));
    }
    if let Some(v) = &a.since {
        p.push((
            "from",
            parse_time_or_ago(v, chrono::Utc::now().timestamp())
                .map_err(|e| anyhow!("--since: {e}"))?
                .to_string(),
        ));
    }
    p.push(("limit", a.limit.unwrap_or(50).to_string()));
    let v = c.get("/api/v1/events", &p)?;
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else if events.is_empty() {
        println!("no events match");
    } else {
        print!("{}", events_table(&events));
    }
    Ok(())
}

/// `tocsin issues`.
pub fn issues(c: &Client, monitor: Option<&str>, as_json: bool) -> Result<()> {
    let mut p: Vec<(&str, String)> = Vec::new();
    if let Some(m) = monitor {
        p.push(("monitor", m.to_string()));
    }
    let v = c.get("/api/v1/issues", &p)?;
    let issues = v
        .get("issues")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&issues)?);
        return Ok(());
    }
    if issues.is_empty() {
        println!(
            "no open issues{}",
            monitor
                .map(|m| format!(" for monitor {m}"))
                .unwrap_or_default()
        );
        return Ok(());
    }
    print!(
        "{}",
        table(
            &["REF", "MONITOR", "STATUS", "TAGS", "SINCE", "DURATION", "TITLE"],
            issues
                .iter()
                .map(|i| vec![
                    s(i, "event_ref"),
                    s(i, "monitor"),
                    s(i, "status"),
                    s(i, "dimension_tags"),
                    i.get("issue_start")
                        .and_then(Value::as_i64)
                        .map(format_time)
                        .unwrap_or_default(),
                    i.get("duration")
                        .and_then(Value::as_i64)
                        .map(format_duration)
                        .unwrap_or_default(),
                    s(i, "title"),
                ])
                .collect()
        )
    );
    Ok(())
}

/// What `tocsin recover` recovers and who does it.
#[derive(Debug, Default)]
pub struct RecoverArgs {
    /// event refs
    pub refs: Vec<String>,
    /// every issue of a monitor
    pub monitor: Option<String>,
    /// every issue
    pub all: bool,
    /// `df_user_id`
    pub user_id: String,
    /// `df_user_name`
    pub user_name: String,
    /// `df_user_email`
    pub user_email: String,
    /// message
    pub message: Option<String>,
}

/// `tocsin recover`.
pub fn recover(c: &Client, a: &RecoverArgs, as_json: bool) -> Result<()> {
    let mut body =
        json!({"user_id": a.user_id, "user_name": a.user_name, "user_email": a.user_email});
    match (a.refs.is_empty(), &a.monitor, a.all) {
        (false, None, false) => body["refs"] = json!(a.refs),
        (true, Some(m), false) => body["monitor"] = json!(m),
        (true, None, true) => body["all"] = json!(true),
        _ => bail!("give event refs, or --monitor ID, or --all (exactly one)"),
    }
    if let Some(m) = &a.message {
        body["message"] = json!(m);
    }
    let v = c.post("/api/v1/issues/recover", body)?;
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        println!("recovered {} issue(s)", events.len());
        if !events.is_empty() {
            print!("{}", events_table(&events));
        }
    }
    Ok(())
}
