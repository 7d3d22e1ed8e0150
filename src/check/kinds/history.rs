//! What a check reads of each object's past for its rule kind, from the embedded store or
//! from a data source, reduced to a [`Baseline`] per object: the compared window's value
//! (`mutation`), the baseline's mean and deviation (`range`), a learned band (`range` with
//! band parameters) or a fitted trend (`forecast`).
//!
//! Both sources read the same spans, so a monitor means the same over either: the store's
//! points in a span, or the PromQL expression evaluated every step over it (the step is the
//! monitor's period, or its window for a crontab monitor). Live checks, replays and
//! `tocsin test` all come through here.

use super::{band, forecast};
use crate::check::rules::Baseline;
use crate::check::{CheckError, NS};
use crate::datasource::{Datasources, Lane};
use crate::model::event::{canonical_tags, event_ref};
use crate::monitor::{BandParams, KindParams, Monitor, PromqlSpec, RuleKind, Rules};
use crate::store::query::{aggregate, Agg};
use crate::store::{SeriesGroups, Store, StoreError};
use std::collections::HashMap;

/// Range queries stay under Prometheus' 11,000 points per series: a longer span is read with
/// a coarser step.
const MAX_STEPS: i64 = 10_000;

/// What is learned from the span read.
#[derive(Debug, Clone, Copy)]
enum Learn<'a> {
    /// the aggregate of the compared window
    Previous,
    /// mean and deviation of the points (`range` as a z-score)
    Moments,
    /// a band from the points, or from one aggregate per season
    Band(&'a BandParams),
    /// a trend fitted to the points
    Trend(&'a crate::monitor::ForecastParams),
}

/// The past one check of a monitor reads: the span `[from, to)` (Unix s) and what it learns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct History<'a> {
    /// span start
    pub(crate) from: i64,
    /// span end (exclusive for the store)
    pub(crate) to: i64,
    learn: Learn<'a>,
    /// the window `[start, end)` being checked
    window: (i64, i64),
}

impl<'a> History<'a> {
    /// The past the rules of a check with window `[start, end)` need, if any.
    pub(crate) fn of(rules: &'a Rules, start: i64, end: i64) -> Option<History<'a>> {
        let (from, to, learn) = match (&rules.params, rules.kind) {
            (KindParams::Change(p), _) => (start - p.compare, end - p.compare, Learn::Previous),
            (KindParams::Forecast(p), _) => (end - p.lookback, end, Learn::Trend(p)),
            (KindParams::Band(p), _) => match p.season {
                Some(season) => {
                    let n = (rules.baseline / season).max(1);
                    (start - n * season, end - season, Learn::Band(p))
                }
                None => (start - rules.baseline, start, Learn::Band(p)),
            },
            (KindParams::Plain, RuleKind::Range) => (start - rules.baseline, start, Learn::Moments),
            _ => return None,
        };
        Some(History {
            from,
            to,
            learn,
            window: (start, end),
        })
    }

    /// Reads the span of every group from the store and reduces it (`None`: the store's
    /// series changed meanwhile and the check must resolve its groups again). A seasonal
    /// band reads only its season windows, not the whole span between them.
    pub(crate) fn read_store(
        &self,
        store: &Store,
        groups: &SeriesGroups,
        hints: &mut Vec<usize>,
        agg: Agg,
    ) -> Result<Option<Vec<Baseline>>, StoreError> {
        let n = groups.groups.len();
        let mut bases = vec![Baseline::default(); n];
        if let Learn::Band(
            p @ BandParams {
                season: Some(season),
                ..
            },
        ) = self.learn
        {
            let (start, end) = self.window;
            let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
            let mut back = *season;
            while start - back >= self.from {
                let (a, b) = ((start - back) * NS, (end - back) * NS);
                let fresh = store.read_groups(groups, a, b, hints, |i, pts| {
                    // A season without points gives no sample.
                    if let Some(v) = aggregate(agg, pts) {
                        samples[i].push(v);
                    }
                })?;
                if !fresh {
                    return Ok(None);
                }
                back += season;
            }
            for (b, s) in bases.iter_mut().zip(&samples) {
                b.learned = band::learn(p, s);
            }
            return Ok(Some(bases));
        }
        let read = |i: usize, pts: &[(i64, f64)]| bases[i] = self.reduce(pts, STORE_UNIT, agg);
        let fresh = store.read_groups(groups, self.from * NS, self.to * NS, hints, read)?;
        Ok(fresh.then_some(bases))
    }

    /// Reduces one object's points in the span (`(t, v)`, `t` in units of `unit` seconds);
    /// `agg` aggregates a compared window. Not for seasonal bands, whose samples are one
    /// value per season.
    fn reduce(&self, pts: &[(i64, f64)], unit: f64, agg: Agg) -> Baseline {
        let mut b = Baseline::default();
        match self.learn {
            Learn::Previous => b.previous = aggregate(agg, pts),
            Learn::Moments => {
                b.band = aggregate(Agg::Avg, pts).zip(aggregate(Agg::Stddev, pts));
            }
            Learn::Trend(p) => b.trend = forecast::fit(p.method, pts, unit, self.window.1),
            Learn::Band(p) => {
                let samples: Vec<f64> = pts.iter().map(|p| p.1).collect();
                b.learned = band::learn(p, &samples);
            }
        }
        b
    }

    /// Reads the span for every object of a data source's answer (`index`: event ref →
    /// object) and reduces it; `step` is the monitor's period, when it has a fixed one.
    pub(crate) fn ask(
        &self,
        ds: &Datasources,
        m: &Monitor,
        q: &PromqlSpec,
        index: &HashMap<&str, usize>,
        step: Option<i64>,
    ) -> Result<Vec<Baseline>, CheckError> {
        let err = |e: crate::datasource::DatasourceError| CheckError::Query(e.to_string());
        let mut bases = vec![Baseline::default(); index.len()];
        let mut put = |tags: &crate::model::Tags, b: Baseline| {
            let r = event_ref(&m.id, &canonical_tags(tags));
            if let Some(i) = index.get(r.as_str()) {
                bases[*i] = b;
            }
        };
        // The compared window's value is the expression at that window's end, as the
        // window's own value is the expression at the window end.
        if let Learn::Previous = self.learn {
            for (tags, v) in ds
                .at(&q.datasource, &q.promql, self.to, step, Lane::Previous)
                .map_err(err)?
            {
                put(
                    &tags,
                    Baseline {
                        previous: Some(v),
                        ..Baseline::default()
                    },
                );
            }
            return Ok(bases);
        }
        // A season's sample is the expression at the end of that season's window: one
        // evaluation per season, so the season is the step. Otherwise the span is evaluated
        // every step, the first evaluation one step after its start (as the store's span
        // excludes what came before it) and the last at its end.
        let (from, to, s) = match self.learn {
            Learn::Band(p) if p.season.is_some() => {
                let season = p.season.unwrap_or(1);
                (self.from + (self.window.1 - self.window.0), self.to, season)
            }
            _ => {
                let s = step.unwrap_or(m.interval).max(1);
                let s = s.max((self.to - self.from + MAX_STEPS - 1) / MAX_STEPS);
                (self.from + s, self.to, s)
            }
        };
        if from > to {
            return Ok(bases);
        }
        let series = ds
            .range(&q.datasource, &q.promql, from, to, s)
            .map_err(err)?;
        for sr in series {
            let b = match self.learn {
                // One value per season: the samples as they are.
                Learn::Band(p) if p.season.is_some() => Baseline {
                    learned: band::learn(p, &sr.points.iter().map(|x| x.1).collect::<Vec<_>>()),
                    ..Baseline::default()
                },
                _ => self.reduce(&sr.points, 1.0, Agg::Last),
            };
            put(&sr.tags, b);
        }
        Ok(bases)
    }
}

/// The store's points are in nanoseconds: one unit is this many seconds.
const STORE_UNIT: f64 = 1.0 / NS as f64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{ChangeParams, Diff, Direction, Eval, ForecastParams, Method};
    use crate::monitor::{Crossing, Side, Spread};

