//! Window queries: aggregation functions, tag filters and grouping by dimension tags.

use std::collections::BTreeMap;

/// A tag set, sorted by key.
pub type Tags = BTreeMap<String, String>;

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

/// Names accepted for `agg`, in documentation order.
pub const AGG_NAMES: &[&str] = &[
    "avg", "min", "max", "sum", "count", "last", "first", "median", "p90", "p95", "p99", "rate",
    "stddev",
];

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
