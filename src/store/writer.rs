//! The write path: points are resolved to series ids (creating series) and encoded as one log
//! row per day ([`Prepared`]), then committed. Concurrent writers are grouped: one leader
//! commits every queued batch in one transaction and one fsync while the others wait, then the
//! batches are applied to memory in commit order.

use super::codec::{put_log_sample, Sample, LOG_FORMAT};
use super::compact::maybe_compact;
use super::disk::{create_day, day_of, log_table, sqlite_err, Disk, Writer};
use super::memory::{normalized_tags, push_part, tagset_key, FastMap, Mem};
use super::{Store, StoreError};
use crate::model::point::{FieldValue, Point, PointLike};
use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use rusqlite::{params, TransactionBehavior};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

/// A series to record in the `series` table with the write that first uses it.
pub(super) struct NewSeries {
    pub(super) id: u32,
    pub(super) measurement: String,
    pub(super) field: String,
    pub(super) tags_json: String,
}

/// The log row of one write for one day.
pub(super) struct LogRow {
    pub(super) day: i64,
    pub(super) min_ts: i64,
    pub(super) max_ts: i64,
    pub(super) n: usize,
    /// encoded samples (empty for scratch stores)
    pub(super) data: Vec<u8>,
}

/// A write resolved to series ids and encoded, ready to commit.
pub(super) struct Prepared {
    /// in write order (a later sample for the same series and time wins)
    pub(super) samples: Vec<Sample>,
    pub(super) new_series: Vec<NewSeries>,
    /// one per day written
    pub(super) rows: Vec<LogRow>,
}

/// Group commit: writers queue prepared batches; one of them (the leader) commits all queued
/// batches in one transaction and one fsync while the others wait. Leadership passes on as
/// soon as the group is on disk, so the next group's write and fsync overlap this group's
/// memory update (the longest part of a commit after the fsync). The leader write-locks memory
/// before it lets go of the SQLite writer, so groups reach memory in commit order and nothing
/// else that takes the writer (retention) comes between a commit and its memory update.
#[derive(Default)]
pub(super) struct Committer {
    state: Mutex<CommitState>,
    cv: Condvar,
    /// The series ids of point shapes written before (see [`shape_key`]): one lookup per
    /// point instead of one per field in the catalog, whose per-tag-set maps and field-name
    /// strings cost a cache miss each (resolution was a quarter of ingest CPU). Holds only
    /// series already recorded on disk; retention, the only thing that removes series (and
    /// frees their ids for reuse), clears it while writes are held off.
    pub(super) shapes: RwLock<FastMap<Box<str>, Box<[u32]>>>,
}

/// Most shapes [`Committer::shapes`] holds (about 200 bytes each); past it the cache starts
/// over, so a client writing ever new shapes costs memory no more than this.
const MAX_SHAPES: usize = 1 << 18;

/// The cache key of a point's shape: its tag-set key (see [`tagset_key`]), `|` (a part of
/// that key never starts with it), then its field names, each length-prefixed the same way.
fn shape_key(buf: &mut String, tagset: &str, p: &impl PointLike) {
    buf.clear();
    buf.push_str(tagset);
    buf.push('|');
    for (name, _) in p.fields() {
        push_part(buf, name.as_ref());
    }
}

#[derive(Default)]
struct CommitState {
    queue: Vec<(u64, Prepared)>,
    leader: bool,
    next_ticket: u64,
    /// tickets below this have been taken into a group (committing or applying)
    taken: u64,
    done: HashMap<u64, Result<(), String>>,
}

/// The leader's role; handing it over (or unwinding) lets the next group commit.
struct Leadership<'a> {
    commits: &'a Committer,
    held: bool,
}

