//! The check runner: one check of one monitor at trigger time `T`.
//!
//! Queries the window, evaluates rules or the script per object, feeds [`crate::detect`], renders
//! events and commits events plus new states in one transaction. `serve`, `replay` and
//! `tocsin test` all run checks through [`Runner::run`].
//!
//! - `query`: a query monitor's check (objects, windows, parallel evaluation)
//! - `promql`: a datasource monitor's check (PromQL answer → objects, then as `query`)
//! - `host`: the script host functions bound to one check
//! - `rules`: the rule-kind maths and rule evaluation
//! - `kinds`: the detector kinds (change, forecast, learned band) and the past they read
//! - `render`: the one event renderer
//! - `bot`: bot (`bot_obs`) checks
//! - `composite`: composite checks (boolean rules over other monitors' open rounds)
//! - `judged`: the shared end of checks whose kind decides the level itself

mod bot;
mod composite;
mod host;
pub mod inspect;
mod judged;
mod kinds;
mod promql;
mod query;
mod render;
mod rules;
#[cfg(test)]
mod tests;
mod workers;

use crate::detect::ObjectState;
use crate::events::{Commit, EventDb, StoredObject};
use crate::model::event::Event;
use crate::monitor::{Monitor, MonitorKind};
use crate::script::ScriptEngine;
use crate::store::query::Tags;
use crate::store::Store;
use render::{render, RenderCtx};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::model::event::ExecMode;
pub use render::policy_default_name;
pub use workers::Workers;

const NS: i64 = 1_000_000_000;

/// A check that failed as a whole (the query, or the store commit).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// the metric query failed
    #[error("query failed: {0}")]
    Query(String),
    /// the bot script failed
    #[error("script failed: {0}")]
    Script(String),
    /// storing the results failed
    #[error("{0}")]
    Store(#[from] crate::events::EventDbError),
}

/// The `kv` key under which a monitor's latest crontab tick is kept (so that after downtime
/// the latest missed tick runs once).
pub fn last_tick_key(monitor: &str) -> String {
    format!("last_tick:{monitor}")
}

/// What a crontab check at `t` records with its changes: its tick, in the same transaction,
/// so a crash can never leave changed state behind without the tick that changed it (a re-run
/// of that tick would count its streaks twice). Other modes record nothing.
fn tick_record(m: &Monitor, t: i64, mode: ExecMode) -> Vec<(String, String)> {
    match mode {
        ExecMode::Crontab => vec![(last_tick_key(&m.id), t.to_string())],
        _ => vec![],
    }
}

/// Policy names by id (`df_monitor_id` → `df_monitor_name`).
pub type PolicyNames = HashMap<String, String>;

/// The policy names checks render with; a config reload replaces them while checks run (a
/// check keeps the names it started with).
#[derive(Debug, Default)]
pub struct PolicyTable(parking_lot::RwLock<Arc<PolicyNames>>);

impl PolicyTable {
    /// The current names.
    pub fn get(&self) -> Arc<PolicyNames> {
        self.0.read().clone()
    }

    /// Replaces the names (config reload).
    pub fn set(&self, names: PolicyNames) {
        *self.0.write() = Arc::new(names);
    }
}

impl From<PolicyNames> for PolicyTable {
    fn from(names: PolicyNames) -> PolicyTable {
        PolicyTable(parking_lot::RwLock::new(Arc::new(names)))
    }
}

/// The in-memory detection state of one monitor.
#[derive(Debug, Clone, Default)]
pub struct MonitorState {
    /// objects by event ref
    pub objects: BTreeMap<String, (Tags, ObjectState)>,
    /// the fingerprint of the definition this state belongs to
    pub fingerprint: String,
    /// the monitor's series grouped into objects, kept between checks
    plan: Option<query::Plan>,
    /// where each group's window started in its series last time (see `Store::read_groups`)
    hints: Vec<usize>,
    /// the same for the baseline window of `mutation` and `range`
    base_hints: Vec<usize>,
    /// on a shared backend, the version of the stored state this one was read at or last
    /// committed (see `Commit::fence`)
    pub version: i64,
}

/// What one check did.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// events stored by this check (new ones only)
    pub events: Vec<Event>,
    /// per-object evaluation errors (the object's state was left unchanged)
    pub errors: Vec<String>,
    /// objects evaluated
    pub objects: usize,
}

/// Runs checks against a metric store and an event store.
pub struct Runner {
    /// metrics
    pub store: Arc<Store>,
    /// events and state
    pub db: Arc<EventDb>,
    /// the script engine
    pub engine: Arc<ScriptEngine>,
    /// policy names
    pub policies: PolicyTable,
    /// base of `df_event_url`
    pub public_url: Option<String>,
    /// threads a large check splits its objects over
    pub workers: Workers,
    /// `[[datasources]]` that datasource monitors query
    pub datasources: Arc<crate::datasource::Datasources>,
}

impl Runner {
    /// Restores a monitor's state from the event store.
    pub fn load_state(&self, m: &Monitor) -> Result<MonitorState, CheckError> {
        // Read before the states: a change committed in between makes the next commit fail
        // and read again, never pass on an older state.
        let version = if self.db.is_shared() {
            self.db.state_version(&m.id)?
        } else {
            0
        };
        let objects = self
            .db
            .load_states(&m.id)?
            .into_iter()
            .map(|o| (o.event_ref, (o.tags, o.state)))
            .collect();
        Ok(MonitorState {
            objects,
            fingerprint: m.fingerprint.clone(),
            version,
            ..Default::default()
        })
    }

