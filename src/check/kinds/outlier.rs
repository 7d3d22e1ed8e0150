//! Outliers by DBSCAN over the window's series (`kind = "outlier"`, `algorithm = "dbscan"`):
//! the objects whose shape over the window is far from the rest of the fleet.
//!
//! Each object's points are put on a common time grid (buckets of the window, one value per
//! bucket: the mean of its points there). The distance of two objects is the root mean square
//! of their differences over the buckets both have (the difference of their means when they
//! share none). The *median series* takes, bucket by bucket, the median of every object; each
//! object's distance to it says how unusual it is, and `eps = tolerance × median of those
//! distances` is the neighbourhood radius: scale-free, so a tolerance means the same for bytes
//! and percentages. DBSCAN (neighbours within `eps`, at least one besides itself to be a core
//! point) then groups the objects; the largest cluster, if it holds more than half of them, is
//! the fleet, and every object outside it is an outlier. Without such a majority (or with fewer
//! than three objects) nothing is an outlier: there is no "normal" to differ from. A fleet that
//! moves together stays one cluster, however far it moves.
//!
//! `Result` of an outlier is its distance to the median series over the median distance (how
//! many typical distances away it is; its raw distance when the others are all identical); of
//! every other object, 0.

use crate::check::query::Seen;
use crate::monitor::{OutlierAlgo, RuleKind, Rules};
use serde_json::{json, Map};

/// Whether the check must keep every object's window points for the outlier test.
pub(crate) fn needs_points(rules: &Rules) -> bool {
    rules.kind == RuleKind::Outlier && matches!(rules.outlier, OutlierAlgo::Dbscan { .. })
}

/// The dbscan verdicts of a check's objects (by group), or none for other kinds.
pub(crate) fn verdicts(rules: &Rules, seen: &[Seen], start: i64, end: i64) -> Vec<Option<Verdict>> {
    let OutlierAlgo::Dbscan { tolerance } = rules.outlier else {
        return Vec::new();
    };
    if rules.kind != RuleKind::Outlier {
        return Vec::new();
    }
    let series: Vec<&[(i64, f64)]> = seen
        .iter()
        .map(|s| {
            if s.in_window {
                s.points.as_slice()
            } else {
                &[]
            }
        })
        .collect();
    dbscan(&series, start, end, tolerance)
}

/// Fewer objects than this have no outliers (as with `mad`).
const MIN_OBJECTS: usize = 3;

/// The grid is at most this fine, so a check of many points stays cheap.
const MAX_BUCKETS: usize = 240;

/// One object's verdict.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// outside the fleet's cluster
    pub(crate) outlier: bool,
    /// `Result`: see the module docs
    pub(crate) score: f64,
    /// distance to the median series
    pub(crate) distance: f64,
    /// the neighbourhood radius of this check
    pub(crate) eps: f64,
    /// objects in the fleet's cluster (0 when there is no majority cluster)
    pub(crate) fleet: usize,
    /// objects compared
    pub(crate) objects: usize,
}

impl Verdict {
    /// What `df_event_detail` says of the decision.
    pub(crate) fn detail(&self, tolerance: f64) -> Map<String, serde_json::Value> {
        let mut m = Map::new();
        m.insert(
            "outlier".into(),
            json!({
                "algorithm": "dbscan", "tolerance": tolerance, "eps": self.eps,
                "distance": self.distance, "is_outlier": self.outlier,
                "fleet_size": self.fleet, "objects": self.objects,
            }),
        );
        m
    }
}

/// The median of `v` (not empty); sorts it.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The object's mean value per bucket of `[start, end)` (times in any unit, as the points).
fn grid(points: &[(i64, f64)], start: i64, end: i64, buckets: usize) -> Vec<Option<f64>> {
    let mut sum = vec![0.0; buckets];
    let mut count = vec![0usize; buckets];
    let span = (end - start).max(1) as i128;
    for (t, v) in points {
        let k = (((*t - start) as i128 * buckets as i128) / span).clamp(0, buckets as i128 - 1);
        sum[k as usize] += v;
        count[k as usize] += 1;
    }
    sum.iter()
        .zip(&count)
        .map(|(s, c)| (*c > 0).then(|| s / *c as f64))
        .collect()
}

