//! Runtime silences (`/api/v1/silences`, `tocsin silence`): like `amtool silence add`, an
//! on-call person holds back the alerts of some objects for a while (an incident, a
//! maintenance window) without touching the config.
//!
//! A silence has matchers: `monitor` matches the event's `df_monitor_checker_id`, `status`
//! its `df_status`, every other key a dimension tag; all must match. While a silence covers an
//! event (`start <= date < end`), the event is stored with `df_is_silent = true` and its
//! deliveries are held back exactly as a config mute holds them back. Silences live in the
//! event database, so the planner reads them inside the event's own transaction.

use crate::args;
use crate::events::{Sql, SqlError};
use crate::model::event::Event;
use crate::model::Tags;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Silence {
    /// `silence-<hex>`
    pub id: String,
    /// `monitor`, `status` and dimension tags, all of which must match
    pub matchers: BTreeMap<String, String>,
    /// first second covered (Unix s)
    pub start: i64,
    /// first second no longer covered (Unix s)
    pub end: i64,
    /// who created it
    pub created_by: String,
    /// why
    pub comment: String,
    /// when it was created (Unix s)
    pub created_at: i64,
}

/// `pending` (starts later), `active` or `expired` at `now`.
pub fn state(s: &Silence, now: i64) -> &'static str {
    if now < s.start {
        "pending"
    } else if now < s.end {
        "active"
    } else {
        "expired"
    }
}

/// What `POST /api/v1/silences` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// what it covers
    pub matchers: BTreeMap<String, String>,
    /// how long from `start` (or now), e.g. `"1h"`; instead of `end`
    pub duration: Option<String>,
    /// RFC 3339 or Unix seconds; default now
    pub start: Option<serde_json::Value>,
    /// RFC 3339 or Unix seconds; instead of `duration`
    pub end: Option<serde_json::Value>,
    /// who
    pub created_by: String,
    /// why
    #[serde(default)]
    pub comment: String,
}

/// A refused silence: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SilenceError {
    /// the bad field
    pub field: &'static str,
    /// what was wrong and what is expected
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> SilenceError {
    SilenceError {
        field,
        message: message.into(),
    }
}

fn time_of(field: &'static str, v: &serde_json::Value) -> Result<i64, SilenceError> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| bad(field, format!("{n} is not whole Unix seconds"))),
        serde_json::Value::String(s) => {
            crate::model::time::parse_time(s).map_err(|e| bad(field, e))
        }
        other => Err(bad(
            field,
            format!("{other} is not a time: expected RFC 3339 or Unix seconds"),
        )),
    }
}

