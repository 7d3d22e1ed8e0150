//! The persistent side of the store: opening and locking the data directory, the schema and
//! its migrations, the per-day tables, and loading the catalog and recent samples at start-up.

use super::codec::{decode_block, decode_log};
use super::memory::{floor_for, tagset_key, Mem};
use super::query::Tags;
use super::writer::Committer;
use super::{Store, StoreError, StoreOptions};
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Nanoseconds per chunk (one day).
pub(super) const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Current schema version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// Persistent side of a store.
pub(super) struct Disk {
    pub(super) db_path: PathBuf,
    pub(super) writer: Mutex<Writer>,
    pub(super) reader: Mutex<Connection>,
    /// the connection compaction reads with; holding it means compacting
    pub(super) compactor: Mutex<Connection>,
    pub(super) commits: Committer,
    /// the compaction running in the background, if any (see `compact::maybe_compact`)
    pub(super) compaction: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(super) _lock: File,
}

/// The write connection and what the writer knows of the days on disk.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// days whose tables are known to exist (committed)
    pub(super) known_days: HashSet<i64>,
    /// days with log rows not compacted yet
    pub(super) logs: BTreeMap<i64, LogStats>,
    /// latest timestamp written
    pub(super) max_ts: i64,
}

/// Uncompacted log of one day.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LogStats {
    pub(super) rows: u64,
    pub(super) samples: u64,
}

pub(super) fn sqlite_err(
    path: &Path,
    what: impl Into<String>,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    let what = what.into();
    move |source| StoreError::Sqlite { path, what, source }
}

/// The `(id, min_ts, data)` of a chunk or log row, the three columns every reader selects
/// first; errors name the file and `what` was being read.
pub(super) fn chunk_row<'r>(
    row: &'r rusqlite::Row<'r>,
    path: &Path,
    what: String,
) -> Result<(i64, i64, &'r [u8]), StoreError> {
    let id: i64 = row.get(0).map_err(sqlite_err(path, what.clone()))?;
    let min_ts: i64 = row.get(1).map_err(sqlite_err(path, what.clone()))?;
    let data = row
        .get_ref(2)
        .and_then(|v| Ok(v.as_blob()?))
        .map_err(sqlite_err(path, what))?;
    Ok((id, min_ts, data))
}

/// Name of a day's table: `<prefix>_<day>`, `<prefix>_m<n>` before 1970.
pub(super) fn day_table(prefix: &str, day: i64) -> String {
    if day >= 0 {
        format!("{prefix}_{day}")
    } else {
        format!("{prefix}_m{}", day.unsigned_abs())
    }
}

/// The per-series block table of a day.
pub(super) fn chunk_table(day: i64) -> String {
    day_table("samples", day)
}

/// The log table of a day.
pub(super) fn log_table(day: i64) -> String {
    day_table("log", day)
}

pub(super) fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_NS)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: `dir/metrics.db` in WAL mode with
    /// `synchronous=FULL`, migrated to the current schema, and loads the last
    /// `memory_window_ns` of data into memory. Fails if another process has it open.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            what: "creating the data directory".into(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let db_path = dir.join("metrics.db");
        let window_ns = opts.memory_window_ns.max(0);

        let mut conn = Connection::open(&db_path).map_err(sqlite_err(&db_path, "opening"))?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = -65536;
             PRAGMA wal_autocheckpoint = 4096;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(sqlite_err(&db_path, "setting pragmas"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sqlite_err(&db_path, "reading journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path: db_path,
                what: format!("cannot switch to WAL mode (journal mode is {mode})"),
            });
        }
        conn.set_prepared_statement_cache_capacity(256);
        migrate(&mut conn, &db_path)?;

        let mut mem = Mem::new();
        let loaded = load(&conn, &db_path, &mut mem, window_ns)?;

        let open_reader = || -> Result<Connection, StoreError> {
            let reader =
                Connection::open(&db_path).map_err(sqlite_err(&db_path, "opening reader"))?;
            reader
                .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
                .map_err(sqlite_err(&db_path, "setting reader pragmas"))?;
            reader.set_prepared_statement_cache_capacity(256);
            Ok(reader)
        };
        let (reader, compactor) = (open_reader()?, open_reader()?);

        Ok(Store {
            disk: Some(Arc::new(Disk {
                db_path,
                writer: Mutex::new(Writer {
                    conn,
                    known_days: loaded.days,
                    logs: loaded.logs,
                    max_ts: loaded.max_ts,
                }),
                reader: Mutex::new(reader),
                compactor: Mutex::new(compactor),
                commits: Committer::default(),
                compaction: Mutex::new(None),
                _lock: lock,
            })),
            mem: RwLock::new(mem),
            window_ns,
            limits: opts.limits,
            max_series: opts.max_series,
            series_refused: AtomicU64::new(0),
            series_gate: RwLock::new(()),
        })
    }
}

