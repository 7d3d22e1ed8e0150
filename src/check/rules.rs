//! The rule-kind maths and rule evaluation for one object: `Result` for threshold, mutation,
//! range, outlier and composite rules, then the level from the rules or the check script.

use crate::check::host::Host;
use crate::check::kinds::{self, Decision};
use crate::check::NS;
use crate::detect::Level;
use crate::monitor::{Eval, KindParams, Rule, RuleKind, Rules};
use crate::script::{CheckCtx, ScriptEngine};
use crate::store::query::{aggregate, Agg, Tags};

/// One object's evaluation.
pub(crate) struct Evaluated {
    /// the level the rules or the script gave
    pub(crate) level: Level,
    /// the value shown (`Result`, or the script's value)
    pub(crate) value: Option<f64>,
    /// the `recovery` expression's answer (true when there is none)
    pub(crate) recovery_holds: bool,
    /// the script's message
    pub(crate) message: Option<String>,
    /// what the rule kind's detector saw (`detector` in `df_event_detail`: mutation,
    /// forecast, range)
    pub(crate) detail: Option<serde_json::Value>,
    /// fields a kind adds to `df_event_detail` itself to explain its decision (composite,
    /// slo, outlier); `None` for the others
    pub(crate) extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a rule kind compares an object's window value with, read before the objects are
/// evaluated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Baseline {
    /// `mutation`: `agg` over the window just before (`None`: no value there)
    pub(crate) previous: Option<f64>,
    /// `range`: mean and standard deviation of the baseline window's points
    pub(crate) band: Option<(f64, f64)>,
    /// `range` with band parameters: the band learned from history
    pub(crate) learned: Option<kinds::band::Band>,
    /// `forecast`: the trend fitted to the look-back
    pub(crate) trend: Option<kinds::forecast::Trend>,
}

/// The median and MAD of the values of every object of one check, for `outlier` (`None`
/// with fewer than three values).
pub(crate) fn fleet(values: &[f64]) -> Option<(f64, f64)> {
    if values.len() < 3 {
        return None;
    }
    let all: Vec<(i64, f64)> = values.iter().map(|v| (0, *v)).collect();
    let med = aggregate(Agg::Median, &all).unwrap_or(0.0);
    let dev: Vec<(i64, f64)> = all.iter().map(|(_, v)| (0, (v - med).abs())).collect();
    let mad = aggregate(Agg::Median, &dev).unwrap_or(0.0);
    Some((med, mad))
}

/// What the rule kind makes of an object whose window value is `cur`: the detectors of
/// [`kinds`] by their parameters, else [`result_for`].
pub(crate) fn decide(
    rules: &Rules,
    cur: f64,
    base: &Baseline,
    fleet: Option<(f64, f64)>,
) -> Decision {
    match &rules.params {
        KindParams::Change(p) => kinds::change::decide(p, cur, base.previous),
        KindParams::Forecast(p) => kinds::forecast::decide(p, cur, base.trend.as_ref()),
        KindParams::Band(p) => kinds::band::decide(p, cur, base.learned.as_ref()),
        KindParams::Plain => Decision::plain(result_for(rules.kind, cur, base, fleet)),
    }
}

/// `Result` for an object whose window value is `cur` under a kind without parameters: the
/// value itself, or what the rule kind derives from it and its baseline (`fleet`: see
/// [`fleet`]).
pub(crate) fn result_for(
    kind: RuleKind,
    cur: f64,
    base: &Baseline,
    fleet: Option<(f64, f64)>,
) -> f64 {
    match kind {
        // A forecast always has parameters (`threshold` is required); a mutation too.
        RuleKind::Threshold | RuleKind::Composite | RuleKind::Forecast => cur,
        RuleKind::Mutation => base.previous.map_or(0.0, |p| cur - p),
        RuleKind::Range => match base.band {
            Some((mean, sd)) if sd > 0.0 => (cur - mean) / sd,
            _ => 0.0,
        },
        RuleKind::Outlier => match fleet {
            // 1.4826 scales the MAD to a standard deviation for normal data.
            Some((med, mad)) if mad > 0.0 => (cur - med) / (1.4826 * mad),
            _ => 0.0,
        },
    }
}

