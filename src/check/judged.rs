//! The end of a check for kinds that judge their objects themselves instead of through Rhai
//! rules (composite, slo): each object comes with its level already decided; from there it is
//! what every check does — step the state machine, render, commit, move the state on.
//!
//! Known objects the check did not judge get an empty observation (nothing changes but a
//! returning gap), and leave state once `forget_after` has passed without an open round.

use super::query::{seen_grain, worth_storing};
use super::render::{render, RenderCtx};
use super::rules::Evaluated;
use super::{CheckError, CheckReport, ExecMode, MonitorState, Runner};
use crate::detect::{ObjectState, Observation};
use crate::events::{Commit, StoredObject};
use crate::model::event::Sub;
use crate::model::Tags;
use crate::monitor::Monitor;
use std::collections::BTreeMap;

/// One object's verdict in one check.
pub(super) struct Judged {
    /// its dimension tags
    pub(super) tags: Tags,
    /// the evaluation (level, `Result`, the detail that explains it)
    pub(super) eval: Evaluated,
}

/// Where and when the check ran.
pub(super) struct Check<'a> {
    pub(super) m: &'a Monitor,
    pub(super) t: i64,
    /// the window `[start, end)` the events show
    pub(super) range: (i64, i64),
    pub(super) mode: ExecMode,
}

impl Runner {
    /// Steps, renders and commits the verdicts `judged` (by event ref) of one check.
    pub(super) fn commit_judged(
        &self,
        cx: &Check,
        st: &mut MonitorState,
        judged: BTreeMap<String, Judged>,
        mut errors: Vec<String>,
    ) -> Result<CheckReport, CheckError> {
        let m = cx.m;
        let grain = seen_grain(m.forget_after);
        let keeps_state = self.db.keeps_state();
        let policies = self.policies.get();
        let mut commit = Commit {
            kv: super::tick_record(m, cx.t, cx.mode),
            ..Default::default()
        };
        let mut new_states = Vec::new();
        let mut objects = 0;
        // Every judged object, then the known ones without a verdict, in event-ref order.
        let mut refs: Vec<&String> = judged.keys().chain(st.objects.keys()).collect();
        refs.sort();
        refs.dedup();
        for r in refs {
            let known = st.objects.get(r);
            let verdict = judged.get(r);
            let Some(tags) = verdict.map(|j| &j.tags).or(known.map(|k| &k.0)) else {
                continue;
            };
            let old = known.map(|k| &k.1);
            let mut state: ObjectState = old.cloned().unwrap_or_default();
            let obs = match verdict {
                Some(j) => {
                    objects += 1;
                    state.last_seen = Some(cx.t);
                    Observation::Data {
                        level: j.eval.level,
                        recovery_holds: j.eval.recovery_holds,
                        sub: Sub::Check,
                    }
                }
                None => Observation::Empty,
            };
            let emits = state.step(obs, cx.t, &m.settings, r);
            let rcx = RenderCtx {
                m,
                policies: &policies,
                public_url: self.public_url.as_deref(),
                tags,
                event_ref: r,
                t: cx.t,
                range: cx.range,
                mode: cx.mode,
            };
            for emit in &emits {
                commit
                    .events
                    .push(render(&rcx, emit, verdict.map(|j| &j.eval)));
            }
            if state.forgettable(cx.t, m.forget_after) {
                if known.is_some() {
                    commit.deletes.push((m.id.clone(), r.clone()));
                }
                continue;
            }
            if keeps_state && worth_storing(old, &state, grain) {
                commit.upserts.push((
                    m.id.clone(),
                    StoredObject {
                        event_ref: r.clone(),
                        tags: tags.clone(),
                        state: state.clone(),
                    },
                ));
            }
            if old != Some(&state) {
                new_states.push((r.clone(), tags.clone(), state));
            }
        }
        // In-memory state follows even where the store does not keep it (replay, test).
        let deletes: Vec<(String, String)> = if keeps_state {
            Vec::new()
        } else {
            std::mem::take(&mut commit.deletes)
        };
        let events = self.commit(m, st, commit, new_states)?;
        for (_, r) in deletes {
            st.objects.remove(&r);
        }
        Ok(CheckReport {
            events,
            errors: std::mem::take(&mut errors),
            objects,
        })
    }
}