    /// On a shared backend, reads the monitor's stored state again when another replica
    /// changed it since this one read or wrote it (a manual recovery there, or a check of a
    /// replica that owned the monitor before).
    pub fn sync_state(&self, m: &Monitor, st: &mut MonitorState) -> Result<(), CheckError> {
        if !self.db.is_shared() || !self.db.keeps_state() {
            return Ok(());
        }
        if self.db.state_version(&m.id)? != st.version {
            let fresh = self.load_state(m)?;
            st.objects = fresh.objects;
            st.version = fresh.version;
        }
        Ok(())
    }

    /// Commits a check's changes; on a shared backend fenced at the state's version, which
    /// then moves one on.
    fn store_commit(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        mut commit: Commit,
    ) -> Result<Vec<Event>, CheckError> {
        let shared = self.db.is_shared() && self.db.keeps_state();
        let writes =
            !(commit.events.is_empty() && commit.upserts.is_empty() && commit.deletes.is_empty());
        if shared {
            commit.fence = Some((m.id.clone(), st.version));
        }
        let events = self.db.commit(commit)?;
        if shared && writes {
            st.version += 1;
        }
        Ok(events)
    }

    /// Runs one check of `m` at trigger time `t`. On success the state is advanced and the
    /// events are stored; on error nothing changes.
    pub fn run(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        // Another replica changed the state while this check ran: once more on its state.
        self.fenced(m, st, 1, |st| self.run_once(m, st, t, mode))
    }

    /// Runs `f` on the stored state as it is now (see [`Runner::sync_state`]); when its fenced
    /// commit meets a change another replica committed meanwhile, reads the state again and
    /// runs `f` once more, at most `retries` times.
    fn fenced<T>(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        retries: usize,
        mut f: impl FnMut(&mut MonitorState) -> Result<T, CheckError>,
    ) -> Result<T, CheckError> {
        let mut tries = 0;
        loop {
            self.sync_state(m, st)?;
            match f(st) {
                Err(CheckError::Store(crate::events::EventDbError::Conflict { .. }))
                    if tries < retries =>
                {
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    fn run_once(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        match &m.kind {
            MonitorKind::Bot { script } => self.run_bot(m, script, st, t, mode),
            MonitorKind::Query { query, rules } => self.run_query(m, query, rules, st, t, mode),
            MonitorKind::Promql { query, rules } => self.run_promql(m, query, rules, st, t, mode),
            MonitorKind::Composite(spec) => self.run_composite(m, spec, st, t, mode),
            MonitorKind::Slo(spec) => self.run_slo(m, spec, st, t, mode),
        }
    }

    /// Manual recovery of an open round at `t`; returns the stored `manual_ok` event.
    pub fn recover(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        event_ref: &str,
        t: i64,
        user: &RecoverUser,
    ) -> Result<Option<Event>, CheckError> {
        // On a shared backend the owner's check may commit between our read and our commit:
        // read again and retry, so the recovery is never lost to a race.
        self.fenced(m, st, 5, |st| self.recover_once(m, st, event_ref, t, user))
    }

    fn recover_once(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        event_ref: &str,
        t: i64,
        user: &RecoverUser,
    ) -> Result<Option<Event>, CheckError> {
        let Some((tags, state)) = st.objects.get(event_ref) else {
            return Ok(None);
        };
        let mut state = state.clone();
        let tags = tags.clone();
        let Some(emit) = state.recover(t, event_ref) else {
            return Ok(None);
        };
        let cx = RenderCtx {
            m,
            policies: &self.policies.get(),
            public_url: self.public_url.as_deref(),
            tags: &tags,
            event_ref,
            t,
            range: (t - m.delay - m.interval, t - m.delay),
            mode: ExecMode::Async,
        };
        let mut ev = render(&cx, &emit, None);
        ev.set_user(&user.id, &user.name, &user.email);
        if let Some(msg) = &user.message {
            ev.set_message(msg.clone());
        }
        let commit = Commit {
            events: vec![ev.clone()],
            upserts: vec![(
                m.id.clone(),
                StoredObject {
                    event_ref: event_ref.to_string(),
                    tags: tags.clone(),
                    state: state.clone(),
                },
            )],
            ..Default::default()
        };
        self.store_commit(m, st, commit)?;
        st.objects.insert(event_ref.to_string(), (tags, state));
        Ok(Some(ev))
    }

    /// Stores a check's events and states in one transaction; only then advances the
    /// in-memory state, so a failed commit leaves everything as it was. Returns the new events.
    fn commit(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        commit: Commit,
        new_states: Vec<(String, Tags, ObjectState)>,
    ) -> Result<Vec<Event>, CheckError> {
        let deletes: Vec<String> = commit.deletes.iter().map(|(_, r)| r.clone()).collect();
        let events = self.store_commit(m, st, commit)?;
        for (r, tags, state) in new_states {
            st.objects.insert(r, (tags, state));
        }
        for r in &deletes {
            st.objects.remove(r);
        }
        Ok(events)
    }
}

/// Who recovers an issue by hand.
#[derive(Debug, Clone, Default)]
pub struct RecoverUser {
    /// `df_user_id`
    pub id: String,
    /// `df_user_name`
    pub name: String,
    /// `df_user_email`
    pub email: String,
    /// message for the `manual_ok` event
    pub message: Option<String>,
}