/// The native answer of a rule for `result`, when the rule has a native form and `result`
/// is a finite number (otherwise Rhai decides: it compares NaN and infinities with integer
/// literals in its own way).
fn native(rule: &Rule, result: Option<f64>) -> Option<bool> {
    let v = result.filter(|v| v.is_finite())?;
    Some(rule.compiled.native()?.eval(v))
}

/// Whether evaluating `rules` may need Rhai (and so the tags and points in its scope) even
/// when `Result` is a number.
pub(crate) fn needs_scope(rules: &Rules) -> bool {
    let levels_native = match &rules.eval {
        Eval::Script(_) => false,
        Eval::Levels(levels) => levels.iter().all(|(_, r)| r.compiled.native().is_some()),
    };
    !levels_native
        || rules
            .recovery
            .as_ref()
            .is_some_and(|r| r.compiled.native().is_none())
}

/// Evaluates the levels (or the check script) and the recovery rule for one object.
///
/// Rules with a native form are answered natively when `Result` is a number; the Rhai scope
/// (tags and points, built by `scope`) is made only when some rule needs it.
pub(crate) fn evaluate(
    engine: &ScriptEngine,
    rules: &Rules,
    result: Option<f64>,
    scope: impl FnOnce() -> (Tags, Vec<(i64, f64)>),
    host: &Host,
) -> Result<Evaluated, String> {
    let mut lazy = LazyCtx {
        result,
        scope: Some(scope),
        built: None,
    };
    let (level, value, message) = match &rules.eval {
        Eval::Script(script) => {
            let out = engine
                .eval_check(&script.compiled, lazy.get(), host)
                .map_err(|e| e.to_string())?;
            let level = Level::parse(&out.status).ok_or_else(|| {
                format!(
                    "script returned status {:?}: expected ok, info, warning, error or critical",
                    out.status
                )
            })?;
            (level, out.value.or(result), out.message)
        }
        Eval::Levels(levels) => {
            let mut level = Level::Ok;
            for (lvl, rule) in levels {
                let holds = match native(rule, result) {
                    Some(b) => b,
                    None => engine
                        .eval_rule(&rule.compiled, lazy.get(), host)
                        .map_err(|e| format!("rule {:?}: {e}", rule.source))?,
                };
                if holds {
                    level = *lvl;
                    break;
                }
            }
            (level, result, None)
        }
    };
    let recovery_holds = match &rules.recovery {
        Some(rule) if matches!(level, Level::Ok | Level::Info) => match native(rule, result) {
            Some(b) => b,
            None => engine
                .eval_rule(&rule.compiled, lazy.get(), host)
                .map_err(|e| format!("recovery {:?}: {e}", rule.source))?,
        },
        _ => true,
    };
    Ok(Evaluated {
        level,
        value,
        recovery_holds,
        message,
        detail: None,
        extra: None,
    })
}

/// [`evaluate`] for a kind's [`Decision`] (`None`: the window had no value): a decision held
/// back by the kind's precondition is a clean check without running the rules; the kind's
/// detail goes with the result.
pub(crate) fn judge(
    engine: &ScriptEngine,
    rules: &Rules,
    decision: Option<Decision>,
    scope: impl FnOnce() -> (Tags, Vec<(i64, f64)>),
    host: &Host,
) -> Result<Evaluated, String> {
    let result = decision.as_ref().and_then(|d| d.result);
    let mut ev = match &decision {
        Some(d) if d.held_back => Evaluated {
            level: Level::Ok,
            value: result,
            recovery_holds: true,
            message: None,
            detail: None,
            extra: None,
        },
        _ => evaluate(engine, rules, result, scope, host)?,
    };
    ev.detail = decision.and_then(|d| d.detail);
    Ok(ev)
}

/// The Rhai scope of one evaluation, built on first use.
struct LazyCtx<F> {
    result: Option<f64>,
    scope: Option<F>,
    built: Option<CheckCtx>,
}

impl<F: FnOnce() -> (Tags, Vec<(i64, f64)>)> LazyCtx<F> {
    fn get(&mut self) -> &CheckCtx {
        if self.built.is_none() {
            let (tags, points) = (self.scope.take().expect("scope is built once"))();
            self.built = Some(CheckCtx {
                result: self.result,
                tags,
                points: points.iter().map(|(t, v)| (t.div_euclid(NS), *v)).collect(),
            });
        }
        self.built.as_ref().expect("just built")
    }
}
