//! Detectors beyond a plain threshold: the maths of each rule kind, one file per kind, and
//! what they share. Each kind turns an object's window value and what was read of its past
//! into a [`Decision`]: the `Result` the level rules compare, and a `df_event_detail` part
//! that explains it.
//!
//! - `change`: `mutation`, the window against the same window some time ago
//! - `forecast`: `forecast`, hours until a trend crosses a threshold
//! - `band`: `range` with a learned (optionally seasonal) band
//! - `history`: reading that past from the store or a data source, for every kind here
//! - `outlier`: `outlier` with `algorithm = "dbscan"`, over the window's series
//! - `slo`: `type = "slo"`, multiwindow burn rates of a good/total pair

pub(crate) mod band;
pub(crate) mod change;
pub(crate) mod forecast;
pub(crate) mod history;
pub(crate) mod outlier;
pub(crate) mod slo;

use serde_json::Value;

/// What a rule kind made of one object's window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// `Result`; `None`: nothing to compare with yet, the object's window counts as empty
    pub(crate) result: Option<f64>,
    /// the kind's own precondition failed: the check is clean whatever the rules say
    pub(crate) held_back: bool,
    /// the `detector` part of `df_event_detail` (`None` for the plain kinds)
    pub(crate) detail: Option<Value>,
}

impl Decision {
    /// A plain `Result` without detail.
    pub(crate) fn plain(result: f64) -> Decision {
        Decision {
            result: Some(result),
            held_back: false,
            detail: None,
        }
    }
}

/// A finite number as JSON (NaN and infinities are `null`, as JSON has no such numbers).
pub(crate) fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}