impl Leadership<'_> {
    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.commits.state.lock().leader = false;
            self.commits.cv.notify_all();
        }
    }
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Store {
    /// tag set), in one transaction. Writing an existing (series, time) replaces its value.
    /// Returns the number of samples written. When several threads write at once, their
    /// batches are committed together (see [`Store::write_batches`]).
    pub fn write<P: PointLike>(&self, points: &[P]) -> Result<usize, StoreError> {
        self.write_batches(&[points])
    }

    /// Writes several batches (e.g. the bodies of concurrent requests) in one transaction and
    /// one fsync; later batches win over earlier ones for the same (series, time). Returns the
    /// number of samples written. Calls from several threads are grouped as well: while one
    /// commit runs, the others queue and go into the next commit together. Either everything
    /// is durable when this returns `Ok`, or nothing of these batches was stored.
    pub fn write_batches<P: PointLike>(&self, batches: &[&[P]]) -> Result<usize, StoreError> {
        self.check_limits(batches)?;
        // from resolving series ids until they are applied (see `Store::series_gate`)
        let gate = self.series_gate.read();
        let (prepared, count) = self.prepare(batches)?;
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
                drop(gate);
                maybe_compact(disk);
            }
        }
        Ok(count)
    }

    /// Resolves series ids (creating series) and encodes a write.
    /// Refuses (creating nothing) when the write would create series past `max_series`.
    fn prepare<P: PointLike>(&self, batches: &[&[P]]) -> Result<(Prepared, usize), StoreError> {
        let total: usize = batches
            .iter()
            .flat_map(|b| b.iter())
            .map(|p| p.fields().len())
            .sum();
        let mut samples: Vec<Sample> = Vec::with_capacity(total);
        let mut unpersisted: Vec<u32> = Vec::new();
        // (index into samples, point, field index) of samples whose series is not known yet
        let mut misses: Vec<(usize, &P, usize)> = Vec::new();
        let mut key = String::new();
        let mut shape = String::new();
        // shapes whose series were all known and recorded, for the cache
        let mut learned: Vec<(Box<str>, Box<[u32]>)> = Vec::new();
        {
            let shapes = self.disk.as_ref().map(|d| d.commits.shapes.read());
            // The catalog is read-locked only for points the cache does not know, so writes
            // of known series do not hold up a commit's memory update.
            let mut mem: Option<RwLockReadGuard<'_, Mem>> = None;
            let mut ids: Vec<u32> = Vec::new();
            for p in batches.iter().flat_map(|b| b.iter()) {
                let tags = normalized_tags(p.tags());
                tagset_key(&mut key, p.measurement(), &tags);
                if let Some(shapes) = &shapes {
                    shape_key(&mut shape, &key, p);
                    if let Some(known) = shapes.get(shape.as_str()) {
                        let numeric = |(id, (_, v)): (&u32, &(P::Str, FieldValue))| {
                            *id != 0 || v.as_f64().is_none()
                        };
                        if known.iter().zip(p.fields()).all(numeric) {
                            for (&id, (_, value)) in known.iter().zip(p.fields()) {
                                if let Some(value) = value.as_f64() {
                                    samples.push(Sample {
                                        id,
                                        ts: p.time(),
                                        value,
                                    });
                                }
                            }
                            continue;
                        }
                    }
                }
                let mem = mem.get_or_insert_with(|| self.mem.read());
                let fields = mem.tagset(key.as_str());
                ids.clear();
                let mut cacheable = true;
                for (fi, (name, value)) in p.fields().iter().enumerate() {
                    let Some(value) = value.as_f64() else {
                        ids.push(0);
                        continue;
                    };
                    match fields.as_ref().and_then(|fs| fs.get(name.as_ref())) {
                        Some(id) => {
                            if !mem.series(id).persisted {
                                unpersisted.push(id);
                                cacheable = false;
                            }
                            ids.push(id);
                            samples.push(Sample {
                                id,
                                ts: p.time(),
                                value,
                            });
                        }
                        None => {
                            cacheable = false;
                            misses.push((samples.len(), p, fi));
                            samples.push(Sample {
                                id: 0,
                                ts: p.time(),
                                value,
                            });
                        }
                    }
                }
                if cacheable && shapes.is_some() {
                    learned.push((shape.as_str().into(), ids.as_slice().into()));
                }
            }
        }
        if !learned.is_empty() {
            if let Some(disk) = &self.disk {
                let mut shapes = disk.commits.shapes.write();
                if shapes.len() + learned.len() > MAX_SHAPES {
                    shapes.clear();
                }
                shapes.extend(learned);
            }
        }
        if !misses.is_empty() {
            let mut mem = self.mem.write();
            let persisted = self.disk.is_none();
            // The tag-set key of each point with misses, computed once per point.
            let mut keys: Vec<String> = Vec::new();
            // (index into samples, index into keys, point, field index)
            let mut resolved: Vec<(usize, usize, &P, usize)> = Vec::with_capacity(misses.len());
            let mut prev: Option<&P> = None;
            for (i, p, fi) in misses {
                if !prev.is_some_and(|q| std::ptr::eq(q, p)) {
                    let tags = normalized_tags(p.tags());
                    tagset_key(&mut key, p.measurement(), &tags);
                    keys.push(key.clone());
                    prev = Some(p);
                }
                resolved.push((i, keys.len() - 1, p, fi));
            }
            // Another writer may have created some of them meanwhile: count under this lock.
            let fresh: HashSet<(&str, &str)> = resolved
                .iter()
                .map(|&(_, k, p, fi)| (keys[k].as_str(), p.fields()[fi].0.as_ref()))
                .filter(|(k, f)| mem.lookup(k, f).is_none())
                .collect();
            if mem.series_count + fresh.len() > self.max_series {
                self.series_refused
                    .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                let example = resolved
                    .iter()
                    .find(|&&(_, k, p, fi)| {
                        fresh.contains(&(keys[k].as_str(), p.fields()[fi].0.as_ref()))
                    })
                    .map(|&(_, _, p, fi)| {
                        format!("{}.{}", p.measurement(), p.fields()[fi].0.as_ref())
                    })
                    .unwrap_or_default();
                return Err(StoreError::SeriesLimit {
                    limit: self.max_series,
                    new: fresh.len(),
                    example,
                });
            }
            drop(fresh);
            for (i, k, p, fi) in resolved {
                let key = &keys[k];
                let field = p.fields()[fi].0.as_ref();
                let id = match mem.lookup(key, field) {
                    Some(id) => id,
                    None => mem.create_series(key, p.measurement(), field, persisted),
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
                    new_series.push(NewSeries {
                        id,
                        measurement: mem.measurement_of(id).to_string(),
                        field: mem.field_of(id).to_string(),
                        tags_json: serde_json::to_string(&mem.series(id).tags())
                            .expect("tags serialize"),
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
                put_log_sample(&mut rows[last].data, &mut prev[last], s.id, s.ts, s.value);
            }
        }
        let prepared = Prepared {
            samples,
            new_series,
            rows,
        };
        Ok((prepared, count))
    }

    /// Checks that the points would not create series past the series limit, without writing
    /// anything. Ingest calls it per request, so a request past the limit does not fail the
    /// others committed with it. Point limits are left to [`Store::write_batches`] (the HTTP
    /// parser has applied the same ones already), so no point is checked twice.
    pub fn admit(&self, points: &[Point]) -> Result<(), StoreError> {
        let mem = self.mem.read();
        // Fast path: even if every field were a new series, the limit holds.
        let most_new: usize = points.iter().map(|p| p.fields.len()).sum();
        if mem.series_count.saturating_add(most_new) <= self.max_series {
            return Ok(());
        }
        let mut key = String::new();
        let mut fresh: HashSet<(String, &str)> = HashSet::new();
        for p in points {
            let tags = normalized_tags(&p.tags);
            tagset_key(&mut key, &p.measurement, &tags);
            let known = mem.tagset(key.as_str());
            for (name, value) in &p.fields {
                if value.as_f64().is_some()
                    && known.as_ref().is_none_or(|fs| fs.get(name).is_none())
                {
                    fresh.insert((key.clone(), name.as_str()));
                }
            }
        }
        if mem.series_count + fresh.len() > self.max_series {
            self.series_refused
                .fetch_add(fresh.len() as u64, Ordering::Relaxed);
            let example = points
                .first()
                .map(|p| p.measurement.clone())
                .unwrap_or_default();
            return Err(StoreError::SeriesLimit {
                limit: self.max_series,
                new: fresh.len(),
                example,
            });
        }
        Ok(())
    }

    /// Refuses a write with a point past the store's limits (before anything is prepared).
    fn check_limits<P: PointLike>(&self, batches: &[&[P]]) -> Result<(), StoreError> {
        for (batch, points) in batches.iter().enumerate() {
            for (index, p) in points.iter().enumerate() {
                self.limits
                    .check(p)
                    .map_err(|(limit, message)| StoreError::InvalidPoint {
                        batch,
                        index,
                        limit,
                        measurement: p.measurement().to_owned(),
                        message,
                    })?;
            }
        }
        Ok(())
    }

    /// Queues a prepared write and returns once a commit containing it has finished (on disk
    /// and in memory).
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
            // Lead only while this batch still waits in the queue: once taken, its group's
            // leader answers it.
            if st.leader || ticket < st.taken {
                commits.cv.wait(&mut st);
                continue;
            }
            st.leader = true;
            st.taken = st.next_ticket;
            let group = std::mem::take(&mut st.queue);
            drop(st);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut leadership = Leadership {
                    commits,
                    held: true,
                };
                let mut w = disk.writer.lock();
                let written = self.commit_disk(disk, &mut w, &group);
                let mem = written.is_ok().then(|| self.mem.write());
                drop(w);
                leadership.release();
                written?;
                self.apply_group(mem.expect("locked when written"), &group);
                Ok(())
            }));
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
            let mut st = commits.state.lock();
            for (t, _) in &group {
                if *t != ticket {
                    st.done.insert(*t, shared.clone());
                }
            }
            commits.cv.notify_all();
            drop(st);
            drop(group);
            if let Some(payload) = panic {
                std::panic::resume_unwind(payload);
            }
            return result;
        }
    }

    /// Writes a group of prepared batches in one transaction (one fsync).
    fn commit_disk(
        &self,
        disk: &Disk,
        w: &mut Writer,
        group: &[(u64, Prepared)],
    ) -> Result<(), StoreError> {
        let path = &disk.db_path;
        let Writer {
            conn,
            known_days,
            logs,
            max_ts,
        } = w;
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
        Ok(())
    }

    /// Applies a committed group to memory (locked by the caller before it let go of the
    /// writer, so groups arrive in commit order).
    fn apply_group(&self, mut mem: RwLockWriteGuard<'_, Mem>, group: &[(u64, Prepared)]) {
        for (_, p) in group {
            for s in &p.new_series {
                mem.series_mut(s.id).persisted = true;
            }
            mem.apply(p);
        }
        mem.maybe_evict(self.window_ns);
    }
}
