//! The check runner: one check of one monitor at trigger time `T`.
//!
//! Queries the window, evaluates rules or the script per object, feeds [`crate::detect`], renders
//! events and commits events plus new states in one transaction. `serve`, `replay` and
//! `tocsin test` all run checks through [`Runner::run`].
//!
//! - `host`: the script host functions bound to one check
//! - `rules`: the rule-kind maths and rule evaluation
//! - `render`: the one event renderer
//! - `bot`: bot (`bot_obs`) checks

mod bot;
mod host;
mod render;
mod rules;
#[cfg(test)]
mod tests;

use crate::detect::observe::{classify, Classified, Presence};
use crate::detect::{ObjectState, Observation};
use crate::events::{Commit, EventDb, StoredObject};
use crate::model::event::{canonical_tags, event_ref, Event};
use crate::monitor::{Monitor, MonitorKind, RuleKind};
use crate::script::ScriptEngine;
use crate::store::query::{aggregate, Group, Tags, WindowQuery};
use crate::store::Store;
use host::Host;
use render::{render, RenderCtx};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub use crate::model::event::ExecMode;
pub use render::policy_default_name;

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

/// Policy names by id (`df_monitor_id` → `df_monitor_name`).
pub type PolicyNames = HashMap<String, String>;

/// The in-memory detection state of one monitor.
#[derive(Debug, Clone, Default)]
pub struct MonitorState {
    /// objects by event ref
    pub objects: BTreeMap<String, (Tags, ObjectState)>,
    /// the fingerprint of the definition this state belongs to
    pub fingerprint: String,
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
    pub policies: PolicyNames,
    /// base of `df_event_url`
    pub public_url: Option<String>,
}

