//! Compaction and retention. Compaction rewrites a day's log rows as one block per series once
//! the log is large enough or the day is over; retention drops whole day tables.

use super::codec::{decode_log, encode_block, Sample};
use super::disk::{chunk_row, chunk_table, day_of, log_table, sqlite_err, Disk, Writer, DAY_NS};
use super::{Store, StoreError};
use rusqlite::{params, Connection, TransactionBehavior};
use std::sync::Arc;

/// A day's log is compacted once it holds this many samples...
///
/// Large on purpose: each compaction adds one entry per series to the day's index of blocks
/// (series, time), spread over the whole index, so it rewrites most of the index's pages
/// however few samples it compacts. At 2^20 samples a compaction (25,000 series written
/// at 2.8 M samples/s), those rewrites were most of the 300 MB/s the store wrote, the disk
/// the bottleneck; at 2^23 they are a small part. Memory stays bounded by [`PASS_SAMPLES`].
const COMPACT_SAMPLES: u64 = 1 << 23;
/// Samples a compaction holds in memory at once (24 bytes each, plus their blocks): a larger
/// log is compacted in passes over ranges of series ids.
/// (Tests compact in passes of a thousand samples, so every compaction test covers passes.)
const PASS_SAMPLES: u64 = if cfg!(test) { 1 << 10 } else { 1 << 21 };
/// ... or this many rows ...
const COMPACT_ROWS: u64 = 256;
/// ... or once the latest timestamp written is this far past the end of the day.
const COMPACT_GRACE_NS: i64 = 3_600 * 1_000_000_000;

/// A block to insert: series id, first and last time, sample count, encoded samples.
type Block = (u32, i64, i64, i64, Vec<u8>);

/// Blocks inserted in one transaction of a compaction (see [`compact_day`]).
pub(super) const COMPACT_BATCH: usize = 2048;

/// Starts compacting the logs that are due (see [`COMPACT_SAMPLES`]) on a thread of its own,
/// unless a compaction is running already: the write that made a log due is answered without
/// waiting for it (a compaction of 2^23 samples takes about a second). A failure is logged
/// and retried after a later write: the samples are safe in the log meanwhile.
pub(super) fn maybe_compact(disk: &Arc<Disk>) {
    let mut running = disk.compaction.lock();
    if running.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    let due = due_days(disk);
    if due.is_empty() {
        return;
    }
    if let Some(done) = running.take() {
        let _ = done.join();
    }
    let disk = Arc::clone(disk);
    let spawned = std::thread::Builder::new()
        .name("tocsin-compact".into())
        .spawn(move || {
            let mut compactor = disk.compactor.lock();
            for day in due {
                if let Err(e) = compact_day(&disk, &mut compactor, day) {
                    tracing::warn!("{e}");
                }
            }
        });
    match spawned {
        Ok(thread) => *running = Some(thread),
        // no thread to be had: the next write tries again
        Err(e) => tracing::warn!("store: could not start a compaction thread: {e}"),
    }
}

/// The days whose logs are due for compaction.
fn due_days(disk: &Disk) -> Vec<i64> {
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
}