/// RMS difference over the shared buckets, or the difference of the means without any.
fn distance(a: &[Option<f64>], b: &[Option<f64>]) -> f64 {
    let (mut sq, mut n) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        if let (Some(x), Some(y)) = (x, y) {
            sq += (x - y) * (x - y);
            n += 1;
        }
    }
    if n > 0 {
        return (sq / n as f64).sqrt();
    }
    let mean = |s: &[Option<f64>]| {
        let v: Vec<f64> = s.iter().flatten().copied().collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    (mean(a) - mean(b)).abs()
}

/// The verdict of every object of one check, from their points in `[start, end)`; `None`
/// for an object without points. `tolerance` must be above 0.
pub(crate) fn dbscan(
    series: &[&[(i64, f64)]],
    start: i64,
    end: i64,
    tolerance: f64,
) -> Vec<Option<Verdict>> {
    let present: Vec<usize> = (0..series.len())
        .filter(|i| !series[*i].is_empty())
        .collect();
    let mut out = vec![None; series.len()];
    let n = present.len();
    // About one bucket per point of a typical object.
    let mut counts: Vec<f64> = present.iter().map(|i| series[*i].len() as f64).collect();
    let buckets = if counts.is_empty() {
        1
    } else {
        (median(&mut counts).round() as usize).clamp(1, MAX_BUCKETS)
    };
    let grids: Vec<Vec<Option<f64>>> = present
        .iter()
        .map(|i| grid(series[*i], start, end, buckets))
        .collect();
    let median_series: Vec<Option<f64>> = (0..buckets)
        .map(|k| {
            let mut v: Vec<f64> = grids.iter().filter_map(|g| g[k]).collect();
            (!v.is_empty()).then(|| median(&mut v))
        })
        .collect();
    let to_median: Vec<f64> = grids.iter().map(|g| distance(g, &median_series)).collect();
    let typical = if n == 0 {
        0.0
    } else {
        median(&mut to_median.clone())
    };
    let eps = tolerance * typical;
    // DBSCAN: a core point has another object within eps; clusters grow from core points.
    // Each pair once (the distance is symmetric): the cost grows with the square of the
    // objects, times the buckets.
    let mut near: Vec<Vec<usize>> = (0..n).map(|a| vec![a]).collect();
    for a in 0..n {
        for b in a + 1..n {
            if distance(&grids[a], &grids[b]) <= eps {
                near[a].push(b);
                near[b].push(a);
            }
        }
    }
    let mut cluster: Vec<Option<usize>> = vec![None; n];
    let mut sizes: Vec<usize> = Vec::new();
    for seed in 0..n {
        if cluster[seed].is_some() || near[seed].len() < 2 {
            continue;
        }
        let id = sizes.len();
        sizes.push(0);
        let mut stack = vec![seed];
        while let Some(p) = stack.pop() {
            if cluster[p].is_some() {
                continue;
            }
            cluster[p] = Some(id);
            sizes[id] += 1;
            // Only core points extend the cluster; border points join it and stop there.
            if near[p].len() >= 2 {
                stack.extend(near[p].iter().filter(|q| cluster[**q].is_none()));
            }
        }
    }
    let fleet = sizes
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| **s)
        .filter(|(_, s)| n >= MIN_OBJECTS && **s * 2 > n)
        .map(|(id, s)| (id, *s));
    for (k, i) in present.iter().enumerate() {
        let outlier = fleet.is_some_and(|(id, _)| cluster[k] != Some(id));
        let d = to_median[k];
        let score = match (outlier, typical > 0.0) {
            (false, _) => 0.0,
            (true, true) => d / typical,
            (true, false) => d,
        };
        out[*i] = Some(Verdict {
            outlier,
            score,
            distance: d,
            eps,
            fleet: fleet.map_or(0, |f| f.1),
            objects: n,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series of one point a minute over `[0, 600)` from values.
    fn s(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 60 + 30, *v))
            .collect()
    }

    fn outliers(series: &[Vec<(i64, f64)>], tolerance: f64) -> Vec<Option<bool>> {
        let refs: Vec<&[(i64, f64)]> = series.iter().map(|v| v.as_slice()).collect();
        dbscan(&refs, 0, 600, tolerance)
            .into_iter()
            .map(|v| v.map(|v| v.outlier))
            .collect()
    }

    #[test]
    fn table() {
        let up: Vec<f64> = (0..10).map(|i| 10.0 + 5.0 * i as f64).collect();
        let up2: Vec<f64> = up.iter().map(|v| v + 1.0).collect();
        let up3: Vec<f64> = up.iter().map(|v| v - 1.0).collect();
        let flat = vec![10.0; 10];
        type Case = (&'static str, Vec<Vec<(i64, f64)>>, f64, Vec<Option<bool>>);
        let cases: Vec<Case> = vec![
            ("no objects", vec![], 3.0, vec![]),
            (
                "empty series are not judged",
                vec![vec![], s(&flat), s(&flat)],
                3.0,
                vec![None, Some(false), Some(false)],
            ),
            (
                "two objects: never",
                vec![s(&flat), s(&[90.0; 10])],
                3.0,
                vec![Some(false); 2],
            ),
            ("flat fleet", vec![s(&flat); 4], 3.0, vec![Some(false); 4]),
            (
                "one of identical others differs",
                vec![s(&flat), s(&flat), s(&flat), s(&[10.5; 10])],
                3.0,
                vec![Some(false), Some(false), Some(false), Some(true)],
            ),
            (
                "the fleet moving together does not fault",
                vec![s(&up), s(&up2), s(&up3), s(&up)],
                3.0,
                vec![Some(false); 4],
            ),
            (
                "one host stays flat while the fleet climbs",
                vec![s(&up), s(&up2), s(&up3), s(&flat), s(&up)],
                3.0,
                vec![
                    Some(false),
                    Some(false),
                    Some(false),
                    Some(true),
                    Some(false),
                ],
            ),
            (
                "single points",
                vec![
                    vec![(30, 1.0)],
                    vec![(30, 1.2)],
                    vec![(30, 0.9)],
                    vec![(30, 9.0)],
                ],
                3.0,
                vec![Some(false), Some(false), Some(false), Some(true)],
            ),
            (
                "two equal halves, close enough at this tolerance",
                vec![s(&flat), s(&flat), s(&[90.0; 10]), s(&[90.0; 10])],
                3.0,
                vec![Some(false); 4],
            ),
            (
                "no majority: two equal halves apart",
                vec![s(&flat), s(&flat), s(&[90.0; 10]), s(&[90.0; 10])],
                1.0,
                vec![Some(false); 4],
            ),
            (
                "a wide tolerance takes the climber in",
                vec![s(&up), s(&up2), s(&up3), s(&[40.0; 10]), s(&up)],
                50.0,
                vec![Some(false); 5],
            ),
        ];
        for (name, series, tolerance, want) in cases {
            assert_eq!(outliers(&series, tolerance), want, "{name}");
        }
    }

    #[test]
    fn scores_are_distances_in_typical_units() {
        let flat = vec![10.0; 10];
        let up: Vec<f64> = (0..10).map(|i| 10.0 + i as f64).collect();
        let series = [
            s(&flat),
            s(&up),
            s(&[11.0; 10]),
            s(&[9.0; 10]),
            s(&[50.0; 10]),
        ];
        let refs: Vec<&[(i64, f64)]> = series.iter().map(|v| v.as_slice()).collect();
        let v = dbscan(&refs, 0, 600, 3.0);
        let odd = v[4].as_ref().unwrap();
        assert!(odd.outlier);
        // the median series is 10, 11, 11, ...: the typical distance 1.92, the odd one's 39
        assert!((odd.score - 20.2).abs() < 0.2, "{odd:?}");
        assert_eq!(odd.fleet, 4);
        assert_eq!(v[0].as_ref().unwrap().score, 0.0, "inside the fleet: 0");
        // Identical others: the raw distance.
        let series = [s(&flat), s(&flat), s(&flat), s(&[12.0; 10])];
        let refs: Vec<&[(i64, f64)]> = series.iter().map(|v| v.as_slice()).collect();
        let v = dbscan(&refs, 0, 600, 3.0);
        assert_eq!(v[3].as_ref().unwrap().score, 2.0);
        assert_eq!(v[3].as_ref().unwrap().eps, 0.0);
    }

    #[test]
    fn grid_and_distance() {
        assert_eq!(
            grid(&[(0, 1.0), (10, 3.0), (590, 5.0)], 0, 600, 3),
            vec![Some(2.0), None, Some(5.0)]
        );
        assert_eq!(distance(&[Some(1.0), None], &[Some(4.0), Some(2.0)]), 3.0);
        assert_eq!(distance(&[Some(1.0), None], &[None, Some(2.0)]), 1.0);
    }
}
