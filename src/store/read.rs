//! Window reads: the series of a measurement field matching a query, their points within the
//! window from memory (when the window starts at or after the memory floor) or from SQLite
//! (blocks, then log rows: write order), grouped by tags.
//!
//! A cold read (from SQLite) takes each day's blocks either by one indexed lookup per series,
//! or, when the query asks for a large part of the day's blocks, by one scan of the day table
//! that keeps the rows of the wanted series: a lookup costs about as much as reading
//! [`SEEK_ROWS`] rows in sequence, so 10,000 series over 7 days is a few scans, not 70,000
//! lookups.

use super::codec::{decode_block, decode_log};
use super::disk::{chunk_row, chunk_table, day_of, log_table, sqlite_err, Disk};
use super::memory::{FastMap, SeriesMem};
use super::query::{aggregate, Agg, Group, Tags, WindowQuery};
use super::{Store, StoreError};
use rusqlite::params;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

/// A day's blocks are scanned whole when the query asks for more than one series per this
/// many block rows of the day (an indexed lookup per series costs about as much as reading
/// this many rows in sequence; measured with `cargo bench --bench cold_window`).
const SEEK_ROWS: i64 = 8;

/// Most blocks' worth of samples [`first_reserve`] reserves.
const RESERVE_BLOCKS: usize = 32;

