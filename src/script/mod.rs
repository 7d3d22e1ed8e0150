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

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, ParseError, Position, Scope,
    AST, FLOAT, INT,
};

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

/// Sandbox bounds applied to every evaluation (and, for depths and sizes, to compilation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations per evaluation (0 = unlimited).
    pub max_operations: u64,
    /// Nested function calls (0 = unlimited).
    pub max_call_levels: usize,
    /// Nesting depth of expressions, checked at compile time (0 = unlimited).
    pub max_expr_depth: usize,
    /// Longest string, in bytes (0 = unlimited).
    pub max_string_size: usize,
    /// Largest array, in items (0 = unlimited); also caps the reports of one bot run.
    pub max_array_size: usize,
    /// Largest object map, in entries (0 = unlimited).
    pub max_map_size: usize,
    /// Wall-clock time of one evaluation.
    pub time_limit: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            time_limit: Duration::from_secs(2),
        }
    }
}

/// Why compiling or evaluating a script failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    /// The source does not parse (or uses something the sandbox forbids, such as `eval`).
    #[error("line {line}, column {column}: {message}")]
    Compile {
        /// 1-based line (0 when unknown)
        line: usize,
        /// 1-based column (0 when unknown)
        column: usize,
        /// what is wrong
        message: String,
    },
    /// The script failed while running (bad types, missing function, host error, ...).
    #[error("script error: {message}")]
    Runtime {
        /// what went wrong, with `(line L, column C)` when known
        message: String,
    },
    /// The evaluation ran longer than [`Limits::time_limit`].
    #[error("script ran past its time limit (an endless loop?); make it do less work per run")]
    Timeout,
    /// A sandbox limit other than time was exceeded (operations, call depth, sizes).
    #[error("script exceeded a sandbox limit: {0}")]
    Limit(String),
    /// The script ran but returned a value of the wrong shape.
    #[error("bad return value: {0}")]
    BadReturn(String),
}

/// A compiled rule or script: a cheap-to-clone, thread-safe handle on the AST.
#[derive(Clone)]
pub struct Compiled {
    ast: Arc<AST>,
    name: Arc<str>,
}

impl Compiled {
    /// The name given at compile time (the script name, or `"rule"` for expressions).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .finish()
    }
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

// ---------------------------------------------------------------------------------------------
// Per-evaluation state, reachable from host functions and the progress callback.

/// One running evaluation on this thread.
struct Frame {
    /// The host of this evaluation, lifetime erased; valid while the frame is on the stack.
    host: *const (dyn ScriptHost + 'static),
    deadline: Instant,
    name: Arc<str>,
    /// `Some` for bots: collected reports.
    reports: Option<Vec<BotReport>>,
}

thread_local! {
    /// Stack of the evaluations running on this thread (nested when a host re-enters).
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Pops the frame it pushed, also when unwinding.
struct FrameGuard;

impl FrameGuard {
    fn push(host: &dyn ScriptHost, deadline: Instant, name: Arc<str>, bot: bool) -> FrameGuard {
        // SAFETY: only the lifetime bound of the trait object is erased. The pointer is
        // dereferenced only by `with_host` while this frame is on the stack, i.e. during the
        // evaluation that borrowed `host`; the guard pops the frame before that borrow ends
        // (on return and on unwind), and frames are strictly LIFO per thread.
        let host: *const (dyn ScriptHost + 'static) = unsafe {
            std::mem::transmute::<*const (dyn ScriptHost + '_), *const (dyn ScriptHost + 'static)>(
                host,
            )
        };
        FRAMES.with(|f| {
            f.borrow_mut().push(Frame {
                host,
                deadline,
                name,
                reports: bot.then(Vec::new),
            })
        });
        FrameGuard
    }

    fn take_reports(&self) -> Vec<BotReport> {
        FRAMES.with(|f| {
            f.borrow_mut()
                .last_mut()
                .and_then(|fr| fr.reports.take())
                .unwrap_or_default()
        })
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            f.borrow_mut().pop();
        });
    }
}

/// Run `f` with the host of the innermost evaluation on this thread.
fn with_host<R>(f: impl FnOnce(&dyn ScriptHost) -> R) -> Option<R> {
    // Copy the pointer out so no RefCell borrow is held while the host runs (it may re-enter).
    let ptr = FRAMES.with(|fr| fr.borrow().last().map(|frame| frame.host))?;
    // SAFETY: see `FrameGuard::push`; the frame (and thus the borrow) outlives this call.
    Some(f(unsafe { &*ptr }))
}

fn current_name() -> Option<Arc<str>> {
    FRAMES.with(|fr| fr.borrow().last().map(|frame| frame.name.clone()))
}

// ---------------------------------------------------------------------------------------------
// The engine.

/// The sandboxed Rhai engine with the tocsin host functions; build once, share everywhere.
pub struct ScriptEngine {
    engine: Engine,
    limits: Limits,
}

impl fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for ScriptEngine {
    fn default() -> Self {
        ScriptEngine::new(Limits::default())
    }
}

type RhaiErr = Box<EvalAltResult>;

fn rt_err(ctx: &NativeCallContext, msg: impl Into<String>) -> RhaiErr {
    EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), ctx.call_position()).into()
}

