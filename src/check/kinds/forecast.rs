//! `forecast`: fit a trend to the look-back's points and say how many hours remain until it
//! crosses the threshold. Pure: the caller reads the points.
//!
//! `Result` is the hours until the crossing: 0 when the latest point or the fitted level at
//! the window end is already across, and the horizon when no crossing is forecast within it
//! (a flat or receding trend), so `Result` is always a finite number of hours in
//! `[0, horizon]` and a rule such as `Result < 4` reads "crosses within four hours".

use super::{num, Decision};
use crate::monitor::{Crossing, ForecastParams, Method};
use serde_json::json;

/// The fitted trend of one object's look-back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    /// the fitted value at the window end
    pub(crate) level: f64,
    /// change per second
    pub(crate) slope: f64,
    /// the latest point's value
    pub(crate) last: f64,
    /// points fitted
    pub(crate) points: usize,
}

/// Points a method needs before it fits anything: a line needs two, Holt's smoothing a
/// third so that its trend is more than the first difference.
fn min_points(m: Method) -> usize {
    match m {
        Method::Linear => 2,
        Method::Holt { .. } => 3,
    }
}

/// Fits `method` to `points` (`(t, value)` in time order, `t` in units of `unit` seconds:
/// 1e-9 for the store's nanoseconds, 1 for a data source's seconds), extrapolated to `end`
/// (Unix s). `None` when there are too few finite points or they span no time.
pub(crate) fn fit(method: Method, points: &[(i64, f64)], unit: f64, end: i64) -> Option<Trend> {
    let pts: Vec<(f64, f64)> = {
        let t0 = points.last()?.0;
        // Times relative to the latest point, so that nanosecond epochs keep their precision.
        points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|p| ((p.0 - t0) as f64 * unit, p.1))
            .collect()
    };
    let (first, last) = (*pts.first()?, *pts.last()?);
    if pts.len() < min_points(method) || last.0 <= first.0 {
        return None;
    }
    // The window end, relative to the latest point like the other times.
    let ahead = end as f64 - points.last()?.0 as f64 * unit;
    let (level, slope) = match method {
        Method::Linear => {
            let n = pts.len() as f64;
            let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
            let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
            let sxx: f64 = pts.iter().map(|p| (p.0 - mt) * (p.0 - mt)).sum();
            let sxy: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
            let slope = sxy / sxx;
            (mv + slope * (ahead - mt), slope)
        }
        Method::Holt { alpha, beta } => {
            let mut level = first.1;
            let mut trend = (pts[1].1 - pts[0].1) / (pts[1].0 - pts[0].0).max(f64::MIN_POSITIVE);
            let mut at = first.0;
            for &(t, v) in &pts[1..] {
                let dt = t - at;
                if dt <= 0.0 {
                    // Same time twice: the later value replaces the level, the trend stays.
                    level = alpha * v + (1.0 - alpha) * level;
                    continue;
                }
                let prev = level;
                level = alpha * v + (1.0 - alpha) * (level + trend * dt);
                trend = beta * (level - prev) / dt + (1.0 - beta) * trend;
                at = t;
            }
            (level + trend * (ahead - at), trend)
        }
    };
    (level.is_finite() && slope.is_finite()).then_some(Trend {
        level,
        slope,
        last: last.1,
        points: pts.len(),
    })
}

/// Hours until `trend` crosses the threshold, capped at the horizon.
pub(crate) fn hours(p: &ForecastParams, trend: &Trend) -> f64 {
    let horizon = p.horizon as f64 / 3600.0;
    // Measure everything as "rising towards the threshold".
    let (gap_level, gap_last, rate) = match p.crossing {
        Crossing::Up => (
            p.threshold - trend.level,
            p.threshold - trend.last,
            trend.slope,
        ),
        Crossing::Down => (
            trend.level - p.threshold,
            trend.last - p.threshold,
            -trend.slope,
        ),
    };
    if gap_last <= 0.0 || gap_level <= 0.0 {
        return 0.0;
    }
    if rate <= 0.0 {
        return horizon;
    }
    (gap_level / rate / 3600.0).min(horizon)
}

