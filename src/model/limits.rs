//! Bounds on the shape of one point, so a hostile or broken client cannot make a write spend
//! seconds on one absurd point (holding up the commit it shares with others) or store times the
//! rest of the system cannot reason about.
//!
//! The line-protocol parser (`ingest`) applies them on the ingest path (the error names the line and
//! column, and reaches the client as a 400); the store applies them again to every write, so
//! points built elsewhere (replay, host input) are held to the same bounds.

use super::point::PointLike;

/// Default most fields one point may carry. Real points have a handful to a few hundred
/// fields; each field is one series lookup on the write path.
pub const MAX_FIELDS_PER_POINT: usize = 1_000;

/// Default most tags one series (one point) may carry. The tag set is the series identity and
/// is copied into every series of the point, so wide tag sets multiply memory.
pub const MAX_TAGS_PER_SERIES: usize = 64;

/// Default earliest storable time, ns: 1900-01-01T00:00:00Z. Leaves room for historical
/// back-fills (and pre-1970 negative timestamps) while staying far from `i64::MIN`.
pub const MIN_TIME_NS: i64 = -2_208_988_800 * 1_000_000_000;

/// Default latest storable time, ns: the last nanosecond before 2200-01-01T00:00:00Z. Far enough
/// for any clock skew, and far enough from `i64::MAX` (2262) that window arithmetic
/// (`ts ± window`, day boundaries) never overflows.
pub const MAX_TIME_NS: i64 = 7_258_118_400 * 1_000_000_000 - 1;

/// Bounds on one point; [`PointLimits::default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointLimits {
    /// Most fields per point (see [`MAX_FIELDS_PER_POINT`]).
    pub max_fields: usize,
    /// Most tags per series (see [`MAX_TAGS_PER_SERIES`]).
    pub max_tags: usize,
    /// Earliest accepted time, inclusive, ns (see [`MIN_TIME_NS`]).
    pub min_time_ns: i64,
    /// Latest accepted time, inclusive, ns (see [`MAX_TIME_NS`]).
    pub max_time_ns: i64,
}

impl Default for PointLimits {
    fn default() -> Self {
        PointLimits {
            max_fields: MAX_FIELDS_PER_POINT,
            max_tags: MAX_TAGS_PER_SERIES,
            min_time_ns: MIN_TIME_NS,
            max_time_ns: MAX_TIME_NS,
        }
    }
}

impl PointLimits {
    /// No bounds at all: the bare line-protocol grammar (used by the conformance parser).
    pub const NONE: PointLimits = PointLimits {
        max_fields: usize::MAX,
        max_tags: usize::MAX,
        min_time_ns: i64::MIN,
        max_time_ns: i64::MAX,
    };

    /// Why `fields` fields are too many, if they are.
    pub fn fields_error(&self, fields: usize) -> Option<String> {
        (fields > self.max_fields).then(|| {
            format!(
                "the point has more than {} fields, the most one point may carry; split it \
                 into several points",
                self.max_fields
            )
        })
    }

    /// Why `tags` tags are too many, if they are.
    pub fn tags_error(&self, tags: usize) -> Option<String> {
        (tags > self.max_tags).then(|| {
            format!(
                "the point has more than {} tags, the most one series may carry; move \
                 values that are not identity into fields",
                self.max_tags
            )
        })
    }

    /// Why time `ns` cannot be stored, if it cannot.
    pub fn time_error(&self, ns: i64) -> Option<String> {
        if ns >= self.min_time_ns && ns <= self.max_time_ns {
            return None;
        }
        let show = |t: i64| {
            chrono::DateTime::from_timestamp(t.div_euclid(1_000_000_000), 0)
                .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| format!("{t} ns"))
        };
        Some(format!(
            "timestamp {ns} ns ({}) is outside the storable range {} to {}; check the \
             precision and the client's clock",
            show(ns),
            show(self.min_time_ns),
            show(self.max_time_ns)
        ))
    }

    /// Checks a whole point; the error names the bound it breaks (as the `[limits]` config
    /// key, or `time_range`) and explains it.
    pub fn check(&self, p: &impl PointLike) -> Result<(), (&'static str, String)> {
        if let Some(e) = self.fields_error(p.fields().len()) {
            return Err(("max_fields_per_point", e));
        }
        if let Some(e) = self.tags_error(p.tags().len()) {
            return Err(("max_tags_per_series", e));
        }
        if let Some(e) = self.time_error(p.time()) {
            return Err(("time_range", e));
        }
        Ok(())
    }
}