impl ScriptEngine {
    /// Build the sandboxed engine with `limits` and register the host functions.
    pub fn new(limits: Limits) -> ScriptEngine {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_strict_variables(true)
            .disable_symbol("eval");

        engine.on_progress(|ops| {
            // Checking the clock every operation would be wasteful; every 256 is plenty.
            if ops % 256 != 0 {
                return None;
            }
            let deadline = FRAMES.with(|fr| fr.borrow().last().map(|frame| frame.deadline))?;
            (Instant::now() >= deadline).then(|| Dynamic::from("time limit"))
        });
        engine.on_print(|s| {
            let name = current_name();
            tracing::info!(target: "tocsin::script", script = name.as_deref().unwrap_or(""), "{s}");
        });
        engine.on_debug(|s, _source, pos| {
            let name = current_name();
            tracing::debug!(
                target: "tocsin::script",
                script = name.as_deref().unwrap_or(""),
                line = pos.line().unwrap_or(0),
                "{s}"
            );
        });

        register_host_functions(&mut engine, limits.max_array_size);
        register_helpers(&mut engine);

        ScriptEngine { engine, limits }
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compile a rule expression (a single expression, no statements), e.g.
    /// `Result > 90 && tags.host != "x"`.
    pub fn compile_expr(&self, src: &str) -> Result<Compiled, ScriptError> {
        let ast = self
            .engine
            .compile_expression_with_scope(&compile_scope(), src)
            .map_err(compile_error)?;
        Ok(Compiled {
            ast: Arc::new(ast),
            name: Arc::from("rule"),
        })
    }

    /// Compile a script file (statements, functions); `name` labels logs and errors.
    pub fn compile_script(&self, src: &str, name: &str) -> Result<Compiled, ScriptError> {
        let mut ast = self
            .engine
            .compile_with_scope(&compile_scope(), src)
            .map_err(compile_error)?;
        ast.set_source(name);
        Ok(Compiled {
            ast: Arc::new(ast),
            name: Arc::from(name),
        })
    }

    /// Evaluate a rule: it must yield a bool.
    pub fn eval_rule(
        &self,
        c: &Compiled,
        ctx: &CheckCtx,
        host: &dyn ScriptHost,
    ) -> Result<bool, ScriptError> {
        let mut scope = check_scope(ctx);
        let (value, _) = self.run(c, &mut scope, host, false)?;
        match value.as_bool() {
            Ok(b) => Ok(b),
            Err(_) => Err(ScriptError::BadReturn(format!(
                "a rule must evaluate to true or false, but it gave {} {}; compare the value, \
                 e.g. `Result > 90`",
                type_name(&value),
                show(&value)
            ))),
        }
    }

    /// Evaluate a check script: a status string, `#{status, value, message}`, or `()` (= ok).
    pub fn eval_check(
        &self,
        c: &Compiled,
        ctx: &CheckCtx,
        host: &dyn ScriptHost,
    ) -> Result<CheckOutcome, ScriptError> {
        let mut scope = check_scope(ctx);
        let (value, _) = self.run(c, &mut scope, host, false)?;
        check_outcome(value)
    }

    /// Run a bot: returns its `report(...)` calls in order.
    pub fn run_bot(
        &self,
        c: &Compiled,
        host: &dyn ScriptHost,
    ) -> Result<Vec<BotReport>, ScriptError> {
        let mut scope = check_scope(&CheckCtx::default());
        let (_, reports) = self.run(c, &mut scope, host, true)?;
        Ok(reports)
    }

    fn run(
        &self,
        c: &Compiled,
        scope: &mut Scope,
        host: &dyn ScriptHost,
        bot: bool,
    ) -> Result<(Dynamic, Vec<BotReport>), ScriptError> {
        let deadline = Instant::now() + self.limits.time_limit;
        let guard = FrameGuard::push(host, deadline, c.name.clone(), bot);
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, &c.ast);
        let reports = guard.take_reports();
        drop(guard);
        match result {
            Ok(v) => Ok((v.flatten(), reports)),
            Err(e) => Err(self.eval_error(e)),
        }
    }

    fn eval_error(&self, err: RhaiErr) -> ScriptError {
        let mut root: &EvalAltResult = &err;
        while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = root {
            root = inner;
        }
        let l = &self.limits;
        match root {
            EvalAltResult::ErrorTerminated(..) => ScriptError::Timeout,
            EvalAltResult::ErrorTooManyOperations(..) => ScriptError::Limit(format!(
                "more than {} operations in one run (an endless loop?); make the script do less \
                 work",
                l.max_operations
            )),
            EvalAltResult::ErrorStackOverflow(..) => ScriptError::Limit(format!(
                "function calls nested deeper than {} levels (runaway recursion?); use a loop \
                 or stop the recursion earlier",
                l.max_call_levels
            )),
            EvalAltResult::ErrorDataTooLarge(what, ..) => ScriptError::Limit(format!(
                "{what} is too large; strings may hold {} bytes, arrays {} items, maps {} entries",
                l.max_string_size, l.max_array_size, l.max_map_size
            )),
            EvalAltResult::ErrorTooManyVariables(..) | EvalAltResult::ErrorTooManyModules(..) => {
                ScriptError::Limit(root.to_string())
            }
            _ => {
                let unit_hint = matches!(root, EvalAltResult::ErrorFunctionNotFound(sig, _)
                    if sig.contains("()"));
                let mut err = err;
                let pos = err.take_position();
                let mut message = err.to_string();
                if unit_hint {
                    message.push_str(
                        " (a value is () — unknown: Result has no value, or a tag or map key is \
                         missing; test it with `x == ()` first)",
                    );
                }
                ScriptError::Runtime {
                    message: with_pos(message, pos),
                }
            }
        }
    }
}

fn with_pos(message: String, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{message} (line {l}, column {c})"),
        (Some(l), None) => format!("{message} (line {l})"),
        _ => message,
    }
}

fn compile_error(err: ParseError) -> ScriptError {
    let ParseError(kind, pos) = err;
    let mut message = kind.to_string();
    if message.contains("'eval'") {
        message = "`eval` is disabled in the tocsin sandbox; write the code directly".into();
    } else if message.contains("'import'") {
        message = "`import` is not available in the tocsin sandbox (no modules); define helper \
                   functions with `fn` in the script itself"
            .into();
    } else if message.starts_with("Undefined variable") {
        message.push_str(
            "; in scope are Result, tags and points, anything else must be declared with `let`",
        );
    }
    ScriptError::Compile {
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message,
    }
}

/// The variables a check sees; placeholders at compile time so strict variables accept them.
fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_dynamic("Result", Dynamic::UNIT);
    scope.push_dynamic("tags", Dynamic::UNIT);
    scope.push_dynamic("points", Dynamic::UNIT);
    scope
}

fn check_scope(ctx: &CheckCtx) -> Scope<'static> {
    let mut scope = Scope::new();
    let result = match ctx.result {
        Some(v) => Dynamic::from_float(v),
        None => Dynamic::UNIT,
    };
    scope.push_dynamic("Result", result);
    scope.push_dynamic("tags", Dynamic::from_map(tags_to_map(&ctx.tags)));
    scope.push_dynamic("points", Dynamic::from_array(points_to_array(&ctx.points)));
    scope
}

// ---------------------------------------------------------------------------------------------
// Return values.

fn status_of(value: &Dynamic, what: &str) -> Result<String, String> {
    let Ok(s) = value.as_immutable_string_ref() else {
        return Err(format!(
            "{what} must be a status string (one of {}), got {} {}",
            STATUSES.join(", "),
            type_name(value),
            show(value)
        ));
    };
    if STATUSES.contains(&s.as_str()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{what} {:?} is not a status; use one of {}",
            s.as_str(),
            STATUSES.join(", ")
        ))
    }
}

fn check_outcome(value: Dynamic) -> Result<CheckOutcome, ScriptError> {
    if value.is_unit() {
        return Ok(CheckOutcome {
            status: "ok".into(),
            value: None,
            message: None,
        });
    }
    if value.is_string() {
        let status = status_of(&value, "the returned status").map_err(ScriptError::BadReturn)?;
        return Ok(CheckOutcome {
            status,
            value: None,
            message: None,
        });
    }
    let Some(map) = value.read_lock::<Map>().map(|m| m.clone()) else {
        return Err(ScriptError::BadReturn(format!(
            "a check script must return a status string ({}), a map #{{status, value, message}} \
             or (), got {} {}",
            STATUSES.join(", "),
            type_name(&value),
            show(&value)
        )));
    };
    let bad = |m: String| ScriptError::BadReturn(m);
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "status" | "value" | "message"))
    {
        return Err(bad(format!(
            "unknown key `{k}` in the returned map; allowed keys are status, value, message"
        )));
    }
    let status = match map.get("status") {
        None => {
            return Err(bad(format!(
                "the returned map has no `status`; add status: one of {}",
                STATUSES.join(", ")
            )))
        }
        Some(s) => status_of(&s.clone().flatten(), "`status`").map_err(bad)?,
    };
    let value = match map.get("value").map(|v| v.clone().flatten()) {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(number(&v).ok_or_else(|| {
            bad(format!(
                "`value` must be a number or (), got {} {}",
                type_name(&v),
                show(&v)
            ))
        })?),
    };
    let message = match map.get("message").map(|v| v.clone().flatten()) {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) if v.is_string() => Some(v.to_string()),
        Some(v) => {
            return Err(bad(format!(
                "`message` must be a string or (), got {} {}",
                type_name(&v),
                show(&v)
            )))
        }
    };
    Ok(CheckOutcome {
        status,
        value,
        message,
    })
}