/// Takes an exclusive lock on `dir/metrics.lock` for the life of the store.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("metrics.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            what: "opening the lock file".into(),
            source,
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StoreError::Locked { path });
            }
            return Err(StoreError::Io {
                path,
                what: "locking".into(),
                source: err,
            });
        }
    }
    Ok(file)
}

/// Brings the schema to [`SCHEMA_VERSION`], one step per version, each in a transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_err(path, "reading the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!(
                "schema version {version} is newer than this tocsin supports ({SCHEMA_VERSION})"
            ),
        });
    }
    let steps: &[&str] = &[
        // 0 -> 1
        "CREATE TABLE series (
             id INTEGER PRIMARY KEY,
             measurement TEXT NOT NULL,
             field TEXT NOT NULL,
             tags TEXT NOT NULL,
             UNIQUE (measurement, field, tags));
         CREATE TABLE chunks (day INTEGER PRIMARY KEY);",
        // 1 -> 2: compaction writes blocks in format 3 (see codec); the tables stay, and
        // format 1 blocks are still read. The version keeps older tocsins, which cannot read
        // format 3, from opening the store.
        "",
    ];
    for (v, sql) in steps.iter().enumerate().skip(version as usize) {
        let to = v as i64 + 1;
        let what = format!("migrating the schema to version {to}");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_err(path, what.clone()))?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", to))
            .map_err(sqlite_err(path, what.clone()))?;
        tx.commit().map_err(sqlite_err(path, what))?;
    }
    Ok(())
}

/// Loads the series catalog and the samples at or after the memory floor.
fn load(
    conn: &Connection,
    path: &Path,
    mem: &mut Mem,
    window_ns: i64,
) -> Result<Loaded, StoreError> {
    let mut key = String::new();
    {
        let what = "loading series";
        let mut st = conn
            .prepare("SELECT id, measurement, field, tags FROM series ORDER BY id")
            .map_err(sqlite_err(path, what))?;
        let mut rows = st.query([]).map_err(sqlite_err(path, what))?;
        while let Some(row) = rows.next().map_err(sqlite_err(path, what))? {
            let id: i64 = row.get(0).map_err(sqlite_err(path, what))?;
            let measurement: String = row.get(1).map_err(sqlite_err(path, what))?;
            let field: String = row.get(2).map_err(sqlite_err(path, what))?;
            let tags_json: String = row.get(3).map_err(sqlite_err(path, what))?;
            let corrupt = |what: String| StoreError::Corrupt {
                path: path.to_path_buf(),
                what,
            };
            let id = u32::try_from(id)
                .ok()
                .filter(|id| *id > 0 && *id < u32::MAX)
                .ok_or_else(|| corrupt(format!("series id {id} out of range")))?;
            let tags: Tags = serde_json::from_str(&tags_json)
                .map_err(|e| corrupt(format!("series {id}: bad tags {tags_json:?}: {e}")))?;
            let pairs: Vec<(String, String)> = tags.into_iter().collect();
            tagset_key(&mut key, &measurement, &pairs);
            mem.add_series(id, &key, &measurement, &field, true);
        }
    }
    mem.collect_free_ids();
    let days: Vec<i64> = {
        let what = "listing chunks";
        let mut st = conn
            .prepare("SELECT day FROM chunks ORDER BY day")
            .map_err(sqlite_err(path, what))?;
        let rows = st
            .query_map([], |r| r.get(0))
            .map_err(sqlite_err(path, what))?;
        rows.collect::<Result<_, _>>()
            .map_err(sqlite_err(path, what))?
    };
    let mut logs = BTreeMap::new();
    let mut max_ts = i64::MIN;
    for day in &days {
        let (table, log) = (chunk_table(*day), log_table(*day));
        let (block_max, log_rows, log_samples, log_max): (Option<i64>, i64, i64, Option<i64>) =
            conn.query_row(
                &format!(
                    "SELECT (SELECT MAX(max_ts) FROM {table}),
                            COUNT(*), COALESCE(SUM(n), 0), MAX(max_ts) FROM {log}"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(sqlite_err(path, format!("reading {table} and {log}")))?;
        max_ts = max_ts
            .max(block_max.unwrap_or(i64::MIN))
            .max(log_max.unwrap_or(i64::MIN));
        if log_rows > 0 {
            let st = LogStats {
                rows: log_rows as u64,
                samples: log_samples as u64,
            };
            logs.insert(*day, st);
        }
    }
    last_days(conn, path, mem, &days)?;
    mem.days = days.iter().copied().collect();
    mem.max_ts = max_ts;
    mem.floor = floor_for(max_ts, window_ns);
    let floor = mem.floor;
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    for day in days
        .iter()
        .filter(|d| max_ts != i64::MIN && **d >= day_of(floor))
    {
        // blocks first, then the log: that is write order
        let table = chunk_table(*day);
        let what = || format!("loading {table}");
        let mut st = conn
            .prepare(&format!(
                "SELECT series_id, min_ts, data FROM {table} WHERE max_ts >= ?1 ORDER BY id"
            ))
            .map_err(sqlite_err(path, what()))?;
        let mut rows = st.query([floor]).map_err(sqlite_err(path, what()))?;
        let mut buf: Vec<(i64, f64)> = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
            let (id, min_ts, data) = chunk_row(row, path, what())?;
            buf.clear();
            decode_block(min_ts, data, |ts, v| {
                if ts >= floor {
                    buf.push((ts, v));
                }
            })
            .map_err(|e| corrupt(format!("{table}: series {id}: {e}")))?;
            let series = u32::try_from(id)
                .ok()
                .and_then(|id| mem.series.get_mut(id as usize))
                .and_then(|s| s.as_mut())
                .ok_or_else(|| corrupt(format!("{table}: samples of unknown series {id}")))?;
            mem.samples += series.points.insert(buf.iter().copied());
        }
        let table = log_table(*day);
        let what = || format!("loading {table}");
        let mut st = conn
            .prepare(&format!(
                "SELECT id, min_ts, data FROM {table} WHERE max_ts >= ?1 ORDER BY id"
            ))
            .map_err(sqlite_err(path, what()))?;
        let mut rows = st.query([floor]).map_err(sqlite_err(path, what()))?;
        while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
            let (row_id, min_ts, data) = chunk_row(row, path, what())?;
            let mut unknown = None;
            let mut added = 0;
            decode_log(min_ts, data, |id, ts, v| {
                if ts < floor {
                    return;
                }
                match mem.series.get_mut(id as usize).and_then(|s| s.as_mut()) {
                    Some(s) => added += s.points.insert([(ts, v)]),
                    None => unknown = Some(id),
                }
            })
            .map_err(|e| corrupt(format!("{table}: row {row_id}: {e}")))?;
            if let Some(id) = unknown {
                return Err(corrupt(format!("{table}: samples of unknown series {id}")));
            }
            mem.samples += added;
        }
    }
    Ok(Loaded {
        days: days.into_iter().collect(),
        logs,
        max_ts,
    })
}

