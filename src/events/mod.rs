//! Event storage: events, the unrecovered-issue table, detection state, kv and the delivery
//! outbox, behind one interface ([`EventDb`]) with two backends: the embedded SQLite file
//! (`<data>/tocsin.db`, WAL; [`lite`]) and a PostgreSQL server shared by several replicas
//! ([`pg`]). A check's events, issue rows, new object states and deliveries are committed in
//! one transaction, and event ids are deterministic, so a re-run after a crash (or a tick run
//! twice during a hand-over between replicas) stores nothing twice.
//!
//! - `sql`: the dialect-neutral statement layer both backends implement
//! - `schema`: tables, version, migrations
//! - `lite`, `pg`: the connections (SQLite groups concurrent commits; PostgreSQL pools)
//! - `behind`: replays' temporary SQLite store writes commits on a thread of its own

mod behind;
pub mod filter;
pub mod lease;
mod lite;
pub mod pg;
#[cfg(test)]
pub(crate) mod pg_test_server;
pub mod schema;
pub mod sql;
#[cfg(test)]
mod tests;

pub use filter::EventQuery;
pub use schema::SCHEMA_VERSION;
pub use sql::{Dialect, Sql, SqlError};

use crate::args;
use crate::detect::{ObjectState, Round};
use crate::model::event::{field, Event, Status};
use crate::model::Tags;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
pub enum EventDbError {
    /// A statement failed.
    #[error("event store {what}: {source}")]
    Sql {
        /// what was being done
        what: &'static str,
        /// the database error
        #[source]
        source: SqlError,
    },
    /// The grouped transaction that carried this commit failed (another caller ran it).
    #[error("event store: write failed: {message}")]
    Group {
        /// the failure of the shared transaction
        message: String,
    },
    /// A stored row could not be decoded.
    #[error("event store: corrupt row in {table}: {message}")]
    Corrupt {
        /// the table
        table: &'static str,
        /// what was wrong
        message: String,
    },
    /// Another replica changed a monitor's stored state since this one read it.
    #[error("event store: the state of monitor {monitor} was changed by another replica (version {found}, expected {expected}); it is read again")]
    Conflict {
        /// the monitor
        monitor: String,
        /// the version this replica based its change on
        expected: i64,
        /// the version stored
        found: i64,
    },
}

fn sql(what: &'static str) -> impl FnOnce(SqlError) -> EventDbError {
    move |source| EventDbError::Sql { what, source }
}

impl From<SqlError> for EventDbError {
    fn from(source: SqlError) -> EventDbError {
        EventDbError::Sql {
            what: "transaction",
            source,
        }
    }
}

/// The state of one object of a monitor, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// event ref
    pub event_ref: String,
    /// dimension tags
    pub tags: Tags,
    /// detection state
    pub state: ObjectState,
}

/// Everything one check persists, in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Commit {
    /// new events (already in final form); duplicates by id are ignored
    pub events: Vec<Event>,
    /// `(monitor, object)` states to write
    pub upserts: Vec<(String, StoredObject)>,
    /// `(monitor, ref)` states to drop
    pub deletes: Vec<(String, String)>,
    /// small values (see [`EventDb::set_kvs`]) that belong with this change, e.g. the tick
    /// of the check that made it; written only with a commit that changes something else
    pub kv: Vec<(String, String)>,
    /// on a shared backend: `(monitor, version)` — the commit applies only while the
    /// monitor's stored state is still at that version (then moves it one on); otherwise it
    /// fails with [`EventDbError::Conflict`] and nothing of it is stored
    pub fence: Option<(String, i64)>,
}

/// One row of the unrecovered-issue table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssueRow {
    /// event ref (round key)
    pub event_ref: String,
    /// monitor id (`df_monitor_checker_id`), or empty for custom events
    pub monitor: String,
    /// `df_source`
    pub source: String,
    /// canonical dimension tags
    pub dimension_tags: String,
    /// status of the latest event
    pub status: String,
    /// `df_issue_start_time`
    pub issue_start: i64,
    /// duration so far at `now`
    pub duration: i64,
    /// `df_fault_id`
    pub fault_id: String,
    /// latest event id
    pub last_event_id: String,
    /// latest event date
    pub last_date: i64,
    /// latest title
    pub title: String,
    /// latest message
    pub message: String,
}

