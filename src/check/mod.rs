//! The check runner: one check of one monitor at trigger time `T`.
//!
//! Queries the window, evaluates rules or the script per object, feeds [`crate::detect`], renders
//! events and commits events plus new states in one transaction. `serve`, `replay` and
//! `tocsin test` all run checks through [`Runner::run`].

use crate::detect::{Level, ObjectState, Observation};
use crate::events::{Commit, EventDb, EventQuery, StoredObject};
use crate::model::event::{
    canonical_tags, event_ref, format_value, render_template, Event, Status, Sub,
};
use crate::monitor::{Monitor, MonitorType, RuleKind};
use crate::script::{CheckCtx, EventFilter, ScriptEngine, ScriptHost};
use crate::store::query::{aggregate, Agg, Filter, Group, Tags, WindowQuery};
use crate::store::Store;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

const NS: i64 = 1_000_000_000;

/// How a check was started (`df_exec_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// on the schedule
    Crontab,
    /// on demand
    Async,
}

impl ExecMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Crontab => "crontab",
            ExecMode::Async => "async",
        }
    }
}

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

/// The host functions scripts reach, bound to one check.
struct Host<'a> {
    store: &'a Store,
    db: &'a EventDb,
    now: i64,
    delay: i64,
}

impl Host<'_> {
    fn window(&self, window_secs: i64) -> (i64, i64) {
        let end = self.now - self.delay;
        ((end - window_secs) * NS, end * NS)
    }
}

impl ScriptHost for Host<'_> {
    fn query(
        &self,
        measurement: &str,
        field: &str,
        agg: &str,
        by: &[String],
        window_secs: i64,
    ) -> Result<Vec<(Tags, f64)>, String> {
        let agg = Agg::from_str(agg).map_err(|e| e.to_string())?;
        let (start_ns, end_ns) = self.window(window_secs);
        let q = WindowQuery {
            measurement: measurement.into(),
            field: field.into(),
            by: by.to_vec(),
            filters: vec![],
            start_ns,
            end_ns,
        };
        let groups = self.store.window(&q).map_err(|e| e.to_string())?;
        Ok(groups
            .into_iter()
            .filter_map(|g| aggregate(agg, &g.points).map(|v| (g.tags, v)))
            .collect())
    }

    fn series(
        &self,
        measurement: &str,
        field: &str,
        where_: &Tags,
        window_secs: i64,
    ) -> Result<Vec<(Tags, Vec<(i64, f64)>)>, String> {
        let filters = where_
            .iter()
            .map(|(k, v)| Filter::parse(k, v))
            .collect::<Result<Vec<_>, _>>()?;
        let (start_ns, end_ns) = self.window(window_secs);
        let q = WindowQuery {
            measurement: measurement.into(),
            field: field.into(),
            by: vec![],
            filters,
            start_ns,
            end_ns,
        };
        // One group per series, with its full tag set.
        let groups = self.store.window_series(&q).map_err(|e| e.to_string())?;
        Ok(groups
            .into_iter()
            .map(|g| {
                (
                    g.tags,
                    g.points
                        .iter()
                        .map(|(t, v)| (t.div_euclid(NS), *v))
                        .collect(),
                )
            })
            .collect())
    }

    fn events(&self, f: &EventFilter) -> Result<Vec<Value>, String> {
        let q = EventQuery {
            status: f.status.clone(),
            source: f.source.clone(),
            monitor: f.monitor.clone(),
            from: f.since,
            // A check only sees what happened before it.
            to: Some(self.now),
            limit: Some(1000),
            ..Default::default()
        };
        self.db
            .events(&q)
            .map(|evs| evs.into_iter().map(|e| e.to_value()).collect())
            .map_err(|e| e.to_string())
    }

    fn now(&self) -> i64 {
        self.now
    }
}

