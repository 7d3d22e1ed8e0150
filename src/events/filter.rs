//! The one event filter of `GET /api/v1/events`, `/events/stats` and the live stream: the
//! same value renders the SQL `WHERE` clause for stored events ([`EventQuery::to_sql`]) and
//! decides for a live event ([`EventQuery::matches`]), so the query API and the stream cannot
//! disagree.
//!
//! Text (`q`) matches a substring of the title or the message, ignoring ASCII case: that is
//! what SQLite's `LIKE` does, and the predicate folds case the same way.

use super::sql::{Dialect, Value as SqlValue};
use crate::model::event::Event;

/// Filters for event queries (every field optional), plus paging for stored events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// `df_status`
    pub status: Option<String>,
    /// `df_source`
    pub source: Option<String>,
    /// `df_monitor_checker_id`
    pub monitor: Option<String>,
    /// event ref
    pub event_ref: Option<String>,
    /// date >= from
    pub from: Option<i64>,
    /// date <= to
    pub to: Option<i64>,
    /// text in title or message (ASCII case ignored)
    pub text: Option<String>,
    /// dimension tags the event must carry with exactly these values (all of them)
    pub tags: Vec<(String, String)>,
    /// at most this many (default 100, max 10000); stored events only
    pub limit: Option<usize>,
    /// skip this many; stored events only
    pub offset: Option<usize>,
}

/// The columns of an event the filter looks at, read the way they are stored.
struct Columns<'a> {
    status: &'a str,
    source: &'a str,
    monitor: &'a str,
    event_ref: &'a str,
    date: i64,
    title: &'a str,
    message: &'a str,
    dimension_tags: &'a str,
}