/// The decision for a look-back fitted as `trend` (`None`: too few points).
pub(crate) fn decide(p: &ForecastParams, cur: f64, trend: Option<&Trend>) -> Decision {
    let Some(trend) = trend else {
        return Decision {
            result: None,
            held_back: false,
            detail: None,
        };
    };
    let h = hours(p, trend);
    let detail = json!({
        "kind": "forecast",
        "method": match p.method { Method::Linear => "linear", Method::Holt { .. } => "holt" },
        "current": num(cur),
        "last": num(trend.last),
        "level": num(trend.level),
        "slope_per_hour": num(trend.slope * 3600.0),
        "threshold": num(p.threshold),
        "direction": match p.crossing { Crossing::Up => "up", Crossing::Down => "down" },
        "lookback_seconds": p.lookback,
        "horizon_hours": num(p.horizon as f64 / 3600.0),
        "points": trend.points,
        "hours_to_threshold": num(h),
    });
    Decision {
        result: Some(h),
        held_back: false,
        detail: Some(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(method: Method, crossing: Crossing) -> ForecastParams {
        ForecastParams {
            method,
            lookback: 6 * 3600,
            threshold: 95.0,
            horizon: 24 * 3600,
            crossing,
        }
    }

    /// `n` points one minute apart ending at t=3600 s, value `f(i)`, in seconds.
    fn series(n: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
        (0..n).map(|i| (3600 - (n - 1 - i) * 60, f(i))).collect()
    }

    const HOLT: Method = Method::Holt {
        alpha: 0.5,
        beta: 0.3,
    };

    #[test]
    fn hours_until_the_crossing_for_crafted_series() {
        use Crossing::*;
        // (method, crossing, points, Result)
        type Case = (Method, Crossing, Vec<(i64, f64)>, Option<f64>);
        let cases: Vec<Case> = vec![
            // +0.5 a minute from 50: 50 + 0.5·59 = 79.5 at the last point, 16 short of 95
            // at 30 per hour: 0.5 h (the window end is the last point's time)
            (
                Method::Linear,
                Up,
                series(60, |i| 50.0 + 0.5 * i as f64),
                Some(31.0 / 60.0),
            ),
            (
                HOLT,
                Up,
                series(60, |i| 50.0 + 0.5 * i as f64),
                Some(31.0 / 60.0),
            ),
            // flat: never, so the horizon
            (Method::Linear, Up, series(30, |_| 60.0), Some(24.0)),
            (HOLT, Up, series(30, |_| 60.0), Some(24.0)),
            // falling away from the threshold: the horizon
            (
                Method::Linear,
                Up,
                series(30, |i| 60.0 - i as f64),
                Some(24.0),
            ),
            // already across
            (Method::Linear, Up, series(30, |_| 99.0), Some(0.0)),
            // a slow rise that crosses after the horizon is capped
            (
                Method::Linear,
                Up,
                series(60, |i| 10.0 + 0.001 * i as f64),
                Some(24.0),
            ),
            // free space draining to 5: 20 → 5.25 over 60 min at −0.25/min, 0.25 left
            (
                Method::Linear,
                Down,
                series(60, |i| 20.0 - 0.25 * i as f64),
                Some(1.0 / 60.0),
            ),
            // single point and empty: nothing fitted
            (Method::Linear, Up, series(1, |_| 50.0), None),
            (Method::Linear, Up, vec![], None),
            // two points are a line, but too short for Holt
            (
                Method::Linear,
                Up,
                series(2, |i| 90.0 + i as f64),
                Some(4.0 / 60.0),
            ),
            (HOLT, Up, series(2, |i| 90.0 + i as f64), None),
        ];
        for (i, (method, crossing, pts, want)) in cases.iter().enumerate() {
            let mut p = params(*method, *crossing);
            if *crossing == Down {
                p.threshold = 5.0;
            }
            let got = fit(*method, pts, 1.0, 3600).map(|t| hours(&p, &t));
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "case {i}: {g} vs {w}"),
                _ => assert_eq!(got, *want, "case {i}"),
            }
        }
    }

    #[test]
    fn nanosecond_times_and_a_later_window_end() {
        // The store's nanoseconds; the window ends 30 minutes after the latest point, so
        // the line is extrapolated by 15 more units: 79.5 + 15 = 94.5, half a unit short.
        let ns: Vec<(i64, f64)> = series(60, |i| 50.0 + 0.5 * i as f64)
            .into_iter()
            .map(|(t, v)| ((1_700_000_000 + t) * 1_000_000_000, v))
            .collect();
        let t = fit(Method::Linear, &ns, 1e-9, 1_700_000_000 + 3600 + 1800).unwrap();
        assert!((t.level - 94.5).abs() < 1e-6, "{t:?}");
        assert!((t.slope * 3600.0 - 30.0).abs() < 1e-6, "{t:?}");
        let h = hours(&params(Method::Linear, Crossing::Up), &t);
        assert!((h - 1.0 / 60.0).abs() < 1e-6, "{h}");
    }

    #[test]
    fn holt_follows_a_recent_bend_that_the_line_averages_away() {
        // Flat at 50 for 50 minutes, then +2 a minute for 10: the line's slope is shallow,
        // Holt's trend is near the recent +2.
        let pts = series(60, |i| {
            if i < 50 {
                50.0
            } else {
                50.0 + 2.0 * (i - 49) as f64
            }
        });
        let line = fit(Method::Linear, &pts, 1.0, 3600).unwrap();
        let holt = fit(HOLT, &pts, 1.0, 3600).unwrap();
        assert!(holt.slope > line.slope * 2.0, "{holt:?} vs {line:?}");
        let p = params(HOLT, Crossing::Up);
        assert!(hours(&p, &holt) < hours(&params(Method::Linear, Crossing::Up), &line));
    }

    #[test]
    fn the_decision_explains_the_forecast() {
        let p = params(Method::Linear, Crossing::Up);
        let pts = series(60, |i| 50.0 + 0.5 * i as f64);
        let t = fit(Method::Linear, &pts, 1.0, 3600).unwrap();
        let d = decide(&p, 79.5, Some(&t));
        let det = d.detail.unwrap();
        assert_eq!(det["threshold"], 95.0);
        assert_eq!(det["points"], 60);
        assert!((det["slope_per_hour"].as_f64().unwrap() - 30.0).abs() < 1e-9);
        assert_eq!(det["hours_to_threshold"].as_f64(), d.result);
        assert_eq!(decide(&p, 1.0, None).result, None);
    }
}
