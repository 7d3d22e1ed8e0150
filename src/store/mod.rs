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
//!   the log rows committed so far are rewritten as one block per series and deleted, in one
//!   transaction. Compaction reads and encodes on its own connection, so writes go on
//!   meanwhile; it holds the writer only to insert the blocks and delete the rows.
//!
//! Rows are never updated. Every sample reaches the blocks through the log, and compaction
//! always takes the oldest log rows, so blocks (in row id order) are older than the log (in row
//! id order): when the same (series, ts) was written several times, the last in that order
//! wins, on load and on query. Retention drops whole day tables.
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
//! reads SQLite. Both give the same answers.

pub mod query;

use crate::ingest::lineproto::Point;
use crate::store::query::{aggregate, Agg, Group, Tags, WindowQuery};
use parking_lot::{Condvar, Mutex, RwLock};
use rusqlite::{params, Connection, TransactionBehavior};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Nanoseconds per chunk (one day).
const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Current schema version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// First byte of every per-series block.
const BLOCK_FORMAT: u8 = 1;
/// First byte of every log row.
const LOG_FORMAT: u8 = 2;
/// A day's log is compacted once it holds this many samples...
const COMPACT_SAMPLES: u64 = 1 << 20;
/// ... or this many rows ...
const COMPACT_ROWS: u64 = 256;
/// ... or once the latest timestamp written is this far past the end of the day.
const COMPACT_GRACE_NS: i64 = 3_600 * 1_000_000_000;
/// How far past the wall clock the max timestamp may push the memory window.
const FUTURE_SLACK_NS: i64 = 3_600 * 1_000_000_000;

/// Options for [`Store::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How much recent data (ns, before the latest timestamp seen) each series keeps in
    /// memory. Default two hours.
    pub memory_window_ns: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            memory_window_ns: 2 * 3_600 * 1_000_000_000,
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
    disk: Option<Disk>,
    mem: RwLock<Mem>,
    window_ns: i64,
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

/// Persistent side of a store.
struct Disk {
    db_path: PathBuf,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
    /// the connection compaction reads with; holding it means compacting
    compactor: Mutex<Connection>,
    commits: Committer,
    _lock: File,
}

struct Writer {
    conn: Connection,
    /// days whose tables are known to exist (committed)
    known_days: HashSet<i64>,
    /// days with log rows not compacted yet
    logs: BTreeMap<i64, LogStats>,
    /// latest timestamp written
    max_ts: i64,
}

/// Uncompacted log of one day.
#[derive(Debug, Default, Clone, Copy)]
struct LogStats {
    rows: u64,
    samples: u64,
}

/// In-memory catalog and recent samples.
struct Mem {
    /// indexed by series id (0 unused)
    series: Vec<Option<SeriesMem>>,
    /// tag set key (see [`tagset_key`]) -> (field, series id)
    tagsets: HashMap<String, Vec<(String, u32)>>,
    /// measurement -> field -> series ids
    index: HashMap<String, HashMap<String, Vec<u32>>>,
    next_id: u32,
    /// latest timestamp seen, `i64::MIN` when none
    max_ts: i64,
    /// memory holds every stored sample with `ts >= floor`
    floor: i64,
    /// days with data
    days: BTreeSet<i64>,
    /// samples held in memory
    samples: usize,
}

struct SeriesMem {
    measurement: String,
    field: String,
    tags: Tags,
    points: Vec<(i64, f64)>,
    /// recorded in the `series` table (always true for scratch stores)
    persisted: bool,
}

#[derive(Clone, Copy)]
struct Sample {
    id: u32,
    ts: i64,
    value: f64,
}

/// A series to record in the `series` table with the write that first uses it.
struct NewSeries {
    id: u32,
    measurement: String,
    field: String,
    tags_json: String,
}

/// The log row of one write for one day.
struct LogRow {
    day: i64,
    min_ts: i64,
    max_ts: i64,
    n: usize,
    /// encoded samples (empty for scratch stores)
    data: Vec<u8>,
}

/// A write resolved to series ids and encoded, ready to commit.
struct Prepared {
    /// in write order (a later sample for the same series and time wins)
    samples: Vec<Sample>,
    new_series: Vec<NewSeries>,
    /// one per day written
    rows: Vec<LogRow>,
}

/// Group commit: writers queue prepared batches; one of them (the leader) commits all queued
/// batches in one transaction while the others wait.
#[derive(Default)]
struct Committer {
    state: Mutex<CommitState>,
    cv: Condvar,
}

#[derive(Default)]
struct CommitState {
    queue: Vec<(u64, Prepared)>,
    leader: bool,
    next_ticket: u64,
    done: HashMap<u64, Result<(), String>>,
}

fn sqlite_err(path: &Path, what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    let what = what.into();
    move |source| StoreError::Sqlite { path, what, source }
}

/// Name of a day's table: `<prefix>_<day>`, `<prefix>_m<n>` before 1970.
fn day_table(prefix: &str, day: i64) -> String {
    if day >= 0 {
        format!("{prefix}_{day}")
    } else {
        format!("{prefix}_m{}", day.unsigned_abs())
    }
}

/// The per-series block table of a day.
fn chunk_table(day: i64) -> String {
    day_table("samples", day)
}

/// The log table of a day.
fn log_table(day: i64) -> String {
    day_table("log", day)
}

fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_NS)
}

fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// The memory floor for a latest timestamp `max_ts`.
fn floor_for(max_ts: i64, window_ns: i64) -> i64 {
    if max_ts == i64::MIN {
        return i64::MIN;
    }
    max_ts
        .min(wall_clock_ns().saturating_add(FUTURE_SLACK_NS))
        .saturating_sub(window_ns)
}

/// An injective key for (measurement, tag set): each part prefixed by its byte length (decimal
/// digits, least significant first) and `:`.
fn tagset_key(buf: &mut String, measurement: &str, tags: &[(String, String)]) {
    buf.clear();
    for part in std::iter::once(measurement).chain(tags.iter().flat_map(|(k, v)| [&**k, &**v])) {
        let mut n = part.len();
        loop {
            buf.push(char::from(b'0' + (n % 10) as u8));
            n /= 10;
            if n == 0 {
                break;
            }
        }
        buf.push(':');
        buf.push_str(part);
    }
}

/// Tags sorted by key with unique keys (the last value wins), borrowing when already so.
fn normalized_tags(tags: &[(String, String)]) -> Cow<'_, [(String, String)]> {
    if tags.windows(2).all(|w| w[0].0 < w[1].0) {
        return Cow::Borrowed(tags);
    }
    let mut v = tags.to_vec();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
    for (k, val) in v {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 = val,
            _ => out.push((k, val)),
        }
    }
    Cow::Owned(out)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Encodes samples of one series, sorted by time.
fn encode_block(samples: &[Sample]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + samples.len() * 11);
    buf.push(BLOCK_FORMAT);
    let mut prev = samples[0].ts;
    for s in samples {
        put_varint(&mut buf, (s.ts - prev) as u64);
        prev = s.ts;
        buf.extend_from_slice(&s.value.to_le_bytes());
    }
    buf
}

/// Decodes a block whose first sample is at `min_ts`, calling `f` for each sample in order.
fn decode_block(min_ts: i64, data: &[u8], mut f: impl FnMut(i64, f64)) -> Result<(), String> {
    match data.first() {
        Some(&BLOCK_FORMAT) => {}
        Some(v) => return Err(format!("unknown block format {v}")),
        None => return Err("empty block".into()),
    }
    let mut pos = 1;
    let mut ts = min_ts;
    while pos < data.len() {
        let delta = get_varint(data, &mut pos).ok_or("truncated time delta")?;
        ts = ts
            .checked_add(i64::try_from(delta).map_err(|_| "time delta out of range")?)
            .ok_or("timestamp out of range")?;
        let bytes = data.get(pos..pos + 8).ok_or("truncated value")?;
        pos += 8;
        f(ts, f64::from_le_bytes(bytes.try_into().expect("8 bytes")));
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Decodes a log row whose earliest sample is at `min_ts`, calling `f(series, ts, value)` for
/// each sample in write order.
fn decode_log(min_ts: i64, data: &[u8], mut f: impl FnMut(u32, i64, f64)) -> Result<(), String> {
    match data.first() {
        Some(&LOG_FORMAT) => {}
        Some(v) => return Err(format!("unknown log format {v}")),
        None => return Err("empty log row".into()),
    }
    let mut pos = 1;
    let mut ts = min_ts;
    while pos < data.len() {
        let id = get_varint(data, &mut pos).ok_or("truncated series id")?;
        let id = u32::try_from(id).map_err(|_| "series id out of range")?;
        let delta = unzigzag(get_varint(data, &mut pos).ok_or("truncated time delta")?);
        ts = ts.checked_add(delta).ok_or("timestamp out of range")?;
        let bytes = data.get(pos..pos + 8).ok_or("truncated value")?;
        pos += 8;
        f(
            id,
            ts,
            f64::from_le_bytes(bytes.try_into().expect("8 bytes")),
        );
    }
    Ok(())
}

/// Inserts samples into a sorted series, replacing equal timestamps (appending is the fast
/// path). Returns how
/// many samples were added (replacements excluded).
fn insert_sorted(points: &mut Vec<(i64, f64)>, run: impl IntoIterator<Item = (i64, f64)>) -> usize {
    let before = points.len();
    for (ts, v) in run {
        match points.last_mut() {
            None => points.push((ts, v)),
            Some(last) if last.0 < ts => points.push((ts, v)),
            Some(last) if last.0 == ts => last.1 = v,
            _ => match points.binary_search_by_key(&ts, |p| p.0) {
                Ok(i) => points[i].1 = v,
                Err(i) => points.insert(i, (ts, v)),
            },
        }
    }
    points.len() - before
}

/// The points of `points` (sorted) within `[start, end)`.
fn range(points: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
    let lo = points.partition_point(|p| p.0 < start);
    let hi = points.partition_point(|p| p.0 < end);
    &points[lo..hi.max(lo)]
}

/// Sorts and deduplicates by time, keeping the last of equal timestamps (input order).
fn dedup_last(points: &mut Vec<(i64, f64)>) {
    points.sort_by_key(|p| p.0);
    let mut out = 0;
    for i in 0..points.len() {
        if out > 0 && points[out - 1].0 == points[i].0 {
            points[out - 1] = points[i];
        } else {
            points[out] = points[i];
            out += 1;
        }
    }
    points.truncate(out);
}

impl Mem {
    fn new() -> Mem {
        Mem {
            series: vec![None],
            tagsets: HashMap::new(),
            index: HashMap::new(),
            next_id: 1,
            max_ts: i64::MIN,
            floor: i64::MIN,
            days: BTreeSet::new(),
            samples: 0,
        }
    }

    fn lookup(&self, key: &str, field: &str) -> Option<u32> {
        let fields = self.tagsets.get(key)?;
        fields.iter().find(|(f, _)| f == field).map(|(_, id)| *id)
    }

    /// Registers a series under a given id (at open, or when created).
    fn add_series(&mut self, id: u32, key: String, s: SeriesMem) {
        self.tagsets
            .entry(key)
            .or_default()
            .push((s.field.clone(), id));
        self.index
            .entry(s.measurement.clone())
            .or_default()
            .entry(s.field.clone())
            .or_default()
            .push(id);
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, || None);
        }
        self.series[i] = Some(s);
        self.next_id = self.next_id.max(id + 1);
    }

    fn series(&self, id: u32) -> &SeriesMem {
        self.series[id as usize].as_ref().expect("known series id")
    }

    fn series_mut(&mut self, id: u32) -> &mut SeriesMem {
        self.series[id as usize].as_mut().expect("known series id")
    }

    /// Ids of the series of a measurement field that match every filter of the query.
    fn matching(&self, q: &WindowQuery) -> Vec<u32> {
        let Some(ids) = self.index.get(&q.measurement).and_then(|m| m.get(&q.field)) else {
            return Vec::new();
        };
        ids.iter()
            .copied()
            .filter(|id| {
                let tags = &self.series(*id).tags;
                q.filters.iter().all(|f| f.matches(tags))
            })
            .collect()
    }

    /// Adds committed samples (in write order) with `ts >= floor` to memory.
    fn apply(&mut self, p: &Prepared) {
        let floor = self.floor;
        let mut added = 0;
        for s in &p.samples {
            if s.ts < floor {
                continue;
            }
            let points = &mut self.series_mut(s.id).points;
            added += insert_sorted(points, [(s.ts, s.value)]);
        }
        self.samples += added;
        for r in &p.rows {
            self.max_ts = self.max_ts.max(r.max_ts);
            self.days.insert(r.day);
        }
    }

    /// Raises the floor to `max_ts - window` once it has moved by a sixteenth of the window
    /// (amortizing the eviction pass), dropping older samples from memory.
    fn maybe_evict(&mut self, window_ns: i64) {
        let target = floor_for(self.max_ts, window_ns);
        if target > self.floor.saturating_add(window_ns / 16) {
            self.evict_below(target);
        }
    }

    fn evict_below(&mut self, floor: i64) {
        self.floor = self.floor.max(floor);
        self.drop_points_below(floor);
    }

    fn drop_points_below(&mut self, ts: i64) {
        let mut removed = 0;
        for s in self.series.iter_mut().flatten() {
            let k = s.points.partition_point(|p| p.0 < ts);
            if k > 0 {
                s.points.drain(..k);
                removed += k;
            }
        }
        self.samples -= removed;
    }
}

