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
use crate::monitor::{Monitor, MonitorKind, QuerySpec, RuleKind};
use crate::script::ScriptEngine;
use crate::store::query::{aggregate, Agg, Tags, WindowQuery};
use crate::store::{SeriesGroups, Store};
use host::Host;
use render::{render, RenderCtx};
use rules::Baseline;
use std::collections::{BTreeMap, HashMap};
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
    /// the monitor's series grouped into objects, kept between checks
    plan: Option<Plan>,
}

/// A query monitor's objects as the store's series resolve them: resolved once and kept while
/// the store's series and the monitor's definition are unchanged, so a check reads points by
/// series id instead of matching filters and building tag maps and event refs every time.
#[derive(Debug, Clone)]
struct Plan {
    /// the monitor definition the groups were resolved for
    fingerprint: String,
    groups: SeriesGroups,
    /// event ref of each group
    refs: Vec<String>,
    /// group indices in event-ref order (the order objects are checked in)
    order: Vec<usize>,
}

impl Plan {
    /// `old` when still valid, else the groups resolved anew.
    fn refresh(old: Option<Plan>, m: &Monitor, q: &QuerySpec, store: &Store) -> Plan {
        if let Some(p) = old {
            if p.fingerprint == m.fingerprint && p.groups.generation == store.generation() {
                return p;
            }
        }
        let groups = store.groups(&WindowQuery {
            measurement: q.measurement.clone(),
            field: q.field.clone(),
            by: q.by.clone(),
            filters: q.filters.clone(),
            start_ns: i64::MIN,
            end_ns: i64::MAX,
        });
        let refs: Vec<String> = groups
            .groups
            .iter()
            .map(|g| event_ref(&m.id, &canonical_tags(&g.tags)))
            .collect();
        let mut order: Vec<usize> = (0..refs.len()).collect();
        order.sort_by(|a, b| refs[*a].cmp(&refs[*b]));
        Plan {
            fingerprint: m.fingerprint.clone(),
            groups,
            refs,
            order,
        }
    }
}

/// What one check read for one group (object with series).
#[derive(Debug, Clone, Default)]
struct Seen {
    /// time (Unix s) of its latest point in the window or the nodata lookback
    last: Option<i64>,
    /// it has points in the window
    in_window: bool,
    /// it has points in the nodata lookback
    in_probe: bool,
    /// `agg` over the window
    value: Option<f64>,
    /// the window's points, kept only when a rule needs Rhai
    points: Vec<(i64, f64)>,
}

/// Where a changed object state goes once the check has committed.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// the i-th object of `MonitorState::objects` (in key order)
    Known(usize),
    /// a new object: the group with this index
    New(usize),
}

/// How coarsely a stored state's `last_seen` follows the real one: the state of an object
/// whose only change is a newer `last_seen` is written once the time crosses a multiple of
/// this (a 24th of `forget_after`, so at most an hour for the default 24 h), not at every
/// check. After a restart an object may then be forgotten up to that much early.
fn seen_grain(forget_after: i64) -> i64 {
    (forget_after / 24).max(1)
}

