//! Window reads: the series of a measurement field matching a query, their points within the
//! window from memory (when the window starts at or after the memory floor) or from SQLite
//! (blocks, then log rows: write order), grouped by tags.

use super::codec::{decode_block, decode_log};
use super::disk::{chunk_row, chunk_table, day_of, log_table, sqlite_err, Disk};
use super::query::{aggregate, Agg, Group, Tags, WindowQuery};
use super::{Store, StoreError};
use rusqlite::params;
use std::collections::{BTreeMap, HashMap};

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
    pub(super) fn read_disk(
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
                let (row_id, min_ts, data) = chunk_row(row, path, what())?;
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