/// One object's evaluation.
struct Evaluated {
    level: Level,
    value: Option<f64>,
    recovery_holds: bool,
    message: Option<String>,
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
        if m.mtype == MonitorType::BotObs {
            return self.run_bot(m, st, t, mode);
        }
        let q = m
            .query
            .as_ref()
            .expect("validated: non-bot monitors have a query");
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
        let previous = match m.rules.kind {
            RuleKind::Mutation => Some(self.fetch(m, &base, start - m.interval, start)?),
            RuleKind::Range => Some(self.fetch(m, &base, start - m.rules.baseline, start)?),
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
            let gap = match (&probe, known) {
                (Some(p), Some(_)) => !p.contains_key(&r),
                _ => false,
            };
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
            let as_zero = gap && m.settings.nodata == crate::detect::NodataAction::AsZero;
            let (obs, eval) = if gap && !as_zero {
                (Observation::Gap, None)
            } else if in_window.is_some() || as_zero {
                let points = if as_zero {
                    vec![]
                } else {
                    in_window.map(|g| g.points.clone()).unwrap_or_default()
                };
                let result = if as_zero {
                    Some(0.0)
                } else {
                    self.result_for(m, &r, &values, previous.as_ref())
                };
                match self.evaluate(m, result, &tags, &points, &host) {
                    Ok(ev) => {
                        report.objects += 1;
                        let sub = if as_zero { Sub::Nodata } else { Sub::Check };
                        (
                            Observation::Data {
                                level: ev.level,
                                recovery_holds: ev.recovery_holds,
                                sub,
                            },
                            Some(ev),
                        )
                    }
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{}: {e}", canonical_tags(&tags)));
                        continue;
                    }
                }
            } else {
                (Observation::Empty, None)
            };
            let emits = state.step(obs, t, &m.settings, &r);
            for emit in emits {
                commit.events.push(self.build_event(
                    m,
                    &tags,
                    &r,
                    t,
                    start,
                    end,
                    mode,
                    &emit,
                    eval.as_ref(),
                ));
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
        let mut ev = self.build_event(
            m,
            &tags,
            event_ref,
            t,
            t - m.delay - m.interval,
            t - m.delay,
            ExecMode::Async,
            &emit,
            None,
        );
        ev.set("df_user_id", user.id.clone());
        ev.set("df_user_name", user.name.clone());
        ev.set("df_user_email", user.email.clone());
        if let Some(msg) = &user.message {
            ev.set("df_message", msg.clone());
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

    fn result_for(
        &self,
        m: &Monitor,
        r: &str,
        values: &BTreeMap<String, f64>,
        previous: Option<&BTreeMap<String, Group>>,
    ) -> Option<f64> {
        let cur = *values.get(r)?;
        let agg = m.query.as_ref().map(|q| q.agg).unwrap_or(Agg::Avg);
        match m.rules.kind {
            RuleKind::Threshold | RuleKind::Composite => Some(cur),
            RuleKind::Mutation => {
                let prev = previous
                    .and_then(|p| p.get(r))
                    .and_then(|g| aggregate(agg, &g.points));
                Some(prev.map_or(0.0, |p| cur - p))
            }
            RuleKind::Range => {
                let pts = previous
                    .and_then(|p| p.get(r))
                    .map(|g| g.points.as_slice())
                    .unwrap_or(&[]);
                let (Some(mean), Some(sd)) =
                    (aggregate(Agg::Avg, pts), aggregate(Agg::Stddev, pts))
                else {
                    return Some(0.0);
                };
                Some(if sd > 0.0 { (cur - mean) / sd } else { 0.0 })
            }
            RuleKind::Outlier => {
                let all: Vec<(i64, f64)> = values.values().map(|v| (0, *v)).collect();
                if all.len() < 3 {
                    return Some(0.0);
                }
                let med = aggregate(Agg::Median, &all).unwrap_or(0.0);
                let dev: Vec<(i64, f64)> = all.iter().map(|(_, v)| (0, (v - med).abs())).collect();
                let mad = aggregate(Agg::Median, &dev).unwrap_or(0.0);
                // 1.4826 scales the MAD to a standard deviation for normal data.
                Some(if mad > 0.0 {
                    (cur - med) / (1.4826 * mad)
                } else {
                    0.0
                })
            }
        }
    }

    fn evaluate(
        &self,
        m: &Monitor,
        result: Option<f64>,
        tags: &Tags,
        points: &[(i64, f64)],
        host: &Host,
    ) -> Result<Evaluated, String> {
        let ctx = CheckCtx {
            result,
            tags: tags.clone(),
            points: points.iter().map(|(t, v)| (t.div_euclid(NS), *v)).collect(),
        };
        let (level, value, message) = if let Some((_, script)) = &m.rules.script {
            let out = self
                .engine
                .eval_check(script, &ctx, host)
                .map_err(|e| e.to_string())?;
            let level = Level::parse(&out.status).ok_or_else(|| {
                format!(
                    "script returned status {:?}: expected ok, info, warning, error or critical",
                    out.status
                )
            })?;
            (level, out.value.or(result), out.message)
        } else {
            let mut level = Level::Ok;
            for (lvl, rule) in &m.rules.levels {
                if self
                    .engine
                    .eval_rule(&rule.compiled, &ctx, host)
                    .map_err(|e| format!("rule {:?}: {e}", rule.source))?
                {
                    level = *lvl;
                    break;
                }
            }
            (level, result, None)
        };
        let recovery_holds = match &m.rules.recovery {
            Some(rule) if matches!(level, Level::Ok | Level::Info) => self
                .engine
                .eval_rule(&rule.compiled, &ctx, host)
                .map_err(|e| format!("recovery {:?}: {e}", rule.source))?,
            _ => true,
        };
        Ok(Evaluated {
            level,
            value,
            recovery_holds,
            message,
        })
    }

    fn run_bot(
        &self,
        m: &Monitor,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        let (_, script) = m
            .rules
            .script
            .as_ref()
            .expect("validated: bots have a script");
        let host = Host {
            store: &self.store,
            db: &self.db,
            now: t,
            delay: m.delay,
        };
        let reports = self
            .engine
            .run_bot(script, &host)
            .map_err(|e| CheckError::Script(e.to_string()))?;
        let mut report = CheckReport::default();
        let mut commit = Commit::default();
        let mut new_states = Vec::new();
        // Several reports for one object in a run: the last one wins.
        let mut by_ref: BTreeMap<String, crate::script::BotReport> = BTreeMap::new();
        for rep in reports {
            let r = event_ref(&m.id, &canonical_tags(&rep.dimension_tags));
            by_ref.insert(r, rep);
        }
        for (r, rep) in by_ref {
            report.objects += 1;
            let Some(level) = Level::parse(&rep.status) else {
                report.errors.push(format!(
                    "report status {:?}: expected ok, info, warning, error or critical",
                    rep.status
                ));
                continue;
            };
            let mut state = st
                .objects
                .get(&r)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            state.last_seen = Some(t);
            let obs = Observation::Data {
                level,
                recovery_holds: true,
                sub: Sub::Check,
            };
            for emit in state.step(obs, t, &m.settings, &r) {
                let mut ev = self.build_event(
                    m,
                    &rep.dimension_tags,
                    &r,
                    t,
                    t - m.interval,
                    t,
                    mode,
                    &emit,
                    None,
                );
                if emit.status.is_fault() || emit.status == Status::Info {
                    if !rep.title.is_empty() {
                        ev.set("df_title", rep.title.clone());
                    }
                    if !rep.message.is_empty() {
                        ev.set("df_message", rep.message.clone());
                    }
                }
                commit.events.push(ev);
            }
            commit.upserts.push((
                m.id.clone(),
                StoredObject {
                    event_ref: r.clone(),
                    tags: rep.dimension_tags.clone(),
                    state: state.clone(),
                },
            ));
            new_states.push((r, rep.dimension_tags, state));
        }
        // Bot objects not reported for forget_after leave state (never with an open round).
        for (r, (_, s)) in &st.objects {
            if s.forgettable(t, m.forget_after) {
                commit.deletes.push((m.id.clone(), r.clone()));
            }
        }
        report.events = self.commit(st, &commit, new_states)?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_event(
        &self,
        m: &Monitor,
        tags: &Tags,
        r: &str,
        t: i64,
        start: i64,
        end: i64,
        mode: ExecMode,
        emit: &crate::detect::Emit,
        eval: Option<&Evaluated>,
    ) -> Event {
        let dims = canonical_tags(tags);
        let mut ev = Event::new();
        ev.set("df_event_id", emit.event_id.clone());
        ev.set("date", t);
        ev.set("timestamp", t);
        if m.mtype != MonitorType::BotObs {
            ev.set("df_date_range", m.interval);
            ev.set("df_check_range_start", start);
            ev.set("df_check_range_end", end);
        }
        if let Some(i) = &emit.issue {
            ev.set("df_issue_start_time", i.start);
            ev.set("df_issue_duration", i.duration);
            ev.set("df_fault_id", i.fault_id.clone());
        }
        ev.set("df_source", "monitor");
        ev.set("df_status", emit.status.as_str());
        ev.set_opt("df_sub_status", emit.sub_status.map(|s| s.as_str()));
        if let Some(base) = &self.public_url {
            ev.set(
                "df_event_url",
                format!(
                    "{}/api/v1/events/{}",
                    base.trim_end_matches('/'),
                    emit.event_id
                ),
            );
        }
        ev.set("df_dimension_tags", dims.clone());
        ev.set("df_monitor_id", m.policy.clone());
        ev.set(
            "df_monitor_name",
            self.policies
                .get(&m.policy)
                .cloned()
                .unwrap_or_else(|| policy_default_name(&m.policy)),
        );
        ev.set("df_monitor_type", m.mtype.as_str());
        ev.set("df_monitor_checker", m.checker());
        ev.set("df_monitor_checker_sub", emit.sub.as_str());
        ev.set("df_monitor_checker_id", m.id.clone());
        ev.set("df_monitor_checker_name", m.name.clone());
        let value = eval.and_then(|e| e.value);
        let show_value = !matches!(
            emit.status,
            Status::Nodata | Status::NodataOk | Status::NodataAsOk | Status::ManualOk
        );
        if show_value {
            ev.set_opt("df_monitor_checker_value", value.map(format_value));
        }
        ev.set("df_monitor_checker_ref", m.checker_ref.clone());
        ev.set("df_monitor_checker_event_ref", r.to_string());
        if m.mtype == MonitorType::BotObs {
            ev.set("df_monitor_ref_key", m.id.clone());
        }
        ev.set("df_exec_mode", mode.as_str());
        ev.set("df_is_silent", "false");
        let mut detail = Map::new();
        detail.insert("monitor_file".into(), json!(m.file.display().to_string()));
        if let Some(q) = &m.query {
            detail.insert(
                "query".into(),
                json!({"measurement": q.measurement, "field": q.field, "agg": q.agg.name(), "by": q.by, "where": q.where_raw}),
            );
        }
        if let Some(e) = eval {
            detail.insert("result".into(), json!(e.value));
            if let Some(msg) = &e.message {
                detail.insert("script_message".into(), json!(msg));
            }
            let rule = m
                .rules
                .levels
                .iter()
                .find(|(l, _)| *l == e.level)
                .map(|(_, r)| r.source.clone());
            detail.insert("matched_rule".into(), json!(rule));
        }
        ev.set("df_event_detail", Value::Object(detail).to_string());

        // Templates see the tags, Result and every df_ field set so far.
        let mut vars = ev.0.clone();
        for (k, v) in tags {
            vars.insert(k.clone(), json!(v));
        }
        vars.insert(
            "Result".into(),
            json!(value.map(format_value).unwrap_or_default()),
        );
        let tpl = &m.template;
        // Each class of event has its own templates; a missing one falls back to the default
        // text, never to another class's template (a nodata title has no Result to show).
        let (title_t, message_t) = match emit.status {
            Status::Nodata | Status::NodataOk | Status::NodataAsOk => {
                (tpl.nodata_title.as_ref(), tpl.nodata_message.as_ref())
            }
            Status::Ok => (tpl.recover_title.as_ref(), tpl.recover_message.as_ref()),
            // A manual recovery has no Result to show; its message is the user's.
            Status::ManualOk => (None, None),
            _ => (tpl.title.as_ref(), tpl.message.as_ref()),
        };
        let dims_text = if tags.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                tags.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let title = title_t
            .map(|t| render_template(t, &vars))
            .unwrap_or_else(|| format!("[{}] {}{}", emit.status, m.name, dims_text));
        let message = message_t
            .map(|t| render_template(t, &vars))
            .or_else(|| eval.and_then(|e| e.message.clone()))
            .unwrap_or_else(|| default_message(m, emit.status, value));
        ev.set("df_title", title);
        ev.set("df_message", message);
        ev.copy_tags_to_top(tags);
        ev
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

/// The name of a policy that is not configured (`default` → `Default`).
pub fn policy_default_name(id: &str) -> String {
    if id == "default" {
        "Default".into()
    } else {
        id.to_string()
    }
}

fn default_message(m: &Monitor, status: Status, value: Option<f64>) -> String {
    let v = value.map(format_value);
    match status {
        Status::Nodata => format!("{}: no data", m.name),
        Status::NodataOk => format!("{}: data is back", m.name),
        Status::NodataAsOk => format!("{}: no data, treated as recovered", m.name),
        Status::ManualOk => format!("{}: recovered by hand", m.name),
        Status::Ok => format!("{}: recovered, Result = {}", m.name, v.unwrap_or_default()),
        _ => format!("{}: {}, Result = {}", m.name, status, v.unwrap_or_default()),
    }
}