impl Runner {
    /// Restores a monitor's state from the event store.
    pub fn load_state(&self, m: &Monitor) -> Result<MonitorState, CheckError> {
        let objects = self
            .db
            .load_states(&m.id)?
            .into_iter()
            .map(|o| (o.event_ref, (o.tags, o.state)))
            .collect();
        Ok(MonitorState {
            objects,
            fingerprint: m.fingerprint.clone(),
        })
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
        let (q, rules) = match &m.kind {
            MonitorKind::Bot { script } => return self.run_bot(m, script, st, t, mode),
            MonitorKind::Query { query, rules } => (query, rules),
        };
        let end = t - m.delay;
        let start = end - m.interval;
        let base = WindowQuery {
            measurement: q.measurement.clone(),
            field: q.field.clone(),
            by: q.by.clone(),
            filters: q.filters.clone(),
            start_ns: start * NS,
            end_ns: end * NS,
        };
        // One query covers the window and the nodata lookback [end - after, end); both are
        // cut from it.
        let lookback = m.nodata.map(|n| end - n.after);
        let wide = self.fetch(m, &base, lookback.map_or(start, |l| l.min(start)), end)?;
        let window = since(&wide, start);
        let probe: Option<BTreeMap<String, Group>> = lookback.map(|l| since(&wide, l));
        let values: BTreeMap<String, f64> = window
            .iter()
            .filter_map(|(r, g)| aggregate(q.agg, &g.points).map(|v| (r.clone(), v)))
            .collect();
        let previous = match rules.kind {
            RuleKind::Mutation => Some(self.fetch(m, &base, start - m.interval, start)?),
            RuleKind::Range => Some(self.fetch(m, &base, start - rules.baseline, start)?),
            _ => None,
        };
        let host = Host {
            store: &self.store,
            db: &self.db,
            now: t,
            delay: m.delay,
        };

        let mut refs: BTreeSet<String> = st.objects.keys().cloned().collect();
        refs.extend(window.keys().cloned());
        // An object seen only in the nodata lookback is known too, so its gap is noticed later.
        if let Some(p) = &probe {
            refs.extend(p.keys().cloned());
        }
        let mut report = CheckReport::default();
        let mut commit = Commit::default();
        let mut new_states: Vec<(String, Tags, ObjectState)> = Vec::new();
        for r in refs {
            let known = st.objects.get(&r);
            let tags = known
                .map(|(t, _)| t.clone())
                .or_else(|| window.get(&r).map(|g| g.tags.clone()))
                .or_else(|| {
                    probe
                        .as_ref()
                        .and_then(|p| p.get(&r))
                        .map(|g| g.tags.clone())
                })
                .unwrap_or_default();
            let mut state = known.map(|(_, s)| s.clone()).unwrap_or_default();
            let in_window = window.get(&r);
            // latest point seen, for forget_after
            let seen = probe
                .as_ref()
                .and_then(|p| p.get(&r))
                .into_iter()
                .chain(in_window)
                .filter_map(|g| g.points.last().map(|p| p.0.div_euclid(NS)))
                .max();
            if let Some(s) = seen {
                state.last_seen = Some(state.last_seen.map_or(s, |x| x.max(s)));
            }
            let seen_as = classify(
                Presence {
                    known: known.is_some(),
                    in_window: in_window.is_some(),
                    in_lookback: probe.as_ref().map(|p| p.contains_key(&r)),
                },
                m.settings.nodata,
            );
            let (obs, eval) = match seen_as {
                Classified::Gap => (Observation::Gap, None),
                Classified::Empty => (Observation::Empty, None),
                Classified::Evaluate { as_zero } => {
                    // A gap evaluated as zero has no points and Result = 0.
                    let (points, result) = if as_zero {
                        (vec![], Some(0.0))
                    } else {
                        (
                            in_window.map(|g| g.points.clone()).unwrap_or_default(),
                            rules::result_for(q.agg, rules.kind, &r, &values, previous.as_ref()),
                        )
                    };
                    match rules::evaluate(&self.engine, rules, result, &tags, &points, &host) {
                        Ok(ev) => {
                            report.objects += 1;
                            let obs = Observation::Data {
                                level: ev.level,
                                recovery_holds: ev.recovery_holds,
                                sub: seen_as.sub(),
                            };
                            (obs, Some(ev))
                        }
                        Err(e) => {
                            report
                                .errors
                                .push(format!("{}: {e}", canonical_tags(&tags)));
                            continue;
                        }
                    }
                }
            };
            let cx = RenderCtx {
                m,
                policies: &self.policies,
                public_url: self.public_url.as_deref(),
                tags: &tags,
                event_ref: &r,
                t,
                range: (start, end),
                mode,
            };
            for emit in state.step(obs, t, &m.settings, &r) {
                commit.events.push(render(&cx, &emit, eval.as_ref()));
            }
            if state.forgettable(t, m.forget_after) && state.last_seen.is_some() {
                commit.deletes.push((m.id.clone(), r.clone()));
            } else if known.map(|(_, s)| s) != Some(&state) {
                commit.upserts.push((
                    m.id.clone(),
                    StoredObject {
                        event_ref: r.clone(),
                        tags: tags.clone(),
                        state: state.clone(),
                    },
                ));
            }
            new_states.push((r, tags, state));
        }
        report.events = self.commit(st, &commit, new_states)?;
        Ok(report)
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
            policies: &self.policies,
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
            deletes: vec![],
        };
        self.db.commit(&commit)?;
        st.objects.insert(event_ref.to_string(), (tags, state));
        Ok(Some(ev))
    }

    /// Stores a check's events and states in one transaction; only then advances the
    /// in-memory state, so a failed commit leaves everything as it was. Returns the new events.
    fn commit(
        &self,
        st: &mut MonitorState,
        commit: &Commit,
        new_states: Vec<(String, Tags, ObjectState)>,
    ) -> Result<Vec<Event>, CheckError> {
        let events = self.db.commit(commit)?;
        for (r, tags, state) in new_states {
            st.objects.insert(r, (tags, state));
        }
        for (_, r) in &commit.deletes {
            st.objects.remove(r);
        }
        Ok(events)
    }

    /// The non-empty groups of a window, keyed by event ref.
    fn fetch(
        &self,
        m: &Monitor,
        base: &WindowQuery,
        start: i64,
        end: i64,
    ) -> Result<BTreeMap<String, Group>, CheckError> {
        let q = WindowQuery {
            start_ns: start * NS,
            end_ns: end * NS,
            ..base.clone()
        };
        let groups = self
            .store
            .window(&q)
            .map_err(|e| CheckError::Query(e.to_string()))?;
        Ok(groups
            .into_iter()
            .filter(|g| !g.points.is_empty())
            .map(|g| (event_ref(&m.id, &canonical_tags(&g.tags)), g))
            .collect())
    }
}

/// The groups restricted to points at or after `from_secs` (points are sorted by time);
/// groups left without points are dropped.
fn since(groups: &BTreeMap<String, Group>, from_secs: i64) -> BTreeMap<String, Group> {
    let from = from_secs * NS;
    groups
        .iter()
        .filter_map(|(r, g)| {
            let cut = g.points.partition_point(|p| p.0 < from);
            (cut < g.points.len()).then(|| {
                let g = Group {
                    tags: g.tags.clone(),
                    points: g.points[cut..].to_vec(),
                };
                (r.clone(), g)
            })
        })
        .collect()
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
