//! A query monitor's check: read the window of every object, evaluate the rules per object,
//! step the state machine, render events, commit.
//!
//! How it stays cheap at a thousand objects a check:
//! - [`Plan`]: the monitor's series are grouped into objects (filters, `by` tags, event refs)
//!   once, and again only when the store's series change;
//! - the window is read by series id, as slices of the store's memory, and aggregated in
//!   place ([`Store::read_groups`]); points are copied only when a rule needs Rhai;
//! - simple rules are native comparisons ([`crate::script::NativeExpr`]);
//! - objects are independent, so a large check splits them over the machine's cores; the
//!   results are joined in object order, so the events are the same as one thread's;
//! - state rows are written only when detection state changed (not for `last_seen` alone,
//!   see [`seen_grain`]), and not at all for replays and tests.

use super::host::Host;
use super::kinds::history::History;
use super::kinds::outlier;
use super::kinds::Decision;
use super::render::{render, RenderCtx};
use super::rules::{self, Baseline};
use super::{CheckError, CheckReport, ExecMode, MonitorState, Runner, NS};
use crate::detect::observe::{classify, Classified, Presence};
use crate::detect::{ObjectState, Observation};
use crate::events::{Commit, StoredObject};
use crate::model::event::{canonical_tags, event_ref, Event};
use crate::monitor::{Monitor, OutlierAlgo, QuerySpec, RuleKind, Rules};
use crate::store::query::{aggregate, Tags, WindowQuery};
use crate::store::{SeriesGroups, Store};
use std::cmp::Ordering;

/// Below this many objects a check runs on one thread (splitting costs more than it saves).
const PARALLEL_MIN_OBJECTS: usize = 512;

/// A query monitor's objects as the store's series resolve them: resolved once and kept while
/// the store's series and the monitor's definition are unchanged, so a check reads points by
/// series id instead of matching filters and building tag maps and event refs every time.
#[derive(Debug, Clone)]
pub(super) struct Plan {
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

/// The objects one check has data for, whatever source resolved them: the store's series
/// groups ([`Plan`]) or a data source's answer (`super::promql`). Indices are the `Seen`s.
pub(super) trait Objects: Sync {
    /// the dimension tags of object `g`
    fn tags(&self, g: usize) -> &Tags;
    /// the event ref of object `g`
    fn event_ref(&self, g: usize) -> &str;
    /// object indices in event-ref order (the order objects are checked in)
    fn order(&self) -> &[usize];
}

impl Objects for Plan {
    fn tags(&self, g: usize) -> &Tags {
        &self.groups.groups[g].tags
    }
    fn event_ref(&self, g: usize) -> &str {
        &self.refs[g]
    }
    fn order(&self) -> &[usize] {
        &self.order
    }
}

/// What one check read for one group (an object with series).
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    /// time (Unix s) of its latest point in the window or the nodata lookback
    pub(super) last: Option<i64>,
    /// it has points in the window
    pub(super) in_window: bool,
    /// it has points in the nodata lookback
    pub(super) in_probe: bool,
    /// `agg` over the window
    pub(super) value: Option<f64>,
    /// the window's points, kept only when a rule needs Rhai
    pub(super) points: Vec<(i64, f64)>,
}

/// Where a changed object state goes once the check has committed.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// the i-th object of `MonitorState::objects` (in key order)
    Known(usize),
    /// a new object: the group with this index
    New(usize),
}

/// One object of a check: known before, or new with data, or both.
#[derive(Clone, Copy)]
struct Item<'a> {
    slot: Slot,
    event_ref: &'a str,
    known: Option<&'a (Tags, ObjectState)>,
    group: Option<usize>,
}

/// How coarsely a stored state's `last_seen` follows the real one: the state of an object
/// whose only change is a newer `last_seen` is written once the time crosses a multiple of
/// this (a 24th of `forget_after`, so at most an hour for the default 24 h), not at every
/// check. After a restart an object may then be forgotten up to that much early.
pub(super) fn seen_grain(forget_after: i64) -> i64 {
    (forget_after / 24).max(1)
}

/// Whether a check's new state of an object must be written (see [`seen_grain`]).
pub(super) fn worth_storing(old: Option<&ObjectState>, new: &ObjectState, grain: i64) -> bool {
    let Some(old) = old else { return true };
    let bucket = |s: Option<i64>| s.map(|s| s.div_euclid(grain));
    !old.same_but_last_seen(new) || bucket(old.last_seen) != bucket(new.last_seen)
}

