//! The write path: points are resolved to series ids (creating series) and encoded as one log
//! row per day ([`Prepared`]), then committed. Concurrent writers are grouped: one leader
//! commits every queued batch in one transaction and one fsync while the others wait, then the
//! batches are applied to memory in commit order.

use super::codec::{put_log_sample, Sample, LOG_FORMAT};
use super::compact::maybe_compact;
use super::disk::{create_day, day_of, log_table, sqlite_err, Disk, Writer};
use super::memory::{normalized_tags, tagset_key};
use super::{Store, StoreError};
use crate::model::point::Point;
use parking_lot::{Condvar, Mutex};
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
/// batches in one transaction while the others wait.
#[derive(Default)]
pub(super) struct Committer {
    state: Mutex<CommitState>,
    cv: Condvar,
}

#[derive(Default)]
struct CommitState {
    pub(super) queue: Vec<(u64, Prepared)>,
    pub(super) leader: bool,
    pub(super) next_ticket: u64,
    pub(super) done: HashMap<u64, Result<(), String>>,
}

impl Store {
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
    fn prepare(&self, batches: &[&[Point]]) -> Result<(Prepared, usize), StoreError> {
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
                let fields = mem.tagset(key.as_str());
                for (fi, (name, value)) in p.fields.iter().enumerate() {
                    let Some(value) = value.as_f64() else {
                        continue;
                    };
                    match fields.as_ref().and_then(|fs| fs.get(name)) {
                        Some(id) => {
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
            // The tag-set key of each point with misses, computed once per point.
            let mut keys: Vec<String> = Vec::new();
            // (index into samples, index into keys, point, field index)
            let mut resolved: Vec<(usize, usize, &Point, usize)> = Vec::with_capacity(misses.len());
            let mut prev: Option<&Point> = None;
            for (i, p, fi) in misses {
                if !prev.is_some_and(|q| std::ptr::eq(q, p)) {
                    let tags = normalized_tags(&p.tags);
                    tagset_key(&mut key, &p.measurement, &tags);
                    keys.push(key.clone());
                    prev = Some(p);
                }
                resolved.push((i, keys.len() - 1, p, fi));
            }
            // Another writer may have created some of them meanwhile: count under this lock.
            let fresh: HashSet<(&str, &str)> = resolved
                .iter()
                .map(|&(_, k, p, fi)| (keys[k].as_str(), p.fields[fi].0.as_str()))
                .filter(|(k, f)| mem.lookup(k, f).is_none())
                .collect();
            if mem.series_count + fresh.len() > self.max_series {
                self.series_refused
                    .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                let example = resolved
                    .iter()
                    .find(|&&(_, k, p, fi)| {
                        fresh.contains(&(keys[k].as_str(), p.fields[fi].0.as_str()))
                    })
                    .map(|&(_, _, p, fi)| format!("{}.{}", p.measurement, p.fields[fi].0))
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
                let field = &p.fields[fi].0;
                let id = match mem.lookup(key, field) {
                    Some(id) => id,
                    None => mem.create_series(key, &p.measurement, field, persisted),
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
    fn check_limits(&self, batches: &[&[Point]]) -> Result<(), StoreError> {
        for (batch, points) in batches.iter().enumerate() {
            for (index, p) in points.iter().enumerate() {
                self.limits
                    .check(p)
                    .map_err(|(limit, message)| StoreError::InvalidPoint {
                        batch,
                        index,
                        limit,
                        measurement: p.measurement.clone(),
                        message,
                    })?;
            }
        }
        Ok(())
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
}