impl IssueRow {
    /// The detection round this row records (an issue row is an open round).
    pub fn round(&self) -> Result<Round, EventDbError> {
        let last_fault = Status::parse(&self.status)
            .filter(|s| s.is_fault())
            .ok_or_else(|| EventDbError::Corrupt {
                table: "issues",
                message: format!(
                    "issue {}: status {:?} is not a fault status (warning, error, critical, nodata)",
                    self.event_ref, self.status
                ),
            })?;
        Ok(Round {
            start: self.issue_start,
            fault_id: self.fault_id.clone(),
            last_fault,
        })
    }
}

/// Runs inside the commit transaction for every new event, right after it is stored: it may
/// change the event (e.g. mark it silent; the stored body follows) and write rows of its own
/// (e.g. outbox deliveries), so that they commit or roll back together with the event.
pub trait EventHook: Send + Sync {
    /// Prepares the hook's rows when it is installed (e.g. forgets targets no longer
    /// configured).
    fn init(&self, c: &mut dyn Sql) -> Result<(), SqlError>;
    /// Called for each new event.
    fn on_event(&self, tx: &mut dyn Sql, ev: &mut Event) -> Result<(), SqlError>;
}

enum Backend {
    Sqlite(lite::Lite),
    Postgres(pg::Pool),
}

/// The event store.
pub struct EventDb {
    backend: Backend,
    hook: parking_lot::RwLock<Option<Arc<dyn EventHook>>>,
    live: tokio::sync::broadcast::Sender<Event>,
    rounds: Mutex<()>,
    /// whether detection state is stored (false for replays and `tocsin test`, which keep
    /// state in memory only and start from nothing)
    keeps_state: bool,
}

/// Held while a writer reads a custom-event round and commits its next step (see
/// [`EventDb::round_lock`]).
pub struct RoundGuard<'a> {
    _local: parking_lot::MutexGuard<'a, ()>,
    _shared: Option<pg::AdvisoryLock<'a>>,
}

impl EventDb {
    /// Opens (creating) `<dir>/tocsin.db`.
    pub fn open(dir: &Path) -> Result<EventDb, EventDbError> {
        Self::with_backend(Backend::Sqlite(lite::Lite::open(dir)?))
    }

    /// Connects to a PostgreSQL server shared by several replicas (`postgresql://...`),
    /// creating or migrating the schema.
    pub fn connect(url: &str) -> Result<EventDb, EventDbError> {
        Self::with_backend(Backend::Postgres(pg::Pool::connect(url)?))
    }

    /// An in-memory store (events, issues and detection state), e.g. for tests of the API.
    pub fn scratch() -> EventDb {
        Self::with_backend(Backend::Sqlite(lite::Lite::scratch()))
            .expect("schema applies to an in-memory database")
    }

    /// An in-memory store of events and issues only, for `replay` and `tocsin test`: their
    /// detection state lives in memory for one run, so checks skip writing it
    /// ([`EventDb::keeps_state`] is false).
    pub fn scratch_events() -> EventDb {
        EventDb {
            keeps_state: false,
            ..Self::with_backend(Backend::Sqlite(lite::Lite::temporary(|tx, c| {
                write_one(tx, None, c)
            })))
            .expect("schema applies to a temporary database")
        }
    }

    fn with_backend(backend: Backend) -> Result<EventDb, EventDbError> {
        let db = EventDb {
            backend,
            hook: parking_lot::RwLock::new(None),
            live: tokio::sync::broadcast::channel(4096).0,
            rounds: Mutex::new(()),
            keeps_state: true,
        };
        db.with_tx(schema::migrate).map_err(|e| match e {
            EventDbError::Sql {
                source: SqlError::Other(message),
                ..
            } => EventDbError::Corrupt {
                table: "schema",
                message,
            },
            e => e,
        })?;
        Ok(db)
    }

    /// Whether checks should write detection state here (see [`EventDb::scratch_events`]).
    pub fn keeps_state(&self) -> bool {
        self.keeps_state
    }

    /// Whether several replicas share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The database behind the store.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Installs the hook that sees every new event inside its transaction.
    pub fn set_hook(&self, hook: Arc<dyn EventHook>) -> Result<(), EventDbError> {
        self.with_tx(|c| hook.init(c))
            .map_err(|e| retag(e, "hook tables"))?;
        *self.hook.write() = Some(hook);
        Ok(())
    }