    fn rules(kind: RuleKind, params: KindParams, baseline: i64) -> Rules {
        Rules {
            kind,
            eval: Eval::Levels(Vec::new()),
            recovery: None,
            baseline,
            params,
            outlier: crate::monitor::OutlierAlgo::Mad,
        }
    }

    #[test]
    fn each_kind_reads_its_span() {
        let (start, end) = (10_000, 10_600);
        let change = |compare| {
            KindParams::Change(ChangeParams {
                compare,
                diff: Diff::Value,
                direction: Direction::Signed,
                when: None,
                plain: true,
            })
        };
        let band = |season| {
            KindParams::Band(BandParams {
                spread: Spread::Stddev { k: 3.0 },
                season,
                min_history: 1,
                side: Side::Both,
            })
        };
        let forecast = KindParams::Forecast(ForecastParams {
            method: Method::Linear,
            lookback: 3600,
            threshold: 1.0,
            horizon: 60,
            crossing: Crossing::Up,
        });
        // (rules, span)
        let cases = [
            (rules(RuleKind::Threshold, KindParams::Plain, 0), None),
            // the window just before, as always
            (
                rules(RuleKind::Mutation, change(600), 0),
                Some((9_400, 10_000)),
            ),
            (
                rules(RuleKind::Mutation, change(86_400), 0),
                Some((10_000 - 86_400, 10_600 - 86_400)),
            ),
            (
                rules(RuleKind::Range, KindParams::Plain, 1800),
                Some((8_200, 10_000)),
            ),
            (
                rules(RuleKind::Range, band(None), 1800),
                Some((8_200, 10_000)),
            ),
            // three seasons of 1000 s in a baseline of 3500 s: from the third back to the first
            (
                rules(RuleKind::Range, band(Some(1000)), 3500),
                Some((7_000, 9_600)),
            ),
            (
                rules(RuleKind::Forecast, forecast, 0),
                Some((7_000, 10_600)),
            ),
        ];
        for (i, (r, want)) in cases.iter().enumerate() {
            let got = History::of(r, start, end).map(|h| (h.from, h.to));
            assert_eq!(got, *want, "case {i}");
        }
    }

    #[test]
    fn reduce_learns_per_kind() {
        let r = rules(RuleKind::Range, KindParams::Plain, 600);
        let h = History::of(&r, 600, 1200).unwrap();
        let b = h.reduce(&[(0, 1.0), (1, 3.0)], 1.0, Agg::Avg);
        assert_eq!(b.band, Some((2.0, 1.0)));
        let r = rules(
            RuleKind::Mutation,
            KindParams::Change(ChangeParams {
                compare: 600,
                diff: Diff::Value,
                direction: Direction::Signed,
                when: None,
                plain: true,
            }),
            0,
        );
        let h = History::of(&r, 600, 1200).unwrap();
        assert_eq!(
            h.reduce(&[(0, 1.0), (1, 3.0)], 1.0, Agg::Max).previous,
            Some(3.0)
        );
        assert_eq!(h.reduce(&[], 1.0, Agg::Max).previous, None);
    }
}