/// The points of `points` (sorted) within `[start, end)`.
pub(super) fn range(points: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
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

/// Groups the points of series (each sorted by time, unique times) by their group key;
/// groups sorted by key, points sorted by (time, value); empty groups omitted.
fn group_points(items: impl IntoIterator<Item = (Tags, Vec<(i64, f64)>)>) -> Vec<Group> {
    // (points, whether several series were merged into them)
    let mut groups: BTreeMap<Tags, (Vec<(i64, f64)>, bool)> = BTreeMap::new();
    for (tags, points) in items {
        if points.is_empty() {
            continue;
        }
        match groups.entry(tags) {
            Entry::Vacant(e) => {
                e.insert((points, false));
            }
            Entry::Occupied(mut e) => {
                let g = e.get_mut();
                g.0.extend_from_slice(&points);
                g.1 = true;
            }
        }
    }
    groups
        .into_iter()
        .map(|(tags, (mut points, merged))| {
            // one series' points are sorted by time already, with unique times
            if merged {
                points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            }
            Group { tags, points }
        })
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

impl Grouping {
    /// The group of a series: its `by` tags (absent ones left out), or all its tags.
    fn key(self, q: &WindowQuery, s: &SeriesMem) -> Tags {
        match self {
            Grouping::By => {
                q.by.iter()
                    .filter_map(|k| Some((k.clone(), s.tag(k)?.to_string())))
                    .collect()
            }
            Grouping::Series => s.tags(),
        }
    }
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

    /// How many series `q` matches (measurement, field and filters; the time range aside): a
    /// cheap look at the memory index, so a caller can refuse an oversized query before
    /// building its answer.
    pub fn matching_series(&self, q: &WindowQuery) -> usize {
        self.mem.read().matching(q).len()
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
        loop {
            let mem = self.settled();
            let ids = mem.matching(q);
            let disk = match &self.disk {
                Some(disk) if source == Source::Disk || q.start_ns < mem.floor => disk,
                _ => {
                    let items = ids.iter().filter_map(|id| {
                        let s = mem.series(*id);
                        let points = range(&s.points, q.start_ns, q.end_ns);
                        (!points.is_empty()).then(|| (grouping.key(q, s), points.to_vec()))
                    });
                    return Ok(group_points(items));
                }
            };
            let keys: Vec<Tags> = ids
                .iter()
                .map(|id| grouping.key(q, mem.series(*id)))
                .collect();
            let epoch = mem.epoch;
            drop(mem);
            let points = self.read_disk(disk, &ids, q.start_ns, q.end_ns)?;
            // Retention may have removed some of these series meanwhile and a new series
            // reused an id (rare: once a day at most); then these points may not be theirs.
            if self.mem.read().epoch == epoch {
                return Ok(group_points(keys.into_iter().zip(points)));
            }
        }
    }

    /// Reads the samples of `ids` within `[start, end)` from SQLite, one sorted vector per id.
    pub(super) fn read_disk(
        &self,
        disk: &Disk,
        ids: &[u32],
        start: i64,
        end: i64,
    ) -> Result<Vec<Vec<(i64, f64)>>, StoreError> {
        Self::read_disk_with(disk, ids, start, end, SEEK_ROWS)
    }

    /// [`Store::read_disk`], scanning a day's blocks when `ids.len() * seek_rows` reaches its
    /// number of blocks (tests compare both ways).
    pub(super) fn read_disk_with(
        disk: &Disk,
        ids: &[u32],
        start: i64,
        end: i64,
        seek_rows: i64,
    ) -> Result<Vec<Vec<(i64, f64)>>, StoreError> {
        let path = &disk.db_path;
        let mut out: Vec<Vec<(i64, f64)>> = vec![Vec::new(); ids.len()];
        // whether a series got a sample not after its latest one (late writes, rewrites):
        // only those need sorting and deduplicating
        let mut unsorted = vec![false; ids.len()];
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
        let pos: FastMap<u32, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let corrupt = |what: String| StoreError::Corrupt {
            path: path.clone(),
            what,
        };
        for day in days {
            // blocks first, then the log: that is write order
            let table = chunk_table(day);
            let what = || format!("reading {table}");
            // Rows are only ever inserted, so the largest id is the number of blocks.
            let blocks: i64 = tx
                .prepare_cached(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"))
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(sqlite_err(path, what()))?;
            if (ids.len() as i64).saturating_mul(seek_rows) >= blocks {
                let mut st = tx
                    .prepare_cached(&format!(
                        "SELECT series_id, min_ts, data, n, max_ts FROM {table}
                         WHERE max_ts >= ?1 AND min_ts < ?2 ORDER BY id"
                    ))
                    .map_err(sqlite_err(path, what()))?;
                let mut rows = st
                    .query(params![start, end])
                    .map_err(sqlite_err(path, what()))?;
                while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
                    let (id, min_ts, data) = chunk_row(row, path, what())?;
                    let Some(&i) = u32::try_from(id).ok().and_then(|id| pos.get(&id)) else {
                        continue;
                    };
                    let n: i64 = row.get(3).map_err(sqlite_err(path, what()))?;
                    let max_ts: i64 = row.get(4).map_err(sqlite_err(path, what()))?;
                    unsorted[i] |= out[i].last().is_some_and(|p| p.0 >= min_ts);
                    read_block(&mut out[i], (min_ts, max_ts, n), data, (start, end))
                        .map_err(|e| corrupt(format!("{table}: series {id}: {e}")))?;
                }
            } else {
                let mut st = tx
                    .prepare_cached(&format!(
                        "SELECT min_ts, data, n, max_ts FROM {table}
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
                        let n: i64 = row.get(2).map_err(sqlite_err(path, what()))?;
                        let max_ts: i64 = row.get(3).map_err(sqlite_err(path, what()))?;
                        unsorted[i] |= out[i].last().is_some_and(|p| p.0 >= min_ts);
                        read_block(&mut out[i], (min_ts, max_ts, n), data, (start, end))
                            .map_err(|e| corrupt(format!("{table}: series {id}: {e}")))?;
                    }
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
                let (row_id, min_ts, data) = chunk_row(row, path, what())?;
                decode_log(min_ts, data, |id, ts, v| {
                    if ts >= start && ts < end {
                        if let Some(&i) = pos.get(&id) {
                            unsorted[i] |= out[i].last().is_some_and(|p| p.0 >= ts);
                            out[i].push((ts, v));
                        }
                    }
                })
                .map_err(|e| corrupt(format!("{table}: row {row_id}: {e}")))?;
            }
        }
        drop(tx);
        for (points, unsorted) in out.iter_mut().zip(unsorted) {
            if unsorted {
                dedup_last(points);
            }
            if points.capacity() > points.len() + points.len() / 8 + 16 {
                points.shrink_to_fit();
            }
        }
        Ok(out)
    }
}

/// Appends the samples of a block (`n` of them, time-sorted, from `min_ts` to `max_ts`)
/// within `[start, end)`.
fn read_block(
    points: &mut Vec<(i64, f64)>,
    (min_ts, max_ts, n): (i64, i64, i64),
    data: &[u8],
    (start, end): (i64, i64),
) -> Result<(), String> {
    let n = usize::try_from(n).unwrap_or(0).min(data.len() / 9);
    if points.is_empty() {
        points.reserve(first_reserve(n, min_ts, max_ts, start, end));
    }
    decode_block(min_ts, data, |ts, v| {
        if ts >= start && ts < end {
            points.push((ts, v));
        }
    })
}

/// Room for a series' points on its first block: the block's density over the rest of the
/// window (regular series then grow no more, saving the copies of doubling), at most
/// [`RESERVE_BLOCKS`] blocks' worth (a burst must not reserve a window of it).
fn first_reserve(n: usize, min_ts: i64, max_ts: i64, start: i64, end: i64) -> usize {
    let span = (max_ts as f64 - min_ts as f64).max(1.0);
    let rest = (end as f64 - min_ts.max(start) as f64).max(0.0);
    let blocks = (rest / span).ceil().min(RESERVE_BLOCKS as f64);
    (n as f64 * blocks) as usize
}