    /// New events as they are committed, for live streams. A slow reader misses events
    /// (it is told how many) rather than holding anything up.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// Serialises read-the-open-round-then-commit for writers that decide rounds from the
    /// issue table (custom events): hold it from the first [`EventDb::issue`] read to the
    /// [`EventDb::commit`], so two writers cannot both open one round (on PostgreSQL, also
    /// across replicas). Monitors do not need it: each keeps its rounds in its own state.
    pub fn round_lock(&self) -> Result<RoundGuard<'_>, EventDbError> {
        let local = self.rounds.lock();
        let shared = match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.advisory_lock(7310102).map_err(sql("round lock"))?),
        };
        Ok(RoundGuard {
            _local: local,
            _shared: shared,
        })
    }

    /// Runs `f` on a connection (autocommit).
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, SqlError>,
    ) -> Result<T, EventDbError> {
        match &self.backend {
            Backend::Sqlite(l) => l.with_conn::<T, SqlError>(f),
            Backend::Postgres(p) => p.with_conn::<T, SqlError>(f),
        }
        .map_err(sql("query"))
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn with_tx<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, SqlError>,
    ) -> Result<T, EventDbError> {
        match &self.backend {
            Backend::Sqlite(l) => l.with_tx::<T, SqlError>(f),
            Backend::Postgres(p) => p.with_tx::<T, SqlError>(f),
        }
        .map_err(sql("transaction"))
    }

    /// Whether the backend answers (for `/healthz`): a trivial query, or why it failed.
    pub fn ping(&self) -> Result<(), String> {
        self.with_conn(|c| c.int("SELECT 1", &[]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Writes a check's events, issue rows and states in one transaction. Returns the events
    /// that were new (an id already stored is skipped, with its issue update).
    ///
    /// On SQLite, commits from several threads are grouped: while one transaction is in
    /// flight, the others queue, and whoever gets the connection next writes every queued
    /// commit in one transaction and one fsync, then hands each caller its own new events. If
    /// that transaction fails, every commit of the group fails and none of it is stored.
    pub fn commit(&self, c: Commit) -> Result<Vec<Event>, EventDbError> {
        // Most checks of a quiet fleet change nothing stored: no transaction for them (their
        // `kv` is the caller's to write some other way).
        if c.events.is_empty() && c.upserts.is_empty() && c.deletes.is_empty() {
            return Ok(Vec::new());
        }
        let hook = self.hook.read().clone();
        let fresh = match &self.backend {
            // A replay's store (no hook) writes behind.
            Backend::Sqlite(l) if hook.is_none() && l.writes_behind() => l.commit_behind(c)?,
            Backend::Sqlite(l) => l.commit(c, |tx, c| write_one(tx, hook.as_deref(), c))?,
            Backend::Postgres(p) => p.with_tx(|tx| write_one(tx, hook.as_deref(), &c))?,
        };
        for ev in &fresh {
            // Nobody listening is fine.
            let _ = self.live.send(ev.clone());
        }
        Ok(fresh)
    }

    /// The stored object states of a monitor.
    pub fn load_states(&self, monitor: &str) -> Result<Vec<StoredObject>, EventDbError> {
        let rows = self
            .with_conn(|c| {
                c.rows(
                    "SELECT ref, tags, state FROM object_state WHERE monitor = ?1 ORDER BY ref",
                    args![monitor],
                )
            })
            .map_err(|e| retag(e, "load states"))?;
        let mut out = Vec::new();
        for r in rows {
            let (event_ref, tags, state) = (
                r.text(0).map_err(sql("read state"))?,
                r.text(1).map_err(sql("read state"))?,
                r.text(2).map_err(sql("read state"))?,
            );
            let tags: Tags = serde_json::from_str(&tags).map_err(|e| EventDbError::Corrupt {
                table: "object_state",
                message: format!("tags of {event_ref}: {e}"),
            })?;
            let state: ObjectState =
                serde_json::from_str(&state).map_err(|e| EventDbError::Corrupt {
                    table: "object_state",
                    message: format!("state of {event_ref}: {e}"),
                })?;
            out.push(StoredObject {
                event_ref,
                tags,
                state,
            });
        }
        Ok(out)
    }

    /// The version of a monitor's stored state on a shared backend (0 before any change;
    /// see [`Commit::fence`]).
    pub fn state_version(&self, monitor: &str) -> Result<i64, EventDbError> {
        self.with_conn(|c| state_version(c, monitor))
            .map_err(|e| retag(e, "state version"))
    }

    /// Events matching the query, newest first.
    pub fn events(&self, q: &EventQuery) -> Result<Vec<Event>, EventDbError> {
        let (where_sql, args) = q.to_sql(self.dialect());
        let limit = q.limit.unwrap_or(100).min(10_000);
        let offset = q.offset.unwrap_or(0);
        let sql_text = format!(
            "SELECT body FROM events{where_sql} ORDER BY date DESC, id DESC LIMIT {limit} OFFSET {offset}"
        );
        let rows = self
            .with_conn(|c| c.rows(&sql_text, &args))
            .map_err(|e| retag(e, "query events"))?;
        rows.iter()
            .map(|r| decode_event(&r.text(0).map_err(sql("read event"))?))
            .collect()
    }

    /// One event by id.
    pub fn event(&self, id: &str) -> Result<Option<Event>, EventDbError> {
        let row = self
            .with_conn(|c| c.row("SELECT body FROM events WHERE id = ?1", args![id]))
            .map_err(|e| retag(e, "get event"))?;
        row.map(|r| decode_event(&r.text(0).map_err(sql("read event"))?))
            .transpose()
    }

    /// Counts of events matching `q` grouped by `by` (`source`, `status`, `name`, `group`,
    /// `monitor`).
    pub fn stats(&self, by: &str, q: &EventQuery) -> Result<BTreeMap<String, i64>, EventDbError> {
        let col = match by {
            "source" => "source",
            "status" => "status",
            "name" => "name",
            "group" => "grp",
            "monitor" => "monitor",
            _ => {
                return Err(EventDbError::Corrupt {
                    table: "events",
                    message: format!(
                        "cannot count by {by:?}: expected source, status, name, group or monitor"
                    ),
                })
            }
        };
        let (where_sql, args) = q.to_sql(self.dialect());
        let text = format!("SELECT {col}, COUNT(*) FROM events{where_sql} GROUP BY {col}");
        let rows = self
            .with_conn(|c| c.rows(&text, &args))
            .map_err(|e| retag(e, "stats"))?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?)))
            .collect::<Result<BTreeMap<_, _>, SqlError>>()
            .map_err(sql("stats"))
    }

    /// The unrecovered-issue table, durations computed at `now`.
    pub fn issues(&self, monitor: Option<&str>, now: i64) -> Result<Vec<IssueRow>, EventDbError> {
        let rows = self
            .with_conn(|c| match monitor {
                Some(m) => c.rows(
                    &format!(
                        "SELECT {ISSUE_COLUMNS} FROM issues WHERE monitor = ?1 ORDER BY start, ref"
                    ),
                    args![m],
                ),
                None => c.rows(
                    &format!("SELECT {ISSUE_COLUMNS} FROM issues ORDER BY start, ref"),
                    &[],
                ),
            })
            .map_err(|e| retag(e, "issues"))?;
        rows.iter()
            .map(|r| issue_row(r, now))
            .collect::<Result<_, _>>()
            .map_err(sql("issues"))
    }

    /// Open issues per monitor id (custom events under `""`): a grouped count, so the monitor
    /// list does not read every issue row.
    pub fn open_issue_counts(&self) -> Result<BTreeMap<String, i64>, EventDbError> {
        let rows = self
            .with_conn(|c| c.rows("SELECT monitor, COUNT(*) FROM issues GROUP BY monitor", &[]))
            .map_err(|e| retag(e, "issue counts"))?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?)))
            .collect::<Result<_, SqlError>>()
            .map_err(sql("issue counts"))
    }

    /// The open issue of one event ref, if any (durations at `now`). A primary-key lookup, so
    /// its cost does not grow with the number of open issues.
    pub fn issue(&self, event_ref: &str, now: i64) -> Result<Option<IssueRow>, EventDbError> {
        let row = self
            .with_conn(|c| {
                c.row(
                    &format!("SELECT {ISSUE_COLUMNS} FROM issues WHERE ref = ?1"),
                    args![event_ref],
                )
            })
            .map_err(|e| retag(e, "issue"))?;
        row.map(|r| issue_row(&r, now))
            .transpose()
            .map_err(sql("issue"))
    }

    /// Number of events stored.
    pub fn event_count(&self) -> Result<i64, EventDbError> {
        self.with_conn(|c| c.int("SELECT COUNT(*) FROM events", &[]))
            .map_err(|e| retag(e, "count"))
    }

    /// Deletes events older than `cutoff` (date < cutoff) in bounded chunks; returns how many.
    pub fn drop_events_before(&self, cutoff: i64) -> Result<usize, EventDbError> {
        let mut total = 0;
        loop {
            // Small chunks keep the write lock short so checks and ingest are not stalled.
            let n = self
                .with_conn(|c| {
                    c.exec(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE date < ?1 LIMIT 5000)",
                        args![cutoff],
                    )
                })
                .map_err(|e| retag(e, "retention"))? as usize;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    /// Reads a small value kept across restarts.
    pub fn get_kv(&self, key: &str) -> Result<Option<String>, EventDbError> {
        let row = self
            .with_conn(|c| c.row("SELECT value FROM kv WHERE key = ?1", args![key]))
            .map_err(|e| retag(e, "kv get"))?;
        row.map(|r| r.text(0)).transpose().map_err(sql("kv get"))
    }

    /// Stores small values kept across restarts, in one transaction.
    pub fn set_kvs(&self, pairs: &[(String, String)]) -> Result<(), EventDbError> {
        self.with_tx(|c| {
            for (k, v) in pairs {
                set_kv(c, k, v)?;
            }
            Ok(())
        })
        .map_err(|e| retag(e, "kv set"))
    }
}

