//! Service level objectives: multiwindow burn-rate alerts over a good/total pair.
//!
//! The error budget is the share of bad events the objective allows (`1 - target`); a window's
//! burn rate is its error ratio over that budget (1 spends the budget in exactly the period).
//! A pair fires when both its windows burn faster than its rate — the long window says the
//! burn is significant, the short one that it is still going on, so the alert ends soon after
//! the burn does. The most severe pair that fires gives the level; `Result` is that pair's
//! long-window burn rate (the most severe pair's when none fires).
//!
//! The maths here is pure; [`Runner::run_slo`] reads the counts (embedded store or data
//! source) and hands the verdicts to the shared end of a check.

use crate::check::judged::{Check, Judged};
use crate::check::rules::Evaluated;
use crate::check::{CheckError, CheckReport, ExecMode, MonitorState, Runner, NS};
use crate::datasource::Lane;
use crate::detect::Level;
use crate::model::event::{canonical_tags, event_ref};
use crate::model::time::format_duration;
use crate::model::Tags;
use crate::monitor::{Monitor, Schedule, SloSeries, SloSource, SloSpec};
use crate::store::query::WindowQuery;
use serde_json::{json, Map};
use std::collections::{BTreeMap, BTreeSet};

/// Good and total events of one object over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) good: f64,
    pub(crate) total: f64,
}

impl Counts {
    /// The share of bad events; `None` without traffic. More good than total (counters out
    /// of step) counts as no error.
    pub(crate) fn error_ratio(self) -> Option<f64> {
        (self.total > 0.0).then(|| ((self.total - self.good) / self.total).clamp(0.0, 1.0))
    }

    /// The burn rate against `target` percent; 0 without traffic (nothing burns).
    pub(crate) fn burn(self, target: f64) -> f64 {
        self.error_ratio().map_or(0.0, |e| e / budget(target))
    }
}

/// The error budget of a target in percent, as a ratio (99.9 → 0.001).
fn budget(target: f64) -> f64 {
    1.0 - target / 100.0
}

/// Every window the check needs counts for: the objective's and each pair's two.
pub(crate) fn windows(spec: &SloSpec) -> BTreeSet<i64> {
    let mut w: BTreeSet<i64> = spec.burn.iter().flat_map(|b| [b.long, b.short]).collect();
    w.insert(spec.window);
    w
}

/// One object's verdict from its counts per window (`counts[w]`, every window of
/// [`windows`]); `None` when the objective's whole window had no traffic.
pub(crate) fn judge(spec: &SloSpec, counts: &BTreeMap<i64, Counts>) -> Option<Evaluated> {
    let at = |w: i64| counts.get(&w).copied().unwrap_or_default();
    let period = at(spec.window);
    let ratio = period.error_ratio()?;
    let mut fired = None;
    let mut pairs = Vec::new();
    for b in &spec.burn {
        let (long, short) = (at(b.long).burn(spec.target), at(b.short).burn(spec.target));
        let fires = long > b.rate && short > b.rate;
        if fires && fired.is_none() {
            fired = Some((b, long));
        }
        pairs.push(json!({
            "level": b.level.status().as_str(), "rate": b.rate,
            "long": format_duration(b.long), "short": format_duration(b.short),
            "long_burn": long, "short_burn": short, "fires": fires,
        }));
    }
    let result = match fired {
        Some((_, long)) => long,
        None => spec
            .burn
            .first()
            .map_or(0.0, |b| at(b.long).burn(spec.target)),
    };
    let remaining = 100.0 * (1.0 - ratio / budget(spec.target));
    let mut detail = Map::new();
    detail.insert(
        "slo".into(),
        json!({
            "target": spec.target, "window": format_duration(spec.window),
            "good": period.good, "total": period.total, "error_ratio": ratio,
            "error_budget_remaining": remaining, "burn": pairs,
        }),
    );
    detail.insert(
        "matched_rule".into(),
        json!(fired.map(|(b, _)| format!(
            "burn > {} over {} and {}",
            b.rate,
            format_duration(b.long),
            format_duration(b.short)
        ))),
    );
    Some(Evaluated {
        level: fired.map_or(Level::Ok, |(b, _)| b.level),
        value: Some(result),
        recovery_holds: true,
        message: None,
        detail: None,
        extra: Some(detail),
    })
}

/// Per object (by canonical tags): its tags and a sum per window.
type Sums = BTreeMap<String, (Tags, BTreeMap<i64, f64>)>;

