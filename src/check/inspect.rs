//! What the console draws for one object of a monitor: its points over a time range, read the
//! way the monitor's checks read them (the embedded store with the monitor's `where` and `by`,
//! or the data source's range query of the monitor's PromQL), and the thresholds of its level
//! rules where a rule is a plain comparison (`Result > 90`).

use super::{Runner, NS};
use crate::detect::Level;
use crate::model::Tags;
use crate::monitor::{Eval, Monitor, MonitorKind};
use crate::script::{NativeExpr, Op};
use crate::store::query::{Filter, WindowQuery};
use serde::Serialize;

/// The most points one answer carries: a chart is a few hundred pixels wide, and a week of
/// 10-second points would otherwise be 60,000 of them.
pub const MAX_POINTS: usize = 2000;

/// The longest range one answer covers.
pub const MAX_RANGE_SECS: i64 = 31 * 86_400;

/// Why the points of an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// bots have no query to draw
    #[error("monitor {0:?} is a bot: it has no query whose points could be drawn")]
    NoQuery(String),
    /// `from` is not before `to`, or the range is too long
    #[error("bad range [{from}, {to}): {why}")]
    Range {
        /// start, Unix s
        from: i64,
        /// end, Unix s
        to: i64,
        /// what would be right
        why: String,
    },
    /// the embedded store failed
    #[error("store: {0}")]
    Store(String),
    /// the data source failed
    #[error(transparent)]
    Datasource(#[from] crate::datasource::DatasourceError),
}

/// An object's points over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectPoints {
    /// `store` or `datasource`
    pub source: &'static str,
    /// `(Unix s, value)` in time order; at most [`MAX_POINTS`]
    pub points: Vec<(i64, f64)>,
    /// whether points were thinned to [`MAX_POINTS`] (each bucket keeps its min and max)
    pub thinned: bool,
}

/// A level rule that is a plain comparison of `Result` with a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// the level it gives: `critical`, `error`, `warning`, `info`
    pub status: &'static str,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`
    pub op: &'static str,
    /// the number compared with
    pub value: f64,
}

/// The thresholds of the monitor's level rules that are plain comparisons; rules of other
/// shapes (scripts, `&&`, tags) have none to draw.
pub fn thresholds(m: &Monitor) -> Vec<Threshold> {
    let Some(Eval::Levels(levels)) = m.rules().map(|r| &r.eval) else {
        return Vec::new();
    };
    levels
        .iter()
        .filter_map(|(level, rule)| match NativeExpr::compile(&rule.source)? {
            NativeExpr::Cmp(op, value) => Some(Threshold {
                status: level_name(*level),
                op: op_name(op),
                value,
            }),
            _ => None,
        })
        .collect()
}

fn level_name(l: Level) -> &'static str {
    l.status().as_str()
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Eq => "==",
        Op::Ne => "!=",
    }
}

/// The points of the object with dimension tags `tags` in `[from, to)` (Unix s).
pub fn object_points(
    runner: &Runner,
    m: &Monitor,
    tags: &Tags,
    from: i64,
    to: i64,
) -> Result<ObjectPoints, InspectError> {
    if from >= to || to - from > MAX_RANGE_SECS {
        return Err(InspectError::Range {
            from,
            to,
            why: format!("from must be before to, at most {MAX_RANGE_SECS} s apart"),
        });
    }
    let (source, points) = match &m.kind {
        MonitorKind::Bot { .. } | MonitorKind::Composite(_) | MonitorKind::Slo(_) => {
            return Err(InspectError::NoQuery(m.id.clone()))
        }
        MonitorKind::Query { query, .. } => {
            let mut filters = query.filters.clone();
            for (k, v) in tags {
                filters.push(Filter::parse(k, v).map_err(InspectError::Store)?);
            }
            let q = WindowQuery {
                measurement: query.measurement.clone(),
                field: query.field.clone(),
                by: query.by.clone(),
                filters,
                start_ns: from * NS,
                end_ns: to * NS,
            };
            let groups = runner
                .store
                .window(&q)
                .map_err(|e| InspectError::Store(e.to_string()))?;
            // The filters let through series that also carry other tags; the object is the
            // group whose `by` tags are exactly its tags.
            let points = groups
                .into_iter()
                .find(|g| &g.tags == tags)
                .map(|g| {
                    g.points
                        .iter()
                        .map(|(t, v)| (t.div_euclid(NS), *v))
                        .collect()
                })
                .unwrap_or_default();
            ("store", points)
        }
        MonitorKind::Promql { query, .. } => {
            // One evaluation per chart pixel column at most, and never finer than 1 s.
            let step = ((to - from) / (MAX_POINTS as i64 / 2)).max(1);
            let series =
                runner
                    .datasources
                    .range(&query.datasource, &query.promql, from, to, step)?;
            let points = series
                .into_iter()
                .find(|s| &s.tags == tags)
                .map(|s| s.points)
                .unwrap_or_default();
            ("datasource", points)
        }
    };
    let (points, thinned) = thin(points, MAX_POINTS);
    Ok(ObjectPoints {
        source,
        points,
        thinned,
    })
}

/// At most `max` points: the points are cut into `max / 2` buckets of equal count, and each
/// keeps its lowest and highest point in time order, so spikes stay visible.
fn thin(points: Vec<(i64, f64)>, max: usize) -> (Vec<(i64, f64)>, bool) {
    if points.len() <= max {
        return (points, false);
    }
    let buckets = max / 2;
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(per) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        if lo.0 <= hi.0 {
            out.push(*lo);
            if hi != lo {
                out.push(*hi);
            }
        } else {
            out.push(*hi);
            out.push(*lo);
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_keeps_short_series_and_the_extremes_of_long_ones() {
        let short: Vec<(i64, f64)> = (0..10).map(|i| (i, i as f64)).collect();
        assert_eq!(thin(short.clone(), 2000), (short, false));
        let mut long: Vec<(i64, f64)> = (0..10_000).map(|i| (i, 1.0)).collect();
        long[5_000].1 = 99.0;
        long[7_000].1 = -5.0;
        let (out, thinned) = thin(long, 100);
        assert!(thinned);
        assert!(out.len() <= 100, "{} points", out.len());
        assert!(out.contains(&(5_000, 99.0)), "the spike stays");
        assert!(out.contains(&(7_000, -5.0)), "the dip stays");
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "time order");
    }
}
