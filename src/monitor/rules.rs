//! `[rules]`: the rule kind, level expressions or a check script (or a bot's script), the
//! recovery expression and the state machine's counts.

use super::errs::Errs;
use super::load::{load_script, LoadContext};
use super::raw::RawRules;
use super::{MonitorType, Rule, RuleKind, Script, RULE_KINDS};
use crate::detect::Level;
use toml::Spanned;

/// `[rules]` read, before it is joined with the query into a monitor kind.
pub(super) struct ParsedRules {
    pub(super) kind: RuleKind,
    /// level expressions in check order
    pub(super) levels: Vec<(Level, Rule)>,
    pub(super) recovery: Option<Rule>,
    /// the check or bot script (`script` or `rules.script`)
    pub(super) script: Option<Script>,
    pub(super) trigger_after: u32,
    pub(super) recover_after: u32,
    /// seconds
    pub(super) baseline: i64,
    /// the kind's typed parameters
    pub(super) params: super::kinds::KindParams,
    pub(super) outlier: super::OutlierAlgo,
}

/// Reads `[rules]` and the top-level `script` of a monitor of type `mtype` with window
/// `interval` (the default baseline is six windows).
pub(super) fn parse(
    raw: Option<&Spanned<RawRules>>,
    top_script: Option<&Spanned<String>>,
    mtype: MonitorType,
    interval: i64,
    ctx: &LoadContext,
    e: &mut Errs,
) -> ParsedRules {
    let raw_rules = raw.map(|r| r.get_ref());
    let rule_kind = match raw_rules.and_then(|r| r.kind.as_ref()) {
        None => RuleKind::Threshold,
        Some(k) => RuleKind::parse(k.get_ref()).unwrap_or_else(|| {
            e.bad(
                k,
                "rules.kind",
                &format!("expected one of {}", RULE_KINDS.join(", ")),
            );
            RuleKind::Threshold
        }),
    };
    let mut levels = Vec::new();
    let compile = |src: &Spanned<String>, field: &str, e: &mut Errs| -> Option<Rule> {
        match ctx.engine.compile_expr(src.get_ref()) {
            Ok(c) => Some(Rule {
                source: src.get_ref().clone(),
                compiled: c,
            }),
            Err(err) => {
                e.bad(src, field, &format!("does not compile: {err}"));
                None
            }
        }
    };
    if let Some(r) = raw_rules {
        for (lvl, src, field) in [
            (Level::Critical, &r.critical, "rules.critical"),
            (Level::Error, &r.error, "rules.error"),
            (Level::Warning, &r.warning, "rules.warning"),
            (Level::Info, &r.info, "rules.info"),
        ] {
            if let Some(s) = src {
                if let Some(rule) = compile(s, field, e) {
                    levels.push((lvl, rule));
                }
            }
        }
    }
    let recovery = raw_rules
        .and_then(|r| r.recovery.as_ref())
        .and_then(|s| compile(s, "rules.recovery", e));
    let script_src = match (raw_rules.and_then(|r| r.script.as_ref()), top_script) {
        (Some(a), Some(_)) => {
            e.bad(
                a,
                "rules.script",
                "set the script once: either script or rules.script",
            );
            None
        }
        (a, b) => a.or(b),
    };
    let script = script_src.and_then(|s| match load_script(s.get_ref(), e.file, ctx) {
        Ok((path, src)) => match ctx.engine.compile_script(&src, &path.display().to_string()) {
            Ok(compiled) => Some(Script {
                name: s.get_ref().clone(),
                compiled,
            }),
            Err(err) => {
                e.bad(
                    s,
                    "rules.script",
                    &format!("{} does not compile: {err}", path.display()),
                );
                None
            }
        },
        Err(msg) => {
            e.bad(s, "rules.script", &msg);
            None
        }
    });
    if script_src.is_some() && !levels.is_empty() {
        e.at(
            raw.map(|r| r.span()).unwrap_or(0..0),
            "rules",
            "use either level expressions (critical, error, warning, info) or a script, not both"
                .into(),
        );
    }
    if mtype == MonitorType::BotObs && script_src.is_none() {
        e.at(
            0..0,
            "rules.script",
            "a bot_obs monitor needs a script that calls report(...)".into(),
        );
    }
    let any_level_given = raw_rules.is_some_and(|r| {
        r.critical.is_some() || r.error.is_some() || r.warning.is_some() || r.info.is_some()
    });
    if mtype != MonitorType::BotObs
        && script_src.is_none()
        && !any_level_given
        && raw_rules.is_some()
    {
        e.at(
            raw.map(|r| r.span()).unwrap_or(0..0),
            "rules",
            "no rule: set at least one of critical, error, warning, info, or script".into(),
        );
    }
    if mtype != MonitorType::BotObs && raw_rules.is_none() {
        e.at(
            0..0,
            "rules",
            "missing [rules] section: e.g. critical = \"Result > 90\"".into(),
        );
    }
    let count =
        |v: Option<&Spanned<i64>>, field: &str, default: u32, min: i64, e: &mut Errs| -> u32 {
            match v {
                None => default,
                Some(s) if *s.get_ref() >= min && *s.get_ref() <= 10_000 => *s.get_ref() as u32,
                Some(s) => {
                    e.bad(
                        s,
                        field,
                        &format!("expected an integer from {min} to 10000"),
                    );
                    default
                }
            }
        };
    let trigger_after = count(
        raw_rules.and_then(|r| r.trigger_after.as_ref()),
        "rules.trigger_after",
        1,
        1,
        e,
    );
    let recover_after = count(
        raw_rules.and_then(|r| r.recover_after.as_ref()),
        "rules.recover_after",
        1,
        0,
        e,
    );
    let baseline = e.duration(
        &raw_rules.and_then(|r| r.baseline.clone()),
        "rules.baseline",
        interval.saturating_mul(6),
    );
    let params = super::kinds::parse(raw_rules, rule_kind, interval, baseline, e);
    let outlier = super::outlier::parse(raw_rules, rule_kind, e);
    ParsedRules {
        outlier,
        kind: rule_kind,
        params,
        levels,
        recovery,
        script,
        trigger_after,
        recover_after,
        baseline,
    }
}