/// Everything the objects of one check share.
pub(super) struct Pass<'a> {
    pub(super) runner: &'a Runner,
    pub(super) m: &'a Monitor,
    pub(super) rules: &'a Rules,
    pub(super) objects: &'a dyn Objects,
    pub(super) seen: &'a [Seen],
    pub(super) bases: &'a [Baseline],
    pub(super) fleet: Option<(f64, f64)>,
    /// `outlier` with `dbscan`: each group's verdict (empty otherwise)
    pub(super) outliers: &'a [Option<crate::check::kinds::outlier::Verdict>],
    pub(super) host: Host<'a>,
    pub(super) lookback: Option<i64>,
    /// the nodata lookback is judged by when the object was last present (a data source's
    /// answer has no points to look back over), not by its points in the lookback
    pub(super) lookback_by_last_seen: bool,
    pub(super) range: (i64, i64),
    pub(super) t: i64,
    pub(super) mode: ExecMode,
    pub(super) keeps_state: bool,
    pub(super) grain: i64,
}

/// What the objects of (a part of) a check produced, in object order.
#[derive(Default)]
struct Outcome {
    events: Vec<Event>,
    upserts: Vec<(String, StoredObject)>,
    deletes: Vec<(String, String)>,
    changes: Vec<(Slot, ObjectState)>,
    forgotten: Vec<String>,
    errors: Vec<String>,
    objects: usize,
}

impl Outcome {
    fn append(&mut self, other: Outcome) {
        self.events.extend(other.events);
        self.upserts.extend(other.upserts);
        self.deletes.extend(other.deletes);
        self.changes.extend(other.changes);
        self.forgotten.extend(other.forgotten);
        self.errors.extend(other.errors);
        self.objects += other.objects;
    }
}

impl Pass<'_> {
    fn objects(&self, items: &[Item]) -> Outcome {
        let mut out = Outcome::default();
        for item in items {
            self.object(item, &mut out);
        }
        out
    }

    /// Checks one object: classify, evaluate, step, render; records what changed.
    fn object(&self, item: &Item, out: &mut Outcome) {
        let (m, objects) = (self.m, self.objects);
        let Item {
            slot,
            event_ref: r,
            known,
            group,
        } = *item;
        let tags = known
            .map(|(t, _)| t)
            .or_else(|| group.map(|g| objects.tags(g)))
            .expect("an object is known or has data");
        let old = known.map(|(_, s)| s);
        let mut state = old.cloned().unwrap_or_default();
        let data = group.map(|g| &self.seen[g]);
        let seen_lately = |l: i64| {
            self.lookback_by_last_seen && old.and_then(|o| o.last_seen).is_some_and(|s| s >= l)
        };
        if let Some(s) = data.and_then(|d| d.last) {
            state.last_seen = Some(state.last_seen.map_or(s, |x| x.max(s)));
        }
        let seen_as = classify(
            Presence {
                known: known.is_some(),
                in_window: data.is_some_and(|d| d.in_window),
                in_lookback: self
                    .lookback
                    .map(|l| data.is_some_and(|d| d.in_probe) || seen_lately(l)),
            },
            m.settings.nodata,
        );
        let (obs, eval) = match seen_as {
            Classified::Gap => (Observation::Gap, None),
            Classified::Empty => (Observation::Empty, None),
            Classified::Evaluate { as_zero } => {
                // A gap evaluated as zero has no points and Result = 0.
                let verdict = group
                    .and_then(|g| self.outliers.get(g))
                    .and_then(Option::as_ref)
                    .filter(|_| !as_zero);
                let (points, decision): (&[(i64, f64)], _) = match data {
                    Some(d) if !as_zero => {
                        let base = group.and_then(|g| self.bases.get(g)).copied();
                        let decision = d.value.map(|v| {
                            let base = base.unwrap_or_default();
                            rules::decide(self.rules, v, &base, self.fleet)
                        });
                        // dbscan scores the object's series against the others'.
                        let decision = verdict.map(|v| Decision::plain(v.score)).or(decision);
                        (&d.points, decision)
                    }
                    _ => (&[], Some(Decision::plain(0.0))),
                };
                let scope = || (tags.clone(), points.to_vec());
                let engine = &self.runner.engine;
                match decision {
                    // The kind has nothing to compare the window with yet (no past value,
                    // too short a history): the object's window counts as empty.
                    Some(Decision { result: None, .. }) => (Observation::Empty, None),
                    decision => match rules::judge(engine, self.rules, decision, scope, &self.host)
                    {
                        Ok(mut ev) => {
                            if let (Some(v), OutlierAlgo::Dbscan { tolerance }) =
                                (verdict, self.rules.outlier)
                            {
                                ev.extra = Some(v.detail(tolerance));
                            }
                            out.objects += 1;
                            let obs = Observation::Data {
                                level: ev.level,
                                recovery_holds: ev.recovery_holds,
                                sub: seen_as.sub(),
                            };
                            (obs, Some(ev))
                        }
                        Err(e) => {
                            out.errors.push(format!("{}: {e}", canonical_tags(tags)));
                            return;
                        }
                    },
                }
            }
        };
        let emits = state.step(obs, self.t, &m.settings, r);
        if !emits.is_empty() {
            let cx = RenderCtx {
                m,
                policies: &self.runner.policies.get(),
                public_url: self.runner.public_url.as_deref(),
                tags,
                event_ref: r,
                t: self.t,
                range: self.range,
                mode: self.mode,
            };
            for emit in &emits {
                out.events.push(render(&cx, emit, eval.as_ref()));
            }
        }
        if state.forgettable(self.t, m.forget_after) && state.last_seen.is_some() {
            if let Slot::Known(_) = slot {
                out.forgotten.push(r.to_string());
                if self.keeps_state {
                    out.deletes.push((m.id.clone(), r.to_string()));
                }
            }
            return;
        }
        if self.keeps_state && worth_storing(old, &state, self.grain) {
            let stored = StoredObject {
                event_ref: r.to_string(),
                tags: tags.clone(),
                state: state.clone(),
            };
            out.upserts.push((m.id.clone(), stored));
        }
        if old != Some(&state) {
            out.changes.push((slot, state));
        }
    }
}