/// The backend's error under a name saying what was being done.
fn retag(e: EventDbError, what: &'static str) -> EventDbError {
    match e {
        EventDbError::Sql { source, .. } => EventDbError::Sql { what, source },
        e => e,
    }
}

fn decode_event(body: &str) -> Result<Event, EventDbError> {
    serde_json::from_str(body).map_err(|e| EventDbError::Corrupt {
        table: "events",
        message: e.to_string(),
    })
}

fn set_kv(c: &mut dyn Sql, k: &str, v: &str) -> Result<(), SqlError> {
    c.exec(
        "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        args![k, v],
    )?;
    Ok(())
}

fn state_version(c: &mut dyn Sql, monitor: &str) -> Result<i64, SqlError> {
    if c.dialect() == Dialect::Sqlite {
        return Ok(0);
    }
    Ok(c.row(
        "SELECT version FROM state_versions WHERE monitor = ?1",
        args![monitor],
    )?
    .map(|r| r.int(0))
    .transpose()?
    .unwrap_or(0))
}

/// The columns [`issue_row`] reads, in its order.
const ISSUE_COLUMNS: &str =
    "ref, monitor, source, dimension_tags, status, start, fault_id, last_event_id, last_date, title, message";

/// One issue row selected with [`ISSUE_COLUMNS`], its duration computed at `now`.
fn issue_row(r: &sql::Row, now: i64) -> Result<IssueRow, SqlError> {
    let start = r.int(5)?;
    Ok(IssueRow {
        event_ref: r.text(0)?,
        monitor: r.text(1)?,
        source: r.text(2)?,
        dimension_tags: r.text(3)?,
        status: r.text(4)?,
        issue_start: start,
        duration: (now - start).max(0),
        fault_id: r.text(6)?,
        last_event_id: r.text(7)?,
        last_date: r.int(8)?,
        title: r.text(9)?,
        message: r.text(10)?,
    })
}