/// Sums of one store side per object, per window ending at `end`. The points are summed
/// where the store keeps them (no copy: a 30-day window is many points).
fn store_sums(
    runner: &Runner,
    side: &SloSeries,
    by: &[String],
    end: i64,
    windows: &BTreeSet<i64>,
) -> Result<Sums, CheckError> {
    let longest = windows.iter().max().copied().unwrap_or(0);
    let q = WindowQuery {
        measurement: side.measurement.clone(),
        field: side.field.clone(),
        by: by.to_vec(),
        filters: side.filters.clone(),
        start_ns: i64::MIN,
        end_ns: i64::MAX,
    };
    // Retention may remove series between resolving the groups and reading them: resolve
    // again then (it runs rarely, so a few tries are plenty).
    for _ in 0..3 {
        let groups = runner.store.groups(&q);
        let mut out = Sums::new();
        let read = |i: usize, pts: &[(i64, f64)]| {
            let sums = windows
                .iter()
                .map(|w| {
                    let from = pts.partition_point(|p| p.0 < (end - w) * NS);
                    (*w, pts[from..].iter().map(|p| p.1).sum())
                })
                .collect();
            let tags = groups.groups[i].tags.clone();
            out.insert(canonical_tags(&tags), (tags, sums));
        };
        let mut hints = Vec::new();
        let fresh = runner
            .store
            .read_groups(&groups, (end - longest) * NS, end * NS, &mut hints, read)
            .map_err(|e| CheckError::Query(e.to_string()))?;
        if fresh {
            return Ok(out);
        }
    }
    Err(CheckError::Query(
        "the store's series kept changing during the check; it runs again at the next tick".into(),
    ))
}