/// Notes the latest day holding a sample of each series (what retention needs to know when
/// a series is empty), reading the days newest first until every series is placed: in a
/// store without churn, only the newest day is read.
fn last_days(
    conn: &Connection,
    path: &Path,
    mem: &mut Mem,
    days: &[i64],
) -> Result<(), StoreError> {
    let mut unplaced = mem.series_count;
    for &day in days.iter().rev() {
        if unplaced == 0 {
            break;
        }
        let table = chunk_table(day);
        let what = || format!("listing the series of {table}");
        // the (series_id, max_ts) index answers this alone
        let mut st = conn
            .prepare(&format!("SELECT DISTINCT series_id FROM {table}"))
            .map_err(sqlite_err(path, what()))?;
        let mut rows = st.query([]).map_err(sqlite_err(path, what()))?;
        while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
            let id: i64 = row.get(0).map_err(sqlite_err(path, what()))?;
            if u32::try_from(id).is_ok_and(|id| mem.place_day(id, day)) {
                unplaced -= 1;
            }
        }
        let table = log_table(day);
        let what = || format!("listing the series of {table}");
        let mut st = conn
            .prepare(&format!("SELECT id, min_ts, data FROM {table}"))
            .map_err(sqlite_err(path, what()))?;
        let mut rows = st.query([]).map_err(sqlite_err(path, what()))?;
        while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
            let (row_id, min_ts, data) = chunk_row(row, path, what())?;
            decode_log(min_ts, data, |id, _, _| {
                if mem.place_day(id, day) {
                    unplaced -= 1;
                }
            })
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                what: format!("{table}: row {row_id}: {e}"),
            })?;
        }
    }
    Ok(())
}

/// What [`load`] found on disk.
struct Loaded {
    pub(super) days: HashSet<i64>,
    pub(super) logs: BTreeMap<i64, LogStats>,
    pub(super) max_ts: i64,
}

/// Creates the tables of a day and lists it in `chunks`.
pub(super) fn create_day(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    day: i64,
) -> Result<(), StoreError> {
    let (table, log) = (chunk_table(day), log_table(day));
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             id INTEGER PRIMARY KEY,
             series_id INTEGER NOT NULL,
             min_ts INTEGER NOT NULL,
             max_ts INTEGER NOT NULL,
             n INTEGER NOT NULL,
             data BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS {table}_series ON {table} (series_id, max_ts);
         CREATE TABLE IF NOT EXISTS {log} (
             id INTEGER PRIMARY KEY,
             min_ts INTEGER NOT NULL,
             max_ts INTEGER NOT NULL,
             n INTEGER NOT NULL,
             data BLOB NOT NULL);
         INSERT OR IGNORE INTO chunks (day) VALUES ({day});"
    ))
    .map_err(sqlite_err(path, format!("creating {table} and {log}")))
}
