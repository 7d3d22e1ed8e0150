//! The Rhai engine: sandbox limits, rule expressions, check scripts, bots and host functions.
//!
//! One [`ScriptEngine`] is built at start-up and shared by every check (it is `Send + Sync`).
//! Sources are compiled once into [`Compiled`] handles and evaluated many times:
//!
//! - [`ScriptEngine::eval_rule`]: a rule expression such as `Result > 90 && tags.host != "x"`
//!   must yield `true` or `false`;
//! - [`ScriptEngine::eval_check`]: a check script returns a status string, a map
//!   `#{status, value, message}`, or `()` for `"ok"`;
//! - [`ScriptEngine::run_bot`]: an inspection bot calls `report(#{...})` zero or more times.
//!
//! Every evaluation gets the host functions `query`, `series`, `events` and `now`, which reach the
//! [`ScriptHost`] passed to that evaluation, and the numeric helpers `avg`, `min`, `max`, `sum`,
//! `percentile`, `stddev` and `linear_fit`.
//!
//! # Sandbox
//!
//! Scripts cannot reach files, the network or processes (Rhai has no such functions and none are
//! registered), cannot `import` modules (the crate is built with `no_module`) and cannot `eval`
//! source text (the symbol is disabled, so it is rejected at compile time). Operations, call
//! depth, expression depth, string, array and map sizes and the wall-clock time of one
//! evaluation are bounded by [`Limits`]; exceeding any of them fails that evaluation with
//! [`ScriptError::Limit`] or [`ScriptError::Timeout`] and never affects the process. `print` and
//! `debug` go to `tracing` (target `tocsin::script`), never to stdout. Variables are strict: a
//! name that is neither `Result`, `tags`, `points` nor declared with `let` is a compile error.
//!
//! # Layout
//!
//! - `engine`: [`ScriptEngine`], [`Limits`], [`Compiled`], [`ScriptError`]; compile and evaluate;
//! - `frame`: the per-evaluation frame (host, deadline, bot reports) and its guard;
//! - `convert`: `Dynamic` to and from Rust and JSON values, host-function argument parsing;
//! - `outcome`: the values a check script returns and a bot reports, checked and typed;
//! - `host`: the host functions `query`, `series`, `events`, `now` and `report`;
//! - `stats`: the numeric helpers (reducers, percentile, stddev, linear fit).

mod convert;
mod engine;
mod frame;
mod host;
mod native;
mod outcome;
mod stats;
#[cfg(test)]
mod tests;

pub use engine::{Compiled, Limits, ScriptEngine, ScriptError};
pub use frame::{current_budget, Budget};
pub use native::{NativeExpr, Op};

use crate::model::Tags;

/// Points of one series: `(ts Unix seconds, value)`, oldest first.
pub type Points = Vec<(i64, f64)>;

/// Statuses a check script or a bot report may yield, from least to most severe.
pub const STATUSES: &[&str] = &["ok", "info", "warning", "error", "critical"];

/// Filter for the `events(...)` host function; every field narrows the result when present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// only events with this `df_status`
    pub status: Option<String>,
    /// only events of this monitor (`df_monitor_checker_id`)
    pub monitor: Option<String>,
    /// only events with this `df_source`
    pub source: Option<String>,
    /// only events with `date >= since` (Unix seconds)
    pub since: Option<i64>,
}

/// What scripts may ask of the engine; implemented by the check runner.
///
/// Every window ends at the trigger time minus the monitor's delay; how that is computed is the
/// host's business. Errors are plain messages; the script engine names the function that failed.
pub trait ScriptHost: Send + Sync {
    /// Aggregate `field` of `measurement` over the last `window_secs`, grouped by the `by` tags:
    /// one `(tags, value)` per group.
    fn query(
        &self,
        measurement: &str,
        field: &str,
        agg: &str,
        by: &[String],
        window_secs: i64,
    ) -> Result<Vec<(Tags, f64)>, String>;

    /// Raw points of `field` of `measurement` over the last `window_secs`, for the series whose
    /// tags match `where_`: one `(tags, points)` per series, points as `(ts Unix seconds, value)`.
    fn series(
        &self,
        measurement: &str,
        field: &str,
        where_: &Tags,
        window_secs: i64,
    ) -> Result<Vec<(Tags, Points)>, String>;

    /// Stored events matching `filter`, each as its JSON object.
    fn events(&self, filter: &EventFilter) -> Result<Vec<serde_json::Value>, String>;

    /// The trigger time of the current check, Unix seconds.
    fn now(&self) -> i64;
}

/// What a check needs besides the host: the object's aggregate, tags and window points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckCtx {
    /// `Result` in scope; `None` becomes `()`
    pub result: Option<f64>,
    /// `tags` in scope, a map of strings
    pub tags: Tags,
    /// `points` in scope as `[[ts, value], ...]`, ts in Unix seconds
    pub points: Vec<(i64, f64)>,
}

/// The verdict of a check script.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// one of [`STATUSES`]
    pub status: String,
    /// optional value to report instead of `Result`
    pub value: Option<f64>,
    /// optional message
    pub message: Option<String>,
}

/// One `report(#{title, message, status, dimension_tags})` call of a bot.
#[derive(Debug, Clone, PartialEq)]
pub struct BotReport {
    /// event title (empty when not given)
    pub title: String,
    /// event message (empty when not given)
    pub message: String,
    /// one of [`STATUSES`]
    pub status: String,
    /// the object this report is about; values stringified
    pub dimension_tags: Tags,
}