/// Writes one commit inside `tx`; returns its new events.
fn write_one(
    tx: &mut dyn Sql,
    hook: Option<&dyn EventHook>,
    c: &Commit,
) -> Result<Vec<Event>, EventDbError> {
    if let Some((monitor, expected)) = &c.fence {
        // The row lock (PostgreSQL) holds off a concurrent writer of the same monitor until
        // this transaction ends; it then sees the new version and fails.
        let found = tx
            .row(
                "SELECT version FROM state_versions WHERE monitor = ?1 FOR UPDATE",
                args![monitor],
            )
            .and_then(|r| r.map(|r| r.int(0)).transpose())
            .map_err(sql("state version"))?
            .unwrap_or(0);
        if found != *expected {
            return Err(EventDbError::Conflict {
                monitor: monitor.clone(),
                expected: *expected,
                found,
            });
        }
        tx.exec(
            "INSERT INTO state_versions(monitor, version) VALUES (?1, ?2) \
             ON CONFLICT(monitor) DO UPDATE SET version = excluded.version",
            args![monitor, expected + 1],
        )
        .map_err(sql("state version"))?;
    }
    let mut fresh = Vec::new();
    for ev in &c.events {
        // Stored first: only the transaction that stored an id plans its deliveries, even
        // when two replicas commit the same event at once.
        let body = serde_json::to_string(ev).expect("event serialises");
        if !insert_event(tx, ev, &body)? {
            continue;
        }
        let mut ev = ev.clone();
        if let Some(h) = hook {
            h.on_event(tx, &mut ev).map_err(sql("event hook"))?;
            let after = serde_json::to_string(&ev).expect("event serialises");
            if after != body {
                tx.exec(
                    "UPDATE events SET body = ?2 WHERE id = ?1",
                    args![ev.id(), after],
                )
                .map_err(sql("event hook"))?;
            }
        }
        apply_issue(tx, &ev)?;
        fresh.push(ev);
    }
    for (monitor, o) in &c.upserts {
        let tags = serde_json::to_string(&o.tags).expect("tags serialise");
        let state = serde_json::to_string(&o.state).expect("state serialises");
        tx.exec(
            "INSERT INTO object_state(monitor, ref, tags, state) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(monitor, ref) DO UPDATE SET tags = excluded.tags, state = excluded.state",
            args![monitor, &o.event_ref, tags, state],
        )
        .map_err(sql("write state"))?;
    }
    for (monitor, r) in &c.deletes {
        tx.exec(
            "DELETE FROM object_state WHERE monitor = ?1 AND ref = ?2",
            args![monitor, r],
        )
        .map_err(sql("delete state"))?;
    }
    for (k, v) in &c.kv {
        set_kv(tx, k, v).map_err(sql("kv set"))?;
    }
    Ok(fresh)
}

