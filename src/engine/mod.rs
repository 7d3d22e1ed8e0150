//! The live engine: loaded monitors with their state and health, the scheduler loop, async
//! runs, manual recovery and reload. Checks run on blocking threads (SQLite and Rhai are
//! synchronous), one at a time per monitor and concurrently across monitors. On a shared
//! backend the scheduler runs only the monitors this replica holds the lease of ([`ha`]).

pub mod ha;

use crate::check::{CheckReport, ExecMode, MonitorState, RecoverUser, Runner};
use crate::detect::ObjectState;
use crate::metrics::Metrics;
use crate::model::event::{Event, Source};
use crate::monitor::{load, LoadContext, Monitor, MonitorError, Schedule};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod composite;
mod dispatch;

/// The health of one monitor, as `GET /api/v1/monitors` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// trigger time of the latest finished check
    pub last_run: Option<i64>,
    /// error of the latest check (query, script or store), if it failed
    pub last_error: Option<String>,
    /// how long the latest check took, ms
    pub last_duration_ms: Option<u64>,
    /// next scheduled trigger time
    pub next_run: Option<i64>,
    /// checks run since start
    pub runs: u64,
    /// checks with errors since start
    pub errors: u64,
}

/// One loaded monitor.
pub struct Slot {
    /// the definition
    pub monitor: Arc<Monitor>,
    /// detection state; the lock makes checks of one monitor run one at a time
    pub state: Mutex<MonitorState>,
    /// health
    pub health: Mutex<Health>,
    /// a check is in flight; raised only through a [`FlagGuard`]
    pub running: Arc<AtomicBool>,
}

/// Holds a flag raised for as long as it lives, so a check that panics cannot leave its
/// monitor marked running for ever.
#[must_use = "the flag is lowered when the guard drops"]
pub struct FlagGuard(Arc<AtomicBool>);

impl FlagGuard {
    /// Raises `flag` until the guard drops.
    pub fn raise(flag: &Arc<AtomicBool>) -> FlagGuard {
        flag.store(true, Ordering::SeqCst);
        FlagGuard(flag.clone())
    }
}

impl Drop for FlagGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Counts one unit of a counter for as long as it lives, so a check that panics cannot keep
/// [`Engine::stop`] waiting for ever.
#[must_use = "the count is taken back when the guard drops"]
pub struct CountGuard(Arc<AtomicUsize>);

impl CountGuard {
    /// Adds one to `count` until the guard drops.
    pub fn enter(count: &Arc<AtomicUsize>) -> CountGuard {
        count.fetch_add(1, Ordering::SeqCst);
        CountGuard(count.clone())
    }
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where monitors come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// monitors directory
    pub monitors: PathBuf,
    /// scripts directory
    pub scripts: PathBuf,
    /// policy ids from the config
    pub policies: Vec<String>,
    /// datasource ids from the config
    pub datasources: Vec<String>,
}

/// The live engine.
pub struct Engine {
    /// the check runner
    pub runner: Arc<Runner>,
    /// counters
    pub metrics: Arc<Metrics>,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    errors: RwLock<Vec<MonitorError>>,
    sources: RwLock<Sources>,
    /// re-reads the config's policies at each reload (set by `serve`); answers the policy ids
    config_reloader: RwLock<Option<ConfigReloader>>,
    /// checks running or about to run; counted only through a [`CountGuard`]
    in_flight: Arc<AtomicUsize>,
    stopping: AtomicBool,
    wake: tokio::sync::Notify,
    /// `(monitor, tick)` of crontab checks done since the last write of `last_tick:*`: they
    /// are written together once per scheduler pass (one fsync), not one per check
    done_ticks: Mutex<Vec<(String, i64)>>,
    /// one permit per core: crontab checks that compute (store queries, rules, scripts) take
    /// one, in due order, so a thousand checks due at the same second queue for the cores
    /// instead of starting a thousand threads that share them
    compute_slots: Arc<tokio::sync::Semaphore>,
    /// how many permits `compute_slots` has
    compute_slot_count: usize,
    /// on a shared backend: which monitors this replica evaluates
    leases: RwLock<Option<Arc<crate::events::lease::Leases>>>,
}

/// Applies the config file again (policies, targets, mutes) and answers the policy ids, or
/// why the file was refused (then nothing of it was applied).
pub type ConfigReloader = Box<dyn Fn() -> Result<Vec<String>, String> + Send + Sync>;

