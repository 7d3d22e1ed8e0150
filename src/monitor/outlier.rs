//! `[rules] algorithm` and `tolerance` of `kind = "outlier"`: which test picks the outliers.

use super::errs::Errs;
use super::raw::RawRules;
use super::RuleKind;

/// How `kind = "outlier"` finds the objects far from the others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutlierAlgo {
    /// robust z-score of each object's `agg` (median and MAD), the default
    Mad,
    /// DBSCAN over the window's series; `tolerance` scales the neighbourhood radius
    Dbscan {
        /// above 0; the radius is this many median distances to the median series
        tolerance: f64,
    },
}

/// The default `tolerance` of `dbscan`.
pub const DEFAULT_TOLERANCE: f64 = 3.0;

/// Reads `algorithm` and `tolerance` (only meaningful for `kind = "outlier"`).
pub(super) fn parse(r: Option<&RawRules>, kind: RuleKind, e: &mut Errs) -> OutlierAlgo {
    let Some(r) = r else {
        return OutlierAlgo::Mad;
    };
    if kind != RuleKind::Outlier {
        for (at, field) in [
            (r.algorithm.as_ref().map(|x| x.span()), "rules.algorithm"),
            (r.tolerance.as_ref().map(|x| x.span()), "rules.tolerance"),
        ] {
            if let Some(at) = at {
                e.at(at, field, "only for kind = \"outlier\"; remove it".into());
            }
        }
        return OutlierAlgo::Mad;
    }
    let dbscan = match &r.algorithm {
        None => false,
        Some(a) => match a.get_ref().as_str() {
            "mad" => false,
            "dbscan" => true,
            _ => {
                e.bad(a, "rules.algorithm", "expected one of mad, dbscan");
                false
            }
        },
    };
    let tolerance = match &r.tolerance {
        None => DEFAULT_TOLERANCE,
        Some(t) if !dbscan => {
            e.bad(
                t,
                "rules.tolerance",
                "only for algorithm = \"dbscan\" (mad compares Result in the rules)",
            );
            DEFAULT_TOLERANCE
        }
        Some(t) if t.get_ref().is_finite() && *t.get_ref() > 0.0 => *t.get_ref(),
        Some(t) => {
            e.bad(
                t,
                "rules.tolerance",
                "expected a number above 0, e.g. 3 (median distances to the median series)",
            );
            DEFAULT_TOLERANCE
        }
    };
    if dbscan {
        OutlierAlgo::Dbscan { tolerance }
    } else {
        OutlierAlgo::Mad
    }
}
