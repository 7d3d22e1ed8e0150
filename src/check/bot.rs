//! Bot checks (`bot_obs`): the script reports objects and statuses itself; each report is one
//! observation of its object, and its title and message go onto the events it causes.

use crate::check::host::Host;
use crate::check::render::{render, RenderCtx};
use crate::check::{CheckError, CheckReport, MonitorState, Runner};
use crate::detect::{Level, Observation};
use crate::events::{Commit, StoredObject};
use crate::model::event::{canonical_tags, event_ref, ExecMode, Sub};
use crate::monitor::{Monitor, Script};
use crate::script::BotReport;
use std::collections::BTreeMap;

impl Runner {
    /// Runs a bot's script at `t` and steps each reported object.
    pub(crate) fn run_bot(
        &self,
        m: &Monitor,
        script: &Script,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        let host = Host {
            store: &self.store,
            db: &self.db,
            now: t,
            delay: m.delay,
        };
        let reports = self
            .engine
            .run_bot(&script.compiled, &host)
            .map_err(|e| CheckError::Script(e.to_string()))?;
        let mut report = CheckReport::default();
        let mut commit = Commit {
            kv: super::tick_record(m, t, mode),
            ..Default::default()
        };
        let mut new_states = Vec::new();
        // Several reports for one object in a run: the last one wins.
        let mut by_ref: BTreeMap<String, BotReport> = BTreeMap::new();
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
            let cx = RenderCtx {
                m,
                policies: &self.policies.get(),
                public_url: self.public_url.as_deref(),
                tags: &rep.dimension_tags,
                event_ref: &r,
                t,
                range: (t - m.interval, t),
                mode,
            };
            for emit in state.step(obs, t, &m.settings, &r) {
                let mut ev = render(&cx, &emit, None);
                // The report's own words win over the templates, for faults and for the
                // recovery an `ok` report causes alike.
                if !rep.title.is_empty() {
                    ev.set_title(rep.title.clone());
                }
                if !rep.message.is_empty() {
                    ev.set_message(rep.message.clone());
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
        report.events = self.commit(m, st, commit, new_states)?;
        Ok(report)
    }
}
