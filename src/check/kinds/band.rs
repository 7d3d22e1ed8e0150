//! `range` with a learned band: the band is learned from history samples (the baseline's
//! points, or with a season the same window one, two... seasons ago, one sample each), and
//! `Result` says how far outside the band the window's value is. Pure: the caller reads the
//! samples.
//!
//! `Result` is 0 inside the band and otherwise the distance beyond the nearer edge in units
//! of the band's spread (the standard deviation for `band = "stddev"`, half the band's width
//! for `band = "percentile"`), so `Result > 0` means "outside" and `Result > 2` "outside by
//! two more spreads": levels by how far outside. With fewer samples than `min_history`, or
//! samples without any spread (a band of width 0 cannot say how far outside anything is),
//! there is no `Result` and the object's window counts as empty.

use super::{num, Decision};
use crate::monitor::{BandParams, Side, Spread};
use serde_json::json;

/// A band learned from history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Band {
    /// mean or median
    pub(crate) centre: f64,
    /// lower edge
    pub(crate) lower: f64,
    /// upper edge
    pub(crate) upper: f64,
    /// the unit distances outside are measured in
    pub(crate) spread: f64,
    /// samples learned from
    pub(crate) samples: usize,
}

/// The `q`-th percentile (0-100) of sorted `v`, interpolated between closest ranks.
fn percentile(v: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Learns the band from `samples` (non-finite ones are skipped).
pub(crate) fn learn(p: &BandParams, samples: &[f64]) -> Option<Band> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() || v.len() < p.min_history {
        return None;
    }
    let n = v.len() as f64;
    let band = match p.spread {
        Spread::Stddev { k } => {
            let mean = v.iter().sum::<f64>() / n;
            let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
            Band {
                centre: mean,
                lower: mean - k * sd,
                upper: mean + k * sd,
                spread: sd,
                samples: v.len(),
            }
        }
        Spread::Percentile { low, high } => {
            v.sort_by(f64::total_cmp);
            let (lower, upper) = (percentile(&v, low), percentile(&v, high));
            Band {
                centre: percentile(&v, 50.0),
                lower,
                upper,
                spread: (upper - lower) / 2.0,
                samples: v.len(),
            }
        }
    };
    (band.spread > 0.0 && band.spread.is_finite()).then_some(band)
}

/// The decision for window value `cur` against `band` (`None`: not enough history).
pub(crate) fn decide(p: &BandParams, cur: f64, band: Option<&Band>) -> Decision {
    let Some(b) = band else {
        return Decision {
            result: None,
            held_back: false,
            detail: None,
        };
    };
    let above = (cur - b.upper).max(0.0) / b.spread;
    let below = (b.lower - cur).max(0.0) / b.spread;
    let (result, outside) = match p.side {
        Side::Both if above > 0.0 => (above, "above"),
        Side::Both | Side::Below if below > 0.0 => (below, "below"),
        Side::Above if above > 0.0 => (above, "above"),
        _ => (0.0, "inside"),
    };
    let detail = json!({
        "kind": "range",
        "band": match p.spread { Spread::Stddev { .. } => "stddev", Spread::Percentile { .. } => "percentile" },
        "current": num(cur),
        "centre": num(b.centre),
        "lower": num(b.lower),
        "upper": num(b.upper),
        "spread": num(b.spread),
        "samples": b.samples,
        "season_seconds": p.season,
        "side": match p.side { Side::Both => "both", Side::Above => "above", Side::Below => "below" },
        "outside": outside,
        "score": num(result),
    });
    Decision {
        result: Some(result),
        held_back: false,
        detail: Some(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(spread: Spread, side: Side, min_history: usize) -> BandParams {
        BandParams {
            spread,
            season: Some(86_400),
            min_history,
            side,
        }
    }

    const SD: Spread = Spread::Stddev { k: 2.0 };
    const PCT: Spread = Spread::Percentile {
        low: 25.0,
        high: 75.0,
    };

    #[test]
    fn result_is_the_distance_outside_in_spreads() {
        // history 8, 10, 12 (x2): mean 10, population sd sqrt(8/3)
        let hist = [8.0, 10.0, 12.0, 8.0, 10.0, 12.0];
        let sd = (8.0f64 / 3.0).sqrt();
        // quartiles of 8,8,10,10,12,12: 8.5 and 11.5, half-width 1.5
        // (spread, side, current, Result)
        let cases: &[(Spread, Side, f64, Option<f64>)] = &[
            (SD, Side::Both, 10.0, Some(0.0)),
            (SD, Side::Both, 10.0 + 2.0 * sd, Some(0.0)),
            (SD, Side::Both, 10.0 + 5.0 * sd, Some(3.0)),
            (SD, Side::Both, 10.0 - 3.0 * sd, Some(1.0)),
            (SD, Side::Above, 10.0 - 3.0 * sd, Some(0.0)),
            (SD, Side::Below, 10.0 + 5.0 * sd, Some(0.0)),
            (SD, Side::Below, 10.0 - 3.0 * sd, Some(1.0)),
            (PCT, Side::Both, 11.0, Some(0.0)),
            (PCT, Side::Both, 14.5, Some(2.0)),
            (PCT, Side::Both, 7.0, Some(1.0)),
        ];
        for (i, (spread, side, cur, want)) in cases.iter().enumerate() {
            let p = params(*spread, *side, 3);
            let b = learn(&p, &hist);
            let got = decide(&p, *cur, b.as_ref()).result;
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "case {i}: {g} vs {w}"),
                _ => assert_eq!(got, *want, "case {i}"),
            }
        }
    }

    #[test]
    fn too_short_flat_empty_and_single_histories_learn_nothing() {
        let p = params(SD, Side::Both, 3);
        assert_eq!(learn(&p, &[]), None, "empty");
        assert_eq!(
            learn(&params(SD, Side::Both, 1), &[5.0]),
            None,
            "single: no spread"
        );
        assert_eq!(learn(&p, &[5.0, 6.0]), None, "two of three");
        assert_eq!(learn(&p, &[5.0, 5.0, 5.0, 5.0]), None, "flat");
        assert_eq!(
            learn(&p, &[5.0, f64::NAN, 6.0]),
            None,
            "NaN is not a sample"
        );
        assert!(learn(&p, &[5.0, 6.0, 7.0]).is_some());
        assert_eq!(decide(&p, 1.0, None).result, None);
    }

    #[test]
    fn the_decision_explains_the_band() {
        let p = params(PCT, Side::Both, 3);
        let b = learn(&p, &[8.0, 10.0, 12.0, 8.0, 10.0, 12.0]).unwrap();
        let d = decide(&p, 14.5, Some(&b)).detail.unwrap();
        assert_eq!(d["lower"], 8.5);
        assert_eq!(d["upper"], 11.5);
        assert_eq!(d["centre"], 10.0);
        assert_eq!(d["samples"], 6);
        assert_eq!(d["outside"], "above");
        assert_eq!(d["score"], 2.0);
        assert_eq!(d["season_seconds"], 86_400);
    }
}
