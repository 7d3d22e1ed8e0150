//! A datasource monitor's check: the PromQL expression's value at the window end, asked of a
//! Prometheus-compatible API; each series of the answer is one object, its value the
//! `Result`. From there on it is the query monitor's check ([`Runner::finish`]): the same
//! rules, state machine, rendering and commit.
//!
//! A series seen before and missing from the answer has an empty window; `[nodata] after`
//! counts from the last check at which it was present (its `last_seen`).

use super::host::Host;
use super::kinds::history::History;
use super::kinds::outlier;
use super::query::{seen_grain, Objects, Pass, Seen};
use super::rules;
use super::{CheckError, CheckReport, ExecMode, MonitorState, Runner, NS};
use crate::datasource::Lane;
use crate::model::event::{canonical_tags, event_ref};
use crate::model::Tags;
use crate::monitor::{Monitor, OutlierAlgo, PromqlSpec, RuleKind, Rules, Schedule};
use std::collections::HashMap;

/// The objects of one answer.
struct Answer {
    tags: Vec<Tags>,
    refs: Vec<String>,
    order: Vec<usize>,
}

impl Objects for Answer {
    fn tags(&self, g: usize) -> &Tags {
        &self.tags[g]
    }
    fn event_ref(&self, g: usize) -> &str {
        &self.refs[g]
    }
    fn order(&self) -> &[usize] {
        &self.order
    }
}

/// An answer's series as objects with their values. Two series whose labels differ only in
/// `__name__` would be one object: the first is kept and the others reported.
fn objects(monitor: &str, series: Vec<(Tags, f64)>) -> (Answer, Vec<f64>, Vec<String>) {
    let mut by_ref: HashMap<String, usize> = HashMap::with_capacity(series.len());
    let mut answer = Answer {
        tags: Vec::with_capacity(series.len()),
        refs: Vec::with_capacity(series.len()),
        order: Vec::new(),
    };
    let mut values = Vec::with_capacity(series.len());
    let mut errors = Vec::new();
    for (tags, v) in series {
        let canonical = canonical_tags(&tags);
        let r = event_ref(monitor, &canonical);
        if by_ref.contains_key(&r) {
            errors.push(format!(
                "{canonical}: the answer has several series with these labels (they differ \
                 only in __name__); the first is used"
            ));
            continue;
        }
        by_ref.insert(r.clone(), answer.tags.len());
        answer.tags.push(tags);
        answer.refs.push(r);
        values.push(v);
    }
    answer.order = (0..answer.refs.len()).collect();
    answer
        .order
        .sort_by(|a, b| answer.refs[*a].cmp(&answer.refs[*b]));
    (answer, values, errors)
}

impl Runner {
    /// One check of a datasource monitor (see the module docs). A failed query fails the
    /// check and changes nothing.
    pub(super) fn run_promql(
        &self,
        m: &Monitor,
        q: &PromqlSpec,
        rules: &Rules,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        let end = t - m.delay;
        let start = end - m.interval;
        // A fixed period lets a replay answer from range queries with that step.
        let step = match m.schedule {
            Schedule::Every(s) => Some(s),
            _ => None,
        };
        let ask = |at: i64, lane: Lane| {
            self.datasources
                .at(&q.datasource, &q.promql, at, step, lane)
                .map_err(|e| CheckError::Query(e.to_string()))
        };
        let (answer, values, mut errors) = objects(&m.id, ask(end, Lane::Window)?);
        let keep_points = rules::needs_scope(rules);
        let mut seen: Vec<Seen> = values
            .iter()
            .map(|v| Seen {
                last: Some(end),
                in_window: true,
                in_probe: true,
                value: Some(*v),
                points: if keep_points {
                    vec![(end * NS, *v)]
                } else {
                    vec![]
                },
            })
            .collect();
        let bases = match History::of(rules, start, end) {
            Some(history) => {
                let index: HashMap<&str, usize> = answer
                    .refs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.as_str(), i))
                    .collect();
                history.ask(&self.datasources, m, q, &index, step)?
            }
            None => Vec::new(),
        };
        let fleet = match rules.kind {
            // dbscan has verdicts of its own; an object without one has Result 0.
            RuleKind::Outlier if rules.outlier == OutlierAlgo::Mad => rules::fleet(&values),
            _ => None,
        };
        // `dbscan` compares the objects' series over the window: one range query, about 60
        // evaluations per window, matched to the answer's objects by their tags.
        if outlier::needs_points(rules) {
            let step = (m.interval / 60).max(1);
            let index: HashMap<&str, usize> = answer
                .refs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.as_str(), i))
                .collect();
            let series = self
                .datasources
                .range(&q.datasource, &q.promql, start, end, step)
                .map_err(|e| CheckError::Query(e.to_string()))?;
            for s in series {
                let r = event_ref(&m.id, &canonical_tags(&s.tags));
                if let Some(i) = index.get(r.as_str()) {
                    seen[*i].points = s.points.iter().map(|(t, v)| (t * NS, *v)).collect();
                }
            }
        }
        let outliers = outlier::verdicts(rules, &seen, start * NS, end * NS);
        let pass = Pass {
            runner: self,
            m,
            rules,
            objects: &answer,
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
            lookback: m.nodata.map(|n| end - n.after),
            lookback_by_last_seen: true,
            range: (start, end),
            t,
            mode,
            keeps_state: self.db.keeps_state(),
            grain: seen_grain(m.forget_after),
        };
        let mut report = self.finish(&pass, st)?;
        errors.append(&mut report.errors);
        report.errors = errors;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_differing_only_in_name_are_one_object() {
        let a = Tags::from([("host".to_string(), "a".to_string())]);
        let b = Tags::from([("host".to_string(), "b".to_string())]);
        let (answer, values, errors) = objects(
            "m",
            vec![(a.clone(), 1.0), (b.clone(), 2.0), (a.clone(), 3.0)],
        );
        assert_eq!(answer.tags, vec![a, b]);
        assert_eq!(values, vec![1.0, 2.0]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("{\"host\":\"a\"}"), "{errors:?}");
        let mut sorted = answer.refs.clone();
        sorted.sort();
        let ordered: Vec<String> = answer
            .order
            .iter()
            .map(|g| answer.refs[*g].clone())
            .collect();
        assert_eq!(ordered, sorted);
    }
}
