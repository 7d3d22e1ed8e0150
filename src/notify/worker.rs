//! The outbox worker: posts due deliveries with a timeout, retries failures with exponential
//! backoff and jitter (1 s … 5 min) until delivered or expired. Each delivery runs on its own
//! blocking task, with at most two in flight per target, so a slow or dead target never holds
//! up checks, ingest or other targets. Rows survive restarts: what was pending is retried.
//!
//! `alertmanager_api` targets also get their open alerts re-sent every `resend` (direct POSTs;
//! see [`super::alertmanager`]). Everything posted to one such target goes out one request at a
//! time, with the open-alert table read under the same lock, so a re-send read before a
//! recovery committed cannot reach Alertmanager after that recovery.

use super::alertmanager::{self, AmTarget};
use crate::args;
use crate::events::sql::Row;
use crate::events::EventDb;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One outbox row as `GET /api/v1/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// row id
    pub id: i64,
    /// the event
    pub event_id: String,
    /// policy id
    pub policy: String,
    /// target key (`policy#index:urlhash`)
    pub target: String,
    /// target URL
    pub url: String,
    /// payload format
    pub format: String,
    /// pending (not tried yet), failed (retrying), delivered, expired
    pub status: String,
    /// attempts so far
    pub attempts: i64,
    /// next attempt, Unix ms
    pub next_at: i64,
    /// enqueued, Unix ms
    pub created_at: i64,
    /// given up after, Unix ms
    pub expires_at: i64,
    /// delivered, Unix ms
    pub delivered_at: Option<i64>,
    /// last HTTP status
    pub last_code: Option<i64>,
    /// last error
    pub last_error: Option<String>,
}

/// Lists deliveries; `statuses` empty means pending, failed and expired.
pub fn list(db: &EventDb, statuses: &[String], limit: usize) -> Result<Vec<Delivery>, String> {
    let statuses: Vec<String> = if statuses.is_empty() {
        vec!["pending".into(), "failed".into(), "expired".into()]
    } else {
        statuses.to_vec()
    };
    let placeholders = (1..=statuses.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let args: Vec<crate::events::sql::Value> = statuses.iter().map(Into::into).collect();
    db.with_conn(|c| {
        c.rows(
            &format!(
                "SELECT id, event_id, policy, target, url, format, status, attempts, next_at, created_at, expires_at, \
                 delivered_at, last_code, last_error FROM outbox WHERE status IN ({placeholders}) ORDER BY id DESC LIMIT {limit}"
            ),
            &args,
        )?
        .iter()
        .map(delivery)
        .collect()
    })
    .map_err(|e| e.to_string())
}

fn delivery(r: &Row) -> Result<Delivery, crate::events::SqlError> {
    Ok(Delivery {
        id: r.int(0)?,
        event_id: r.text(1)?,
        policy: r.text(2)?,
        target: r.text(3)?,
        url: r.text(4)?,
        format: r.text(5)?,
        status: r.text(6)?,
        attempts: r.int(7)?,
        next_at: r.int(8)?,
        created_at: r.int(9)?,
        expires_at: r.int(10)?,
        delivered_at: r.opt_int(11)?,
        last_code: r.opt_int(12)?,
        last_error: r.opt_text(13)?,
    })
}

/// Counts of outbox rows by status.
pub fn counts(db: &EventDb) -> HashMap<String, i64> {
    db.with_conn(|c| {
        c.rows("SELECT status, COUNT(*) FROM outbox GROUP BY status", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?)))
            .collect()
    })
    .unwrap_or_default()
}

/// Backoff before attempt `n + 1` (n ≥ 1 failures): 1 s doubling to 5 min, ±20 % jitter.
pub fn backoff_ms(failures: i64) -> i64 {
    let base = 1000i64
        .saturating_mul(1 << (failures - 1).clamp(0, 20))
        .min(300_000);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    (base as f64 * jitter) as i64
}

struct Job {
    id: i64,
    event_id: String,
    target: String,
    url: String,
    format: String,
    secret: Option<String>,
    timeout_ms: i64,
    body: String,
    attempts: i64,
    expires_at: i64,
}

fn job(r: &Row) -> Result<Job, crate::events::SqlError> {
    Ok(Job {
        id: r.int(0)?,
        event_id: r.text(1)?,
        target: r.text(2)?,
        url: r.text(3)?,
        format: r.text(4)?,
        secret: r.opt_text(5)?,
        timeout_ms: r.int(6)?,
        body: r.text(7)?,
        attempts: r.int(8)?,
        expires_at: r.int(9)?,
    })
}

