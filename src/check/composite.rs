//! A composite monitor's check: its ids are true for a tag set while that monitor has an open
//! round (an unrecovered issue) for those dimension tags; each level rule is evaluated per tag
//! set, and the first that holds gives the level.
//!
//! The rounds are read from the event store's issue table, which every check (in `serve`,
//! `replay` and `tocsin test` alike) keeps up to date in the transaction that stores its
//! events; the callers run a tick's composites after its plain monitors
//! ([`crate::monitor::ranks`]), so a composite sees the rounds of its own tick.
//!
//! The objects are the tag sets for which some input has an open round, and the objects the
//! composite already knows with a round or a streak (so a round of its own can recover once its
//! inputs have).
//! `Result` is how many of the ids named by the rules hold for the object.

use super::judged::{Check, Judged};
use super::rules::Evaluated;
use super::{CheckError, CheckReport, ExecMode, MonitorState, Runner};
use crate::detect::Level;
use crate::model::event::event_ref;
use crate::model::Tags;
use crate::monitor::{CompositeSpec, Monitor};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One object's verdict: the level of the first rule that holds, with the inputs' truth.
pub(crate) fn judge(spec: &CompositeSpec, open: &BTreeSet<&str>) -> Evaluated {
    let holds = |id: &str| open.contains(id);
    let matched = spec.levels.iter().find(|r| r.expr.eval(&holds));
    let inputs: Map<String, Value> = spec
        .inputs
        .iter()
        .map(|id| (id.clone(), json!(holds(id))))
        .collect();
    let count = spec.inputs.iter().filter(|i| holds(i)).count();
    let mut detail = Map::new();
    detail.insert("composite".into(), Value::Object(inputs));
    detail.insert("matched_rule".into(), json!(matched.map(|r| &r.source)));
    Evaluated {
        level: matched.map_or(Level::Ok, |r| r.level),
        value: Some(count as f64),
        recovery_holds: true,
        message: None,
        detail: None,
        extra: Some(detail),
    }
}

impl Runner {
    /// One check of a composite monitor at `t` (see the module docs).
    pub(super) fn run_composite(
        &self,
        m: &Monitor,
        spec: &CompositeSpec,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        // canonical tags → (tags, the inputs with an open round for them)
        let mut open: BTreeMap<String, (Tags, BTreeSet<&str>)> = BTreeMap::new();
        let mut errors = Vec::new();
        for id in &spec.inputs {
            for row in self.db.issues(Some(id), t)? {
                match serde_json::from_str::<Tags>(&row.dimension_tags) {
                    Ok(tags) => {
                        open.entry(row.dimension_tags.clone())
                            .or_insert_with(|| (tags, BTreeSet::new()))
                            .1
                            .insert(id.as_str());
                    }
                    Err(e) => errors.push(format!(
                        "{id}: issue {} has dimension tags that are not a tag set ({e}); skipped",
                        row.event_ref
                    )),
                }
            }
        }
        let mut judged: BTreeMap<String, Judged> = BTreeMap::new();
        let none = BTreeSet::new();
        for (canonical, (tags, ids)) in &open {
            judged.insert(
                event_ref(&m.id, canonical),
                Judged {
                    tags: tags.clone(),
                    eval: judge(spec, ids),
                },
            );
        }
        // Objects known from earlier checks whose inputs all closed are judged with none open
        // while that can change something (a round to recover, a streak to reset); the others
        // are left alone, and leave state after `forget_after`.
        for (r, (tags, state)) in &st.objects {
            if state.round.is_none() && state.fault_streak == 0 && state.clean_streak == 0 {
                continue;
            }
            judged.entry(r.clone()).or_insert_with(|| Judged {
                tags: tags.clone(),
                eval: judge(spec, &none),
            });
        }
        let cx = Check {
            m,
            t,
            range: (t - m.delay - m.interval, t - m.delay),
            mode,
        };
        self.commit_judged(&cx, st, judged, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{parse_expr, CompositeRule};

    fn spec(rules: &[(Level, &str)]) -> CompositeSpec {
        let levels: Vec<CompositeRule> = rules
            .iter()
            .map(|(level, src)| CompositeRule {
                level: *level,
                source: src.to_string(),
                expr: parse_expr(src).unwrap(),
                field: "rules.critical",
                line: 1,
            })
            .collect();
        let inputs: BTreeSet<String> = levels.iter().flat_map(|l| l.expr.ids()).collect();
        CompositeSpec {
            levels,
            inputs: inputs.into_iter().collect(),
        }
    }

    #[test]
    fn the_first_rule_that_holds_gives_the_level() {
        let s = spec(&[
            (Level::Critical, "cpu && (mem || swap)"),
            (Level::Warning, "cpu || mem"),
        ]);
        let cases: [(&[&str], Level, f64, Option<&str>); 5] = [
            (&[], Level::Ok, 0.0, None),
            (&["swap"], Level::Ok, 1.0, None),
            (&["mem"], Level::Warning, 1.0, Some("cpu || mem")),
            (
                &["cpu", "swap"],
                Level::Critical,
                2.0,
                Some("cpu && (mem || swap)"),
            ),
            (
                &["cpu", "mem", "swap"],
                Level::Critical,
                3.0,
                Some("cpu && (mem || swap)"),
            ),
        ];
        for (open, level, result, rule) in cases {
            let open: BTreeSet<&str> = open.iter().copied().collect();
            let ev = judge(&s, &open);
            assert_eq!(ev.level, level, "{open:?}");
            assert_eq!(ev.value, Some(result), "{open:?}");
            let d = ev.extra.unwrap();
            assert_eq!(d["matched_rule"], json!(rule), "{open:?}");
            assert_eq!(d["composite"]["cpu"], json!(open.contains("cpu")));
            assert_eq!(d["composite"]["swap"], json!(open.contains("swap")));
        }
    }
}