/// Groups series points by a key derived from the series tags; groups sorted by key, points
/// sorted by (time, value); empty groups omitted.
fn group_points<'a>(
    items: impl IntoIterator<Item = (&'a Tags, &'a [(i64, f64)])>,
    key: impl Fn(&Tags) -> Tags,
) -> Vec<Group> {
    let mut groups: BTreeMap<Tags, Vec<(i64, f64)>> = BTreeMap::new();
    for (tags, points) in items {
        if !points.is_empty() {
            groups
                .entry(key(tags))
                .or_default()
                .extend_from_slice(points);
        }
    }
    groups
        .into_iter()
        .map(|(tags, mut points)| {
            points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            Group { tags, points }
        })
        .collect()
}

/// The `by` tags of a series (absent ones left out).
fn by_tags(by: &[String], tags: &Tags) -> Tags {
    by.iter()
        .filter_map(|k| tags.get_key_value(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// How a query groups series.
#[derive(Clone, Copy)]
enum Grouping {
    /// by the query's `by` tags
    By,
    /// one group per series, with all its tags
    Series,
}

/// Where a query reads from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// memory when the window starts at or after the memory floor, else SQLite
    Auto,
    /// SQLite only
    Disk,
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
            disk: Some(Disk {
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
                _lock: lock,
            }),
            mem: RwLock::new(mem),
            window_ns,
        })
    }

    /// A store without files: everything stays in memory (no memory window), for `replay` and
    /// `tocsin test`. Queries, replacement and retention behave as for [`Store::open`].
    pub fn scratch() -> Store {
        Store {
            disk: None,
            mem: RwLock::new(Mem::new()),
            window_ns: i64::MAX,
        }
    }

    /// Stores every numeric field of `points` as one sample of its series (measurement, field,
    /// tag set), in one transaction. Writing an existing (series, time) replaces its value.
    /// Returns the number of samples written. When several threads write at once, their
    /// batches are committed together (see [`Store::write_batches`]).
    pub fn write(&self, points: &[Point]) -> Result<usize, StoreError> {
        self.write_batches(&[points])
    }

    /// Writes several batches (e.g. the bodies of concurrent requests) in one transaction and
    /// one fsync; later batches win over earlier ones for the same (series, time). Returns the
    /// number of samples written. Calls from several threads are grouped as well: while one
    /// commit runs, the others queue and go into the next commit together. Either everything
    /// is durable when this returns `Ok`, or nothing of these batches was stored.
    pub fn write_batches(&self, batches: &[&[Point]]) -> Result<usize, StoreError> {
        let (prepared, count) = self.prepare(batches);
        if count == 0 {
            return Ok(0);
        }
        match &self.disk {
            None => {
                let mut mem = self.mem.write();
                mem.apply(&prepared);
            }
            Some(disk) => {
                self.commit(disk, prepared)?;
                self.maybe_compact(disk);
            }
        }
        Ok(count)
    }

    /// Resolves series ids (creating series) and encodes a write.
    fn prepare(&self, batches: &[&[Point]]) -> (Prepared, usize) {
        let total: usize = batches
            .iter()
            .flat_map(|b| b.iter())
            .map(|p| p.fields.len())
            .sum();
        let mut samples: Vec<Sample> = Vec::with_capacity(total);
        let mut unpersisted: Vec<u32> = Vec::new();
        // (index into samples, point, field index) of samples whose series is not known yet
        let mut misses: Vec<(usize, &Point, usize)> = Vec::new();
        let mut key = String::new();
        {
            let mem = self.mem.read();
            for p in batches.iter().flat_map(|b| b.iter()) {
                let tags = normalized_tags(&p.tags);
                tagset_key(&mut key, &p.measurement, &tags);
                let fields = mem.tagsets.get(key.as_str());
                for (fi, (name, value)) in p.fields.iter().enumerate() {
                    let Some(value) = value.as_f64() else {
                        continue;
                    };
                    let id = fields.and_then(|fs| fs.iter().find(|(f, _)| f == name));
                    match id {
                        Some(&(_, id)) => {
                            if !mem.series(id).persisted {
                                unpersisted.push(id);
                            }
                            samples.push(Sample {
                                id,
                                ts: p.time,
                                value,
                            });
                        }
                        None => {
                            misses.push((samples.len(), p, fi));
                            samples.push(Sample {
                                id: 0,
                                ts: p.time,
                                value,
                            });
                        }
                    }
                }
            }
        }
        if !misses.is_empty() {
            let mut mem = self.mem.write();
            let persisted = self.disk.is_none();
            for (i, p, fi) in misses {
                let tags = normalized_tags(&p.tags);
                tagset_key(&mut key, &p.measurement, &tags);
                let field = &p.fields[fi].0;
                let id = match mem.lookup(&key, field) {
                    Some(id) => id,
                    None => {
                        let id = mem.next_id;
                        let tags: Tags = tags.iter().cloned().collect();
                        let s = SeriesMem {
                            measurement: p.measurement.clone(),
                            field: field.clone(),
                            tags,
                            points: Vec::new(),
                            persisted,
                        };
                        mem.add_series(id, key.clone(), s);
                        id
                    }
                };
                if !persisted {
                    unpersisted.push(id);
                }
                samples[i].id = id;
            }
        }
        let count = samples.len();

        let mut rows: Vec<LogRow> = Vec::new();
        let mut last = 0;
        for s in &samples {
            let day = day_of(s.ts);
            if rows.get(last).is_none_or(|r| r.day != day) {
                last = match rows.iter().position(|r| r.day == day) {
                    Some(i) => i,
                    None => {
                        rows.push(LogRow {
                            day,
                            min_ts: s.ts,
                            max_ts: s.ts,
                            n: 0,
                            data: Vec::new(),
                        });
                        rows.len() - 1
                    }
                };
            }
            let r = &mut rows[last];
            r.min_ts = r.min_ts.min(s.ts);
            r.max_ts = r.max_ts.max(s.ts);
            r.n += 1;
        }

        let mut new_series = Vec::new();
        if self.disk.is_some() {
            unpersisted.sort_unstable();
            unpersisted.dedup();
            if !unpersisted.is_empty() {
                let mem = self.mem.read();
                for id in unpersisted {
                    let s = mem.series(id);
                    new_series.push(NewSeries {
                        id,
                        measurement: s.measurement.clone(),
                        field: s.field.clone(),
                        tags_json: serde_json::to_string(&s.tags).expect("tags serialize"),
                    });
                }
            }
            let mut prev: Vec<i64> = rows.iter().map(|r| r.min_ts).collect();
            for r in &mut rows {
                r.data.reserve_exact(1 + r.n * 12);
                r.data.push(LOG_FORMAT);
            }
            let mut last = 0;
            for s in &samples {
                let day = day_of(s.ts);
                if rows[last].day != day {
                    last = rows.iter().position(|r| r.day == day).expect("day row");
                }
                let data = &mut rows[last].data;
                put_varint(data, u64::from(s.id));
                put_varint(data, zigzag(s.ts - prev[last]));
                data.extend_from_slice(&s.value.to_le_bytes());
                prev[last] = s.ts;
            }
        }
        let prepared = Prepared {
            samples,
            new_series,
            rows,
        };
        (prepared, count)
    }

    /// Queues a prepared write and returns once a commit containing it has finished.
    fn commit(&self, disk: &Disk, prepared: Prepared) -> Result<(), StoreError> {
        let commits = &disk.commits;
        let mut st = commits.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, prepared));
        loop {
            if let Some(result) = st.done.remove(&ticket) {
                return result.map_err(|message| StoreError::Commit {
                    path: disk.db_path.clone(),
                    message,
                });
            }
            if st.leader {
                commits.cv.wait(&mut st);
                continue;
            }
            st.leader = true;
            let group = std::mem::take(&mut st.queue);
            let outcome = parking_lot::MutexGuard::unlocked(&mut st, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.commit_group(disk, &group)
                }))
            });
            st.leader = false;
            let (result, panic) = match outcome {
                Ok(result) => (result, None),
                Err(payload) => (
                    Err(StoreError::Commit {
                        path: disk.db_path.clone(),
                        message: "commit panicked".into(),
                    }),
                    Some(payload),
                ),
            };
            let shared = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
            for (t, _) in &group {
                if *t != ticket {
                    st.done.insert(*t, shared.clone());
                }
            }
            commits.cv.notify_all();
            drop(st);
            if let Some(payload) = panic {
                std::panic::resume_unwind(payload);
            }
            return result;
        }
    }

    /// Writes a group of prepared batches in one transaction, then applies them to memory
    /// (under the writer lock, so memory follows commit order).
    fn commit_group(&self, disk: &Disk, group: &[(u64, Prepared)]) -> Result<(), StoreError> {
        let path = &disk.db_path;
        let mut w = disk.writer.lock();
        let Writer {
            conn,
            known_days,
            logs,
            max_ts,
        } = &mut *w;
        let mut new_days: Vec<i64> = Vec::new();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_err(path, "starting a write transaction"))?;
        for (_, p) in group {
            if !p.new_series.is_empty() {
                let mut st = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO series (id, measurement, field, tags)
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(sqlite_err(path, "preparing series insert"))?;
                for s in &p.new_series {
                    st.execute(params![s.id, s.measurement, s.field, s.tags_json])
                        .map_err(sqlite_err(path, "recording a new series"))?;
                }
            }
            for r in &p.rows {
                if !known_days.contains(&r.day) && !new_days.contains(&r.day) {
                    create_day(&tx, path, r.day)?;
                    new_days.push(r.day);
                }
                let table = log_table(r.day);
                tx.prepare_cached(&format!(
                    "INSERT INTO {table} (min_ts, max_ts, n, data) VALUES (?1, ?2, ?3, ?4)"
                ))
                .and_then(|mut st| st.execute(params![r.min_ts, r.max_ts, r.n as i64, r.data]))
                .map_err(sqlite_err(path, format!("inserting samples into {table}")))?;
            }
        }
        tx.commit()
            .map_err(sqlite_err(path, "committing samples"))?;
        known_days.extend(new_days);
        for (_, p) in group {
            for r in &p.rows {
                let st = logs.entry(r.day).or_default();
                st.rows += 1;
                st.samples += r.n as u64;
                *max_ts = (*max_ts).max(r.max_ts);
            }
        }

        let mut mem = self.mem.write();
        for (_, p) in group {
            for s in &p.new_series {
                mem.series_mut(s.id).persisted = true;
            }
            mem.apply(p);
        }
        mem.maybe_evict(self.window_ns);
        Ok(())
    }

    /// Compacts the logs that are due (see [`COMPACT_SAMPLES`]), unless another thread is
    /// compacting. A failure is logged and retried after the next write: the samples are safe
    /// in the log meanwhile.
    fn maybe_compact(&self, disk: &Disk) {
        let Some(mut compactor) = disk.compactor.try_lock() else {
            return;
        };
        let due: Vec<i64> = {
            let w = disk.writer.lock();
            w.logs
                .iter()
                .filter(|(day, st)| {
                    let day_end = (**day + 1).saturating_mul(DAY_NS);
                    st.samples >= COMPACT_SAMPLES
                        || st.rows >= COMPACT_ROWS
                        || day_end.saturating_add(COMPACT_GRACE_NS) <= w.max_ts
                })
                .map(|(day, _)| *day)
                .collect()
        };
        for day in due {
            if let Err(e) = compact_day(disk, &mut compactor, day) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Compacts the log of every day into per-series blocks now (normally done as logs fill
    /// up). Returns the number of log samples compacted.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let Some(disk) = &self.disk else {
            return Ok(0);
        };
        let mut compactor = disk.compactor.lock();
        let days: Vec<i64> = disk.writer.lock().logs.keys().copied().collect();
        let mut n = 0;
        for day in days {
            n += compact_day(disk, &mut compactor, day)?;
        }
        Ok(n)
    }

    /// Drops every day that ends at or before `cutoff_ns` (whole tables, no row deletes)
    /// and the matching samples in memory. Returns the number of days dropped. Samples of
    /// the day containing the cutoff stay until that whole day is past the cutoff.
    pub fn drop_before(&self, cutoff_ns: i64) -> Result<usize, StoreError> {
        let cutoff_day = day_of(cutoff_ns);
        let boundary = cutoff_day.checked_mul(DAY_NS).unwrap_or(i64::MIN);
        let Some(disk) = &self.disk else {
            let mut mem = self.mem.write();
            let old: Vec<i64> = mem.days.range(..cutoff_day).copied().collect();
            for d in &old {
                mem.days.remove(d);
            }
            mem.drop_points_below(boundary);
            return Ok(old.len());
        };
        let path = &disk.db_path;
        // no compaction may straddle a drop (it would delete rows of a re-created log)
        let _compactor = disk.compactor.lock();
        let mut w = disk.writer.lock();
        let Writer {
            conn,
            known_days,
            logs,
            ..
        } = &mut *w;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_err(path, "starting a retention transaction"))?;
        let days: Vec<i64> = {
            let mut st = tx
                .prepare("SELECT day FROM chunks WHERE day < ?1 ORDER BY day")
                .map_err(sqlite_err(path, "listing chunks"))?;
            let rows = st
                .query_map([cutoff_day], |r| r.get(0))
                .map_err(sqlite_err(path, "listing chunks"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sqlite_err(path, "listing chunks"))?
        };
        for day in &days {
            let (table, log) = (chunk_table(*day), log_table(*day));
            tx.execute_batch(&format!(
                "DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {log};"
            ))
            .map_err(sqlite_err(path, format!("dropping {table} and {log}")))?;
        }
        tx.execute("DELETE FROM chunks WHERE day < ?1", [cutoff_day])
            .map_err(sqlite_err(path, "removing dropped chunks"))?;
        tx.commit()
            .map_err(sqlite_err(path, "committing retention"))?;
        known_days.retain(|d| *d >= cutoff_day);
        logs.retain(|d, _| *d >= cutoff_day);

        let mut mem = self.mem.write();
        let old: Vec<i64> = mem.days.range(..cutoff_day).copied().collect();
        for d in &old {
            mem.days.remove(d);
        }
        mem.drop_points_below(boundary);
        Ok(days.len())
    }

    /// The points of every series of `q.measurement` / `q.field` matching all filters within
    /// `[start_ns, end_ns)`, grouped by the `by` tags (a series lacking a `by` tag goes in a
    /// group without that key). Groups are sorted by tags, their points by time (then value);
    /// groups without points in the window are left out.
    pub fn window(&self, q: &WindowQuery) -> Result<Vec<Group>, StoreError> {
        self.query(q, Grouping::By, Source::Auto)
    }

    /// Like [`Store::window`] but one group per series, with all its tags (`by` is ignored):
    /// the raw series of a window, e.g. for the `series()` script function.
    pub fn window_series(&self, q: &WindowQuery) -> Result<Vec<Group>, StoreError> {
        self.query(q, Grouping::Series, Source::Auto)
    }

    /// [`Store::window`] answered from SQLite alone, ignoring memory (for verification and
    /// debugging; the answers are the same). A scratch store answers from memory.
    pub fn window_persisted(&self, q: &WindowQuery) -> Result<Vec<Group>, StoreError> {
        self.query(q, Grouping::By, Source::Disk)
    }

    /// [`Store::window`] aggregated per group; groups without a value (e.g. `rate` over one
    /// point) are left out.
    pub fn window_agg(&self, q: &WindowQuery, agg: Agg) -> Result<Vec<(Tags, f64)>, StoreError> {
        Ok(self
            .window(q)?
            .into_iter()
            .filter_map(|g| aggregate(agg, &g.points).map(|v| (g.tags, v)))
            .collect())
    }

    /// Number of series known (including those whose samples are only on disk).
    pub fn series_count(&self) -> usize {
        let mem = self.mem.read();
        mem.series.iter().flatten().count()
    }

    /// Number of samples held in memory.
    pub fn sample_count(&self) -> usize {
        self.mem.read().samples
    }

    /// The memory floor: queries starting at or after it are answered from memory alone
    /// (`i64::MIN` when memory holds everything, as in a scratch store).
    pub fn memory_floor(&self) -> i64 {
        self.mem.read().floor
    }

    fn query(
        &self,
        q: &WindowQuery,
        grouping: Grouping,
        source: Source,
    ) -> Result<Vec<Group>, StoreError> {
        if q.start_ns >= q.end_ns {
            return Ok(Vec::new());
        }
        let key = |tags: &Tags| match grouping {
            Grouping::By => by_tags(&q.by, tags),
            Grouping::Series => tags.clone(),
        };
        let mem = self.mem.read();
        let ids = mem.matching(q);
        let disk = match &self.disk {
            Some(disk) if source == Source::Disk || q.start_ns < mem.floor => disk,
            _ => {
                let items = ids.iter().map(|id| {
                    let s = mem.series(*id);
                    (&s.tags, range(&s.points, q.start_ns, q.end_ns))
                });
                return Ok(group_points(items, key));
            }
        };
        let tags: Vec<Tags> = ids.iter().map(|id| mem.series(*id).tags.clone()).collect();
        drop(mem);
        let points = self.read_disk(disk, &ids, q.start_ns, q.end_ns)?;
        let items = tags
            .iter()
            .zip(points.iter())
            .map(|(t, p)| (t, p.as_slice()));
        Ok(group_points(items, key))
    }

    /// Reads the samples of `ids` within `[start, end)` from SQLite, one sorted vector per id.
    fn read_disk(
        &self,
        disk: &Disk,
        ids: &[u32],
        start: i64,
        end: i64,
    ) -> Result<Vec<Vec<(i64, f64)>>, StoreError> {
        let path = &disk.db_path;
        let mut out: Vec<Vec<(i64, f64)>> = vec![Vec::new(); ids.len()];
        if ids.is_empty() {
            return Ok(out);
        }
        let mut conn = disk.reader.lock();
        let tx = conn
            .transaction()
            .map_err(sqlite_err(path, "starting a read transaction"))?;
        let days: Vec<i64> = {
            let mut st = tx
                .prepare_cached("SELECT day FROM chunks WHERE day >= ?1 AND day <= ?2 ORDER BY day")
                .map_err(sqlite_err(path, "listing chunks"))?;
            let rows = st
                .query_map([day_of(start), day_of(end - 1)], |r| r.get(0))
                .map_err(sqlite_err(path, "listing chunks"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sqlite_err(path, "listing chunks"))?
        };
        let pos: HashMap<u32, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        for day in days {
            // blocks first, then the log: that is write order
            let table = chunk_table(day);
            let what = || format!("reading {table}");
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT min_ts, data FROM {table}
                     WHERE series_id = ?1 AND max_ts >= ?2 AND min_ts < ?3 ORDER BY id"
                ))
                .map_err(sqlite_err(path, what()))?;
            for (i, id) in ids.iter().enumerate() {
                let mut rows = st
                    .query(params![id, start, end])
                    .map_err(sqlite_err(path, what()))?;
                while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
                    let min_ts: i64 = row.get(0).map_err(sqlite_err(path, what()))?;
                    let data = row
                        .get_ref(1)
                        .and_then(|v| Ok(v.as_blob()?))
                        .map_err(sqlite_err(path, what()))?;
                    let points = &mut out[i];
                    decode_block(min_ts, data, |ts, v| {
                        if ts >= start && ts < end {
                            points.push((ts, v));
                        }
                    })
                    .map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        what: format!("{table}: series {id}: {e}"),
                    })?;
                }
            }
            let table = log_table(day);
            let what = || format!("reading {table}");
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT id, min_ts, data FROM {table}
                     WHERE max_ts >= ?1 AND min_ts < ?2 ORDER BY id"
                ))
                .map_err(sqlite_err(path, what()))?;
            let mut rows = st
                .query(params![start, end])
                .map_err(sqlite_err(path, what()))?;
            while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
                let row_id: i64 = row.get(0).map_err(sqlite_err(path, what()))?;
                let min_ts: i64 = row.get(1).map_err(sqlite_err(path, what()))?;
                let data = row
                    .get_ref(2)
                    .and_then(|v| Ok(v.as_blob()?))
                    .map_err(sqlite_err(path, what()))?;
                decode_log(min_ts, data, |id, ts, v| {
                    if ts >= start && ts < end {
                        if let Some(&i) = pos.get(&id) {
                            out[i].push((ts, v));
                        }
                    }
                })
                .map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    what: format!("{table}: row {row_id}: {e}"),
                })?;
            }
        }
        drop(tx);
        for points in &mut out {
            dedup_last(points);
        }
        Ok(out)
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
            let pairs: Vec<(String, String)> = tags.clone().into_iter().collect();
            tagset_key(&mut key, &measurement, &pairs);
            let s = SeriesMem {
                measurement,
                field,
                tags,
                points: Vec::new(),
                persisted: true,
            };
            mem.add_series(id, key.clone(), s);
        }
    }
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
            let id: i64 = row.get(0).map_err(sqlite_err(path, what()))?;
            let min_ts: i64 = row.get(1).map_err(sqlite_err(path, what()))?;
            let data = row
                .get_ref(2)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(sqlite_err(path, what()))?;
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
            mem.samples += insert_sorted(&mut series.points, buf.iter().copied());
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
            let row_id: i64 = row.get(0).map_err(sqlite_err(path, what()))?;
            let min_ts: i64 = row.get(1).map_err(sqlite_err(path, what()))?;
            let data = row
                .get_ref(2)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(sqlite_err(path, what()))?;
            let mut unknown = None;
            let mut added = 0;
            decode_log(min_ts, data, |id, ts, v| {
                if ts < floor {
                    return;
                }
                match mem.series.get_mut(id as usize).and_then(|s| s.as_mut()) {
                    Some(s) => added += insert_sorted(&mut s.points, [(ts, v)]),
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

/// What [`load`] found on disk.
struct Loaded {
    days: HashSet<i64>,
    logs: BTreeMap<i64, LogStats>,
    max_ts: i64,
}

/// Creates the tables of a day and lists it in `chunks`.
fn create_day(tx: &rusqlite::Transaction<'_>, path: &Path, day: i64) -> Result<(), StoreError> {
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

/// Rewrites the log of a day as one block per series (time-sorted, the last write of a
/// timestamp kept) and deletes the rows it compacted. Returns the samples compacted.
///
/// The log is read and the blocks built with the compaction connection, outside the writer
/// lock; only inserting the blocks and deleting the compacted rows (one transaction) holds it.
/// Rows committed meanwhile stay in the log, which keeps every block older than every log row.
fn compact_day(disk: &Disk, compactor: &mut Connection, day: i64) -> Result<usize, StoreError> {
    let path = &disk.db_path;
    let (table, log) = (chunk_table(day), log_table(day));
    let what = || format!("compacting {log} into {table}");
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_row = None;
    let mut rows_read = 0u64;
    {
        let tx = compactor.transaction().map_err(sqlite_err(path, what()))?;
        let mut st = tx
            .prepare_cached(&format!("SELECT id, min_ts, data FROM {log} ORDER BY id"))
            .map_err(sqlite_err(path, what()))?;
        let mut rows = st.query([]).map_err(sqlite_err(path, what()))?;
        while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
            let row_id: i64 = row.get(0).map_err(sqlite_err(path, what()))?;
            let min_ts: i64 = row.get(1).map_err(sqlite_err(path, what()))?;
            let data = row
                .get_ref(2)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(sqlite_err(path, what()))?;
            decode_log(min_ts, data, |id, ts, value| {
                samples.push(Sample { id, ts, value })
            })
            .map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                what: format!("{log}: row {row_id}: {e}"),
            })?;
            last_row = Some(row_id);
            rows_read += 1;
        }
    }
    let Some(last_row) = last_row else {
        return Ok(0);
    };
    let n = samples.len();
    // Stable: equal (id, ts) keep write order, and the last one wins.
    samples.sort_by_key(|s| (s.id, s.ts));
    let mut out = 0;
    for i in 0..samples.len() {
        let s = samples[i];
        if out > 0 && samples[out - 1].id == s.id && samples[out - 1].ts == s.ts {
            samples[out - 1].value = s.value;
        } else {
            samples[out] = s;
            out += 1;
        }
    }
    samples.truncate(out);
    let blocks: Vec<(u32, i64, i64, i64, Vec<u8>)> = samples
        .chunk_by(|a, b| a.id == b.id)
        .map(|run| {
            let (first, last) = (run[0].ts, run[run.len() - 1].ts);
            (run[0].id, first, last, run.len() as i64, encode_block(run))
        })
        .collect();
    drop(samples);

    let mut w = disk.writer.lock();
    let tx = w
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err(path, what()))?;
    {
        let mut st = tx
            .prepare_cached(&format!(
                "INSERT INTO {table} (series_id, min_ts, max_ts, n, data) VALUES (?1, ?2, ?3, ?4, ?5)"
            ))
            .map_err(sqlite_err(path, what()))?;
        for (id, first, last, n, data) in &blocks {
            st.execute(params![id, first, last, n, data])
                .map_err(sqlite_err(path, what()))?;
        }
    }
    tx.execute(&format!("DELETE FROM {log} WHERE id <= ?1"), [last_row])
        .map_err(sqlite_err(path, what()))?;
    tx.commit().map_err(sqlite_err(path, what()))?;
    if let Some(st) = w.logs.get_mut(&day) {
        st.rows = st.rows.saturating_sub(rows_read);
        st.samples = st.samples.saturating_sub(n as u64);
        if st.rows == 0 {
            w.logs.remove(&day);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_send_and_sync() {
        assert_send_sync::<Store>();
    }

    #[test]
    fn block_round_trip() {
        let samples: Vec<Sample> = [(5, 1.5), (5 + 1, -2.0), (5 + 300_000_000_000, f64::MAX)]
            .iter()
            .map(|&(ts, value)| Sample { id: 1, ts, value })
            .collect();
        let data = encode_block(&samples);
        let mut out = Vec::new();
        decode_block(5, &data, |ts, v| out.push((ts, v))).unwrap();
        let want: Vec<(i64, f64)> = samples.iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(out, want);
        assert!(decode_block(5, &data[..data.len() - 1], |_, _| {}).is_err());
        assert!(decode_block(5, &[9], |_, _| {}).is_err());
    }

    #[test]
    fn log_round_trip() {
        for v in [0i64, 1, -1, i64::MAX / 2, -DAY_NS] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        let mut data = vec![LOG_FORMAT];
        let samples = [
            (3u32, 100i64, 1.0f64),
            (1, 90, 2.0),
            (3, 100, 3.0),
            (70_000, 150, -4.5),
        ];
        let mut prev = 90;
        for (id, ts, v) in samples {
            put_varint(&mut data, u64::from(id));
            put_varint(&mut data, zigzag(ts - prev));
            data.extend_from_slice(&v.to_le_bytes());
            prev = ts;
        }
        let mut out = Vec::new();
        decode_log(90, &data, |id, ts, v| out.push((id, ts, v))).unwrap();
        assert_eq!(out, samples);
        assert!(decode_log(90, &data[..data.len() - 3], |_, _, _| {}).is_err());
        assert!(decode_log(90, &[BLOCK_FORMAT], |_, _, _| {}).is_err());
    }

    #[test]
    fn chunk_names() {
        assert_eq!(chunk_table(19_700), "samples_19700");
        assert_eq!(chunk_table(-3), "samples_m3");
        assert_eq!(log_table(19_700), "log_19700");
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(DAY_NS), 1);
    }

    #[test]
    fn insert_sorted_replaces_and_orders() {
        let mut v = vec![(10, 1.0), (20, 2.0)];
        assert_eq!(
            insert_sorted(&mut v, [(15, 1.5), (20, 9.0), (30, 3.0), (5, 0.5)]),
            3
        );
        assert_eq!(
            v,
            vec![(5, 0.5), (10, 1.0), (15, 1.5), (20, 9.0), (30, 3.0)]
        );
    }

    #[test]
    fn tagset_keys_are_injective() {
        let mut a = String::new();
        let mut b = String::new();
        tagset_key(&mut a, "m", &[("a".into(), "b:c".into())]);
        tagset_key(
            &mut b,
            "m",
            &[("a".into(), "b".into()), ("c".into(), "".into())],
        );
        assert_ne!(a, b);
    }
}