fn bot_report(map: Map) -> Result<BotReport, String> {
    if let Some(k) = map.keys().find(|k| {
        !matches!(
            k.as_str(),
            "title" | "message" | "status" | "dimension_tags"
        )
    }) {
        return Err(format!(
            "report(): unknown key `{k}`; allowed keys are title, message, status, dimension_tags"
        ));
    }
    let text = |key: &str| -> String {
        match map.get(key).map(|v| v.clone().flatten()) {
            None => String::new(),
            Some(v) if v.is_unit() => String::new(),
            Some(v) => v.to_string(),
        }
    };
    let status = match map.get("status") {
        None => {
            return Err(format!(
                "report(): `status` is missing; use one of {}",
                STATUSES.join(", ")
            ))
        }
        Some(s) => status_of(&s.clone().flatten(), "report(): `status`")?,
    };
    let dimension_tags = match map.get("dimension_tags").map(|v| v.clone().flatten()) {
        None => Tags::new(),
        Some(v) if v.is_unit() => Tags::new(),
        Some(v) => match v.read_lock::<Map>() {
            Some(m) => m
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone().flatten().to_string()))
                .collect(),
            None => {
                return Err(format!(
                "report(): `dimension_tags` must be a map of strings like #{{host: \"web01\"}}, \
                     got {} {}",
                type_name(&v),
                show(&v)
            ))
            }
        },
    };
    Ok(BotReport {
        title: text("title"),
        message: text("message"),
        status,
        dimension_tags,
    })
}

// ---------------------------------------------------------------------------------------------
// Conversions.

fn type_name(v: &Dynamic) -> &'static str {
    match v.type_name() {
        "i64" | "i32" => "int",
        "f64" | "f32" => "float",
        other => other,
    }
}

fn show(v: &Dynamic) -> String {
    let s = if v.is_string() {
        format!("{:?}", v.to_string())
    } else if v.is_unit() {
        "()".to_string()
    } else {
        v.to_string()
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(60).collect();
        format!("`{cut}…`")
    } else {
        format!("`{s}`")
    }
}

fn number(v: &Dynamic) -> Option<f64> {
    if let Ok(f) = v.as_float() {
        Some(f)
    } else if let Ok(i) = v.as_int() {
        Some(i as f64)
    } else {
        None
    }
}

fn tags_to_map(tags: &Tags) -> Map {
    tags.iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect()
}

fn points_to_array(points: &[(i64, f64)]) -> Array {
    points
        .iter()
        .map(|&(ts, v)| {
            Dynamic::from_array(vec![Dynamic::from_int(ts as INT), Dynamic::from_float(v)])
        })
        .collect()
}

fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i as INT),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN) as FLOAT),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Value::Object(o) => Dynamic::from_map(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

/// Parse a duration: seconds as digits, or number+unit pairs (`s`, `m`, `h`, `d`, `w`) such as
/// `"30s"`, `"5m"`, `"1h30m"`.
fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

fn window_arg(func: &str, v: &Dynamic) -> Result<i64, String> {
    let secs = if let Ok(i) = v.as_int() {
        Some(i)
    } else if let Ok(s) = v.as_immutable_string_ref() {
        parse_duration(&s)
    } else {
        None
    };
    match secs {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{func}(): window must be a positive duration such as \"30s\", \"5m\", \"1h\" or a \
             number of seconds, got {} {}",
            type_name(v),
            show(v)
        )),
    }
}

fn string_list(func: &str, what: &str, v: &Dynamic) -> Result<Vec<String>, String> {
    if v.is_unit() {
        return Ok(Vec::new());
    }
    if v.is_string() {
        return Ok(vec![v.to_string()]);
    }
    let Some(arr) = v.read_lock::<Array>() else {
        return Err(format!(
            "{func}(): {what} must be an array of tag names like [\"host\"], got {} {}",
            type_name(v),
            show(v)
        ));
    };
    arr.iter()
        .map(|x| {
            let x = x.clone().flatten();
            if x.is_string() {
                Ok(x.to_string())
            } else {
                Err(format!(
                    "{func}(): {what} must hold tag names (strings), got {} {}",
                    type_name(&x),
                    show(&x)
                ))
            }
        })
        .collect()
}

fn string_map(func: &str, what: &str, v: &Dynamic) -> Result<Tags, String> {
    if v.is_unit() {
        return Ok(Tags::new());
    }
    let Some(map) = v.read_lock::<Map>() else {
        return Err(format!(
            "{func}(): {what} must be a map of tag values like #{{host: \"web01\"}}, got {} {}",
            type_name(v),
            show(v)
        ));
    };
    map.iter()
        .map(|(k, x)| {
            let x = x.clone().flatten();
            if x.is_string() || x.is_int() || x.is_bool() {
                Ok((k.to_string(), x.to_string()))
            } else {
                Err(format!(
                    "{func}(): {what}.{k} must be a string, got {} {}",
                    type_name(&x),
                    show(&x)
                ))
            }
        })
        .collect()
}

fn opt_string(key: &str, v: &Dynamic) -> Result<Option<String>, String> {
    if v.is_unit() {
        Ok(None)
    } else if v.is_string() {
        Ok(Some(v.to_string()))
    } else {
        Err(format!(
            "events(): `{key}` must be a string, got {} {}",
            type_name(v),
            show(v)
        ))
    }
}

fn event_filter(map: &Map, now: i64) -> Result<EventFilter, String> {
    let mut filter = EventFilter::default();
    for (k, v) in map {
        let v = v.clone().flatten();
        match k.as_str() {
            "status" => filter.status = opt_string("status", &v)?,
            "monitor" => filter.monitor = opt_string("monitor", &v)?,
            "source" => filter.source = opt_string("source", &v)?,
            "since" => filter.since = since_arg(&v, now)?,
            other => {
                return Err(format!(
                    "events(): unknown filter key `{other}`; allowed keys are status, monitor, \
                     source, since"
                ))
            }
        }
    }
    Ok(filter)
}

/// `since`: Unix seconds (int), RFC 3339 text, or a duration back from `now()` ("1h").
fn since_arg(v: &Dynamic, now: i64) -> Result<Option<i64>, String> {
    if v.is_unit() {
        return Ok(None);
    }
    if let Ok(i) = v.as_int() {
        return Ok(Some(i));
    }
    if let Ok(s) = v.as_immutable_string_ref() {
        if let Some(d) = parse_duration(&s) {
            return Ok(Some(now - d));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
            return Ok(Some(t.timestamp()));
        }
    }
    Err(format!(
        "events(): `since` must be Unix seconds, an RFC 3339 time or a duration back from now() \
         such as \"1h\", got {} {}",
        type_name(v),
        show(v)
    ))
}

