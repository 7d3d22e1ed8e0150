//! Event storage: events, the unrecovered-issue table and detection state, in one SQLite file
//! (`<data>/tocsin.db`, WAL). A check's events, issue rows and new object states are committed
//! in one transaction, and event ids are deterministic, so a re-run after a crash is harmless.

pub mod filter;

pub use filter::EventQuery;

use crate::detect::{ObjectState, Round};
use crate::model::event::{field, Event, Status};
use crate::model::Tags;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
pub enum EventDbError {
    /// SQLite failed.
    #[error("event store {what}: {source}")]
    Sql {
        /// what was being done
        what: &'static str,
        /// the SQLite error
        #[source]
        source: rusqlite::Error,
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
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> EventDbError {
    move |source| EventDbError::Sql { what, source }
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

/// Runs inside the commit transaction for every new event, before it is stored: it may change
/// the event (e.g. mark it silent) and write rows of its own (e.g. outbox deliveries), so that
/// they commit or roll back together with the event.
pub trait EventHook: Send + Sync {
    /// Creates the hook's tables.
    fn init(&self, conn: &Connection) -> rusqlite::Result<()>;
    /// Called for each new event.
    fn on_event(&self, tx: &rusqlite::Transaction, ev: &mut Event) -> rusqlite::Result<()>;
}

/// A commit waiting in [`EventDb::commit`]'s group, and its outcome once written.
struct Job {
    commit: Commit,
    done: Mutex<Option<Result<Vec<Event>, String>>>,
}

/// The event store.
pub struct EventDb {
    conn: Mutex<Connection>,
    hook: parking_lot::RwLock<Option<std::sync::Arc<dyn EventHook>>>,
    live: tokio::sync::broadcast::Sender<Event>,
    rounds: Mutex<()>,
    /// commits waiting for the connection (see [`EventDb::commit`])
    queue: Mutex<Vec<std::sync::Arc<Job>>>,
    /// whether detection state is stored (false for replays and `tocsin test`, which keep
    /// state in memory only and start from nothing)
    keeps_state: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events(
    id TEXT PRIMARY KEY,
    date INTEGER NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    monitor TEXT NOT NULL DEFAULT '',
    ref TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    grp TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_date ON events(date);
CREATE INDEX IF NOT EXISTS events_monitor ON events(monitor, date);
CREATE INDEX IF NOT EXISTS events_ref ON events(ref, date);
CREATE TABLE IF NOT EXISTS issues(
    ref TEXT PRIMARY KEY,
    monitor TEXT NOT NULL,
    source TEXT NOT NULL,
    dimension_tags TEXT NOT NULL,
    status TEXT NOT NULL,
    start INTEGER NOT NULL,
    fault_id TEXT NOT NULL,
    last_event_id TEXT NOT NULL,
    last_date INTEGER NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS object_state(
    monitor TEXT NOT NULL,
    ref TEXT NOT NULL,
    tags TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY(monitor, ref)
);
CREATE TABLE IF NOT EXISTS kv(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

impl EventDb {
    /// Opens (creating) `<dir>/tocsin.db`.
    pub fn open(dir: &Path) -> Result<EventDb, EventDbError> {
        std::fs::create_dir_all(dir).map_err(|e| EventDbError::Corrupt {
            table: "directory",
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let conn = Connection::open(dir.join("tocsin.db")).map_err(sql("open"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )
        .map_err(sql("configure"))?;
        Self::init(conn)
    }

    /// An in-memory store (events, issues and detection state), e.g. for tests of the API.
    pub fn scratch() -> EventDb {
        let conn = Connection::open_in_memory().expect("in-memory SQLite opens");
        Self::init(conn).expect("schema applies to an in-memory database")
    }

    /// An in-memory store of events and issues only, for `replay` and `tocsin test`: their
    /// detection state lives in memory for one run, so checks skip writing it
    /// ([`EventDb::keeps_state`] is false).
    ///
    /// SQLite's private temporary database (an empty file name) rather than `:memory:`: an
    /// in-memory database walks its whole page cache at every commit, so a long replay's
    /// commits got slower as its events piled up. Nothing here needs to survive the process,
    /// so writes are not synced.
    pub fn scratch_events() -> EventDb {
        let conn = Connection::open("").expect("a temporary SQLite database opens");
        conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            .expect("a temporary database takes its pragmas");
        EventDb {
            keeps_state: false,
            ..Self::init(conn).expect("schema applies to a temporary database")
        }
    }

    /// Whether checks should write detection state here (see [`EventDb::scratch_events`]).
    pub fn keeps_state(&self) -> bool {
        self.keeps_state
    }

    fn init(mut conn: Connection) -> Result<EventDb, EventDbError> {
        conn.execute_batch(SCHEMA).map_err(sql("migrate"))?;
        migrate(&mut conn)?;
        Ok(EventDb {
            conn: Mutex::new(conn),
            hook: parking_lot::RwLock::new(None),
            live: tokio::sync::broadcast::channel(4096).0,
            rounds: Mutex::new(()),
            keeps_state: true,
            queue: Mutex::new(Vec::new()),
        })
    }

    /// Installs the hook that sees every new event inside its transaction.
    pub fn set_hook(&self, hook: std::sync::Arc<dyn EventHook>) -> Result<(), EventDbError> {
        hook.init(&self.conn.lock()).map_err(sql("hook tables"))?;
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
    /// [`EventDb::commit`], so two writers cannot both open one round. Monitors do not need
    /// it: each keeps its rounds in its own state, under its own lock.
    pub fn round_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.rounds.lock()
    }

    /// Runs `f` with the connection (for the hook's own queries).
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, EventDbError> {
        f(&mut self.conn.lock()).map_err(sql("query"))
    }

    /// Writes a check's events, issue rows and states in one transaction. Returns the events
    /// that were new (an id already stored is skipped, with its issue update).
    ///
    /// Commits from several threads are grouped: while one transaction is in flight, the
    /// others queue, and whoever gets the connection next writes every queued commit in one
    /// transaction and one fsync, then hands each caller its own new events. If that
    /// transaction fails, every commit of the group fails and none of it is stored.
    pub fn commit(&self, c: Commit) -> Result<Vec<Event>, EventDbError> {
        // Most checks of a quiet fleet change nothing stored: no transaction for them (their
        // `kv` is the caller's to write some other way).
        if c.events.is_empty() && c.upserts.is_empty() && c.deletes.is_empty() {
            return Ok(Vec::new());
        }
        let job = std::sync::Arc::new(Job {
            commit: c,
            done: Mutex::new(None),
        });
        self.queue.lock().push(job.clone());
        let mut conn = self.conn.lock();
        if let Some(done) = job.done.lock().take() {
            // An earlier holder of the connection wrote it with its group.
            return done.map_err(|message| EventDbError::Group { message });
        }
        let jobs = std::mem::take(&mut *self.queue.lock());
        let result = self.write_group(&mut conn, &jobs);
        // Results are handed out before the connection is released: a waiting caller checks
        // for its result as soon as it holds the connection.
        let mut mine = None;
        let mut published = Vec::new();
        match result {
            Ok(all) => {
                for (j, fresh) in jobs.iter().zip(all) {
                    published.extend(fresh.iter().cloned());
                    if std::sync::Arc::ptr_eq(j, &job) {
                        mine = Some(Ok(fresh));
                    } else {
                        *j.done.lock() = Some(Ok(fresh));
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                for j in jobs.iter().filter(|j| !std::sync::Arc::ptr_eq(j, &job)) {
                    *j.done.lock() = Some(Err(message.clone()));
                }
                mine = Some(Err(e));
            }
        }
        drop(conn);
        for ev in published {
            // Nobody listening is fine.
            let _ = self.live.send(ev);
        }
        mine.expect("the caller's commit is in its own group")
    }

    /// One transaction for a group of commits; each commit's new events, in order.
    fn write_group(
        &self,
        conn: &mut Connection,
        jobs: &[std::sync::Arc<Job>],
    ) -> Result<Vec<Vec<Event>>, EventDbError> {
        let hook = self.hook.read().clone();
        let tx = conn.transaction().map_err(sql("begin"))?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(write_one(&tx, hook.as_deref(), &job.commit)?);
        }
        tx.commit().map_err(sql("commit"))?;
        Ok(out)
    }

    /// The stored object states of a monitor.
    pub fn load_states(&self, monitor: &str) -> Result<Vec<StoredObject>, EventDbError> {
        let conn = self.conn.lock();
        let mut st = conn
            .prepare("SELECT ref, tags, state FROM object_state WHERE monitor = ?1 ORDER BY ref")
            .map_err(sql("prepare load"))?;
        let rows = st
            .query_map(params![monitor], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql("load states"))?;
        let mut out = Vec::new();
        for row in rows {
            let (event_ref, tags, state) = row.map_err(sql("read state"))?;
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

    /// Events matching the query, newest first.
    pub fn events(&self, q: &EventQuery) -> Result<Vec<Event>, EventDbError> {
        let (where_sql, args) = q.to_sql();
        let limit = q.limit.unwrap_or(100).min(10_000);
        let offset = q.offset.unwrap_or(0);
        let sql_text = format!(
            "SELECT body FROM events{where_sql} ORDER BY date DESC, id DESC LIMIT {limit} OFFSET {offset}"
        );
        let conn = self.conn.lock();
        let mut st = conn.prepare(&sql_text).map_err(sql("prepare query"))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })
            .map_err(sql("query events"))?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(sql("read event"))?;
            let ev: Event = serde_json::from_str(&body).map_err(|e| EventDbError::Corrupt {
                table: "events",
                message: e.to_string(),
            })?;
            out.push(ev);
        }
        Ok(out)
    }

    /// One event by id.
    pub fn event(&self, id: &str) -> Result<Option<Event>, EventDbError> {
        let conn = self.conn.lock();
        let body: Option<String> = conn
            .query_row("SELECT body FROM events WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("get event"))?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|e| EventDbError::Corrupt {
                table: "events",
                message: e.to_string(),
            })
        })
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
        let (where_sql, args) = q.to_sql();
        let conn = self.conn.lock();
        let mut st = conn
            .prepare(&format!(
                "SELECT {col}, COUNT(*) FROM events{where_sql} GROUP BY {col}"
            ))
            .map_err(sql("prepare stats"))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(sql("stats"))?;
        rows.collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(sql("stats"))
    }

    /// The unrecovered-issue table, durations computed at `now`.
    pub fn issues(&self, monitor: Option<&str>, now: i64) -> Result<Vec<IssueRow>, EventDbError> {
        let conn = self.conn.lock();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {ISSUE_COLUMNS} FROM issues WHERE (?1 IS NULL OR monitor = ?1) ORDER BY start, ref"
            ))
            .map_err(sql("prepare issues"))?;
        let rows = st
            .query_map(params![monitor], |r| issue_row(r, now))
            .map_err(sql("issues"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql("issues"))
    }

    /// Open issues per monitor id (custom events under `""`): a grouped count, so the monitor
    /// list does not read every issue row.
    pub fn open_issue_counts(&self) -> Result<BTreeMap<String, i64>, EventDbError> {
        let conn = self.conn.lock();
        let mut st = conn
            .prepare_cached("SELECT monitor, COUNT(*) FROM issues GROUP BY monitor")
            .map_err(sql("prepare issue counts"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql("issue counts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("issue counts"))
    }

    /// The open issue of one event ref, if any (durations at `now`). A primary-key lookup, so
    /// its cost does not grow with the number of open issues.
    pub fn issue(&self, event_ref: &str, now: i64) -> Result<Option<IssueRow>, EventDbError> {
        let conn = self.conn.lock();
        conn.prepare_cached(&format!(
            "SELECT {ISSUE_COLUMNS} FROM issues WHERE ref = ?1"
        ))
        .and_then(|mut st| {
            st.query_row(params![event_ref], |r| issue_row(r, now))
                .optional()
        })
        .map_err(sql("issue"))
    }

    /// Number of events stored.
    pub fn event_count(&self) -> Result<i64, EventDbError> {
        let conn = self.conn.lock();
        conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(sql("count"))
    }

    /// Deletes events older than `cutoff` (date < cutoff) in bounded chunks; returns how many.
    pub fn drop_events_before(&self, cutoff: i64) -> Result<usize, EventDbError> {
        let mut total = 0;
        loop {
            // Small chunks keep the write lock short so checks and ingest are not stalled.
            let n = {
                let conn = self.conn.lock();
                conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE date < ?1 LIMIT 5000)",
                    params![cutoff],
                )
                .map_err(sql("retention"))?
            };
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    /// Reads a small value kept across restarts.
    pub fn get_kv(&self, key: &str) -> Result<Option<String>, EventDbError> {
        let conn = self.conn.lock();
        conn.query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("kv get"))
    }

    /// Stores small values kept across restarts, in one transaction.
    pub fn set_kvs(&self, pairs: &[(String, String)]) -> Result<(), EventDbError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(sql("begin"))?;
        for (k, v) in pairs {
            tx.execute(
                "INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(sql("kv set"))?;
        }
        tx.commit().map_err(sql("commit"))
    }
}

/// The schema version this build writes (SQLite's `user_version`).
///
/// - 0: the first layout.
/// - 1: object states no longer carry the round's `last_status`, `last_event_id` and
///   `last_date` (never read); stored states are rewritten without them.
pub const SCHEMA_VERSION: i64 = 1;

/// Brings a database of an older schema version up to [`SCHEMA_VERSION`], in one
/// transaction. A database of a newer version is refused rather than half understood.
fn migrate(conn: &mut Connection) -> Result<(), EventDbError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql("read schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(EventDbError::Corrupt {
            table: "schema",
            message: format!(
                "the database has schema version {version}; this build reads up to {SCHEMA_VERSION} (use a newer tocsin)"
            ),
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction().map_err(sql("begin migration"))?;
    if version < 1 {
        rewrite_states(&tx)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql("write schema version"))?;
    tx.commit().map_err(sql("commit migration"))
}

/// Re-serialises every stored object state in the current form (fields no longer part of
/// [`ObjectState`] are dropped on the way through).
fn rewrite_states(tx: &rusqlite::Transaction) -> Result<(), EventDbError> {
    let rows: Vec<(String, String, String)> = {
        let mut st = tx
            .prepare("SELECT monitor, ref, state FROM object_state")
            .map_err(sql("migrate states"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql("migrate states"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("migrate states"))?
    };
    let mut up = tx
        .prepare("UPDATE object_state SET state = ?3 WHERE monitor = ?1 AND ref = ?2")
        .map_err(sql("migrate states"))?;
    for (monitor, event_ref, old) in rows {
        let state: ObjectState = serde_json::from_str(&old).map_err(|e| EventDbError::Corrupt {
            table: "object_state",
            message: format!("state of {monitor}/{event_ref}: {e}"),
        })?;
        let new = serde_json::to_string(&state).expect("state serialises");
        up.execute(params![monitor, event_ref, new])
            .map_err(sql("migrate states"))?;
    }
    Ok(())
}

/// The columns [`issue_row`] reads, in its order.
const ISSUE_COLUMNS: &str =
    "ref, monitor, source, dimension_tags, status, start, fault_id, last_event_id, last_date, title, message";

/// One issue row selected with [`ISSUE_COLUMNS`], its duration computed at `now`.
fn issue_row(r: &rusqlite::Row, now: i64) -> rusqlite::Result<IssueRow> {
    let start: i64 = r.get(5)?;
    Ok(IssueRow {
        event_ref: r.get(0)?,
        monitor: r.get(1)?,
        source: r.get(2)?,
        dimension_tags: r.get(3)?,
        status: r.get(4)?,
        issue_start: start,
        duration: (now - start).max(0),
        fault_id: r.get(6)?,
        last_event_id: r.get(7)?,
        last_date: r.get(8)?,
        title: r.get(9)?,
        message: r.get(10)?,
    })
}

/// Writes one commit inside `tx`; returns its new events.
fn write_one(
    tx: &rusqlite::Transaction,
    hook: Option<&dyn EventHook>,
    c: &Commit,
) -> Result<Vec<Event>, EventDbError> {
    let mut fresh = Vec::new();
    for ev in &c.events {
        let exists: bool = tx
            .prepare_cached("SELECT 1 FROM events WHERE id = ?1")
            .and_then(|mut st| st.exists(params![ev.id()]))
            .map_err(sql("lookup event"))?;
        if exists {
            continue;
        }
        let mut ev = ev.clone();
        if let Some(h) = hook {
            h.on_event(tx, &mut ev).map_err(sql("event hook"))?;
        }
        if insert_event(tx, &ev)? {
            apply_issue(tx, &ev)?;
            fresh.push(ev);
        }
    }
    {
        let mut up = tx
                .prepare_cached("INSERT OR REPLACE INTO object_state(monitor, ref, tags, state) VALUES (?1, ?2, ?3, ?4)")
                .map_err(sql("prepare state"))?;
        for (monitor, o) in &c.upserts {
            let tags = serde_json::to_string(&o.tags).expect("tags serialise");
            let state = serde_json::to_string(&o.state).expect("state serialises");
            up.execute(params![monitor, o.event_ref, tags, state])
                .map_err(sql("write state"))?;
        }
        let mut del = tx
            .prepare_cached("DELETE FROM object_state WHERE monitor = ?1 AND ref = ?2")
            .map_err(sql("prepare delete"))?;
        for (monitor, r) in &c.deletes {
            del.execute(params![monitor, r])
                .map_err(sql("delete state"))?;
        }
        let mut kv = tx
            .prepare_cached("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)")
            .map_err(sql("prepare kv"))?;
        for (k, v) in &c.kv {
            kv.execute(params![k, v]).map_err(sql("kv set"))?;
        }
    }
    Ok(fresh)
}

fn insert_event(tx: &rusqlite::Transaction, ev: &Event) -> Result<bool, EventDbError> {
    let body = serde_json::to_string(ev).expect("event serialises");
    let mut st = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events(id, date, status, source, monitor, ref, title, message, name, grp, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(sql("prepare insert"))?;
    let s = |k: &str| ev.str(k).unwrap_or("").to_string();
    let n = st
        .execute(params![
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
        ])
        .map_err(sql("insert event"))?;
    Ok(n == 1)
}

/// Keeps the unrecovered-issue table in step with an event: faults open or update the row,
/// recoveries delete it, info changes nothing.
fn apply_issue(tx: &rusqlite::Transaction, ev: &Event) -> Result<(), EventDbError> {
    let Some(status) = ev.status() else {
        return Ok(());
    };
    let r = ev.event_ref();
    if r.is_empty() {
        return Ok(());
    }
    if status.is_recovery() {
        tx.execute("DELETE FROM issues WHERE ref = ?1", params![r])
            .map_err(sql("close issue"))?;
    } else if status.is_fault() {
        let s = |k: &str| ev.str(k).unwrap_or("").to_string();
        tx.execute(
            "INSERT OR REPLACE INTO issues(ref, monitor, source, dimension_tags, status, start, fault_id, \
             last_event_id, last_date, title, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, r: &str, status: &str, date: i64, title: &str) -> Event {
        let mut e = Event::new();
        e.set(field::EVENT_ID, id);
        e.set("date", date);
        e.set(field::STATUS, status);
        e.set(field::SOURCE, "monitor");
        e.set(field::MONITOR_CHECKER_ID, "m1");
        e.set(field::MONITOR_CHECKER_EVENT_REF, r);
        e.set(field::TITLE, title);
        e.set(field::ISSUE_START_TIME, 100);
        e.set(field::FAULT_ID, "event-first");
        e
    }

    fn commit(db: &EventDb, events: Vec<Event>) -> usize {
        db.commit(Commit {
            events,
            ..Default::default()
        })
        .unwrap()
        .len()
    }

    /// Commits from many threads at once are grouped into shared transactions, yet each caller
    /// gets back exactly its own new events, and everything is stored once.
    #[test]
    fn concurrent_commits_are_grouped_and_answered_each_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(EventDb::open(dir.path()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let id = format!("e-{t}-{i}");
                        let c = Commit {
                            events: vec![ev(&id, &format!("r{t}"), "info", 100 + i, "x")],
                            kv: vec![(format!("k{t}"), i.to_string())],
                            ..Default::default()
                        };
                        let fresh = db.commit(c.clone()).unwrap();
                        assert_eq!(fresh.len(), 1);
                        assert_eq!(fresh[0].id(), id);
                        // the same commit again stores nothing
                        assert!(db.commit(c).unwrap().is_empty());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let n: i64 = db
            .with_conn(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 200);
        for t in 0..8 {
            assert_eq!(db.get_kv(&format!("k{t}")).unwrap().as_deref(), Some("24"));
        }
    }

    #[test]
    fn issue_table_follows_faults_and_recoveries() {
        let db = EventDb::scratch();
        assert_eq!(
            commit(&db, vec![ev("event-first", "r1", "warning", 100, "w")]),
            1
        );
        assert_eq!(
            commit(
                &db,
                vec![
                    ev("e2", "r1", "critical", 160, "c"),
                    ev("e3", "r2", "info", 160, "i")
                ]
            ),
            2
        );
        let issues = db.issues(None, 200).unwrap();
        assert_eq!(issues.len(), 1, "info opens no issue");
        let i = &issues[0];
        assert_eq!(
            (
                i.status.as_str(),
                i.issue_start,
                i.duration,
                i.last_event_id.as_str()
            ),
            ("critical", 100, 100, "e2")
        );
        assert_eq!(i.fault_id, "event-first");
        assert_eq!(db.issue("r1", 200).unwrap().unwrap().title, "c");
        // a duplicate id changes nothing, not even the issue row
        assert_eq!(
            commit(&db, vec![ev("e2", "r1", "critical", 160, "changed")]),
            0
        );
        assert_eq!(db.issue("r1", 200).unwrap().unwrap().title, "c");
        commit(&db, vec![ev("e4", "r1", "ok", 220, "ok")]);
        assert!(db.issues(None, 300).unwrap().is_empty());
    }

    #[test]
    fn queries_stats_text_and_retention() {
        let db = EventDb::scratch();
        commit(
            &db,
            vec![
                ev("a", "r", "critical", 10, "disk 100% full"),
                ev("b", "r", "critical", 20, "disk 50_ full"),
                ev("c", "r", "ok", 30, "back"),
            ],
        );
        let q = |text: &str| EventQuery {
            text: Some(text.into()),
            ..Default::default()
        };
        assert_eq!(db.events(&q("100%")).unwrap().len(), 1, "% is literal");
        assert_eq!(db.events(&q("50_")).unwrap().len(), 1, "_ is literal");
        let newest = db.events(&EventQuery::default()).unwrap();
        assert_eq!(
            newest.iter().map(|e| e.id()).collect::<Vec<_>>(),
            vec!["c", "b", "a"]
        );
        let page = db
            .events(&EventQuery {
                limit: Some(1),
                offset: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page[0].id(), "b");
        let ranged = db
            .events(&EventQuery {
                from: Some(15),
                to: Some(25),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ranged.len(), 1);
        let stats = db.stats("status", &EventQuery::default()).unwrap();
        assert_eq!(stats.get("critical"), Some(&2));
        assert_eq!(stats.get("ok"), Some(&1));
        assert!(db.stats("nonsense", &EventQuery::default()).is_err());
        assert_eq!(db.drop_events_before(25).unwrap(), 2);
        assert_eq!(db.event_count().unwrap(), 1);
    }

    #[test]
    fn issue_finds_its_row_among_many() {
        let db = EventDb::scratch();
        let events = (0..2000)
            .map(|i| {
                let mut e = ev(&format!("e{i}"), &format!("r{i}"), "critical", 100 + i, "t");
                e.set("df_title", format!("title {i}"));
                e.set("df_issue_start_time", 100 + i);
                e
            })
            .collect();
        assert_eq!(commit(&db, events), 2000);
        let i = db.issue("r1234", 5000).unwrap().unwrap();
        assert_eq!(
            (
                i.event_ref.as_str(),
                i.title.as_str(),
                i.issue_start,
                i.duration
            ),
            ("r1234", "title 1234", 1334, 5000 - 1334)
        );
        assert_eq!(i.last_event_id, "e1234");
        assert!(db.issue("r2000", 5000).unwrap().is_none());
        assert!(db.issue("", 5000).unwrap().is_none());
        let round = i.round().unwrap();
        assert_eq!(
            (round.start, round.fault_id.as_str(), round.last_fault),
            (1334, "event-first", Status::Critical)
        );
    }

    #[test]
    fn an_old_database_opens_and_its_states_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let old_state = r#"{"fault_streak":1,"clean_streak":0,"round":{"start":100,"fault_id":"event-x","last_fault":"critical","last_status":"critical","last_event_id":"event-y","last_date":160},"in_gap":false,"nodata_open":false,"last_seen":150}"#;
        {
            // The version-0 layout, as an older tocsin left it.
            let conn = Connection::open(dir.path().join("tocsin.db")).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO object_state(monitor, ref, tags, state) VALUES ('m', 'r', '{}', ?1)",
                params![old_state],
            )
            .unwrap();
            let v: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, 0);
        }
        let db = EventDb::open(dir.path()).unwrap();
        let states = db.load_states("m").unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(
            states[0].state.round,
            Some(Round {
                start: 100,
                fault_id: "event-x".into(),
                last_fault: Status::Critical,
            })
        );
        assert_eq!(states[0].state.fault_streak, 1);
        assert_eq!(states[0].state.last_seen, Some(150));
        let (version, stored) = db
            .with_conn(|c| {
                let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                let s: String = c.query_row("SELECT state FROM object_state", [], |r| r.get(0))?;
                Ok((v, s))
            })
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert!(!stored.contains("last_status"), "rewritten: {stored}");
        assert!(!stored.contains("last_event_id") && !stored.contains("last_date"));
        drop(db);
        // Opening again is a no-op, and a newer database is refused.
        assert_eq!(
            EventDb::open(dir.path()).unwrap().load_states("m").unwrap(),
            states
        );
        {
            let conn = Connection::open(dir.path().join("tocsin.db")).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = EventDb::open(dir.path())
            .err()
            .expect("newer schema refused");
        assert!(err.to_string().contains("schema version"), "{err}");
    }

    #[test]
    fn state_round_trips_and_is_deleted() {
        let db = EventDb::scratch();
        let mut tags = Tags::new();
        tags.insert("host".into(), "a".into());
        let o = StoredObject {
            event_ref: "r".into(),
            tags,
            state: ObjectState {
                fault_streak: 2,
                ..Default::default()
            },
        };
        db.commit(Commit {
            upserts: vec![("m".into(), o.clone())],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.load_states("m").unwrap(), vec![o]);
        db.commit(Commit {
            deletes: vec![("m".into(), "r".into())],
            ..Default::default()
        })
        .unwrap();
        assert!(db.load_states("m").unwrap().is_empty());
    }
}
