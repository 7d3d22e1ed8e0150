//! The state schema, written once for both backends ([`super::sql::ddl`] widens the integer
//! types on PostgreSQL), its version and the migrations between versions.
//!
//! SQLite keeps the version in `PRAGMA user_version`; PostgreSQL in the one-row table
//! `tocsin_schema`. A database of a newer version than this build knows is refused rather
//! than half understood, so an older replica cannot write into a schema it does not know.

use super::sql::{ddl, Dialect, Sql, SqlError};
use crate::args;
use crate::detect::ObjectState;

/// The schema version this build writes.
///
/// - 0: the first layout.
/// - 1: object states no longer carry the round's `last_status`, `last_event_id` and
///   `last_date` (never read); stored states are rewritten without them.
pub const SCHEMA_VERSION: i64 = 1;

/// Events, issues, detection state, kv, and the notifier's outbox, repeat memory, silences
/// and open Alertmanager alerts.
pub(crate) const TABLES: &str = r#"
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
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    target TEXT NOT NULL,
    policy TEXT NOT NULL,
    url TEXT NOT NULL,
    format TEXT NOT NULL,
    secret TEXT,
    timeout_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_code INTEGER,
    last_error TEXT,
    UNIQUE(event_id, target)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_at);
CREATE TABLE IF NOT EXISTS notify_sent(
    target TEXT NOT NULL,
    ref TEXT NOT NULL,
    status TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    muted INTEGER NOT NULL,
    PRIMARY KEY(target, ref)
);
CREATE TABLE IF NOT EXISTS silences(
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_end ON silences("end");
CREATE TABLE IF NOT EXISTS am_open(
    target TEXT NOT NULL,
    ref TEXT NOT NULL,
    alert TEXT NOT NULL,
    PRIMARY KEY(target, ref)
);
"#;

/// What only PostgreSQL has: several replicas share it, so it keeps who owns which monitor
/// (leases), which replicas are alive with which monitor files, which replica is sending which
/// delivery, and a version per monitor's stored state (see `super::shared`).
const SHARED_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS tocsin_schema(
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases(
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    since INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas(
    id TEXT PRIMARY KEY,
    started INTEGER NOT NULL,
    heartbeat INTEGER NOT NULL,
    monitors TEXT NOT NULL,
    listen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state_versions(
    monitor TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_until INTEGER;
"#;

fn newer(version: i64) -> SqlError {
    SqlError::Other(format!(
        "the state database has schema version {version}; this build reads up to {SCHEMA_VERSION} (use a newer tocsin)"
    ))
}

/// Creates the tables and brings an older schema up to [`SCHEMA_VERSION`]. Runs inside one
/// transaction (on PostgreSQL under a lock, so replicas starting together migrate once).
pub(crate) fn migrate(c: &mut dyn Sql) -> Result<(), SqlError> {
    match c.dialect() {
        Dialect::Sqlite => {
            c.batch(TABLES)?;
            let version = c.int("PRAGMA user_version", &[])?;
            if version > SCHEMA_VERSION {
                return Err(newer(version));
            }
            if version < 1 {
                rewrite_states(c)?;
            }
            if version != SCHEMA_VERSION {
                c.batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            }
        }
        Dialect::Postgres => {
            // Any constant key: every tocsin takes the same one.
            c.exec("SELECT pg_advisory_xact_lock(7310101)", &[])?;
            c.batch(&ddl(Dialect::Postgres, TABLES))?;
            c.batch(&ddl(Dialect::Postgres, SHARED_TABLES))?;
            match c.row("SELECT version FROM tocsin_schema", &[])? {
                Some(r) => {
                    let version = r.int(0)?;
                    if version > SCHEMA_VERSION {
                        return Err(newer(version));
                    }
                    // Version 1 is the first PostgreSQL layout: nothing older to migrate.
                    if version < SCHEMA_VERSION {
                        c.exec(
                            "UPDATE tocsin_schema SET version = ?1",
                            args![SCHEMA_VERSION],
                        )?;
                    }
                }
                None => {
                    c.exec(
                        "INSERT INTO tocsin_schema(version) VALUES (?1)",
                        args![SCHEMA_VERSION],
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Re-serialises every stored object state in the current form (fields no longer part of
/// [`ObjectState`] are dropped on the way through).
fn rewrite_states(c: &mut dyn Sql) -> Result<(), SqlError> {
    let rows = c.rows("SELECT monitor, ref, state FROM object_state", &[])?;
    for r in rows {
        let (monitor, event_ref, old) = (r.text(0)?, r.text(1)?, r.text(2)?);
        let state: ObjectState = serde_json::from_str(&old).map_err(|e| {
            SqlError::Other(format!(
                "corrupt row in object_state: state of {monitor}/{event_ref}: {e}"
            ))
        })?;
        let new = serde_json::to_string(&state).expect("state serialises");
        c.exec(
            "UPDATE object_state SET state = ?3 WHERE monitor = ?1 AND ref = ?2",
            args![monitor, event_ref, new],
        )?;
    }
    Ok(())
}