impl<'a> Columns<'a> {
    fn of(ev: &'a Event) -> Columns<'a> {
        Columns {
            status: ev.status_str().unwrap_or(""),
            source: ev.source().unwrap_or(""),
            monitor: ev.checker_id().unwrap_or(""),
            event_ref: ev.event_ref(),
            date: ev.date(),
            title: ev.title().unwrap_or(""),
            message: ev.message().unwrap_or(""),
            dimension_tags: ev.dimension_tags().unwrap_or(""),
        }
    }
}

/// Substring test ignoring ASCII case, as SQLite's `LIKE` does without ICU.
pub fn contains_ascii_ci(hay: &str, needle: &str) -> bool {
    hay.to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

/// `title` and `message` with A-Z folded to a-z and nothing else (PostgreSQL).
const ASCII_LOWER_TITLE: &str =
    "translate(title, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')";
const ASCII_LOWER_MESSAGE: &str =
    "translate(message, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')";

impl EventQuery {
    /// The `WHERE` clause (empty, or starting with a space) and its numbered arguments.
    pub fn to_sql(&self, dialect: Dialect) -> (String, Vec<SqlValue>) {
        let mut clauses = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        let mut add = |clause: &str, v: SqlValue| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &self.status {
            add("status = ?", SqlValue::Text(s.clone()));
        }
        if let Some(s) = &self.source {
            add("source = ?", SqlValue::Text(s.clone()));
        }
        if let Some(s) = &self.monitor {
            add("monitor = ?", SqlValue::Text(s.clone()));
        }
        if let Some(s) = &self.event_ref {
            add("ref = ?", SqlValue::Text(s.clone()));
        }
        if let Some(t) = self.from {
            add("date >= ?", SqlValue::Int(t));
        }
        if let Some(t) = self.to {
            add("date <= ?", SqlValue::Int(t));
        }
        if let Some(text) = &self.text {
            // `%` and `_` are literal in `q`: escape them for LIKE.
            let pat = format!(
                "%{}%",
                text.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let n = args.len() + 1;
            clauses.push(match dialect {
                // SQLite's LIKE folds ASCII case only, as the predicate does.
                Dialect::Sqlite => {
                    args.push(SqlValue::Text(pat));
                    format!("(title LIKE ?{n} ESCAPE '\\' OR message LIKE ?{n} ESCAPE '\\')")
                }
                // PostgreSQL's LIKE keeps case and ILIKE folds more than ASCII (by locale):
                // fold A-Z on both sides instead.
                Dialect::Postgres => {
                    args.push(SqlValue::Text(pat.to_ascii_lowercase()));
                    format!(
                        "({ASCII_LOWER_TITLE} LIKE ?{n} ESCAPE '\\' OR {ASCII_LOWER_MESSAGE} LIKE ?{n} ESCAPE '\\')"
                    )
                }
            });
        }
        for (k, v) in &self.tags {
            // `df_dimension_tags` is a JSON object kept as text inside the event's JSON body.
            args.push(SqlValue::Text(k.clone()));
            args.push(SqlValue::Text(v.clone()));
            let n = args.len();
            clauses.push(match dialect {
                Dialect::Sqlite => format!(
                    "EXISTS (SELECT 1 FROM json_each(json_extract(body, '$.df_dimension_tags')) \
                     WHERE key = ?{} AND value = ?{n})",
                    n - 1
                ),
                Dialect::Postgres => format!(
                    "((body::jsonb ->> 'df_dimension_tags')::jsonb ->> ?{}) = ?{n}",
                    n - 1
                ),
            });
        }
        if clauses.is_empty() {
            (String::new(), args)
        } else {
            (format!(" WHERE {}", clauses.join(" AND ")), args)
        }
    }

    /// Whether `ev` passes the filter (paging aside): the predicate of the live stream.
    pub fn matches(&self, ev: &Event) -> bool {
        let c = Columns::of(ev);
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.status, c.status)
            && eq(&self.source, c.source)
            && eq(&self.monitor, c.monitor)
            && eq(&self.event_ref, c.event_ref)
            && self.from.is_none_or(|t| c.date >= t)
            && self.to.is_none_or(|t| c.date <= t)
            && self
                .text
                .as_deref()
                .is_none_or(|t| contains_ascii_ci(c.title, t) || contains_ascii_ci(c.message, t))
            && (self.tags.is_empty() || has_tags(c.dimension_tags, &self.tags))
    }
}

/// Whether the dimension tags (JSON object text) hold every `(key, value)` of `want`.
fn has_tags(dimension_tags: &str, want: &[(String, String)]) -> bool {
    let Ok(serde_json::Value::Object(have)) = serde_json::from_str(dimension_tags) else {
        return false;
    };
    want.iter()
        .all(|(k, v)| have.get(k).and_then(|x| x.as_str()) == Some(v.as_str()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{Commit, EventDb};

    fn ev(id: &str, status: &str, source: &str, monitor: &str, date: i64, title: &str) -> Event {
        let mut e = Event::new();
        e.set("df_event_id", id);
        e.set("date", date);
        e.set("df_status", status);
        e.set("df_source", source);
        if !monitor.is_empty() {
            e.set("df_monitor_checker_id", monitor);
            e.set("df_monitor_checker_event_ref", format!("ref-{monitor}"));
        }
        e.set("df_title", title);
        e.set("df_message", format!("message of {id}: ÄÖ 100% x_y"));
        e
    }

    fn events() -> Vec<Event> {
        vec![
            ev("a", "critical", "monitor", "cpu", 10, "CPU high on web01"),
            ev("b", "ok", "monitor", "cpu", 20, "cpu back"),
            ev("c", "warning", "monitor", "disk", 30, "Disk 90% full"),
            ev("d", "info", "custom", "", 40, "Deploy started"),
            ev("e", "critical", "custom", "", 50, "ÄRGER: payment down"),
            ev("f", "nodata", "monitor", "disk", 60, "no data_from disk"),
        ]
        .into_iter()
        .zip([
            r#"{"host":"web01"}"#,
            r#"{"host":"web01","cpu":"total"}"#,
            r#"{"host":"db01"}"#,
            "",
            r#"{"service":"pay's \"api\""}"#,
            r#"{"host":"db01","mount":"/"}"#,
        ])
        .map(|(mut e, tags)| {
            if !tags.is_empty() {
                e.set("df_dimension_tags", tags);
            }
            e
        })
        .collect()
    }

    fn tags(pairs: &[(&str, &str)]) -> EventQuery {
        EventQuery {
            tags: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn tag_filters_match_exact_values_of_every_tag() {
        let ids = |q: EventQuery| -> Vec<String> {
            events()
                .iter()
                .filter(|e| q.matches(e))
                .map(|e| e.id().to_string())
                .collect()
        };
        assert_eq!(ids(tags(&[("host", "web01")])), ["a", "b"]);
        assert_eq!(ids(tags(&[("host", "db01"), ("mount", "/")])), ["f"]);
        assert_eq!(ids(tags(&[("service", "pay's \"api\"")])), ["e"]);
        assert!(
            ids(tags(&[("host", "web")])).is_empty(),
            "exact, not a prefix"
        );
    }

    fn filters() -> Vec<EventQuery> {
        let s = |v: &str| Some(v.to_string());
        let text = |t: &str| EventQuery {
            text: s(t),
            ..Default::default()
        };
        vec![
            EventQuery::default(),
            EventQuery {
                status: s("critical"),
                ..Default::default()
            },
            EventQuery {
                source: s("custom"),
                ..Default::default()
            },
            EventQuery {
                monitor: s("cpu"),
                ..Default::default()
            },
            EventQuery {
                event_ref: s("ref-disk"),
                ..Default::default()
            },
            EventQuery {
                from: Some(20),
                to: Some(50),
                ..Default::default()
            },
            EventQuery {
                from: Some(45),
                ..Default::default()
            },
            EventQuery {
                to: Some(10),
                ..Default::default()
            },
            text("cpu"),
            text("CPU"),
            text("90%"),
            text("9_%"),
            text("data_"),
            text("äö"),
            text("ÄÖ"),
            text("ärger"),
            text("message OF"),
            text("nothing like this"),
            EventQuery {
                status: s("critical"),
                from: Some(15),
                text: s("DOWN"),
                ..Default::default()
            },
            EventQuery {
                source: s("monitor"),
                to: Some(30),
                text: s("Cpu"),
                ..Default::default()
            },
            tags(&[("host", "web01")]),
            tags(&[("host", "db01"), ("mount", "/")]),
            tags(&[("service", "pay's \"api\"")]),
            tags(&[("host", "web")]),
            EventQuery {
                status: s("ok"),
                ..tags(&[("host", "web01")])
            },
        ]
    }

    #[test]
    fn sql_and_predicate_agree() {
        sql_and_predicate_agree_on(&EventDb::scratch());
    }

    /// The stored events a filter selects are the ones its predicate accepts.
    pub(crate) fn sql_and_predicate_agree_on(db: &EventDb) {
        db.commit(Commit {
            events: events(),
            ..Default::default()
        })
        .unwrap();
        for f in filters() {
            let mut from_sql: Vec<String> = db
                .events(&f)
                .unwrap()
                .iter()
                .map(|e| e.id().to_string())
                .collect();
            from_sql.sort();
            let by_predicate: Vec<String> = events()
                .iter()
                .filter(|e| f.matches(e))
                .map(|e| e.id().to_string())
                .collect();
            assert_eq!(from_sql, by_predicate, "filter {f:?}");
        }
    }

    #[test]
    fn predicate_applies_dates_and_folds_ascii_case() {
        let e = ev("a", "critical", "monitor", "cpu", 10, "CPU high");
        let q = |f: EventQuery| f.matches(&e);
        assert!(q(EventQuery {
            text: Some("cpu HIGH".into()),
            ..Default::default()
        }));
        assert!(!q(EventQuery {
            from: Some(11),
            ..Default::default()
        }));
        assert!(!q(EventQuery {
            to: Some(9),
            ..Default::default()
        }));
        assert!(q(EventQuery {
            from: Some(10),
            to: Some(10),
            ..Default::default()
        }));
    }
}
