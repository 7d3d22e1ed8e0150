//! Window queries: aggregation functions, tag filters and grouping by dimension tags.

pub use crate::model::Tags;
use std::fmt;
use std::str::FromStr;

/// Aggregation over the points of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// mean
    Avg,
    /// minimum
    Min,
    /// maximum
    Max,
    /// sum
    Sum,
    /// number of points
    Count,
    /// value of the latest point
    Last,
    /// value of the earliest point
    First,
    /// 50th percentile
    Median,
    /// 90th percentile
    P90,
    /// 95th percentile
    P95,
    /// 99th percentile
    P99,
    /// per-second rate of increase between first and last point
    Rate,
    /// population standard deviation
    Stddev,
}

/// Names accepted for `agg`, in documentation order, derived from [`Agg::ALL`].
pub const AGG_NAMES: &[&str] = &{
    let mut out = [""; Agg::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = Agg::ALL[i].name();
        i += 1;
    }
    out
};

/// How a tag value is matched in `where`.
#[derive(Debug, Clone)]
pub enum TagMatch {
    /// exact string equality
    Exact(String),
    /// `~regex`: the regex must match (anchored as written)
    Regex(regex::Regex),
}

/// One `where` condition.
#[derive(Debug, Clone)]
pub struct Filter {
    /// tag key
    pub tag: String,
    /// how its value must match; a series without the tag never matches
    pub matcher: TagMatch,
}

/// A window query over one measurement field.
#[derive(Debug, Clone)]
pub struct WindowQuery {
    /// measurement name
    pub measurement: String,
    /// field key
    pub field: String,
    /// dimension tags; one group per distinct value set
    pub by: Vec<String>,
    /// tag conditions, all must hold
    pub filters: Vec<Filter>,
    /// inclusive window start, ns
    pub start_ns: i64,
    /// exclusive window end, ns
    pub end_ns: i64,
}

/// The points of one object (distinct `by` tag set) in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// the `by` tags of this object (a missing tag is absent)
    pub tags: Tags,
    /// points `(ts_ns, value)` sorted by time (several series of a group are merged)
    pub points: Vec<(i64, f64)>,
}

impl Agg {
    /// Every aggregation, in documentation order.
    pub const ALL: [Agg; 13] = [
        Agg::Avg,
        Agg::Min,
        Agg::Max,
        Agg::Sum,
        Agg::Count,
        Agg::Last,
        Agg::First,
        Agg::Median,
        Agg::P90,
        Agg::P95,
        Agg::P99,
        Agg::Rate,
        Agg::Stddev,
    ];

    /// The name used in monitor files (`avg`, `p95`, ...), one of [`AGG_NAMES`].
    pub const fn name(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Sum => "sum",
            Agg::Count => "count",
            Agg::Last => "last",
            Agg::First => "first",
            Agg::Median => "median",
            Agg::P90 => "p90",
            Agg::P95 => "p95",
            Agg::P99 => "p99",
            Agg::Rate => "rate",
            Agg::Stddev => "stddev",
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Agg {
    type Err = String;

    /// Parses one of [`AGG_NAMES`] (exact, lowercase); the error lists the allowed names.
    fn from_str(s: &str) -> Result<Agg, String> {
        Agg::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            format!(
                "unknown aggregation {s:?}: expected one of {}",
                AGG_NAMES.join(", ")
            )
        })
    }
}