// ---------------------------------------------------------------------------------------------
// Host functions.

fn host_call<R>(
    ctx: &NativeCallContext,
    func: &str,
    f: impl FnOnce(&dyn ScriptHost) -> Result<R, String>,
) -> Result<R, RhaiErr> {
    match with_host(f) {
        None => Err(rt_err(
            ctx,
            format!("{func}(): no host for this evaluation"),
        )),
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(rt_err(ctx, format!("{func}() failed: {e}"))),
    }
}

fn register_host_functions(engine: &mut Engine, max_reports: usize) {
    engine.register_fn(
        "query",
        |ctx: NativeCallContext,
         measurement: &str,
         field: &str,
         agg: &str,
         by: Dynamic,
         window: Dynamic|
         -> Result<Array, RhaiErr> {
            let by = string_list("query", "by", &by.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let window = window_arg("query", &window.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let rows = host_call(&ctx, "query", |h| {
                h.query(measurement, field, agg, &by, window)
            })?;
            Ok(rows
                .iter()
                .map(|(tags, value)| {
                    let mut m = Map::new();
                    m.insert("tags".into(), Dynamic::from_map(tags_to_map(tags)));
                    m.insert("value".into(), Dynamic::from_float(*value));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );

    engine.register_fn(
        "series",
        |ctx: NativeCallContext,
         measurement: &str,
         field: &str,
         where_: Dynamic,
         window: Dynamic|
         -> Result<Array, RhaiErr> {
            let where_ =
                string_map("series", "where", &where_.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let window = window_arg("series", &window.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let rows = host_call(&ctx, "series", |h| {
                h.series(measurement, field, &where_, window)
            })?;
            Ok(rows
                .iter()
                .map(|(tags, points)| {
                    let mut m = Map::new();
                    m.insert("tags".into(), Dynamic::from_map(tags_to_map(tags)));
                    m.insert(
                        "points".into(),
                        Dynamic::from_array(points_to_array(points)),
                    );
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );

    fn events_impl(ctx: &NativeCallContext, filter: &Map) -> Result<Array, RhaiErr> {
        let events = host_call(ctx, "events", |h| {
            let filter = event_filter(filter, h.now())?;
            h.events(&filter)
        })?;
        Ok(events.iter().map(json_to_dynamic).collect())
    }
    engine.register_fn(
        "events",
        |ctx: NativeCallContext, filter: Map| -> Result<Array, RhaiErr> {
            events_impl(&ctx, &filter)
        },
    );
    engine.register_fn(
        "events",
        |ctx: NativeCallContext| -> Result<Array, RhaiErr> { events_impl(&ctx, &Map::new()) },
    );

    engine.register_fn("now", |ctx: NativeCallContext| -> Result<INT, RhaiErr> {
        host_call(&ctx, "now", |h| Ok(h.now() as INT))
    });

    engine.register_fn(
        "report",
        move |ctx: NativeCallContext, report: Map| -> Result<(), RhaiErr> {
            let report = bot_report(report).map_err(|e| rt_err(&ctx, e))?;
            let outcome = FRAMES.with(|fr| {
                let mut frames = fr.borrow_mut();
                match frames.last_mut().and_then(|f| f.reports.as_mut()) {
                    None => Err(
                        "report() is only available in bots (type = \"bot_obs\"); a check \
                         script returns its status instead"
                            .to_string(),
                    ),
                    Some(r) if max_reports > 0 && r.len() >= max_reports => Err(format!(
                        "report() called more than {max_reports} times in one run"
                    )),
                    Some(r) => {
                        r.push(report);
                        Ok(())
                    }
                }
            });
            outcome.map_err(|e| rt_err(&ctx, e))
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Numeric helpers.

/// Numbers of an array: numbers as is, `[ts, value]` pairs by value, maps by their `value` key
/// (so `avg(points)` and `max(query(...))` work directly).
fn values(func: &str, arr: &Array) -> Result<Vec<f64>, String> {
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            let x = x.clone().flatten();
            if let Some(n) = number(&x) {
                return Ok(n);
            }
            if let Some(a) = x.read_lock::<Array>() {
                if a.len() == 2 {
                    if let Some(n) = number(&a[1].clone().flatten()) {
                        return Ok(n);
                    }
                }
            }
            if let Some(m) = x.read_lock::<Map>() {
                if let Some(n) = m.get("value").and_then(|v| number(&v.clone().flatten())) {
                    return Ok(n);
                }
            }
            Err(format!(
                "{func}(): item {i} is {} {}; expected numbers, [ts, value] pairs or maps with a \
                 numeric `value`",
                type_name(&x),
                show(&x)
            ))
        })
        .collect()
}

fn pairs(func: &str, arr: &Array) -> Result<Vec<(f64, f64)>, String> {
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            let x = x.clone().flatten();
            if let Some(a) = x.read_lock::<Array>() {
                if a.len() == 2 {
                    if let (Some(px), Some(py)) = (
                        number(&a[0].clone().flatten()),
                        number(&a[1].clone().flatten()),
                    ) {
                        return Ok((px, py));
                    }
                }
            }
            Err(format!(
                "{func}(): item {i} is {} {}; expected [x, y] pairs of numbers",
                type_name(&x),
                show(&x)
            ))
        })
        .collect()
}

fn percentile_of(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn stddev_of(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Least squares fit `y = slope * x + intercept`; `None` without two distinct x.
fn linear_fit_of(p: &[(f64, f64)]) -> Option<(f64, f64)> {
    if p.len() < 2 {
        return None;
    }
    let n = p.len() as f64;
    let mx = p.iter().map(|q| q.0).sum::<f64>() / n;
    let my = p.iter().map(|q| q.1).sum::<f64>() / n;
    let sxx: f64 = p.iter().map(|q| (q.0 - mx) * (q.0 - mx)).sum();
    let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

fn register_reducer(engine: &mut Engine, name: &'static str, f: fn(&[f64]) -> f64) {
    engine.register_fn(
        name,
        move |ctx: NativeCallContext, arr: Array| -> Result<Dynamic, RhaiErr> {
            let v = values(name, &arr).map_err(|e| rt_err(&ctx, e))?;
            Ok(if v.is_empty() {
                Dynamic::UNIT
            } else {
                Dynamic::from_float(f(&v))
            })
        },
    );
}

fn register_helpers(engine: &mut Engine) {
    register_reducer(engine, "avg", |v| v.iter().sum::<f64>() / v.len() as f64);
    register_reducer(engine, "sum", |v| v.iter().sum());
    register_reducer(engine, "min", |v| {
        v.iter().copied().fold(f64::INFINITY, f64::min)
    });
    register_reducer(engine, "max", |v| {
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    });
    register_reducer(engine, "stddev", stddev_of);

    engine.register_fn(
        "percentile",
        |ctx: NativeCallContext, arr: Array, p: Dynamic| -> Result<Dynamic, RhaiErr> {
            let p = p.flatten();
            let pv = match number(&p) {
                Some(x) if (0.0..=100.0).contains(&x) => x,
                _ => {
                    return Err(rt_err(
                        &ctx,
                        format!(
                            "percentile(): p must be a number from 0 to 100, got {} {}",
                            type_name(&p),
                            show(&p)
                        ),
                    ))
                }
            };
            let v = values("percentile", &arr).map_err(|e| rt_err(&ctx, e))?;
            Ok(if v.is_empty() {
                Dynamic::UNIT
            } else {
                Dynamic::from_float(percentile_of(v, pv))
            })
        },
    );

    engine.register_fn(
        "linear_fit",
        |ctx: NativeCallContext, arr: Array| -> Result<Dynamic, RhaiErr> {
            let p = pairs("linear_fit", &arr).map_err(|e| rt_err(&ctx, e))?;
            Ok(match linear_fit_of(&p) {
                None => Dynamic::UNIT,
                Some((slope, intercept)) => {
                    let mut m = Map::new();
                    m.insert("slope".into(), Dynamic::from_float(slope));
                    m.insert("intercept".into(), Dynamic::from_float(intercept));
                    Dynamic::from_map(m)
                }
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Test double of the host interface: canned answers, records the calls it gets.
    struct FakeHost {
        now: i64,
        value: f64,
        fail: bool,
        calls: Mutex<Vec<String>>,
    }

    impl FakeHost {
        fn new(now: i64, value: f64) -> FakeHost {
            FakeHost {
                now,
                value,
                fail: false,
                calls: Mutex::new(Vec::new()),
            }
        }
        fn failing() -> FakeHost {
            FakeHost {
                fail: true,
                ..FakeHost::new(0, 0.0)
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    impl ScriptHost for FakeHost {
        fn query(
            &self,
            measurement: &str,
            field: &str,
            agg: &str,
            by: &[String],
            window_secs: i64,
        ) -> Result<Vec<(Tags, f64)>, String> {
            self.calls.lock().unwrap().push(format!(
                "query {measurement} {field} {agg} {by:?} {window_secs}"
            ));
            if self.fail {
                return Err("store is closed".into());
            }
            Ok(vec![
                (tags(&[("host", "a")]), self.value),
                (tags(&[("host", "b")]), self.value + 1.0),
            ])
        }

        fn series(
            &self,
            measurement: &str,
            field: &str,
            where_: &Tags,
            window_secs: i64,
        ) -> Result<Vec<(Tags, Points)>, String> {
            self.calls.lock().unwrap().push(format!(
                "series {measurement} {field} {where_:?} {window_secs}"
            ));
            if self.fail {
                return Err("store is closed".into());
            }
            Ok(vec![(
                where_.clone(),
                vec![(self.now - 20, 1.0), (self.now - 10, 3.0)],
            )])
        }

        fn events(&self, filter: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("events {filter:?}"));
            if self.fail {
                return Err("store is closed".into());
            }
            Ok(vec![serde_json::json!({
                "df_status": filter.status.clone().unwrap_or_else(|| "critical".into()),
                "date": 1_700_000_000,
                "df_issue_duration": 1.5,
                "df_is_silent": false,
                "df_event_detail": null,
                "list": [1, "x"],
                "obj": {"host": "web01"}
            })])
        }

        fn now(&self) -> i64 {
            self.now
        }
    }

    fn engine() -> ScriptEngine {
        ScriptEngine::new(Limits::default())
    }

    fn ctx(result: Option<f64>) -> CheckCtx {
        CheckCtx {
            result,
            tags: tags(&[("host", "web01"), ("region", "eu")]),
            points: vec![(100, 10.0), (110, 20.0), (120, 30.0)],
        }
    }

    fn rule(e: &ScriptEngine, src: &str, c: &CheckCtx) -> Result<bool, ScriptError> {
        let host = FakeHost::new(1000, 5.0);
        e.eval_rule(&e.compile_expr(src)?, c, &host)
    }

    fn check(e: &ScriptEngine, src: &str, c: &CheckCtx) -> Result<CheckOutcome, ScriptError> {
        let host = FakeHost::new(1000, 5.0);
        e.eval_check(&e.compile_script(src, "t.rhai")?, c, &host)
    }

    /// Evaluate a script and return its value as a rhai Dynamic via a check-free path.
    fn value(e: &ScriptEngine, src: &str) -> Result<Dynamic, ScriptError> {
        let host = FakeHost::new(1000, 5.0);
        let c = e.compile_script(src, "v.rhai")?;
        let mut scope = check_scope(&ctx(Some(1.0)));
        e.run(&c, &mut scope, &host, false).map(|(v, _)| v)
    }

    fn float(e: &ScriptEngine, src: &str) -> f64 {
        let v = value(e, src).unwrap();
        v.as_float()
            .unwrap_or_else(|t| panic!("{src}: not a float but {t}: {v}"))
    }

    #[test]
    fn send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ScriptEngine>();
        assert_send_sync::<Compiled>();
        assert_send_sync::<ScriptError>();
        assert_send_sync::<Limits>();
    }

    #[test]
    fn rules_over_result_tags_points() {
        let e = engine();
        let c = ctx(Some(95.0));
        assert!(rule(&e, "Result > 90", &c).unwrap());
        assert!(!rule(&e, "Result > 95.5", &c).unwrap());
        assert!(rule(&e, r#"Result > 90 && tags.host != "x""#, &c).unwrap());
        assert!(!rule(&e, r#"Result > 90 && tags.host == "x""#, &c).unwrap());
        assert!(rule(&e, r#"tags["region"] == "eu""#, &c).unwrap());
        assert!(rule(&e, "points.len() == 3 && points[2][1] == 30.0", &c).unwrap());
        assert!(rule(&e, "avg(points) == 20.0", &c).unwrap());
        assert!(rule(&e, "max(points) > 25 && min(points) < 15", &c).unwrap());
        // a missing tag is (), unequal to any string
        assert!(rule(&e, r#"tags.missing != "x""#, &c).unwrap());
        assert!(rule(&e, "Result == ()", &ctx(None)).unwrap());
    }

    #[test]
    fn rule_must_be_bool() {
        let e = engine();
        let c = ctx(Some(95.0));
        for (src, ty) in [("Result", "float"), ("1", "int"), (r#""x""#, "string")] {
            match rule(&e, src, &c) {
                Err(ScriptError::BadReturn(m)) => {
                    assert!(m.contains(ty) && m.contains("true or false"), "{m}")
                }
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn rule_on_unknown_result_explains() {
        let e = engine();
        // comparing () with a number is false either way, so an unknown Result fires no rule
        assert_eq!(rule(&e, "Result > 90", &ctx(None)), Ok(false));
        assert_eq!(rule(&e, "Result < 90", &ctx(None)), Ok(false));
        match rule(&e, "Result + 1 > 90", &ctx(None)) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains("unknown"), "{message}");
                assert!(message.contains("line 1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compile_errors_carry_position() {
        let e = engine();
        match e.compile_script("let x = 1;\nlet y = (2 + ;\n", "bad.rhai") {
            Err(ScriptError::Compile { line, column, .. }) => {
                assert_eq!(line, 2);
                assert!(column > 0);
            }
            other => panic!("{other:?}"),
        }
        // statements are not rule expressions
        assert!(matches!(
            e.compile_expr("let x = 1; x"),
            Err(ScriptError::Compile { .. })
        ));
        // strict variables: a typo is a compile error
        match e.compile_expr("Reslt > 90") {
            Err(ScriptError::Compile {
                line,
                column,
                message,
            }) => {
                assert_eq!((line, column), (1, 1));
                assert!(message.contains("Reslt"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eval_and_import_rejected_at_compile() {
        let e = engine();
        for src in [
            r#"eval("1")"#,
            r#"let x = eval("1"); x"#,
            r#"import "x" as y; 1"#,
        ] {
            match e.compile_script(src, "s.rhai") {
                Err(ScriptError::Compile { line, message, .. }) => {
                    assert_eq!(line, 1, "{src}: {message}");
                    assert!(message.contains("sandbox"), "{src}: {message}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        assert!(matches!(
            e.compile_expr(r#"eval("true")"#),
            Err(ScriptError::Compile { .. })
        ));
    }

    #[test]
    fn eval_not_reachable_through_fn_pointers() {
        let e = engine();
        for src in [
            r#"let f = Fn("eval"); f.call("1")"#,
            r#"call(Fn("eval"), "1")"#,
        ] {
            match check(&e, src, &ctx(Some(1.0))) {
                Err(ScriptError::Compile { .. }) | Err(ScriptError::Runtime { .. }) => {}
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn check_returns_string_map_or_unit() {
        let e = engine();
        let c = ctx(Some(95.0));
        let o = check(&e, r#"if Result > 90 { "critical" } else { "ok" }"#, &c).unwrap();
        assert_eq!(o.status, "critical");
        assert_eq!((o.value, o.message), (None, None));

        let o = check(
            &e,
            r#"let v = avg(points); #{status: "warning", value: v, message: `avg ${v}`}"#,
            &c,
        )
        .unwrap();
        assert_eq!(
            o,
            CheckOutcome {
                status: "warning".into(),
                value: Some(20.0),
                message: Some("avg 20.0".into())
            }
        );
        let o = check(&e, r#"#{status: "info", value: 3}"#, &c).unwrap();
        assert_eq!((o.status.as_str(), o.value), ("info", Some(3.0)));

        let o = check(&e, "let x = 1;", &c).unwrap();
        assert_eq!(o.status, "ok");
        let o = check(&e, "if Result > 1000 { return \"error\"; }", &c).unwrap();
        assert_eq!(o.status, "ok");
        let o = check(
            &e,
            r#"fn lvl(x) { if x > 90 { "error" } else { "ok" } } lvl(Result)"#,
            &c,
        )
        .unwrap();
        assert_eq!(o.status, "error");
    }

    #[test]
    fn check_bad_returns() {
        let e = engine();
        let c = ctx(Some(95.0));
        for (src, needle) in [
            (r#""bad""#, "critical"),
            (r#""nodata""#, "ok, info, warning, error, critical"),
            ("42", "int"),
            ("[1]", "array"),
            (r#"#{value: 1}"#, "no `status`"),
            (r#"#{status: "ok", valu: 1}"#, "unknown key `valu`"),
            (r#"#{status: "ok", value: "x"}"#, "`value` must be a number"),
            (
                r#"#{status: "ok", message: 5}"#,
                "`message` must be a string",
            ),
            (r#"#{status: 1}"#, "status string"),
        ] {
            match check(&e, src, &c) {
                Err(ScriptError::BadReturn(m)) => assert!(m.contains(needle), "{src}: {m}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn runtime_errors_have_position() {
        let e = engine();
        match check(&e, "let x = 1;\nlet y = x.nope();\n\"ok\"", &ctx(None)) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains("line 2"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match check(&e, r#"throw "boom""#, &ctx(None)) {
            Err(ScriptError::Runtime { message }) => assert!(message.contains("boom"), "{message}"),
            other => panic!("{other:?}"),
        }
        // an error inside a script function is unwrapped to its cause
        match check(&e, "fn f() { 1 / 0 }\nf()", &ctx(None)) {
            Err(ScriptError::Runtime { message }) => {
                assert!(message.contains("zero"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_query() {
        let e = engine();
        let host = FakeHost::new(1000, 5.0);
        let src = r#"
            let rows = query("cpu", "usage", "avg", ["host"], "5m");
            let worst = max(rows);
            let b = rows.filter(|r| r.tags.host == "b")[0].value;
            #{status: if worst > 5.5 { "warning" } else { "ok" }, value: b + rows.len()}
        "#;
        let o = e
            .eval_check(&e.compile_script(src, "q").unwrap(), &ctx(None), &host)
            .unwrap();
        assert_eq!(o.status, "warning");
        assert_eq!(o.value, Some(8.0));
        assert_eq!(host.calls(), vec![r#"query cpu usage avg ["host"] 300"#]);

        // window as seconds, by empty, by as a single string, compound duration
        let c = e
            .compile_script(
                r#"query("m", "f", "max", [], 90); query("m", "f", "p99", "host", "1h30m"); "ok""#,
                "q",
            )
            .unwrap();
        let host = FakeHost::new(1000, 5.0);
        e.eval_check(&c, &ctx(None), &host).unwrap();
        assert_eq!(
            host.calls(),
            vec!["query m f max [] 90", r#"query m f p99 ["host"] 5400"#]
        );
    }

    #[test]
    fn host_series() {
        let e = engine();
        let host = FakeHost::new(1000, 5.0);
        let src = r#"
            let s = series("cpu", "usage", #{host: "web01"}, "30s");
            let fit = linear_fit(s[0].points);
            #{status: "ok", value: fit.slope, message: s[0].tags.host + " " + s[0].points[1][0]}
        "#;
        let o = e
            .eval_check(&e.compile_script(src, "s").unwrap(), &ctx(None), &host)
            .unwrap();
        assert_eq!(o.value, Some(0.2));
        assert_eq!(o.message.as_deref(), Some("web01 990"));
        assert_eq!(
            host.calls(),
            vec![r#"series cpu usage {"host": "web01"} 30"#]
        );
    }

    #[test]
    fn host_events_and_now() {
        let e = engine();
        let host = FakeHost::new(10_000, 5.0);
        let src = r#"
            let ev = events(#{status: "error", monitor: "m1", since: "1h"});
            let e0 = ev[0];
            let ok = e0.df_status == "error" && e0.date == 1700000000 && e0.df_issue_duration == 1.5
                && e0.df_is_silent == false && e0.df_event_detail == () && e0.list[1] == "x"
                && e0.obj.host == "web01" && now() == 10000;
            events(#{source: "custom", since: 5});
            events(#{since: "2023-11-14T22:13:20Z"});
            events();
            if ok { "ok" } else { "critical" }
        "#;
        let o = e
            .eval_check(&e.compile_script(src, "ev").unwrap(), &ctx(None), &host)
            .unwrap();
        assert_eq!(o.status, "ok");
        let calls = host.calls();
        assert_eq!(calls.len(), 4);
        assert!(
            calls[0].contains(r#"status: Some("error")"#),
            "{}",
            calls[0]
        );
        assert!(calls[0].contains(r#"monitor: Some("m1")"#), "{}", calls[0]);
        assert!(calls[0].contains("since: Some(6400)"), "{}", calls[0]);
        assert!(
            calls[1].contains(r#"source: Some("custom")"#),
            "{}",
            calls[1]
        );
        assert!(calls[1].contains("since: Some(5)"), "{}", calls[1]);
        assert!(calls[2].contains("since: Some(1700000000)"), "{}", calls[2]);
        assert!(calls[3].contains("since: None"), "{}", calls[3]);
    }

    #[test]
    fn host_argument_errors() {
        let e = engine();
        for (src, needle) in [
            (r#"query("m", "f", "avg", [], "5 minutes")"#, "window"),
            (r#"query("m", "f", "avg", [], 0)"#, "window"),
            (r#"query("m", "f", "avg", [1], "5m")"#, "tag names"),
            (r#"series("m", "f", "host", "5m")"#, "where"),
            (r#"events(#{stat: "ok"})"#, "unknown filter key `stat`"),
            (r#"events(#{since: "yesterday"})"#, "since"),
            (r#"report(#{status: "ok"})"#, "only available in bots"),
        ] {
            match check(&e, src, &ctx(None)) {
                Err(ScriptError::Runtime { message }) => {
                    assert!(message.contains(needle), "{src}: {message}");
                    assert!(message.contains("line 1"), "{src}: {message}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_errors_name_the_function() {
        let e = engine();
        let host = FakeHost::failing();
        for (src, func) in [
            (r#"query("m", "f", "avg", [], "5m")"#, "query()"),
            (r#"series("m", "f", #{}, "5m")"#, "series()"),
            (r#"events(#{})"#, "events()"),
        ] {
            let c = e.compile_script(src, "h").unwrap();
            match e.eval_check(&c, &ctx(None), &host) {
                Err(ScriptError::Runtime { message }) => {
                    assert!(message.contains(func), "{message}");
                    assert!(message.contains("store is closed"), "{message}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn helpers() {
        let e = engine();
        assert_eq!(float(&e, "avg([1, 2, 3.0, 6])"), 3.0);
        assert_eq!(float(&e, "sum([1, 2, 3])"), 6.0);
        assert_eq!(float(&e, "min([4, -2.5, 3])"), -2.5);
        assert_eq!(float(&e, "max([4, -2.5, 3])"), 4.0);
        assert_eq!(float(&e, "stddev([2, 4, 4, 4, 5, 5, 7, 9])"), 2.0);
        assert_eq!(float(&e, "stddev([5])"), 0.0);
        assert_eq!(float(&e, "percentile([1, 2, 3, 4], 50)"), 2.5);
        assert_eq!(float(&e, "percentile([4, 1, 3, 2], 0)"), 1.0);
        assert_eq!(float(&e, "percentile([4, 1, 3, 2], 100)"), 4.0);
        assert!((float(&e, "percentile([10, 20, 30, 40, 50], 90.0)") - 46.0).abs() < 1e-9);
        assert_eq!(float(&e, "percentile([7], 99)"), 7.0);
        // points and query rows work directly
        assert_eq!(float(&e, "avg(points)"), 20.0);
        assert_eq!(float(&e, "sum([#{value: 1}, #{value: 2.5}])"), 3.5);
        // empty input gives ()
        for f in [
            "avg([])",
            "sum([])",
            "min([])",
            "max([])",
            "stddev([])",
            "percentile([], 50)",
            "linear_fit([])",
            "linear_fit([[1, 2]])",
            "linear_fit([[1, 2], [1, 3]])",
        ] {
            assert!(value(&e, f).unwrap().is_unit(), "{f}");
        }
        // rhai's two-number min/max still work
        let v = value(&e, "[min(3, 5), max(3, 5), min(1.5, 2.0), max(2, 7.5)]").unwrap();
        assert_eq!(v.to_string(), "[3, 5, 1.5, 7.5]");
        // linear fit
        let v = value(
            &e,
            "let f = linear_fit([[0, 1], [1, 3], [2, 5]]); [f.slope, f.intercept]",
        )
        .unwrap();
        assert_eq!(v.to_string(), "[2.0, 1.0]");
        let v = value(&e, "let f = linear_fit([[0, 1.0], [2, 1]]); f.slope").unwrap();
        assert_eq!(v.as_float().unwrap(), 0.0);
        // errors
        for (src, needle) in [
            (r#"avg([1, "x"])"#, "avg(): item 1 is string"),
            ("percentile([1], 101)", "0 to 100"),
            (r#"percentile([1], "x")"#, "0 to 100"),
            ("linear_fit([1, 2])", "[x, y] pairs"),
        ] {
            match value(&e, src) {
                Err(ScriptError::Runtime { message }) => {
                    assert!(message.contains(needle), "{src}: {message}")
                }
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn bots_report() {
        let e = engine();
        let host = FakeHost::new(1000, 95.0);
        let src = r#"
            for r in query("cpu", "usage", "avg", ["host"], "5m") {
                if r.value > 90 {
                    report(#{title: `${r.tags.host} busy`, message: "m", status: "critical",
                             dimension_tags: #{host: r.tags.host, core: 3}});
                }
            }
            report(#{status: "ok"});
        "#;
        let c = e.compile_script(src, "bot.rhai").unwrap();
        let reports = e.run_bot(&c, &host).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(
            reports[0],
            BotReport {
                title: "a busy".into(),
                message: "m".into(),
                status: "critical".into(),
                dimension_tags: tags(&[("core", "3"), ("host", "a")]),
            }
        );
        assert_eq!(
            reports[1].dimension_tags,
            tags(&[("core", "3"), ("host", "b")])
        );
        assert_eq!(
            reports[2],
            BotReport {
                title: String::new(),
                message: String::new(),
                status: "ok".into(),
                dimension_tags: Tags::new(),
            }
        );
        // no reports is fine
        let c = e.compile_script("let x = 1;", "quiet.rhai").unwrap();
        assert!(e.run_bot(&c, &host).unwrap().is_empty());

        for (src, needle) in [
            (r#"report(#{status: "nodata"})"#, "not a status"),
            (r#"report(#{title: "t"})"#, "`status` is missing"),
            (
                r#"report(#{status: "ok", tags: #{}})"#,
                "unknown key `tags`",
            ),
            (
                r#"report(#{status: "ok", dimension_tags: "h"})"#,
                "dimension_tags",
            ),
        ] {
            let c = e.compile_script(src, "bad.rhai").unwrap();
            match e.run_bot(&c, &host) {
                Err(ScriptError::Runtime { message }) => {
                    assert!(message.contains(needle), "{src}: {message}")
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        // a failing bot reports nothing, and later runs start clean
        let c = e
            .compile_script(r#"report(#{status: "error"}); throw "x";"#, "f.rhai")
            .unwrap();
        assert!(e.run_bot(&c, &host).is_err());
        let c = e
            .compile_script(r#"report(#{status: "info"});"#, "g.rhai")
            .unwrap();
        assert_eq!(e.run_bot(&c, &host).unwrap().len(), 1);
    }

    #[test]
    fn endless_loop_stops() {
        let e = engine();
        for src in [
            "loop {}",
            "let i = 0; while true { i += 1; }",
            "fn f() { loop { } } f()",
        ] {
            let start = Instant::now();
            let r = check(&e, src, &ctx(None));
            assert!(
                matches!(r, Err(ScriptError::Limit(_)) | Err(ScriptError::Timeout)),
                "{src}: {r:?}"
            );
            assert!(start.elapsed() < Duration::from_secs(3), "{src}");
        }
    }

    #[test]
    fn time_limit_stops_without_operation_limit() {
        let e = ScriptEngine::new(Limits {
            max_operations: 0,
            time_limit: Duration::from_millis(100),
            ..Limits::default()
        });
        let start = Instant::now();
        let r = check(&e, "loop {}", &ctx(None));
        assert_eq!(r, Err(ScriptError::Timeout));
        assert!(start.elapsed() < Duration::from_secs(2));
        // try/catch cannot swallow the timeout
        let r = check(&e, "try { loop {} } catch { }\n\"ok\"", &ctx(None));
        assert_eq!(r, Err(ScriptError::Timeout));
        // the engine is fine afterwards
        assert_eq!(check(&e, r#""info""#, &ctx(None)).unwrap().status, "info");
    }

    #[test]
    fn deep_recursion_fails() {
        let e = engine();
        match check(&e, "fn f(n) { f(n + 1) }\nf(0)", &ctx(None)) {
            Err(ScriptError::Limit(m)) => assert!(m.contains("nested"), "{m}"),
            other => panic!("{other:?}"),
        }
        // deeply nested expressions are refused at compile time
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(matches!(
            e.compile_expr(&deep),
            Err(ScriptError::Compile { .. })
        ));
    }

    #[test]
    fn pathological_sources_are_refused() {
        let e = engine();
        let n = 100_000;
        for src in [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1{}", "{".repeat(n), "}".repeat(n)),
            format!("{}1{}", "#{a:".repeat(n), "}".repeat(n)),
            format!("1{}", " + 1".repeat(n)),
            "-".repeat(n) + "1",
            "!".repeat(n) + "true",
        ] {
            let r = e.compile_script(&src, "deep.rhai");
            assert!(
                matches!(r, Err(ScriptError::Compile { .. })),
                "{}",
                &src[..10]
            );
            let r = e.compile_expr(&src);
            assert!(
                matches!(r, Err(ScriptError::Compile { .. })),
                "{}",
                &src[..10]
            );
        }
    }

    #[test]
    fn huge_values_fail() {
        let e = engine();
        for src in [
            r#"let s = "x"; loop { s += s; }"#,
            r#"let a = []; loop { a.push(1); }"#,
            // Rhai checks a map's size when it is next used, not on `m[k] = v` itself
            r#"let m = #{}; for i in 0..20000 { m[`k${i}`] = i; } m.len()"#,
            r#"let m = #{}; for i in 0..20000 { let o = #{}; o[`k${i}`] = i; m += o; }"#,
            "let a = [1]; a.pad(100000, 0);",
            r#""ab".pad(1000000, "x")"#,
        ] {
            match check(&e, src, &ctx(None)) {
                Err(ScriptError::Limit(m)) => assert!(m.contains("too large"), "{src}: {m}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn print_and_debug_do_not_panic() {
        let e = engine();
        let o = check(&e, r#"print("hello"); debug(#{a: 1}); "ok""#, &ctx(None)).unwrap();
        assert_eq!(o.status, "ok");
    }

    #[test]
    fn compiled_reused_many_times() {
        let e = engine();
        let host = FakeHost::new(1000, 5.0);
        let c = e
            .compile_expr(r#"Result > 90 && tags.host != "x" && avg(points) > 1"#)
            .unwrap();
        let start = Instant::now();
        for i in 0..1000 {
            let cx = CheckCtx {
                result: Some(i as f64 / 10.0),
                ..ctx(None)
            };
            assert_eq!(e.eval_rule(&c, &cx, &host).unwrap(), i > 900);
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let c2 = c.clone();
        assert!(Arc::ptr_eq(&c.ast, &c2.ast));
    }

    #[test]
    fn concurrent_evaluations_use_their_own_host() {
        let e = Arc::new(engine());
        let c = e
            .compile_script(
                r#"let v = query("m", "f", "avg", [], "1m")[0].value;
                   let i = 0; while i < 200 { i += 1; }
                   #{status: "ok", value: v + now()}"#,
                "c.rhai",
            )
            .unwrap();
        let handles: Vec<_> = [(1_000i64, 1.0f64), (2_000, 2.0)]
            .into_iter()
            .map(|(now, value)| {
                let e = e.clone();
                let c = c.clone();
                std::thread::spawn(move || {
                    let host = FakeHost::new(now, value);
                    for _ in 0..200 {
                        let o = e.eval_check(&c, &CheckCtx::default(), &host).unwrap();
                        assert_eq!(o.value, Some(now as f64 + value));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    /// A host whose `query` evaluates another script on the same engine (re-entrancy).
    struct NestedHost<'a> {
        engine: &'a ScriptEngine,
        inner: Compiled,
    }

    impl ScriptHost for NestedHost<'_> {
        fn query(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &[String],
            _: i64,
        ) -> Result<Vec<(Tags, f64)>, String> {
            let inner_host = FakeHost::new(7, 0.0);
            let o = self
                .engine
                .eval_check(&self.inner, &CheckCtx::default(), &inner_host)
                .map_err(|e| e.to_string())?;
            Ok(vec![(Tags::new(), o.value.unwrap_or(-1.0))])
        }
        fn series(
            &self,
            _: &str,
            _: &str,
            _: &Tags,
            _: i64,
        ) -> Result<Vec<(Tags, Points)>, String> {
            Ok(Vec::new())
        }
        fn events(&self, _: &EventFilter) -> Result<Vec<serde_json::Value>, String> {
            Ok(Vec::new())
        }
        fn now(&self) -> i64 {
            42
        }
    }

    #[test]
    fn reentrant_evaluation_on_one_thread() {
        let e = engine();
        let inner = e
            .compile_script(r#"#{status: "ok", value: now()}"#, "inner")
            .unwrap();
        let host = NestedHost { engine: &e, inner };
        let outer = e
            .compile_script(
                r#"let a = now(); let b = query("m", "f", "avg", [], 60)[0].value; let c = now();
                   #{status: "ok", value: a * 10000 + b * 100 + c}"#,
                "outer",
            )
            .unwrap();
        let o = e.eval_check(&outer, &CheckCtx::default(), &host).unwrap();
        assert_eq!(o.value, Some(42.0 * 10000.0 + 700.0 + 42.0));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("1w"), Some(604_800));
        assert_eq!(parse_duration("45"), Some(45));
        for bad in ["", "m", "5x", "5 m", "-5m", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