impl Store {
    /// Waits until no compaction runs in the background (writes start them when a log is
    /// due; see [`maybe_compact`]).
    pub fn wait_for_compaction(&self) {
        let running = self.disk.as_ref().and_then(|d| d.compaction.lock().take());
        if let Some(thread) = running {
            let _ = thread.join();
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
    ///
    /// Series left without any sample (their latest day dropped) are removed from memory and
    /// from the `series` table, so they no longer count against the series limit; writing
    /// one again creates it anew.
    pub fn drop_before(&self, cutoff_ns: i64) -> Result<usize, StoreError> {
        let cutoff_day = day_of(cutoff_ns);
        let boundary = cutoff_day.checked_mul(DAY_NS).unwrap_or(i64::MIN);
        // no write in flight between resolving series and applying samples: the series found
        // empty below stay empty until they are removed
        let _gate = self.series_gate.write();
        let Some(disk) = &self.disk else {
            let mut mem = self.mem.write();
            let old: Vec<i64> = mem.days.range(..cutoff_day).copied().collect();
            for d in &old {
                mem.days.remove(d);
            }
            mem.drop_points_below(boundary);
            let emptied = mem.emptied_before(cutoff_day);
            mem.remove_series(&emptied);
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
        let emptied = self.mem.read().emptied_before(cutoff_day);
        {
            let mut st = tx
                .prepare("DELETE FROM series WHERE id = ?1")
                .map_err(sqlite_err(path, "removing emptied series"))?;
            for id in &emptied {
                st.execute([id])
                    .map_err(sqlite_err(path, "removing emptied series"))?;
            }
        }
        tx.commit()
            .map_err(sqlite_err(path, "committing retention"))?;
        known_days.retain(|d| *d >= cutoff_day);
        logs.retain(|d, _| *d >= cutoff_day);
        // The writer's cache of point shapes holds series ids; removed series free theirs for
        // reuse, so the cache must not outlive them (writes are held off by the gate).
        if !emptied.is_empty() {
            disk.commits.shapes.write().clear();
        }

        let mut mem = self.mem.write();
        let old: Vec<i64> = mem.days.range(..cutoff_day).copied().collect();
        for d in &old {
            mem.days.remove(d);
        }
        mem.drop_points_below(boundary);
        mem.remove_series(&emptied);
        Ok(days.len())
    }
}

/// Rewrites the log of a day as one block per series (time-sorted, the last write of a
/// timestamp kept) and deletes the rows it compacted. Returns the samples compacted.
///
/// The log is read and the blocks built with the compaction connection, outside the writer
/// lock; only inserting the blocks and deleting the compacted rows holds it. Rows committed
/// meanwhile stay in the log, which keeps every block older than every log row.
///
/// A large log is compacted in passes over ranges of series ids (see [`PASS_SAMPLES`]), each
/// reading the rows again and keeping only its range's samples, so memory holds one pass's
/// samples, not the whole log's. The passes' series do not overlap, so the blocks of a series
/// still come from one sort.
fn compact_day(disk: &Disk, compactor: &mut Connection, day: i64) -> Result<usize, StoreError> {
    let path = &disk.db_path;
    let (table, log) = (chunk_table(day), log_table(day));
    let what = || format!("compacting {log} into {table}");
    // The rows to compact: those there now, up to the last one (read in one snapshot).
    let (last_row, rows, logged, top_id): (Option<i64>, u64, u64, u32) = {
        let tx = compactor.transaction().map_err(sqlite_err(path, what()))?;
        let (last, rows, logged) = tx
            .query_row(
                &format!("SELECT MAX(id), COUNT(*), COALESCE(SUM(n), 0) FROM {log}"),
                [],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
            )
            .map_err(sqlite_err(path, what()))?;
        let top: i64 = tx
            .query_row("SELECT COALESCE(MAX(id), 0) FROM series", [], |r| r.get(0))
            .map_err(sqlite_err(path, what()))?;
        let top = u32::try_from(top).unwrap_or(u32::MAX);
        (last, rows as u64, logged as u64, top)
    };
    let Some(last_row) = last_row else {
        return Ok(0);
    };
    let passes = logged.div_ceil(PASS_SAMPLES).max(1);
    let span = (u64::from(top_id) + 1).div_ceil(passes);
    let mut n = 0;
    for pass in 0..passes {
        let lo = pass * span;
        // the last pass takes every id above (none expected: series are recorded first)
        let hi = if pass + 1 == passes {
            u64::MAX
        } else {
            lo + span
        };
        let (blocks, read) = build_blocks(compactor, path, &log, last_row, (lo, hi))?;
        n += read;
        // The blocks go in in batches, the writer lock released between them, so commits
        // of new samples are not held up for the whole compaction. A reader may meanwhile
        // see some series both in blocks and in the log: the same samples, which reads
        // deduplicate. None of these waits for an fsync of its own: the last transaction,
        // which deletes the compacted rows, is synced (`synchronous = FULL`) after them (WAL
        // order), so a crash before it leaves the log whole (compacted again later;
        // duplicate blocks read as one).
        for batch in blocks.chunks(COMPACT_BATCH) {
            let mut w = Unsynced::new(disk.writer.lock(), path)?;
            insert_blocks(&mut w.0.conn, path, &table, batch, None)?;
        }
    }
    let mut w = disk.writer.lock();
    insert_blocks(&mut w.conn, path, &table, &[], Some((&log, last_row)))?;
    if let Some(st) = w.logs.get_mut(&day) {
        st.rows = st.rows.saturating_sub(rows);
        st.samples = st.samples.saturating_sub(logged);
        if st.rows == 0 {
            w.logs.remove(&day);
        }
    }
    Ok(n)
}

/// Reads the log rows up to `last_row` and builds the blocks of the series with ids in
/// `lo..hi`; returns them with the number of samples read.
fn build_blocks(
    compactor: &mut Connection,
    path: &std::path::Path,
    log: &str,
    last_row: i64,
    (lo, hi): (u64, u64),
) -> Result<(Vec<Block>, usize), StoreError> {
    let what = || format!("compacting {log}");
    let mut samples: Vec<Sample> = Vec::new();
    {
        let tx = compactor.transaction().map_err(sqlite_err(path, what()))?;
        let mut st = tx
            .prepare_cached(&format!(
                "SELECT id, min_ts, data FROM {log} WHERE id <= ?1 ORDER BY id"
            ))
            .map_err(sqlite_err(path, what()))?;
        let mut rows = st.query([last_row]).map_err(sqlite_err(path, what()))?;
        while let Some(row) = rows.next().map_err(sqlite_err(path, what()))? {
            let (row_id, min_ts, data) = chunk_row(row, path, what())?;
            decode_log(min_ts, data, |id, ts, value| {
                if (lo..hi).contains(&u64::from(id)) {
                    samples.push(Sample { id, ts, value })
                }
            })
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                what: format!("{log}: row {row_id}: {e}"),
            })?;
        }
    }
    let read = samples.len();
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
    let blocks = samples
        .chunk_by(|a, b| a.id == b.id)
        .map(|run| {
            let (first, last) = (run[0].ts, run[run.len() - 1].ts);
            (run[0].id, first, last, run.len() as i64, encode_block(run))
        })
        .collect();
    Ok((blocks, read))
}

/// Inserts `blocks` into `table` in one transaction, deleting the compacted log rows (those
/// of `log` up to the given id) in it too when asked.
fn insert_blocks(
    conn: &mut Connection,
    path: &std::path::Path,
    table: &str,
    blocks: &[Block],
    delete_through: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    let what = || format!("compacting into {table}");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err(path, what()))?;
    {
        let mut st = tx
            .prepare_cached(&format!(
                "INSERT INTO {table} (series_id, min_ts, max_ts, n, data) VALUES (?1, ?2, ?3, ?4, ?5)"
            ))
            .map_err(sqlite_err(path, what()))?;
        for (id, first, last, n, data) in blocks {
            st.execute(params![id, first, last, n, data])
                .map_err(sqlite_err(path, what()))?;
        }
    }
    if let Some((log, last_row)) = delete_through {
        tx.execute(&format!("DELETE FROM {log} WHERE id <= ?1"), [last_row])
            .map_err(sqlite_err(path, what()))?;
    }
    tx.commit().map_err(sqlite_err(path, what()))
}

/// The writer with its commits not synced (`synchronous = NORMAL`) while this is held; every
/// commit is synced again once it is dropped, whatever happened meanwhile.
struct Unsynced<'a>(parking_lot::MutexGuard<'a, Writer>);

impl<'a> Unsynced<'a> {
    fn new(
        w: parking_lot::MutexGuard<'a, Writer>,
        path: &std::path::Path,
    ) -> Result<Unsynced<'a>, StoreError> {
        w.conn
            .execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(sqlite_err(path, "relaxing sync for a compaction batch"))?;
        Ok(Unsynced(w))
    }
}

impl Drop for Unsynced<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.conn.execute_batch("PRAGMA synchronous=FULL") {
            // Not expected (a pragma on an open connection); say so loudly.
            tracing::error!("store: could not restore synchronous=FULL after compacting: {e}");
        }
    }
}