impl Runner {
    /// One check of an objective at `t`: counts per object and window, then the verdicts.
    pub(crate) fn run_slo(
        &self,
        m: &Monitor,
        spec: &SloSpec,
        st: &mut MonitorState,
        t: i64,
        mode: ExecMode,
    ) -> Result<CheckReport, CheckError> {
        let end = t - m.delay;
        let windows = windows(spec);
        // canonical tags → (tags, counts per window)
        let mut objects: BTreeMap<String, (Tags, BTreeMap<i64, Counts>)> = BTreeMap::new();
        match &spec.source {
            SloSource::Store { good, total, by } => {
                let good = store_sums(self, good, by, end, &windows)?;
                for (key, (tags, sums)) in store_sums(self, total, by, end, &windows)? {
                    let g = good.get(&key).map(|x| &x.1);
                    let counts = sums
                        .iter()
                        .map(|(w, total)| {
                            let good = g.and_then(|g| g.get(w)).copied().unwrap_or(0.0);
                            (
                                *w,
                                Counts {
                                    good,
                                    total: *total,
                                },
                            )
                        })
                        .collect();
                    objects.insert(key, (tags, counts));
                }
            }
            SloSource::Promql {
                datasource,
                good,
                total,
            } => {
                let step = match m.schedule {
                    Schedule::Every(s) => Some(s),
                    _ => None,
                };
                for w in &windows {
                    let range = format_duration(*w);
                    let ask = |q: &str| {
                        self.datasources
                            .at(
                                datasource,
                                &q.replace("$window", &range),
                                end,
                                step,
                                Lane::Window,
                            )
                            .map_err(|e| CheckError::Query(e.to_string()))
                    };
                    let goods: BTreeMap<String, f64> = ask(good)?
                        .into_iter()
                        .map(|(tags, v)| (canonical_tags(&tags), v))
                        .collect();
                    for (tags, v) in ask(total)? {
                        let key = canonical_tags(&tags);
                        let good = goods.get(&key).copied().unwrap_or(0.0);
                        objects
                            .entry(key)
                            .or_insert_with(|| (tags, BTreeMap::new()))
                            .1
                            .insert(*w, Counts { good, total: v });
                    }
                }
            }
        }
        let judged = objects
            .into_iter()
            .filter_map(|(key, (tags, counts))| {
                judge(spec, &counts).map(|eval| (event_ref(&m.id, &key), Judged { tags, eval }))
            })
            .collect();
        let cx = Check {
            m,
            t,
            range: (end - spec.window, end),
            mode,
        };
        self.commit_judged(&cx, st, judged, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{BurnPair, DEFAULT_BURN};

    fn spec(burn: Vec<BurnPair>) -> SloSpec {
        SloSpec {
            target: 99.0,
            window: 86_400,
            source: SloSource::Promql {
                datasource: "p".into(),
                good: "g[$window]".into(),
                total: "t[$window]".into(),
            },
            burn,
        }
    }

    /// Counts with `bad` bad events out of 1000 in each window of `(window, bad)`.
    fn counts(bad: &[(i64, f64)]) -> BTreeMap<i64, Counts> {
        bad.iter()
            .map(|(w, b)| {
                (
                    *w,
                    Counts {
                        good: 1000.0 - b,
                        total: 1000.0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn burn_rates_and_ratios() {
        let c = Counts {
            good: 990.0,
            total: 1000.0,
        };
        assert!((c.error_ratio().unwrap() - 0.01).abs() < 1e-12);
        assert!((c.burn(99.0) - 1.0).abs() < 1e-9);
        assert!((c.burn(99.9) - 10.0).abs() < 1e-6);
        assert_eq!(Counts::default().error_ratio(), None, "no traffic");
        assert_eq!(Counts::default().burn(99.9), 0.0);
        let over = Counts {
            good: 11.0,
            total: 10.0,
        };
        assert_eq!(over.error_ratio(), Some(0.0), "more good than total");
    }

    #[test]
    fn both_windows_of_a_pair_must_burn() {
        // Budget 1 %: 144 bad of 1000 is a burn of 14.4; 200 bad is 20.
        let s = spec(DEFAULT_BURN.to_vec());
        let (h1, m5, h6, m30, day) = (3600, 300, 21_600, 1800, 86_400);
        type Case = (&'static str, Vec<(i64, f64)>, Level, f64);
        let cases: Vec<Case> = vec![
            (
                "quiet",
                vec![(h1, 0.0), (m5, 0.0), (h6, 0.0), (m30, 0.0), (day, 0.0)],
                Level::Ok,
                0.0,
            ),
            (
                "long only: the burn stopped",
                vec![(h1, 200.0), (m5, 0.0), (h6, 10.0), (m30, 10.0), (day, 5.0)],
                Level::Ok,
                20.0,
            ),
            (
                "short only: a blip",
                vec![(h1, 50.0), (m5, 200.0), (h6, 10.0), (m30, 30.0), (day, 5.0)],
                Level::Ok,
                5.0,
            ),
            (
                "exactly the rate does not fire",
                vec![(h1, 144.0), (m5, 144.0), (h6, 0.0), (m30, 0.0), (day, 1.0)],
                Level::Ok,
                14.4,
            ),
            (
                "fast burn",
                vec![
                    (h1, 200.0),
                    (m5, 300.0),
                    (h6, 100.0),
                    (m30, 100.0),
                    (day, 20.0),
                ],
                Level::Critical,
                20.0,
            ),
            (
                "slow burn",
                vec![(h1, 70.0), (m5, 70.0), (h6, 80.0), (m30, 90.0), (day, 20.0)],
                Level::Warning,
                8.0,
            ),
        ];
        for (name, bad, level, result) in cases {
            let ev = judge(&s, &counts(&bad)).unwrap();
            assert_eq!(ev.level, level, "{name}");
            assert!(
                (ev.value.unwrap() - result).abs() < 1e-9,
                "{name}: {:?}",
                ev.value
            );
        }
    }

    #[test]
    fn the_budget_left_is_in_the_detail() {
        let s = spec(DEFAULT_BURN.to_vec());
        // 2 bad of 1000 over the day against a 1 % budget: 20 % spent.
        let ev = judge(&s, &counts(&[(86_400, 2.0)])).unwrap();
        let d = &ev.extra.unwrap()["slo"];
        assert!(
            (d["error_budget_remaining"].as_f64().unwrap() - 80.0).abs() < 1e-9,
            "{d}"
        );
        assert_eq!(d["burn"][0]["long"], "1h");
        assert_eq!(d["burn"][1]["fires"], false);
        // Overspent: the remaining budget goes below zero.
        let ev = judge(&s, &counts(&[(86_400, 30.0)])).unwrap();
        let left = ev.extra.unwrap()["slo"]["error_budget_remaining"]
            .as_f64()
            .unwrap();
        assert!((left + 200.0).abs() < 1e-9, "{left}");
    }

    #[test]
    fn no_traffic_over_the_objective_is_no_verdict() {
        let s = spec(DEFAULT_BURN.to_vec());
        assert!(judge(&s, &BTreeMap::new()).is_none(), "empty");
        let zero = BTreeMap::from([(86_400, Counts::default())]);
        assert!(judge(&s, &zero).is_none(), "zero total");
        // A single window with traffic: the others count as not burning.
        let ev = judge(&s, &counts(&[(86_400, 500.0)])).unwrap();
        assert_eq!(ev.level, Level::Ok);
        assert_eq!(ev.value, Some(0.0));
    }

    #[test]
    fn windows_are_the_objective_and_every_pair() {
        let s = spec(DEFAULT_BURN.to_vec());
        assert_eq!(
            windows(&s).into_iter().collect::<Vec<_>>(),
            vec![300, 1800, 3600, 21_600, 86_400]
        );
    }
}