fn insert_event(tx: &mut dyn Sql, ev: &Event, body: &str) -> Result<bool, EventDbError> {
    let s = |k: &str| ev.str(k).unwrap_or("").to_string();
    let n = tx
        .exec(
            "INSERT INTO events(id, date, status, source, monitor, ref, title, message, name, grp, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
            args![
                ev.id(),
                ev.date(),
                s(field::STATUS),
                s(field::SOURCE),
                s(field::MONITOR_CHECKER_ID),
                ev.event_ref(),
                s(field::TITLE),
                s(field::MESSAGE),
                s(field::EVENT_NAME),
                s(field::EVENT_GROUP),
                body
            ],
        )
        .map_err(sql("insert event"))?;
    Ok(n == 1)
}

/// Keeps the unrecovered-issue table in step with an event: faults open or update the row,
/// recoveries delete it, info changes nothing.
fn apply_issue(tx: &mut dyn Sql, ev: &Event) -> Result<(), EventDbError> {
    let Some(status) = ev.status() else {
        return Ok(());
    };
    let r = ev.event_ref();
    if r.is_empty() {
        return Ok(());
    }
    if status.is_recovery() {
        tx.exec("DELETE FROM issues WHERE ref = ?1", args![r])
            .map_err(sql("close issue"))?;
    } else if status.is_fault() {
        let s = |k: &str| ev.str(k).unwrap_or("").to_string();
        tx.exec(
            "INSERT INTO issues(ref, monitor, source, dimension_tags, status, start, fault_id, \
             last_event_id, last_date, title, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT(ref) DO UPDATE SET monitor = excluded.monitor, source = excluded.source, \
             dimension_tags = excluded.dimension_tags, status = excluded.status, start = excluded.start, \
             fault_id = excluded.fault_id, last_event_id = excluded.last_event_id, \
             last_date = excluded.last_date, title = excluded.title, message = excluded.message",
            args![
                r,
                s(field::MONITOR_CHECKER_ID),
                s(field::SOURCE),
                ev.dimension_tags().unwrap_or("{}"),
                status.as_str(),
                ev.issue_start().unwrap_or(ev.date()),
                ev.fault_id().unwrap_or(ev.id()),
                ev.id(),
                ev.date(),
                s(field::TITLE),
                s(field::MESSAGE),
            ],
        )
        .map_err(sql("open issue"))?;
    }
    Ok(())
}