/// The worker.
pub struct Worker {
    db: Arc<EventDb>,
    in_flight: Mutex<HashSet<i64>>,
    per_target: Mutex<HashMap<String, usize>>,
    stopping: AtomicBool,
    /// deliveries answered 2xx since start
    pub delivered: AtomicU64,
    /// attempts that failed since start
    pub failures: AtomicU64,
    /// re-sends of open alerts answered 2xx since start
    pub resends: AtomicU64,
    /// re-sends of open alerts that failed since start
    pub resend_failures: AtomicU64,
    wake: tokio::sync::Notify,
    /// `alertmanager_api` targets: the target, when its next re-send is due (Unix ms), whether
    /// one is running
    alertmanagers: Mutex<Vec<(AmTarget, i64, bool)>>,
    /// on a shared backend: this replica's leases, which decide the `alertmanager_api`
    /// targets it talks to (one replica per target keeps their requests in order)
    leases: parking_lot::RwLock<Option<Arc<crate::events::lease::Leases>>>,
    /// one lock per `alertmanager_api` target key: its requests go out one at a time
    am_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

const PER_TARGET: usize = 2;

/// A claimed delivery stays this replica's this long past its request timeout.
const CLAIM_MARGIN_MS: i64 = 30_000;

impl Worker {
    /// A worker over the event store's outbox.
    pub fn new(db: Arc<EventDb>) -> Arc<Worker> {
        Worker::with_alertmanagers(db, Vec::new())
    }

    /// A worker that also re-sends the open alerts of these `alertmanager_api` targets, the
    /// first time as soon as it runs (after a restart Alertmanager may be close to letting them
    /// expire).
    pub fn with_alertmanagers(db: Arc<EventDb>, targets: Vec<AmTarget>) -> Arc<Worker> {
        Arc::new(Worker {
            db,
            in_flight: Mutex::new(HashSet::new()),
            per_target: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            resend_failures: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            leases: parking_lot::RwLock::new(None),
            am_locks: Mutex::new(
                targets
                    .iter()
                    .map(|t| (t.key.clone(), Arc::default()))
                    .collect(),
            ),
            alertmanagers: Mutex::new(targets.into_iter().map(|t| (t, 0, false)).collect()),
        })
    }