/// Whether a check's new state of an object must be written (see [`seen_grain`]).
fn worth_storing(old: Option<&ObjectState>, new: &ObjectState, grain: i64) -> bool {
    let Some(old) = old else { return true };
    let bucket = |s: Option<i64>| s.map(|s| s.div_euclid(grain));
    !old.same_but_last_seen(new) || bucket(old.last_seen) != bucket(new.last_seen)
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
            plan: None,
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
        // One read covers the window and the nodata lookback [end - after, end); both are
        // cut from it.
        let lookback = m.nodata.map(|n| end - n.after);
        let wide_start = lookback.map_or(start, |l| l.min(start));
        let plan = Plan::refresh(st.plan.take(), m, q, &self.store);
        let n = plan.groups.groups.len();
        let keep_points = rules::needs_scope(rules);
        let mut seen: Vec<Seen> = vec![Seen::default(); n];
        let query_err = |e: crate::store::StoreError| CheckError::Query(e.to_string());
        let read =
            self.store
                .read_groups(&plan.groups.groups, wide_start * NS, end * NS, |i, pts| {
                    let s = &mut seen[i];
                    let last = pts[pts.len() - 1].0;
                    s.last = Some(last.div_euclid(NS));
                    s.in_probe = lookback.is_some_and(|l| last >= l * NS);
                    let win = &pts[pts.partition_point(|p| p.0 < start * NS)..];
                    if !win.is_empty() {
                        s.in_window = true;
                        s.value = aggregate(q.agg, win);
                        // Rhai needs the points in scope; so does a rule without a value.
                        if keep_points || s.value.is_none() {
                            s.points = win.to_vec();
                        }
                    }
                });
        if let Err(e) = read {
            st.plan = Some(plan);
            return Err(query_err(e));
        }
        let mut bases: Vec<Baseline> = Vec::new();
        let previous = match rules.kind {
            RuleKind::Mutation => Some((start - m.interval, false)),
            RuleKind::Range => Some((start - rules.baseline, true)),
            _ => None,
        };
        if let Some((from, band)) = previous {
            bases = vec![Baseline::default(); n];
            let read =
                self.store
                    .read_groups(&plan.groups.groups, from * NS, start * NS, |i, pts| {
                        if band {
                            bases[i].band =
                                aggregate(Agg::Avg, pts).zip(aggregate(Agg::Stddev, pts));
                        } else {
                            bases[i].previous = aggregate(q.agg, pts);
                        }
                    });
            if let Err(e) = read {
                st.plan = Some(plan);
                return Err(query_err(e));
            }
        }
        let fleet = match rules.kind {
            RuleKind::Outlier => {
                let values: Vec<f64> = seen.iter().filter_map(|s| s.value).collect();
                rules::fleet(&values)
            }
            _ => None,
        };
        let host = Host {
            store: &self.store,
            db: &self.db,
            now: t,
            delay: m.delay,
        };
        let keeps_state = self.db.keeps_state();
        let grain = seen_grain(m.forget_after);
        let mut report = CheckReport::default();
        let mut commit = Commit::default();
        let mut changes: Vec<(Slot, ObjectState)> = Vec::new();
        let mut forgotten: Vec<String> = Vec::new();
        // Known objects and objects with data, merged in event-ref order.
        let mut known_iter = st.objects.iter().enumerate().peekable();
        let mut group_iter = plan
            .order
            .iter()
            .copied()
            .filter(|g| seen[*g].last.is_some())
            .peekable();
        loop {
            let next_known = known_iter.peek().copied();
            let next_group = group_iter.peek().copied();
            let (slot, r, known, group) = match (next_known, next_group) {
                (None, None) => break,
                (Some((i, (kr, kv))), g) => match g.map(|g| plan.refs[g].as_str().cmp(kr)) {
                    Some(std::cmp::Ordering::Less) => {
                        let g = group_iter.next().expect("peeked");
                        (Slot::New(g), plan.refs[g].as_str(), None, Some(g))
                    }
                    Some(std::cmp::Ordering::Equal) => {
                        known_iter.next();
                        group_iter.next();
                        (Slot::Known(i), kr.as_str(), Some(kv), g)
                    }
                    _ => {
                        known_iter.next();
                        (Slot::Known(i), kr.as_str(), Some(kv), None)
                    }
                },
                (None, Some(g)) => {
                    group_iter.next();
                    (Slot::New(g), plan.refs[g].as_str(), None, Some(g))
                }
            };
            let tags = known
                .map(|(t, _)| t)
                .or_else(|| group.map(|g| &plan.groups.groups[g].tags))
                .expect("an object is known or has data");
            let old = known.map(|(_, s)| s);
            let mut state = old.cloned().unwrap_or_default();
            let data = group.map(|g| &seen[g]);
            if let Some(s) = data.and_then(|d| d.last) {
                state.last_seen = Some(state.last_seen.map_or(s, |x| x.max(s)));
            }
            let in_window = data.is_some_and(|d| d.in_window);
            let seen_as = classify(
                Presence {
                    known: known.is_some(),
                    in_window,
                    in_lookback: lookback.map(|_| data.is_some_and(|d| d.in_probe)),
                },
                m.settings.nodata,
            );
            let (obs, eval) = match seen_as {
                Classified::Gap => (Observation::Gap, None),
                Classified::Empty => (Observation::Empty, None),
                Classified::Evaluate { as_zero } => {
                    // A gap evaluated as zero has no points and Result = 0.
                    let (points, result): (&[(i64, f64)], _) = match data {
                        Some(d) if !as_zero => {
                            let base = group.and_then(|g| bases.get(g)).copied();
                            let result = d.value.map(|v| {
                                rules::result_for(rules.kind, v, &base.unwrap_or_default(), fleet)
                            });
                            (&d.points, result)
                        }
                        _ => (&[], Some(0.0)),
                    };
                    let scope = || (tags.clone(), points.to_vec());
                    match rules::evaluate(&self.engine, rules, result, scope, &host) {
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
                            report.errors.push(format!("{}: {e}", canonical_tags(tags)));
                            continue;
                        }
                    }
                }
            };
            let emits = state.step(obs, t, &m.settings, r);
            if !emits.is_empty() {
                let cx = RenderCtx {
                    m,
                    policies: &self.policies,
                    public_url: self.public_url.as_deref(),
                    tags,
                    event_ref: r,
                    t,
                    range: (start, end),
                    mode,
                };
                for emit in &emits {
                    commit.events.push(render(&cx, emit, eval.as_ref()));
                }
            }
            if state.forgettable(t, m.forget_after) && state.last_seen.is_some() {
                if let Slot::Known(_) = slot {
                    forgotten.push(r.to_string());
                    if keeps_state {
                        commit.deletes.push((m.id.clone(), r.to_string()));
                    }
                }
                continue;
            }
            if keeps_state && worth_storing(old, &state, grain) {
                commit.upserts.push((
                    m.id.clone(),
                    StoredObject {
                        event_ref: r.to_string(),
                        tags: tags.clone(),
                        state: state.clone(),
                    },
                ));
            }
            if old != Some(&state) {
                changes.push((slot, state));
            }
        }
        drop(known_iter);
        let events = match self.db.commit(&commit) {
            Ok(events) => events,
            Err(e) => {
                st.plan = Some(plan);
                return Err(e.into());
            }
        };
        // Only now that the commit holds does the in-memory state move on.
        let mut changes = changes.into_iter().peekable();
        let mut fresh = Vec::new();
        for (i, (_, (_, s))) in st.objects.iter_mut().enumerate() {
            while let Some((slot, _)) = changes.peek() {
                match slot {
                    Slot::Known(k) if *k == i => {
                        *s = changes.next().expect("peeked").1;
                    }
                    Slot::New(_) => fresh.push(changes.next().expect("peeked")),
                    _ => break,
                }
            }
        }
        fresh.extend(changes);
        for (slot, state) in fresh {
            if let Slot::New(g) = slot {
                let tags = plan.groups.groups[g].tags.clone();
                st.objects.insert(plan.refs[g].clone(), (tags, state));
            }
        }
        for r in forgotten {
            st.objects.remove(&r);
        }
        st.plan = Some(plan);
        report.events = events;
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
