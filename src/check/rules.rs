//! The rule-kind maths and rule evaluation for one object: `Result` for threshold, mutation,
//! range, outlier and composite rules, then the level from the rules or the check script.

use crate::check::host::Host;
use crate::check::NS;
use crate::detect::Level;
use crate::monitor::{Eval, RuleKind, Rules};
use crate::script::{CheckCtx, ScriptEngine};
use crate::store::query::{aggregate, Agg, Group, Tags};
use std::collections::BTreeMap;

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
}

/// `Result` for object `r`: the window's value, or what the rule kind derives from it
/// (`None` when the object has no value in the window).
pub(crate) fn result_for(
    agg: Agg,
    kind: RuleKind,
    r: &str,
    values: &BTreeMap<String, f64>,
    previous: Option<&BTreeMap<String, Group>>,
) -> Option<f64> {
    let cur = *values.get(r)?;
    match kind {
        RuleKind::Threshold | RuleKind::Composite => Some(cur),
        RuleKind::Mutation => {
            let prev = previous
                .and_then(|p| p.get(r))
                .and_then(|g| aggregate(agg, &g.points));
            Some(prev.map_or(0.0, |p| cur - p))
        }
        RuleKind::Range => {
            let pts = previous
                .and_then(|p| p.get(r))
                .map(|g| g.points.as_slice())
                .unwrap_or(&[]);
            let (Some(mean), Some(sd)) = (aggregate(Agg::Avg, pts), aggregate(Agg::Stddev, pts))
            else {
                return Some(0.0);
            };
            Some(if sd > 0.0 { (cur - mean) / sd } else { 0.0 })
        }
        RuleKind::Outlier => {
            let all: Vec<(i64, f64)> = values.values().map(|v| (0, *v)).collect();
            if all.len() < 3 {
                return Some(0.0);
            }
            let med = aggregate(Agg::Median, &all).unwrap_or(0.0);
            let dev: Vec<(i64, f64)> = all.iter().map(|(_, v)| (0, (v - med).abs())).collect();
            let mad = aggregate(Agg::Median, &dev).unwrap_or(0.0);
            // 1.4826 scales the MAD to a standard deviation for normal data.
            Some(if mad > 0.0 {
                (cur - med) / (1.4826 * mad)
            } else {
                0.0
            })
        }
    }
}

/// Evaluates the levels (or the check script) and the recovery rule for one object.
pub(crate) fn evaluate(
    engine: &ScriptEngine,
    rules: &Rules,
    result: Option<f64>,
    tags: &Tags,
    points: &[(i64, f64)],
    host: &Host,
) -> Result<Evaluated, String> {
    let ctx = CheckCtx {
        result,
        tags: tags.clone(),
        points: points.iter().map(|(t, v)| (t.div_euclid(NS), *v)).collect(),
    };
    let (level, value, message) = match &rules.eval {
        Eval::Script(script) => {
            let out = engine
                .eval_check(&script.compiled, &ctx, host)
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
                if engine
                    .eval_rule(&rule.compiled, &ctx, host)
                    .map_err(|e| format!("rule {:?}: {e}", rule.source))?
                {
                    level = *lvl;
                    break;
                }
            }
            (level, result, None)
        }
    };
    let recovery_holds = match &rules.recovery {
        Some(rule) if matches!(level, Level::Ok | Level::Info) => engine
            .eval_rule(&rule.compiled, &ctx, host)
            .map_err(|e| format!("recovery {:?}: {e}", rule.source))?,
        _ => true,
    };
    Ok(Evaluated {
        level,
        value,
        recovery_holds,
        message,
    })
}
