//! [`ScriptEngine`]: the sandboxed Rhai engine, its [`Limits`], compilation into [`Compiled`]
//! handles and the three kinds of evaluation (rule, check script, bot), with errors mapped to
//! [`ScriptError`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, ParseError, Position, Scope, AST};

use super::convert::{points_to_array, show, tags_to_map, type_name, RhaiErr};
use super::frame::{current_deadline, current_name, FrameGuard};
use super::host::register_host_functions;
use super::native::NativeExpr;
use super::outcome::check_outcome;
use super::stats::register_helpers;
use super::{BotReport, CheckCtx, CheckOutcome, ScriptHost};

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
    pub(super) ast: Arc<AST>,
    name: Arc<str>,
    /// the same rule as native comparisons, when it is in that subset
    native: Option<Arc<NativeExpr>>,
}

impl Compiled {
    /// The name given at compile time (the script name, or `"rule"` for expressions).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule as native comparisons over `Result`, when it is one of the simple shapes
    /// [`NativeExpr`] accepts; it answers as Rhai would whenever `Result` is a number.
    pub fn native(&self) -> Option<&NativeExpr> {
        self.native.as_deref()
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .finish()
    }
}

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
            let deadline = current_deadline()?;
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
            native: NativeExpr::compile(src).map(Arc::new),
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
            native: None,
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

    pub(super) fn run(
        &self,
        c: &Compiled,
        scope: &mut Scope,
        host: &dyn ScriptHost,
        bot: bool,
    ) -> Result<(Dynamic, Vec<BotReport>), ScriptError> {
        let deadline = Instant::now() + self.limits.time_limit;
        let guard = FrameGuard::push(
            host,
            deadline,
            self.limits.max_array_size,
            c.name.clone(),
            bot,
        );
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

/// The scope of a check: `Result`, `tags` and `points` from `ctx`.
pub(super) fn check_scope(ctx: &CheckCtx) -> Scope<'static> {
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