impl NewSilence {
    /// Checks the request and makes the silence (`now` in Unix s; the id is derived from the
    /// request and `now`, so a retried identical request does not create a second one).
    pub fn build(self, now: i64) -> Result<Silence, SilenceError> {
        if self.matchers.is_empty() {
            return Err(bad(
                "matchers",
                "at least one matcher is needed, e.g. {\"monitor\": \"host-cpu\", \"host\": \"web01\"}",
            ));
        }
        for (k, v) in &self.matchers {
            if k.is_empty() || v.is_empty() {
                return Err(bad("matchers", "names and values must not be empty"));
            }
            if k == "status" && crate::model::event::Status::parse(v).is_none() {
                return Err(bad(
                    "matchers",
                    format!(
                        "status {v:?} is not one of {}",
                        crate::model::event::ALL_STATUSES
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if self.created_by.trim().is_empty() {
            return Err(bad("created_by", "say who creates the silence"));
        }
        let start = match &self.start {
            Some(v) => time_of("start", v)?,
            None => now,
        };
        let end = match (&self.duration, &self.end) {
            (Some(_), Some(_)) => {
                return Err(bad("duration", "give either duration or end, not both"))
            }
            (Some(d), None) => {
                let secs = crate::model::time::parse_duration(d).map_err(|e| bad("duration", e))?;
                if secs <= 0 {
                    return Err(bad("duration", "must be longer than 0s"));
                }
                start + secs
            }
            (None, Some(v)) => time_of("end", v)?,
            (None, None) => {
                return Err(bad(
                    "duration",
                    "missing: how long, e.g. \"1h\" (or an end time)",
                ))
            }
        };
        if end <= start {
            return Err(bad("end", "must be after start"));
        }
        if end <= now {
            return Err(bad(
                "end",
                "is in the past: the silence would cover nothing",
            ));
        }
        let key = format!(
            "{}|{start}|{end}|{}|{}|{now}",
            serde_json::to_string(&self.matchers).expect("map serialises"),
            self.created_by,
            self.comment
        );
        Ok(Silence {
            id: format!("silence-{}", &crate::model::event::md5_hex(&key)[..16]),
            matchers: self.matchers,
            start,
            end,
            created_by: self.created_by,
            comment: self.comment,
            created_at: now,
        })
    }
}

/// Whether `s`'s matchers all hold for an event of `monitor` with `status` and `tags`.
pub fn matches(s: &Silence, monitor: &str, status: &str, tags: &Tags) -> bool {
    s.matchers.iter().all(|(k, v)| match k.as_str() {
        "monitor" => monitor == v,
        "status" => status == v,
        _ => tags.get(k).is_some_and(|t| t == v),
    })
}

fn row(r: &crate::events::sql::Row) -> Result<Silence, SqlError> {
    let matchers = r.text(1)?;
    Ok(Silence {
        id: r.text(0)?,
        matchers: serde_json::from_str(&matchers).unwrap_or_default(),
        start: r.int(2)?,
        end: r.int(3)?,
        created_by: r.text(4)?,
        comment: r.text(5)?,
        created_at: r.int(6)?,
    })
}

const COLUMNS: &str = "id, matchers, start, \"end\", created_by, comment, created_at";

/// Stores a silence (an identical one stored before is kept as it is).
pub fn insert(conn: &mut dyn Sql, s: &Silence) -> Result<(), SqlError> {
    conn.exec(
        "INSERT INTO silences(id, matchers, start, \"end\", created_by, comment, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        args![
            &s.id,
            serde_json::to_string(&s.matchers).expect("map serialises"),
            s.start,
            s.end,
            &s.created_by,
            &s.comment,
            s.created_at
        ],
    )?;
    Ok(())
}

/// Silences not expired at `now` (or all, newest first, at most `limit`).
pub fn list(
    conn: &mut dyn Sql,
    now: i64,
    all: bool,
    limit: usize,
) -> Result<Vec<Silence>, SqlError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM silences WHERE ?1 = 1 OR \"end\" > ?2 ORDER BY start DESC, id LIMIT ?3"
    );
    conn.rows(&sql, args![all, now, limit])?
        .iter()
        .map(row)
        .collect()
}

/// One silence.
pub fn get(conn: &mut dyn Sql, id: &str) -> Result<Option<Silence>, SqlError> {
    conn.row(
        &format!("SELECT {COLUMNS} FROM silences WHERE id = ?1"),
        args![id],
    )?
    .as_ref()
    .map(row)
    .transpose()
}

/// Ends a silence at `now` (a pending one never starts); `None` if there is no such silence.
pub fn expire(conn: &mut dyn Sql, id: &str, now: i64) -> Result<Option<Silence>, SqlError> {
    // end = max(min(end, now), start)
    conn.exec(
        "UPDATE silences SET \"end\" = CASE \
           WHEN (CASE WHEN \"end\" < ?2 THEN \"end\" ELSE ?2 END) < start THEN start \
           ELSE (CASE WHEN \"end\" < ?2 THEN \"end\" ELSE ?2 END) END \
         WHERE id = ?1",
        args![id, now],
    )?;
    get(conn, id)
}

/// The first silence covering `ev` at its date, if any.
pub fn covering(conn: &mut dyn Sql, ev: &Event) -> Result<Option<String>, SqlError> {
    let date = ev.date();
    let active: Vec<Silence> = conn
        .rows(
            &format!("SELECT {COLUMNS} FROM silences WHERE start <= ?1 AND \"end\" > ?1"),
            args![date],
        )?
        .iter()
        .map(row)
        .collect::<Result<_, _>>()?;
    if active.is_empty() {
        return Ok(None);
    }
    let tags: Tags = ev
        .dimension_tags()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let monitor = ev.checker_id().unwrap_or("");
    let status = ev.status().map(|s| s.as_str()).unwrap_or("");
    Ok(active
        .into_iter()
        .find(|s| matches(s, monitor, status, &tags))
        .map(|s| s.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<Silence, SilenceError> {
        serde_json::from_str::<NewSilence>(json)
            .unwrap()
            .build(1000)
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let s = req(r#"{"matchers":{"monitor":"host-cpu","host":"web01"},"duration":"1h","created_by":"ann","comment":"swap"}"#).unwrap();
        assert_eq!((s.start, s.end), (1000, 4600));
        assert!(s.id.starts_with("silence-"));
        assert_eq!(
            req(r#"{"matchers":{},"duration":"1h","created_by":"ann"}"#)
                .unwrap_err()
                .field,
            "matchers"
        );
        let e =
            req(r#"{"matchers":{"status":"crit"},"duration":"1h","created_by":"a"}"#).unwrap_err();
        assert!(e.message.contains("\"crit\" is not one of ok,"), "{e}");
        assert_eq!(
            req(r#"{"matchers":{"a":"b"},"created_by":"a"}"#)
                .unwrap_err()
                .field,
            "duration"
        );
        assert_eq!(
            req(r#"{"matchers":{"a":"b"},"duration":"1h","end":5000,"created_by":"a"}"#)
                .unwrap_err()
                .field,
            "duration"
        );
        assert_eq!(
            req(r#"{"matchers":{"a":"b"},"start":100,"end":500,"created_by":"a"}"#)
                .unwrap_err()
                .message,
            "is in the past: the silence would cover nothing"
        );
        let s = req(
            r#"{"matchers":{"a":"b"},"start":"1970-01-01T00:20:00Z","end":2000,"created_by":"a"}"#,
        )
        .unwrap();
        assert_eq!((s.start, s.end), (1200, 2000));
        assert_eq!(
            req(r#"{"matchers":{"a":"b"},"duration":"1h","created_by":" "}"#)
                .unwrap_err()
                .field,
            "created_by"
        );
    }

    #[test]
    fn matchers_are_monitor_status_and_tags() {
        let s = req(r#"{"matchers":{"monitor":"cpu","status":"critical","host":"web01"},"duration":"1h","created_by":"a"}"#).unwrap();
        let tags = Tags::from([("host".to_string(), "web01".to_string())]);
        assert!(matches(&s, "cpu", "critical", &tags));
        assert!(!matches(&s, "cpu", "error", &tags));
        assert!(!matches(&s, "mem", "critical", &tags));
        assert!(!matches(&s, "cpu", "critical", &Tags::new()));
        assert_eq!(state(&s, 999), "pending");
        assert_eq!(state(&s, 1000), "active");
        assert_eq!(state(&s, 4600), "expired");
    }

    #[test]
    fn stored_listed_expired_and_covering() {
        let db = crate::events::EventDb::scratch();
        db.with_conn(|c| {
            let s =
                req(r#"{"matchers":{"host":"web01"},"duration":"1h","created_by":"a"}"#).unwrap();
            insert(c, &s).unwrap();
            insert(c, &s).unwrap();
            assert_eq!(list(c, 1000, false, 10).unwrap(), vec![s.clone()]);
            let mut ev = Event::default();
            ev.set(crate::model::event::field::DATE, 2000);
            ev.set(
                crate::model::event::field::DIMENSION_TAGS,
                "{\"host\":\"web01\"}",
            );
            assert_eq!(covering(c, &ev).unwrap(), Some(s.id.clone()));
            let e = expire(c, &s.id, 1500).unwrap().unwrap();
            assert_eq!(e.end, 1500);
            assert_eq!(covering(c, &ev).unwrap(), None);
            assert!(list(c, 1600, false, 10).unwrap().is_empty());
            assert_eq!(list(c, 1600, true, 10).unwrap().len(), 1);
            assert_eq!(expire(c, "silence-none", 1).unwrap(), None);
            Ok(())
        })
        .unwrap();
    }
}