/// Known objects and groups with data, merged in event-ref order.
fn items<'a>(st: &'a MonitorState, plan: &'a dyn Objects, seen: &[Seen]) -> Vec<Item<'a>> {
    let mut known = st.objects.iter().enumerate().peekable();
    let mut groups = plan
        .order()
        .iter()
        .copied()
        .filter(|g| seen[*g].last.is_some())
        .peekable();
    let mut out = Vec::with_capacity(st.objects.len().max(plan.order().len()));
    loop {
        let new = |g: usize| Item {
            slot: Slot::New(g),
            event_ref: plan.event_ref(g),
            known: None,
            group: Some(g),
        };
        let item = match (known.peek().copied(), groups.peek().copied()) {
            (None, None) => break,
            (None, Some(g)) => {
                groups.next();
                new(g)
            }
            (Some((i, (kr, kv))), g) => {
                let order = g.map(|g| plan.event_ref(g).cmp(kr));
                if order == Some(Ordering::Less) {
                    groups.next();
                    new(g.expect("compared"))
                } else {
                    known.next();
                    let group = g.filter(|_| order == Some(Ordering::Equal));
                    if group.is_some() {
                        groups.next();
                    }
                    Item {
                        slot: Slot::Known(i),
                        event_ref: kr.as_str(),
                        known: Some(kv),
                        group,
                    }
                }
            }
        };
        out.push(item);
    }
    out
}

impl Runner {
    /// One check of a query monitor (see the module docs).
    pub(super) fn run_query(
        &self,
        m: &Monitor,
        q: &QuerySpec,
        rules: &Rules,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        // A plan goes stale when retention removes series between its refresh and the read;
        // then it is resolved again (retention runs rarely, so twice is plenty).
        for _ in 0..3 {
            let plan = Plan::refresh(st.plan.take(), m, q, &self.store);
            let result = self.check_plan(m, q, rules, st, &plan, t, mode);
            st.plan = Some(plan);
            match result {
                Ok(Some(report)) => return Ok(report),
                Ok(None) => st.plan = None,
                Err(e) => return Err(e),
            }
        }
        Err(CheckError::Query(
            "the store's series kept changing during the check; it runs again at the next tick"
                .into(),
        ))
    }

