//! The metric store: recent points in memory for fast window queries, persisted in SQLite (WAL).
//!
//! # Data model
//! A *series* is one (measurement, field, tag set); it gets an integer id, recorded once in the
//! `series` table. A *sample* is one `(ts, value)` of a series. Only numeric fields are stored
//! (strings have no value; booleans are 0/1).
//!
//! # On disk (`<dir>/metrics.db`)
//! Samples are partitioned by day (Unix day number; `m<n>` for days before 1970). Each day has
//! two tables, listed in `chunks`:
//! - `log_<day>`: one row per commit, holding every sample of that commit for that day (all
//!   series) in write order, encoded compactly (varint series ids and time deltas, f64 values).
//!   Ingest appends one row per commit and day, whatever the number of series, which is what
//!   makes high ingest rates possible.
//! - `samples_<day>`: per-series blocks (time-sorted samples of one series, indexed by series),
//!   built by *compaction*: once a day's log holds enough samples or rows, or the day is over,
//!   the log rows committed so far are rewritten as one block per series and deleted.
//!   Compaction runs on a thread of its own (a write that makes a log due does not wait for
//!   it), reads and encodes on its own connection in passes over series-id ranges (bounded
//!   memory), and holds the writer only to insert batches of blocks and, last, to delete
//!   the rows.
//!
//! Rows are never updated. Every sample reaches the blocks through the log, and compaction
//! always takes the oldest log rows, so blocks (in row id order) are older than the log (in row
//! id order): when the same (series, ts) was written several times, the last in that order
//! wins, on load and on query. Retention drops whole day tables, and the series it left
//! without any sample (their `series` rows in the same transaction, so a restart does not
//! bring them back); their ids are reused by new series.
//!
//! Every write call is one transaction, committed with `synchronous=FULL` in WAL mode, so a
//! write that returned survives kill -9 and power loss. Concurrent writers are grouped: while
//! one commit is in flight, the batches of other callers queue up and go into the next commit
//! together (one transaction, one fsync). A lock file (`metrics.lock`) keeps a second process
//! from opening the same store.
//!
//! # In memory
//! Every series keeps its recent samples sorted in memory: those with
//! `ts >= memory floor`, where the floor follows `max ts seen - memory_window` (the max is
//! clamped to one hour past the wall clock, so one point from a wrong clock cannot flush the
//! memory). A query whose start is at or after the floor is answered from memory; an older one
//! reads SQLite: per day, one indexed lookup per series when it asks for few series, one scan
//! of the day's blocks when it asks for many. Both give the same answers.
//!
//! The catalog is compact (measured about 300 bytes per series at a million series, with a
//! few recent samples each): measurement and field names are interned, a series keeps its
//! tag-set key (one shared string per tag set) and builds its `Tags` only when a query needs
//! them, and a tag set maps its fields to series ids in a small sorted slice. Each series
//! notes the latest day holding a sample of it, which is how retention knows it is empty.
//!
//! # Layout
//! - `codec`: the byte encodings of log rows and blocks (varints, zigzag deltas);
//! - `memory`: the in-memory series catalog (names, tag-set keys, the measurement/field
//!   index) and recent samples;
//! - `points`, `late`: a series' samples in memory, and late samples held aside and merged
//!   in runs (a sample older than its series' newest would otherwise move every newer one);
//! - `disk`: opening, locking, schema migration, day tables and loading at start-up;
//! - `writer`: resolving points to series, encoding, and the grouped commit;
//! - `compact`: compaction of day logs into blocks, and retention;
//! - `read`: window reads from memory or SQLite (lookups or day scans);
//! - `groups`: a check's series grouped once, then read by id at every tick;
//! - [`query`]: window queries, filters and aggregations.

mod codec;
mod compact;
mod disk;
mod groups;
mod late;
mod memory;
mod points;
pub mod query;
mod read;
#[cfg(test)]
mod tests;
mod writer;

use crate::model::limits::PointLimits;
use disk::Disk;
pub use groups::{SeriesGroup, SeriesGroups};
use memory::Mem;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Default [`StoreOptions::max_series`]. Each series costs about 250 bytes of catalog in
/// memory (its slot, tag-set key, index entries; measured 295 bytes a series with three
/// samples each at a million series, `cargo bench --bench store_memory`), plus its recent
/// samples (16 bytes each); two million series are therefore about 0.5 GB of catalog plus, at
/// one sample a minute over a two-hour memory window, about 4 GB of samples: the most a
/// single-node store with a few GB of RAM should accept before a cardinality explosion (a
/// timestamp or request id written as a tag) takes the process down. Series that retention
/// empties leave the catalog and stop counting.
pub const DEFAULT_MAX_SERIES: usize = 2_000_000;