/// The outcome of a reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// monitors loaded
    pub loaded: usize,
    /// ids whose definition is unchanged (state and health kept in memory)
    pub unchanged: Vec<String>,
    /// new or changed ids (state restored from the store)
    pub changed: Vec<String>,
    /// ids no longer defined
    pub removed: Vec<String>,
    /// errors, as `file:line: field: message`
    pub errors: Vec<String>,
    /// whether the config's policies, targets and mutes were applied again (false without a
    /// config file, or when it was refused: see `errors`)
    pub config_reloaded: bool,
}

/// What to recover by hand.
#[derive(Debug, Clone)]
pub enum RecoverSelector {
    /// these event refs
    Refs(Vec<String>),
    /// every open issue of a monitor
    Monitor(String),
    /// every open issue
    All,
}

/// The first due time of a monitor at start: the latest missed tick (once) when it ran before
/// (`last` is its last scheduled tick) and missed ticks while the engine was down; else the
/// next tick after `now`.
pub fn first_due(schedule: &Schedule, last: Option<i64>, now: i64) -> Option<i64> {
    let latest = schedule.latest_at_or_before(now);
    match (last, latest) {
        (Some(l), Some(x)) if x > l => Some(x),
        _ => schedule.next_after(now),
    }
}

/// The wall clock in Unix seconds with their fraction (for the scheduling lag).
pub fn now_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The wall clock, whole Unix seconds.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Engine {
    /// Creates the engine and loads the monitors.
    pub fn new(runner: Arc<Runner>, metrics: Arc<Metrics>, sources: Sources) -> Arc<Engine> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let e = Arc::new(Engine {
            runner,
            metrics,
            slots: RwLock::new(BTreeMap::new()),
            errors: RwLock::new(Vec::new()),
            sources: RwLock::new(sources),
            config_reloader: RwLock::new(None),
            in_flight: Arc::new(AtomicUsize::new(0)),
            stopping: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            done_ticks: Mutex::new(Vec::new()),
            compute_slots: Arc::new(tokio::sync::Semaphore::new(cores)),
            compute_slot_count: cores,
            leases: RwLock::new(None),
        });
        e.reload();
        e
    }

    /// Loads monitor files again. Unchanged monitors keep their slot (state, health); changed
    /// and new ones restore their state from the store, so no open round is lost.
    pub fn reload(&self) -> ReloadReport {
        let mut config_errors = Vec::new();
        let mut config_reloaded = false;
        if let Some(f) = self.config_reloader.read().as_ref() {
            match f() {
                Ok(ids) => {
                    self.sources.write().policies = ids;
                    config_reloaded = true;
                }
                Err(e) => {
                    tracing::error!("config not reloaded, the old policies stay: {e}");
                    config_errors.push(format!("config not reloaded: {e}"));
                }
            }
        }
        let sources = self.sources.read().clone();
        let ctx = LoadContext {
            scripts_dir: &sources.scripts,
            policies: &sources.policies,
            engine: &self.runner.engine,
            datasources: Some(&sources.datasources),
        };
        let loaded = load(std::slice::from_ref(&sources.monitors), &ctx);
        for e in &loaded.errors {
            tracing::error!("monitor not loaded: {e}");
        }
        let now = now_secs();
        let mut report = ReloadReport {
            loaded: loaded.monitors.len(),
            unchanged: vec![],
            changed: vec![],
            removed: vec![],
            errors: config_errors
                .into_iter()
                .chain(loaded.errors.iter().map(|e| e.to_string()))
                .collect(),
            config_reloaded,
        };
        let old = self.slots.read().clone();
        let mut next = BTreeMap::new();
        for m in loaded.monitors {
            let id = m.id.clone();
            if let Some(slot) = old
                .get(&id)
                .filter(|s| s.monitor.fingerprint == m.fingerprint)
            {
                report.unchanged.push(id.clone());
                next.insert(id, slot.clone());
                continue;
            }
            let state = match old.get(&id) {
                // A check may be running on the old slot: take its latest state under its lock.
                Some(s) => s.state.lock().clone(),
                None => match self.runner.load_state(&m) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(monitor = %id, "cannot restore state: {e}");
                        report
                            .errors
                            .push(format!("{id}: cannot restore state: {e}"));
                        continue;
                    }
                },
            };
            let health = Health {
                next_run: self.first_due(&m, now),
                ..Default::default()
            };
            report.changed.push(id.clone());
            next.insert(
                id,
                Arc::new(Slot {
                    monitor: Arc::new(m),
                    state: Mutex::new(state),
                    health: Mutex::new(health),
                    running: Arc::new(AtomicBool::new(false)),
                }),
            );
        }
        report.removed = old
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        *self.slots.write() = next;
        *self.errors.write() = loaded.errors;
        self.wake.notify_one();
        tracing::info!(
            loaded = report.loaded,
            changed = report.changed.len(),
            removed = report.removed.len(),
            errors = report.errors.len(),
            "monitors loaded"
        );
        report
    }

    /// Makes every later [`Engine::reload`] apply the config again first (see
    /// [`ConfigReloader`]).
    pub fn set_config_reloader(&self, f: ConfigReloader) {
        *self.config_reloader.write() = Some(f);
    }

    fn first_due(&self, m: &Monitor, now: i64) -> Option<i64> {
        let last: Option<i64> = self
            .runner
            .db
            .get_kv(&crate::check::last_tick_key(&m.id))
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok());
        first_due(&m.schedule, last, now)
    }

    /// Makes the scheduler run only the monitors whose lease this replica holds.
    pub fn set_leases(&self, leases: Arc<crate::events::lease::Leases>) {
        *self.leases.write() = Some(leases);
    }

    /// The lease view, on a shared backend.
    pub fn leases(&self) -> Option<Arc<crate::events::lease::Leases>> {
        self.leases.read().clone()
    }

    /// Whether this replica evaluates monitor `id` (always, without leases).
    pub fn owns(&self, id: &str) -> bool {
        self.leases
            .read()
            .as_ref()
            .is_none_or(|l| l.holds(&crate::events::lease::monitor_lease(id)))
    }

    /// This replica just took monitor `id` over: its next run is the latest tick its previous
    /// owner missed (once), else the next tick; its state is read again before that run.
    pub fn took_over(&self, id: &str) {
        let Some(slot) = self.slot(id) else { return };
        let due = self.first_due(&slot.monitor, now_secs());
        slot.health.lock().next_run = due;
        self.wake.notify_one();
    }

    /// The loaded monitors' definitions: id → fingerprint.
    pub fn fingerprints(&self) -> BTreeMap<String, String> {
        self.slots
            .read()
            .iter()
            .map(|(id, s)| (id.clone(), s.monitor.fingerprint.clone()))
            .collect()
    }

    /// The loaded monitors.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().values().cloned().collect()
    }

    /// One monitor by id.
    pub fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.slots.read().get(id).cloned()
    }

    /// Load errors of the latest (re)load.
    pub fn load_errors(&self) -> Vec<MonitorError> {
        self.errors.read().clone()
    }

    /// Runs one check now on this thread (blocking). Waits for a running check of the same
    /// monitor to finish first.
    pub fn run_blocking(&self, slot: &Slot, t: i64, mode: ExecMode) -> Result<CheckReport, String> {
        let mut state = slot.state.lock();
        let running = FlagGuard::raise(&slot.running);
        let started = Instant::now();
        let res = self.runner.run(&slot.monitor, &mut state, t, mode);
        let secs = started.elapsed().as_secs_f64();
        drop(running);
        drop(state);
        let id = &slot.monitor.id;
        let mut h = slot.health.lock();
        h.last_run = Some(t);
        h.runs += 1;
        h.last_duration_ms = Some((secs * 1000.0) as u64);
        let out = match res {
            Ok(rep) => {
                self.metrics
                    .events_stored(rep.events.iter().filter_map(|e| e.status_str()));
                if rep.events.is_empty() {
                    tracing::debug!(monitor = %id, tick = t, objects = rep.objects, "check done");
                } else {
                    let summary: Vec<String> = rep
                        .events
                        .iter()
                        .map(|e| {
                            let status = e.status_str().unwrap_or("?");
                            format!("{status} {}", e.dimension_tags().unwrap_or("{}"))
                        })
                        .collect();
                    let mode = mode.as_str();
                    tracing::info!(monitor = %id, tick = t, mode, "events: {}", summary.join(", "));
                }
                if rep.errors.is_empty() {
                    h.last_error = None;
                } else {
                    h.errors += 1;
                    let msg = rep.errors.join("; ");
                    tracing::warn!(monitor = %id, "check errors: {msg}");
                    h.last_error = Some(msg);
                }
                self.metrics.check_done(id, secs, !rep.errors.is_empty());
                Ok(rep)
            }
            Err(e) => {
                h.errors += 1;
                h.last_error = Some(e.to_string());
                tracing::error!(monitor = %id, "check failed: {e}");
                self.metrics.check_done(id, secs, true);
                Err(e.to_string())
            }
        };
        if mode == ExecMode::Crontab {
            self.done_ticks.lock().push((id.clone(), t));
        }
        out
    }

    /// Records the ticks of the checks done since the last call as `last_tick:<monitor>`, all
    /// in one transaction. A check that changed stored state recorded its tick with that change
    /// already; this covers the checks that changed nothing, so a crash loses at most ticks that
    /// would run again to the same result.
    pub fn record_ticks(&self) {
        let done = std::mem::take(&mut *self.done_ticks.lock());
        if done.is_empty() {
            return;
        }
        let mut latest: BTreeMap<String, i64> = BTreeMap::new();
        for (id, t) in done {
            let e = latest.entry(id).or_insert(t);
            *e = (*e).max(t);
        }
        let pairs: Vec<(String, String)> = latest
            .into_iter()
            .map(|(id, t)| (crate::check::last_tick_key(&id), t.to_string()))
            .collect();
        if let Err(e) = self.runner.db.set_kvs(&pairs) {
            tracing::warn!(monitors = pairs.len(), "cannot record last ticks: {e}");
        }
    }

    /// Runs a check now (`df_exec_mode = "async"`); `None` for an unknown monitor.
    pub async fn run_now(self: &Arc<Self>, id: &str) -> Option<Result<CheckReport, String>> {
        let slot = self.slot(id)?;
        let me = self.clone();
        let in_flight = CountGuard::enter(&self.in_flight);
        let res = tokio::task::spawn_blocking(move || {
            me.run_blocking(&slot, now_secs(), ExecMode::Async)
        })
        .await;
        drop(in_flight);
        Some(res.unwrap_or_else(|e| Err(format!("check task failed: {e}"))))
    }

    /// The scheduler loop: runs due checks until [`Engine::stop`] is called.
    pub async fn scheduler(self: Arc<Self>) {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let now = now_secs();
            let mut next_wake = now + 60;
            let mut due_now = Vec::new();
            for slot in self.slots() {
                if !self.owns(&slot.monitor.id) {
                    // Another replica evaluates it (see `ha`).
                    continue;
                }
                let due = slot.health.lock().next_run;
                let Some(due) = due else { continue };
                if due > now {
                    next_wake = next_wake.min(due);
                    continue;
                }
                // Due: the next run is the first tick after now, so a long stall never storms.
                let following = slot.monitor.schedule.next_after(now.max(due));
                slot.health.lock().next_run = following;
                if let Some(f) = following {
                    next_wake = next_wake.min(f);
                }
                if slot.running.load(Ordering::SeqCst) {
                    tracing::warn!(monitor = %slot.monitor.id, tick = due, "previous check still running: tick skipped");
                    self.metrics.tick_skipped(&slot.monitor.id);
                    continue;
                }
                // Raised here, not only inside the check, so the next tick sees it at once.
                due_now.push(dispatch::Due {
                    running: FlagGuard::raise(&slot.running),
                    in_flight: CountGuard::enter(&self.in_flight),
                    slot,
                    tick: due,
                });
            }
            self.dispatch(due_now);
            let me = self.clone();
            // Ticks of the checks finished by now; later ones go with the next pass.
            let _ = tokio::task::spawn_blocking(move || me.record_ticks()).await;
            let wait = (next_wake - now_secs()).clamp(0, 60) as u64;
            let sub_second = 1000 - (chrono::Utc::now().timestamp_subsec_millis() as u64).min(999);
            let sleep = std::time::Duration::from_millis(if wait == 0 {
                50
            } else {
                (wait - 1) * 1000 + sub_second
            });
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Stops scheduling and waits for in-flight checks.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.record_ticks();
    }

    /// Manual recovery: one `manual_ok` per open round selected; returns the events.
    pub fn recover_blocking(
        &self,
        sel: &RecoverSelector,
        user: &RecoverUser,
    ) -> Result<Vec<Event>, String> {
        let now = now_secs();
        let issues = self
            .runner
            .db
            .issues(None, now)
            .map_err(|e| e.to_string())?;
        let chosen: Vec<_> = issues
            .into_iter()
            .filter(|i| match sel {
                RecoverSelector::All => true,
                RecoverSelector::Monitor(m) => &i.monitor == m,
                RecoverSelector::Refs(r) => r.contains(&i.event_ref),
            })
            .collect();
        let mut out = Vec::new();
        for issue in chosen {
            let slot = self.slot(&issue.monitor);
            let ev = match slot {
                Some(slot) if issue.source == "monitor" => {
                    let mut st = slot.state.lock();
                    self.runner
                        .recover(&slot.monitor, &mut st, &issue.event_ref, now, user)
                        .map_err(|e| e.to_string())?
                }
                _ => Some(self.recover_orphan(&issue, now, user)?),
            };
            if let Some(ev) = ev {
                self.metrics.events_stored(ev.status_str());
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Closes an issue whose monitor is not loaded (removed, or a custom event round).
    fn recover_orphan(
        &self,
        issue: &crate::events::IssueRow,
        now: i64,
        user: &RecoverUser,
    ) -> Result<Event, String> {
        let db = &self.runner.db;
        let last = db.event(&issue.last_event_id).map_err(|e| e.to_string())?;
        // Keep the identity fields of the round (monitor, tags, source, names).
        let mut ev = last.as_ref().map(Event::identity_of).unwrap_or_default();
        // The round lives only in the issue row: rebuild it and close it like any other.
        let round = issue.round().map_err(|e| e.to_string())?;
        let emit = ObjectState::with_round(Some(round))
            .recover(now, &issue.event_ref)
            .expect("a state rebuilt with a round has it open");
        let round = emit.issue.as_ref().expect("manual_ok closes a round");
        ev.set_id(emit.event_id.clone());
        ev.set_time(now);
        if let Some(source) = Source::parse(&issue.source) {
            ev.set_source(source);
        }
        ev.set_status(emit.status);
        if let Some(s) = emit.sub_status {
            ev.set_sub_status(s);
        }
        ev.set_issue(round.start, round.duration, round.fault_id.clone());
        ev.set_event_ref(&issue.event_ref);
        ev.set_title(format!("Recovered by hand: {}", issue.title));
        ev.set_message(
            user.message
                .clone()
                .unwrap_or_else(|| format!("{} recovered by {}", issue.title, user.name)),
        );
        ev.set_user(&user.id, &user.name, &user.email);
        ev.set_exec_mode(ExecMode::Async);
        ev.remove_value();
        let mut commit = crate::events::Commit {
            events: vec![ev.clone()],
            ..Default::default()
        };
        if issue.source == "monitor" && !issue.monitor.is_empty() {
            // The monitor is gone; its stored state for this object goes with the round.
            commit
                .deletes
                .push((issue.monitor.clone(), issue.event_ref.clone()));
        }
        db.commit(commit).map_err(|e| e.to_string())?;
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_check_lowers_running_and_leaves_no_one_in_flight() {
        let running = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        // The scheduler's shape: guards taken before the check, moved into its thread.
        let guards = (FlagGuard::raise(&running), CountGuard::enter(&in_flight));
        assert!(running.load(Ordering::SeqCst));
        assert_eq!(in_flight.load(Ordering::SeqCst), 1);
        let (r, c) = (running.clone(), in_flight.clone());
        let res = std::thread::spawn(move || {
            let _guards = guards;
            // run_blocking's own guard, nested inside the scheduler's.
            let _inner = FlagGuard::raise(&r);
            assert_eq!(c.load(Ordering::SeqCst), 1);
            panic!("check blew up");
        })
        .join();
        assert!(res.is_err(), "the check panicked");
        assert!(!running.load(Ordering::SeqCst), "running lowered");
        assert_eq!(in_flight.load(Ordering::SeqCst), 0, "nothing in flight");
        // And under catch_unwind on this thread, as run_now's await sees a panicked task.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = CountGuard::enter(&in_flight);
            let _f = FlagGuard::raise(&running);
            panic!("again");
        }));
        assert!(caught.is_err());
        assert!(!running.load(Ordering::SeqCst));
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn downtime_runs_the_latest_missed_tick_once() {
        let every = Schedule::Every(60);
        // never ran: wait for the next boundary
        assert_eq!(first_due(&every, None, 1000), Some(1020));
        // ran at 960, down until 1000: nothing missed (next tick 1020)
        assert_eq!(first_due(&every, Some(960), 1000), Some(1020));
        // ran at 600, down until 1000: ticks 660..960 missed, only 960 runs, at once
        assert_eq!(first_due(&every, Some(600), 1000), Some(960));
        assert_eq!(first_due(&Schedule::Manual, Some(600), 1000), None);
    }
}