    /// The lock that orders the requests to one `alertmanager_api` target.
    fn am_lock(&self, key: &str) -> Arc<Mutex<()>> {
        self.am_locks
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Replaces the `alertmanager_api` targets after a config reload: a target that stays
    /// keeps its re-send timing, a new one is re-sent to at once, a removed one no more.
    pub fn set_alertmanagers(&self, targets: Vec<AmTarget>) {
        let mut ams = self.alertmanagers.lock();
        let next = targets
            .into_iter()
            .map(|t| match ams.iter().find(|(old, _, _)| old.key == t.key) {
                Some((_, due, running)) => (t, *due, *running),
                None => (t, 0, false),
            })
            .collect();
        *ams = next;
        self.wake.notify_one();
    }

    /// Stops taking new deliveries (in-flight ones finish on their own).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Runs until stopped.
    pub async fn run(self: Arc<Self>) {
        while !self.stopping.load(Ordering::SeqCst) {
            let now = super::now_ms();
            let due = self.due(now).unwrap_or_else(|e| {
                tracing::warn!("outbox read failed: {e}");
                vec![]
            });
            for job in due {
                if job.expires_at <= now {
                    let _ = self.db.with_conn(|c| {
                        c.exec(
                            "UPDATE outbox SET status = 'expired' WHERE id = ?1",
                            args![job.id],
                        )
                    });
                    tracing::warn!(event = %job.event_id, url = %job.url, "delivery expired");
                    continue;
                }
                {
                    let mut inf = self.in_flight.lock();
                    let mut per = self.per_target.lock();
                    let n = per.entry(job.target.clone()).or_default();
                    if inf.contains(&job.id) || *n >= PER_TARGET {
                        continue;
                    }
                    inf.insert(job.id);
                    *n += 1;
                }
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.deliver(job));
            }
            self.start_resends(now);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Claims deliveries on a shared backend and talks only to the `alertmanager_api`
    /// targets whose lease this replica holds.
    pub fn set_leases(&self, leases: Arc<crate::events::lease::Leases>) {
        *self.leases.write() = Some(leases);
    }

    /// The keys of the `alertmanager_api` targets (for their leases).
    pub fn alertmanager_keys(&self) -> Vec<String> {
        self.alertmanagers
            .lock()
            .iter()
            .map(|(t, _, _)| t.key.clone())
            .collect()
    }

    /// Whether this replica talks to `alertmanager_api` target `key` (always, without leases).
    fn talks_to(&self, key: &str) -> bool {
        self.leases
            .read()
            .as_ref()
            .is_none_or(|l| l.holds(&crate::events::lease::alertmanager_lease(key)))
    }

    /// The deliveries due at `now` (at most 256). On a shared backend they are claimed, with
    /// `FOR UPDATE SKIP LOCKED`, for this replica until their attempt can have ended, so each
    /// is sent by one replica; a claim of a replica that died runs out and another retries.
    fn due(&self, now: i64) -> Result<Vec<Job>, crate::events::EventDbError> {
        const COLUMNS: &str =
            "id, event_id, target, url, format, secret, timeout_ms, body, attempts, expires_at";
        let Some(leases) = self.leases.read().clone() else {
            return self.db.with_conn(|c| {
                c.rows(
                    &format!(
                        "SELECT {COLUMNS} FROM outbox WHERE status IN ('pending', 'failed') AND next_at <= ?1 \
                         ORDER BY next_at, id LIMIT 256"
                    ),
                    args![now],
                )?
                .iter()
                .map(job)
                .collect()
            });
        };
        let am: Vec<String> = self
            .alertmanager_keys()
            .into_iter()
            .filter(|k| self.talks_to(k))
            .collect();
        let mut args: Vec<crate::events::sql::Value> = vec![now.into(), (&leases.me).into()];
        let am_clause = if am.is_empty() {
            "format <> 'alertmanager_api'".to_string()
        } else {
            let marks: Vec<String> = (0..am.len()).map(|i| format!("?{}", i + 3)).collect();
            args.extend(am.iter().map(Into::into));
            format!(
                "(format <> 'alertmanager_api' OR target IN ({}))",
                marks.join(", ")
            )
        };
        self.db.with_tx(|c| {
            let ids: Vec<i64> = c
                .rows(
                    &format!(
                        "SELECT id FROM outbox WHERE status IN ('pending', 'failed') AND next_at <= ?1 \
                         AND (claimed_until IS NULL OR claimed_until < ?1 OR claimed_by = ?2) AND {am_clause} \
                         ORDER BY next_at, id LIMIT 256 FOR UPDATE SKIP LOCKED"
                    ),
                    &args,
                )?
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            c.exec(
                &format!(
                    "UPDATE outbox SET claimed_by = ?1, claimed_until = ?2 + timeout_ms + {CLAIM_MARGIN_MS} WHERE id IN ({list})"
                ),
                args![&leases.me, now],
            )?;
            c.rows(
                &format!("SELECT {COLUMNS} FROM outbox WHERE id IN ({list}) ORDER BY next_at, id"),
                &[],
            )?
            .iter()
            .map(job)
            .collect()
        })
    }

    /// Starts the re-sends that are due, each on its own blocking task.
    fn start_resends(self: &Arc<Self>, now: i64) {
        let mut ams = self.alertmanagers.lock();
        for (i, (t, next, running)) in ams.iter_mut().enumerate() {
            if *running || *next > now || !self.talks_to(&t.key) {
                continue;
            }
            *running = true;
            let (me, t) = (self.clone(), t.clone());
            tokio::task::spawn_blocking(move || {
                me.resend(&t);
                let mut ams = me.alertmanagers.lock();
                ams[i].1 = super::now_ms() + t.resend_ms;
                ams[i].2 = false;
            });
        }
    }

    /// Posts the open alerts of one `alertmanager_api` target. A failure waits for the next
    /// re-send: `endsAt` is several re-sends ahead.
    fn resend(&self, t: &AmTarget) {
        let lock = self.am_lock(&t.key);
        let _one_at_a_time = lock.lock();
        let bodies = match self
            .db
            .with_conn(|c| alertmanager::open_alerts(c, t, super::now_ms()))
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(url = %t.url, "open alerts not read: {e}");
                return;
            }
        };
        for body in bodies {
            let (_, err) = post(&t.url, t.timeout_ms, t.secret.as_deref(), &[], &body);
            match err {
                None => self.resends.fetch_add(1, Ordering::Relaxed),
                Some(e) => {
                    tracing::warn!(url = %t.url, "re-sending open alerts failed: {e}");
                    self.resend_failures.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    fn deliver(&self, job: Job) {
        // The list this job came from may have been read just before an earlier attempt of it
        // finished (that attempt's update then waited on the read's row locks): send only if
        // the row is still due at the attempt count it was read with, so it goes out once.
        if !self.still_due(&job) {
            self.release(&job);
            return;
        }
        // alertmanager_api: one request at a time per target, its body finished under the lock
        // (endsAt stamped now; alerts whose round moved on dropped).
        let lock = (job.format == super::Format::AlertmanagerApi.as_str())
            .then(|| self.am_lock(&job.target));
        let guard = lock.as_ref().map(|l| l.lock());
        let body = match &guard {
            Some(_) => self
                .db
                .with_conn(|c| alertmanager::finish(c, &job.target, &job.body, super::now_ms()))
                .unwrap_or_else(|e| {
                    tracing::warn!(event = %job.event_id, "alertmanager body not finished: {e}");
                    job.body.clone()
                }),
            None => job.body.clone(),
        };
        let id = job.id.to_string();
        let (code, err) = post(
            &job.url,
            job.timeout_ms,
            job.secret.as_deref(),
            &[
                ("X-Tocsin-Event-Id", &job.event_id),
                ("X-Tocsin-Delivery-Id", &id),
            ],
            &body,
        );
        drop(guard);
        let now = super::now_ms();
        let attempts = job.attempts + 1;
        let res = match &err {
            None => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.db.with_conn(|c| {
                    c.exec(
                        "UPDATE outbox SET status = 'delivered', attempts = ?2, delivered_at = ?3, last_code = ?4, last_error = NULL WHERE id = ?1",
                        args![job.id, attempts, now, code],
                    )
                })
            }
            Some(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let next = now + backoff_ms(attempts);
                let status = if next >= job.expires_at {
                    "expired"
                } else {
                    "failed"
                };
                tracing::warn!(event = %job.event_id, url = %job.url, attempts, "delivery failed: {e}");
                self.db.with_conn(|c| {
                    c.exec(
                        "UPDATE outbox SET status = ?2, attempts = ?3, next_at = ?4, last_code = ?5, last_error = ?6 WHERE id = ?1",
                        args![job.id, status, attempts, next, code, e],
                    )
                })
            }
        };
        if let Err(e) = res {
            tracing::error!("outbox update failed: {e}");
        }
        self.release(&job);
    }

    /// Whether `job`'s row is still pending or failed at the attempt count it was read with.
    /// A read error counts as due: the attempt then goes ahead as it would have before.
    fn still_due(&self, job: &Job) -> bool {
        self.db
            .with_conn(|c| {
                c.row(
                    "SELECT 1 FROM outbox WHERE id = ?1 AND status IN ('pending', 'failed') AND attempts = ?2",
                    args![job.id, job.attempts],
                )
            })
            .map_or(true, |r| r.is_some())
    }

    /// Ends this replica's hold on `job`: its claim (on a shared backend), its in-flight mark
    /// and its target's slot.
    fn release(&self, job: &Job) {
        if self.leases.read().is_some() {
            // Free for whoever retries it next (this replica or another).
            let _ = self.db.with_conn(|c| {
                c.exec(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = ?1",
                    args![job.id],
                )
            });
        }
        self.in_flight.lock().remove(&job.id);
        if let Some(n) = self.per_target.lock().get_mut(&job.target) {
            *n = n.saturating_sub(1);
        }
        self.wake.notify_one();
    }
}

/// POSTs a JSON body with the target's timeout and signature: the HTTP status if answered, and
/// the error unless it was 2xx.
fn post(
    url: &str,
    timeout_ms: i64,
    secret: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (Option<i64>, Option<String>) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(timeout_ms.max(100) as u64))
        .build();
    let mut req = agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("User-Agent", concat!("tocsin/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    if let Some(secret) = secret {
        req = req.set(
            "X-Tocsin-Signature",
            &format!("sha256={}", sign(secret, body.as_bytes())),
        );
    }
    match req.send_string(body) {
        Ok(r) => (Some(r.status() as i64), None),
        Err(ureq::Error::Status(c, r)) => {
            // Alertmanager says why it refused (e.g. a label it takes as invalid).
            let why = r.into_string().unwrap_or_default();
            let why = why.trim();
            let msg = if why.is_empty() {
                format!("HTTP {c}")
            } else {
                format!("HTTP {c}: {}", why.chars().take(300).collect::<String>())
            };
            (Some(c as i64), Some(msg))
        }
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Hex HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes_with_jitter() {
        for (n, base) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (9, 256_000),
            (10, 300_000),
            (40, 300_000),
        ] {
            let b = backoff_ms(n);
            assert!(b >= base * 8 / 10 && b <= base * 12 / 10, "{n}: {b}");
        }
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