/// Options for [`Store::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How much recent data (ns, before the latest timestamp seen) each series keeps in
    /// memory. Default two hours.
    pub memory_window_ns: i64,
    /// Bounds every written point must respect (fields, tags, time range); a write with a
    /// point past them is refused whole with [`StoreError::InvalidPoint`].
    pub limits: PointLimits,
    /// Most series the store holds; a write that would create more is refused whole with
    /// [`StoreError::SeriesLimit`] (writes to existing series keep working). Default
    /// [`DEFAULT_MAX_SERIES`].
    pub max_series: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            memory_window_ns: 2 * 3_600 * 1_000_000_000,
            limits: PointLimits::default(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

/// A metric store failure; the message says what failed and on which file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation on the store directory failed.
    #[error("metric store {path}: {what}: {source}")]
    Io {
        /// the file or directory
        path: PathBuf,
        /// what was being done
        what: String,
        /// the cause
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this one) holds the store open.
    #[error("metric store {path}: the data directory is in use by another process")]
    Locked {
        /// the lock file
        path: PathBuf,
    },
    /// An SQLite operation failed.
    #[error("metric store {path}: {what}: {source}")]
    Sqlite {
        /// the database file
        path: PathBuf,
        /// what was being done
        what: String,
        /// the cause
        source: rusqlite::Error,
    },
    /// The database holds something this version cannot read.
    #[error("metric store {path}: {what}")]
    Corrupt {
        /// the database file
        path: PathBuf,
        /// what is wrong
        what: String,
    },
    /// A point of the write breaks the store's [`PointLimits`]; nothing of the write was stored.
    #[error("metric store: point {index} of batch {batch} (measurement {measurement:?}) refused: {message}")]
    InvalidPoint {
        /// 0-based batch of the write
        batch: usize,
        /// 0-based point within the batch
        index: usize,
        /// the point's measurement
        measurement: String,
        /// the limit it breaks: the `[limits]` config key, or `time_range`
        limit: &'static str,
        /// how it breaks it
        message: String,
    },
    /// The write would create series past [`StoreOptions::max_series`]; nothing of it was
    /// stored.
    #[error(
        "metric store: series limit reached: {new} new series (e.g. {example}) refused, the \
         store holds at most {limit}; writes to existing series are still accepted; reduce the \
         tag cardinality or raise the series limit"
    )]
    SeriesLimit {
        /// the configured limit
        limit: usize,
        /// how many new series the write needed
        new: usize,
        /// one of them, `measurement.field` (or the measurement)
        example: String,
    },
    /// A grouped commit that included this write failed (another thread ran it; the message
    /// is its error).
    #[error("metric store {path}: write failed: {message}")]
    Commit {
        /// the database file
        path: PathBuf,
        /// the failure of the shared commit
        message: String,
    },
}

/// The metric store. Cheap to share (`Arc<Store>`): all methods take `&self` and lock inside.
pub struct Store {
    disk: Option<Arc<Disk>>,
    mem: RwLock<Mem>,
    window_ns: i64,
    limits: PointLimits,
    max_series: usize,
    /// new series refused by the series limit, for /metrics
    series_refused: AtomicU64,
    /// Held shared by a write from resolving its series ids until its samples are applied,
    /// and exclusively by retention while it removes emptied series: so no write in flight
    /// refers to a series retention removes (or to its id, reused by a new series).
    series_gate: RwLock<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mem = self.mem.read();
        f.debug_struct("Store")
            .field("path", &self.disk.as_ref().map(|d| &d.db_path))
            .field("series", &mem.series.iter().flatten().count())
            .field("samples_in_memory", &mem.samples)
            .field("memory_floor", &mem.floor)
            .finish()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A compaction in the background holds the database open; the store is closed (its
        // lock file free for the next open) only once it is done.
        self.wait_for_compaction();
    }
}

impl Store {
    /// A store without files: everything stays in memory (no memory window), for `replay` and
    /// `tocsin test`. Queries, replacement and retention behave as for [`Store::open`].
    pub fn scratch() -> Store {
        Store {
            disk: None,
            mem: RwLock::new(Mem::new()),
            window_ns: i64::MAX,
            limits: PointLimits::default(),
            max_series: DEFAULT_MAX_SERIES,
            series_refused: AtomicU64::new(0),
            series_gate: RwLock::new(()),
        }
    }

    /// How many new series the series limit has refused since open (for /metrics).
    pub fn series_refused(&self) -> u64 {
        self.series_refused.load(Ordering::Relaxed)
    }

    /// The bounds every written point must respect ([`StoreOptions::limits`]).
    pub fn point_limits(&self) -> PointLimits {
        self.limits
    }

    /// The most series this store accepts ([`StoreOptions::max_series`]).
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Number of series known (including those whose samples are only on disk; not those
    /// retention has emptied).
    pub fn series_count(&self) -> usize {
        self.mem.read().series_count
    }

    /// Number of samples held in memory.
    pub fn sample_count(&self) -> usize {
        self.settled().samples
    }

    /// Memory read-locked with every late sample merged into its series (see [`late`]):
    /// what every read of samples takes.
    fn settled(&self) -> RwLockReadGuard<'_, Mem> {
        {
            let mem = self.mem.read();
            if !mem.unsettled() {
                return mem;
            }
        }
        let mut mem = self.mem.write();
        mem.settle();
        RwLockWriteGuard::downgrade(mem)
    }

    /// The memory floor: queries starting at or after it are answered from memory alone
    /// (`i64::MIN` when memory holds everything, as in a scratch store).
    pub fn memory_floor(&self) -> i64 {
        self.mem.read().floor
    }
}
