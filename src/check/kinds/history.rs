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
use crate::monitor::{KindParams, Monitor, PromqlSpec, RuleKind, Rules};
use crate::store::query::{aggregate, Agg};
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
    Band(&'a crate::monitor::BandParams),
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

    /// Reduces one object's points in the span (`(t, v)`, `t` in units of `unit` seconds)
    /// to its baseline; `agg` aggregates a compared or seasonal window.
    pub(crate) fn reduce(&self, pts: &[(i64, f64)], unit: f64, agg: Agg) -> Baseline {
        let mut b = Baseline::default();
        match self.learn {
            Learn::Previous => b.previous = aggregate(agg, pts),
            Learn::Moments => {
                b.band = aggregate(Agg::Avg, pts).zip(aggregate(Agg::Stddev, pts));
            }
            Learn::Trend(p) => b.trend = forecast::fit(p.method, pts, unit, self.window.1),
            Learn::Band(p) => {
                let samples: Vec<f64> = match p.season {
                    None => pts.iter().map(|p| p.1).collect(),
                    Some(season) => self.seasons(season, pts, unit, agg),
                };
                b.learned = band::learn(p, &samples);
            }
        }
        b
    }

    /// One aggregate per earlier season: the window `[start, end)` moved back by one, two...
    /// seasons, each cut from `pts` (a season without points gives no sample).
    fn seasons(&self, season: i64, pts: &[(i64, f64)], unit: f64, agg: Agg) -> Vec<f64> {
        let per_s = (1.0 / unit).round() as i64;
        let (start, end) = self.window;
        let mut out = Vec::new();
        let mut back = season;
        while start - back >= self.from {
            let (a, b) = ((start - back) * per_s, (end - back) * per_s);
            let lo = pts.partition_point(|p| p.0 < a);
            let hi = pts.partition_point(|p| p.0 < b);
            if let Some(v) = aggregate(agg, &pts[lo..hi]) {
                out.push(v);
            }
            back += season;
        }
        out
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
pub(crate) const STORE_UNIT: f64 = 1.0 / NS as f64;