    /// One check over `plan`'s groups; `None` when the plan went stale before it was read.
    #[allow(clippy::too_many_arguments)]
    fn check_plan(
        &self,
        m: &Monitor,
        q: &QuerySpec,
        rules: &Rules,
        st: &mut MonitorState,
        plan: &Plan,
        t: i64,
        mode: ExecMode,
    ) -> Result<Option<CheckReport>, CheckError> {
        let end = t - m.delay;
        let start = end - m.interval;
        // One read covers the window and the nodata lookback [end - after, end); both are
        // cut from it.
        let lookback = m.nodata.map(|n| end - n.after);
        let wide_start = lookback.map_or(start, |l| l.min(start));
        let groups = &plan.groups;
        let keep_points = rules::needs_scope(rules) || outlier::needs_points(rules);
        let mut seen: Vec<Seen> = vec![Seen::default(); groups.groups.len()];
        let query_err = |e: crate::store::StoreError| CheckError::Query(e.to_string());
        let read = |i: usize, pts: &[(i64, f64)]| {
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
        };
        let fresh = self
            .store
            .read_groups(groups, wide_start * NS, end * NS, &mut st.hints, read)
            .map_err(query_err)?;
        if !fresh {
            return Ok(None);
        }
        let bases = match History::of(rules, start, end) {
            Some(history) => {
                let hints = &mut st.base_hints;
                match history.read_store(&self.store, groups, hints, q.agg) {
                    Ok(Some(bases)) => bases,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(query_err(e)),
                }
            }
            None => Vec::new(),
        };
        let fleet = match rules.kind {
            // dbscan has verdicts of its own; an object without one has Result 0.
            RuleKind::Outlier if rules.outlier == OutlierAlgo::Mad => {
                let values: Vec<f64> = seen.iter().filter_map(|s| s.value).collect();
                rules::fleet(&values)
            }
            _ => None,
        };
        let outliers = outlier::verdicts(rules, &seen, start * NS, end * NS);
        let pass = Pass {
            runner: self,
            m,
            rules,
            objects: plan,
            seen: &seen,
            bases: &bases,
            fleet,
            outliers: &outliers,
            host: Host {
                store: &self.store,
                db: &self.db,
                now: t,
                delay: m.delay,
            },
            lookback,
            lookback_by_last_seen: false,
            range: (start, end),
            t,
            mode,
            keeps_state: self.db.keeps_state(),
            grain: seen_grain(m.forget_after),
        };
        self.finish(&pass, st).map(Some)
    }

    /// The part of a check after the reads, whatever the source: every object checked, one
    /// commit, and only then the in-memory state moved on.
    pub(super) fn finish(
        &self,
        pass: &Pass,
        st: &mut MonitorState,
    ) -> Result<CheckReport, CheckError> {
        let items = items(st, pass.objects, pass.seen);
        let out = run_parallel(pass, &items);
        drop(items);
        let commit = Commit {
            events: out.events,
            upserts: out.upserts,
            deletes: out.deletes,
            kv: super::tick_record(pass.m, pass.t, pass.mode),
            fence: None,
        };
        let events = self.store_commit(pass.m, st, commit)?;
        apply(st, pass.objects, out.changes, out.forgotten);
        Ok(CheckReport {
            events,
            errors: out.errors,
            objects: out.objects,
        })
    }
}

/// Checks the items, split over the runner's worker threads when there are many; the parts
/// are joined in item order.
fn run_parallel(pass: &Pass, items: &[Item]) -> Outcome {
    let workers = &pass.runner.workers;
    let threads = workers.threads();
    if threads < 2 || items.len() < PARALLEL_MIN_OBJECTS {
        return pass.objects(items);
    }
    let jobs: Vec<Box<dyn FnOnce() -> Outcome + Send + '_>> = items
        .chunks(items.len().div_ceil(threads))
        .map(|c| Box::new(move || pass.objects(c)) as Box<dyn FnOnce() -> Outcome + Send>)
        .collect();
    let mut parts = workers.run(jobs).into_iter();
    let mut out = parts.next().unwrap_or_default();
    for p in parts {
        out.append(p);
    }
    out
}

/// Moves the in-memory state on after a commit: changed states in place, new objects in,
/// forgotten objects out.
fn apply(
    st: &mut MonitorState,
    plan: &dyn Objects,
    changes: Vec<(Slot, ObjectState)>,
    forgotten: Vec<String>,
) {
    // Changes come in object order, as `MonitorState::objects` iterates.
    let mut changes = changes.into_iter().peekable();
    let mut fresh = Vec::new();
    for (i, (_, (_, s))) in st.objects.iter_mut().enumerate() {
        while let Some((slot, _)) = changes.peek() {
            match *slot {
                Slot::Known(k) if k == i => *s = changes.next().expect("peeked").1,
                Slot::New(_) => fresh.push(changes.next().expect("peeked")),
                Slot::Known(_) => break,
            }
        }
    }
    fresh.extend(changes);
    for (slot, state) in fresh {
        if let Slot::New(g) = slot {
            let tags = plan.tags(g).clone();
            st.objects
                .insert(plan.event_ref(g).to_string(), (tags, state));
        }
    }
    for r in forgotten {
        st.objects.remove(&r);
    }
}