/// Aggregates the points of a window (sorted by time, as in [`Group::points`]).
///
/// `None` for an empty input. Percentiles interpolate linearly between the closest ranks (numpy's
/// default). `rate` is the per-second increase between the first and the last point, treating a
/// decrease as a counter reset (the new value counts as increase, as Prometheus does); it is
/// `None` with fewer than two points or a zero time span. `stddev` is the population deviation.
pub fn aggregate(agg: Agg, points: &[(i64, f64)]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    let n = points.len() as f64;
    let values = || points.iter().map(|p| p.1);
    Some(match agg {
        Agg::Avg => values().sum::<f64>() / n,
        Agg::Min => values().fold(f64::INFINITY, f64::min),
        Agg::Max => values().fold(f64::NEG_INFINITY, f64::max),
        Agg::Sum => values().sum(),
        Agg::Count => n,
        Agg::Last => last.1,
        Agg::First => first.1,
        Agg::Median => percentile(points, 0.5),
        Agg::P90 => percentile(points, 0.9),
        Agg::P95 => percentile(points, 0.95),
        Agg::P99 => percentile(points, 0.99),
        Agg::Rate => {
            let span = last.0.checked_sub(first.0)?;
            if points.len() < 2 || span <= 0 {
                return None;
            }
            let increase: f64 = points
                .windows(2)
                .map(|w| {
                    if w[1].1 >= w[0].1 {
                        w[1].1 - w[0].1
                    } else {
                        w[1].1
                    }
                })
                .sum();
            increase / (span as f64 / 1e9)
        }
        Agg::Stddev => {
            let mean = values().sum::<f64>() / n;
            (values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
        }
    })
}

/// The `q` quantile (0..=1) of the values, linear interpolation between closest ranks.
fn percentile(points: &[(i64, f64)], q: f64) -> f64 {
    let mut v: Vec<f64> = points.iter().map(|p| p.1).collect();
    v.sort_by(f64::total_cmp);
    let rank = q * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

impl Filter {
    /// Builds a condition from a `where` entry: a value starting with `~` is a regex (unanchored,
    /// as written), anything else must match exactly. A bad regex is an error naming the tag.
    pub fn parse(tag: &str, value: &str) -> Result<Filter, String> {
        let matcher = match value.strip_prefix('~') {
            Some(re) => TagMatch::Regex(
                regex::Regex::new(re)
                    .map_err(|e| format!("where.{tag}: invalid regex {re:?}: {e}"))?,
            ),
            None => TagMatch::Exact(value.to_string()),
        };
        Ok(Filter {
            tag: tag.to_string(),
            matcher,
        })
    }

    /// Whether a tag set satisfies this condition; a tag set without the tag never does.
    pub fn matches(&self, tags: &Tags) -> bool {
        self.matches_value(tags.get(&self.tag).map(String::as_str))
    }

    /// Whether a value of the tag (`None`: the tag is absent) satisfies this condition.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match (value, &self.matcher) {
            (None, _) => false,
            (Some(v), TagMatch::Exact(want)) => v == want,
            (Some(v), TagMatch::Regex(re)) => re.is_match(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 1_000_000_000, *v))
            .collect()
    }

    fn agg(name: &str, values: &[f64]) -> Option<f64> {
        aggregate(name.parse().unwrap(), &pts(values))
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        matches!(a, Some(a) if (a - b).abs() < 1e-9)
    }

    #[test]
    fn names_round_trip() {
        for name in AGG_NAMES {
            let a: Agg = name.parse().unwrap();
            assert_eq!(a.name(), *name);
            assert_eq!(a.to_string(), *name);
        }
        let err = "mean".parse::<Agg>().unwrap_err();
        assert!(err.contains("\"mean\"") && err.contains("avg, min") && err.contains("stddev"));
        assert!("AVG".parse::<Agg>().is_err());
    }

    #[test]
    fn empty_input_has_no_value() {
        for name in AGG_NAMES {
            assert_eq!(aggregate(name.parse().unwrap(), &[]), None, "{name}");
        }
    }

    #[test]
    fn simple_aggregates() {
        let v = [3.0, 1.0, 4.0, 1.0, 5.0];
        assert!(close(agg("avg", &v), 2.8));
        assert!(close(agg("min", &v), 1.0));
        assert!(close(agg("max", &v), 5.0));
        assert!(close(agg("sum", &v), 14.0));
        assert!(close(agg("count", &v), 5.0));
        assert!(close(agg("first", &v), 3.0));
        assert!(close(agg("last", &v), 5.0));
        assert!(close(agg("min", &[-2.0]), -2.0));
        assert!(close(agg("max", &[-2.0]), -2.0));
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], q): 50 -> 2.5, 90 -> 3.7, 95 -> 3.85, 99 -> 3.97
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!(close(agg("median", &v), 2.5));
        assert!(close(agg("p90", &v), 3.7));
        assert!(close(agg("p95", &v), 3.85));
        assert!(close(agg("p99", &v), 3.97));
        assert!(close(agg("median", &[5.0, 1.0, 9.0]), 5.0));
        assert!(close(agg("p99", &[7.0]), 7.0));
        // numpy.percentile(range(1, 11), 95) == 9.55
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!(close(agg("p95", &ten), 9.55));
    }

    #[test]
    fn stddev_is_population() {
        // numpy.std([2, 4, 4, 4, 5, 5, 7, 9]) == 2.0
        assert!(close(
            agg("stddev", &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
            2.0
        ));
        assert!(close(agg("stddev", &[3.0]), 0.0));
    }

    #[test]
    fn rate_per_second_with_resets() {
        // one point per second
        assert!(close(agg("rate", &[10.0, 20.0, 30.0]), 10.0));
        assert!(close(agg("rate", &[10.0, 10.0]), 0.0));
        // reset after 30: 10 -> 30 (+20), reset to 5 (+5), 5 -> 15 (+10) = 35 over 3 s
        assert!(close(agg("rate", &[10.0, 30.0, 5.0, 15.0]), 35.0 / 3.0));
        assert_eq!(agg("rate", &[10.0]), None);
        assert_eq!(aggregate(Agg::Rate, &[(5, 1.0), (5, 2.0)]), None);
        let spaced = [(0, 0.0), (10_000_000_000, 50.0)];
        assert!(close(aggregate(Agg::Rate, &spaced), 5.0));
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exact_filters() {
        let f = Filter::parse("host", "web01").unwrap();
        assert!(matches!(f.matcher, TagMatch::Exact(ref v) if v == "web01"));
        assert!(f.matches(&tags(&[("host", "web01"), ("dc", "a")])));
        assert!(!f.matches(&tags(&[("host", "web011")])));
        assert!(!f.matches(&tags(&[("dc", "web01")])));
        assert!(!f.matches(&Tags::new()));
        // an empty exact value only matches an empty value, not a missing tag
        let empty = Filter::parse("host", "").unwrap();
        assert!(empty.matches(&tags(&[("host", "")])));
        assert!(!empty.matches(&Tags::new()));
    }

    #[test]
    fn regex_filters() {
        let f = Filter::parse("host", "~^web0[12]$").unwrap();
        assert!(matches!(f.matcher, TagMatch::Regex(_)));
        assert!(f.matches(&tags(&[("host", "web01")])));
        assert!(f.matches(&tags(&[("host", "web02")])));
        assert!(!f.matches(&tags(&[("host", "web03")])));
        assert!(!f.matches(&tags(&[("other", "web01")])));
        // unanchored as written
        let sub = Filter::parse("cpu", "~total").unwrap();
        assert!(sub.matches(&tags(&[("cpu", "cpu-total")])));
        let err = Filter::parse("host", "~web(").unwrap_err();
        assert!(err.contains("where.host") && err.contains("web("), "{err}");
    }
}
