//! Composite monitors (`kind = "composite"` without a `[query]`): level rules that are
//! boolean expressions over other monitors' ids, such as `cpu-high && (mem-high || !calm)`.
//!
//! Here: the expression parser (a small recursive descent with `||` below `&&` below `!`,
//! errors with a 1-based column), reading the `[rules]` of a composite, and the checks that
//! need every monitor file at once (unknown ids, cycles between composites), run by `load`.

use super::errs::Errs;
use super::raw::{RawMonitor, RawRules};
use super::{Monitor, MonitorError, MonitorKind};
use crate::detect::Level;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::Spanned;

/// A boolean expression over monitor ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// true while that monitor has an open round for the object's tags
    Id(String),
    /// `!e`
    Not(Box<Expr>),
    /// `a && b`
    And(Box<Expr>, Box<Expr>),
    /// `a || b`
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// The value of the expression when `holds(id)` tells whether an id is true.
    pub fn eval(&self, holds: &impl Fn(&str) -> bool) -> bool {
        match self {
            Expr::Id(id) => holds(id),
            Expr::Not(e) => !e.eval(holds),
            Expr::And(a, b) => a.eval(holds) && b.eval(holds),
            Expr::Or(a, b) => a.eval(holds) || b.eval(holds),
        }
    }

    /// Every id the expression names, sorted and distinct.
    pub fn ids(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Id(id) => {
                out.insert(id.clone());
            }
            Expr::Not(e) => e.collect(out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }
}

/// Why an expression does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based column (in characters) of the offending token
    pub column: usize,
    /// what was found and what was expected
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Id(String),
    And,
    Or,
    Not,
    Open,
    Close,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Id(s) => write!(f, "monitor id {s:?}"),
            Tok::And => f.write_str("`&&`"),
            Tok::Or => f.write_str("`||`"),
            Tok::Not => f.write_str("`!`"),
            Tok::Open => f.write_str("`(`"),
            Tok::Close => f.write_str("`)`"),
            Tok::End => f.write_str("the end of the expression"),
        }
    }
}

/// Characters that end an id: an id is a run of anything else but white space.
fn is_punct(c: char) -> bool {
    matches!(c, '!' | '(' | ')' | '&' | '|')
}

/// Splits the text into tokens with their 1-based columns; the last is [`Tok::End`].
fn lex(s: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '!' => Tok::Not,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '&' | '|' => {
                if chars.get(i + 1) != Some(&c) {
                    return Err(ExprError {
                        column: col,
                        message: format!("a single `{c}`: write `{c}{c}`"),
                    });
                }
                i += 1;
                if c == '&' {
                    Tok::And
                } else {
                    Tok::Or
                }
            }
            _ => {
                let from = i;
                while i + 1 < chars.len()
                    && !chars[i + 1].is_whitespace()
                    && !is_punct(chars[i + 1])
                {
                    i += 1;
                }
                Tok::Id(chars[from..=i].iter().collect())
            }
        };
        out.push((tok, col));
        i += 1;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

/// Parses `a && (b || !c)`: `!` binds tightest, then `&&`, then `||`; both are left-assoc.
pub fn parse_expr(s: &str) -> Result<Expr, ExprError> {
    let toks = lex(s)?;
    let mut p = Parser { toks, at: 0 };
    let e = p.or()?;
    match p.peek() {
        (Tok::End, _) => Ok(e),
        (t, col) => Err(ExprError {
            column: col,
            message: format!("unexpected {t}: expected `&&`, `||` or the end"),
        }),
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> (Tok, usize) {
        self.toks[self.at].clone()
    }
    fn bump(&mut self) -> (Tok, usize) {
        let t = self.peek();
        if t.0 != Tok::End {
            self.at += 1;
        }
        t
    }
    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.peek().0 == Tok::Or {
            self.bump();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.unary()?;
        while self.peek().0 == Tok::And {
            self.bump();
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, ExprError> {
        match self.bump() {
            (Tok::Not, _) => Ok(Expr::Not(Box::new(self.unary()?))),
            (Tok::Id(id), _) => Ok(Expr::Id(id)),
            (Tok::Open, col) => {
                let e = self.or()?;
                match self.bump() {
                    (Tok::Close, _) => Ok(e),
                    (t, c) => Err(ExprError {
                        column: c,
                        message: format!(
                            "unexpected {t}: expected `)` for the `(` at column {col}"
                        ),
                    }),
                }
            }
            (t, col) => Err(ExprError {
                column: col,
                message: format!("unexpected {t}: expected a monitor id, `!` or `(`"),
            }),
        }
    }
}

/// One level rule of a composite.
#[derive(Debug, Clone)]
pub struct CompositeRule {
    /// the level it gives
    pub level: Level,
    /// the expression as written
    pub source: String,
    /// the parsed expression
    pub expr: Expr,
    /// `rules.critical` etc., for errors found across files
    pub field: &'static str,
    /// 1-based line of the rule in its file
    pub line: usize,
}

/// What a composite monitor evaluates.
#[derive(Debug, Clone)]
pub struct CompositeSpec {
    /// level rules in check order (critical, error, warning, info); never empty
    pub levels: Vec<CompositeRule>,
    /// every id the rules name, sorted and distinct
    pub inputs: Vec<String>,
}

/// `[rules]` of a composite, before it becomes the monitor's kind.
pub(super) struct ParsedComposite {
    pub(super) spec: CompositeSpec,
    pub(super) trigger_after: u32,
    pub(super) recover_after: u32,
}

/// Whether a monitor file is a composite of the boolean kind: `kind = "composite"` and no
/// `[query]` (with a `[query]`, `composite` keeps its older meaning: a threshold whose rules
/// call host functions).
pub(super) fn wanted(raw: &RawMonitor) -> bool {
    raw.query.is_none()
        && raw
            .rules
            .as_ref()
            .and_then(|r| r.get_ref().kind.as_ref())
            .is_some_and(|k| k.get_ref() == "composite")
}

/// Reads the `[rules]` of a composite (and refuses the sections it has no use for).
pub(super) fn parse(raw: &RawMonitor, e: &mut Errs) -> Option<ParsedComposite> {
    let r: &RawRules = raw.rules.as_ref()?.get_ref();
    let rules_span = raw.rules.as_ref().map_or(0..0, |r| r.span());
    const NO_SCRIPT: &str =
        "a composite has no script: its rules are boolean expressions over monitor ids";
    const NO_WINDOW: &str = "a composite reads no window; remove it";
    for (present, field, why) in [
        (raw.script.as_ref().map(|s| s.span()), "script", NO_SCRIPT),
        (
            r.script.as_ref().map(|s| s.span()),
            "rules.script",
            NO_SCRIPT,
        ),
        (
            r.recovery.as_ref().map(|s| s.span()),
            "rules.recovery",
            "a composite has no Result threshold to recover below; use recover_after",
        ),
        (
            r.baseline.as_ref().map(|s| s.span()),
            "rules.baseline",
            NO_WINDOW,
        ),
        (
            r.algorithm.as_ref().map(|s| s.span()),
            "rules.algorithm",
            NO_WINDOW,
        ),
        (
            r.tolerance.as_ref().map(|s| s.span()),
            "rules.tolerance",
            NO_WINDOW,
        ),
        (
            raw.nodata.as_ref().map(|s| s.span()),
            "nodata",
            "a composite reads no data, so it has no gaps; its inputs' nodata rounds count as \
             open rounds",
        ),
        (
            raw.slo.as_ref().map(|s| s.span()),
            "slo",
            "a composite is no objective: remove [slo] or kind = \"composite\"",
        ),
    ] {
        if let Some(at) = present {
            e.at(at, field, why.into());
        }
    }
    let mut levels = Vec::new();
    for (level, src, field) in [
        (Level::Critical, &r.critical, "rules.critical"),
        (Level::Error, &r.error, "rules.error"),
        (Level::Warning, &r.warning, "rules.warning"),
        (Level::Info, &r.info, "rules.info"),
    ] {
        let Some(s) = src else { continue };
        match parse_expr(s.get_ref()) {
            Ok(expr) => {
                if expr.eval(&|_| false) {
                    e.bad(
                        s,
                        field,
                        "holds when no monitor has an open round; a composite only sees the \
                         tag sets that some monitor of it has an open round for, so pair a \
                         negation with a plain id, e.g. \"a && !b\"",
                    );
                    continue;
                }
                levels.push(CompositeRule {
                    level,
                    source: s.get_ref().clone(),
                    expr,
                    field,
                    line: e.line_of(s.span().start),
                });
            }
            Err(err) => e.bad(s, field, &err.to_string()),
        }
    }
    if r.critical.is_none() && r.error.is_none() && r.warning.is_none() && r.info.is_none() {
        e.at(
            rules_span,
            "rules",
            "no rule: set at least one of critical, error, warning, info, e.g. critical = \
             \"cpu-high && mem-high\""
                .into(),
        );
    }
    let trigger_after = count(r.trigger_after.as_ref(), "rules.trigger_after", 1, e);
    let recover_after = count(r.recover_after.as_ref(), "rules.recover_after", 0, e);
    let inputs: BTreeSet<String> = levels.iter().flat_map(|l| l.expr.ids()).collect();
    Some(ParsedComposite {
        spec: CompositeSpec {
            levels,
            inputs: inputs.into_iter().collect(),
        },
        trigger_after,
        recover_after,
    })
}

/// A streak count from `min` to 10000 (default 1), as for every monitor.
pub(super) fn count(v: Option<&Spanned<i64>>, field: &str, min: i64, e: &mut Errs) -> u32 {
    match v {
        None => 1,
        Some(s) if (min..=10_000).contains(s.get_ref()) => *s.get_ref() as u32,
        Some(s) => {
            e.bad(
                s,
                field,
                &format!("expected an integer from {min} to 10000"),
            );
            1
        }
    }
}

/// The checks across files: every id a composite names must be a loaded monitor, and
/// composites must not depend on themselves through other composites. A composite with an
/// error is taken out of `monitors` (it cannot run) and the error added to `errors`.
pub(super) fn check_refs(monitors: &mut Vec<Monitor>, errors: &mut Vec<MonitorError>) {
    loop {
        let ids: BTreeSet<&str> = monitors.iter().map(|m| m.id.as_str()).collect();
        let mut bad: BTreeMap<String, MonitorError> = BTreeMap::new();
        for m in monitors.iter() {
            let MonitorKind::Composite(spec) = &m.kind else {
                continue;
            };
            for rule in &spec.levels {
                for id in rule.expr.ids() {
                    if !ids.contains(id.as_str()) {
                        bad.entry(m.id.clone()).or_insert_with(|| MonitorError {
                            file: m.file.clone(),
                            line: rule.line,
                            field: rule.field.into(),
                            message: format!(
                                "{} = {:?}: no monitor {id:?} is loaded (a monitor with errors \
                                 of its own is not loaded either)",
                                rule.field.trim_start_matches("rules."),
                                rule.source
                            ),
                        });
                    }
                }
            }
        }
        if bad.is_empty() {
            break;
        }
        // Removing one composite can leave another naming it: go round until none is left.
        monitors.retain(|m| !bad.contains_key(&m.id));
        errors.extend(bad.into_values());
    }
    let stuck = match ranks(monitors) {
        Ok(_) => return,
        Err(stuck) => stuck,
    };
    let in_cycle: BTreeSet<String> = stuck.into_iter().collect();
    for m in monitors.iter() {
        if !in_cycle.contains(&m.id) {
            continue;
        }
        let MonitorKind::Composite(spec) = &m.kind else {
            continue;
        };
        let rule = spec
            .levels
            .iter()
            .find(|r| r.expr.ids().iter().any(|i| in_cycle.contains(i)))
            .expect("a composite in a cycle names one of it");
        let members: Vec<&str> = in_cycle.iter().map(String::as_str).collect();
        errors.push(MonitorError {
            file: m.file.clone(),
            line: rule.line,
            field: rule.field.into(),
            message: format!(
                "{} = {:?}: composites depend on each other in a cycle, or on such a cycle \
                 ({}); none of them can be evaluated first",
                rule.field.trim_start_matches("rules."),
                rule.source,
                members.join(", ")
            ),
        });
    }
    monitors.retain(|m| !in_cycle.contains(&m.id));
}

/// The order in which the monitors of one tick run: a plain monitor has rank 0 and a
/// composite one more than the highest rank it names, so every composite runs after what it
/// reads. `Err` holds the ids of the composites that are on or behind a cycle.
pub fn ranks(monitors: &[Monitor]) -> Result<BTreeMap<String, u32>, Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = monitors
        .iter()
        .map(|m| {
            let d = match &m.kind {
                MonitorKind::Composite(spec) => spec.inputs.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            (m.id.as_str(), d)
        })
        .collect();
    let mut rank: BTreeMap<String, u32> = BTreeMap::new();
    // Repeated relaxation: each pass settles the composites whose inputs are all settled; a
    // pass that settles nothing leaves the cycles (and what depends on them).
    loop {
        let mut progressed = false;
        for (id, d) in &deps {
            if rank.contains_key(*id) {
                continue;
            }
            // An input that is not loaded was an error already; it counts as rank 0 here.
            let inputs: Option<Vec<u32>> = d
                .iter()
                .map(|i| match deps.contains_key(i) {
                    true => rank.get(*i).copied(),
                    false => Some(0),
                })
                .collect();
            if let Some(r) = inputs {
                let r = if d.is_empty() {
                    0
                } else {
                    r.into_iter().max().unwrap_or(0) + 1
                };
                rank.insert(id.to_string(), r);
                progressed = true;
            }
        }
        if rank.len() == deps.len() {
            return Ok(rank);
        }
        if !progressed {
            return Err(deps
                .keys()
                .filter(|id| !rank.contains_key(**id))
                .map(|id| id.to_string())
                .collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Box<Expr> {
        Box::new(Expr::Id(s.into()))
    }

    #[test]
    fn expressions_parse_with_precedence() {
        let cases: Vec<(&str, Expr)> = vec![
            ("a", Expr::Id("a".into())),
            ("host-cpu", Expr::Id("host-cpu".into())),
            ("a&&b", Expr::And(id("a"), id("b"))),
            (
                "a || b && c",
                Expr::Or(id("a"), Box::new(Expr::And(id("b"), id("c")))),
            ),
            (
                "(a || b) && c",
                Expr::And(Box::new(Expr::Or(id("a"), id("b"))), id("c")),
            ),
            ("!a && b", Expr::And(Box::new(Expr::Not(id("a"))), id("b"))),
            ("!!a", Expr::Not(Box::new(Expr::Not(id("a"))))),
            (
                "a && b && c",
                Expr::And(Box::new(Expr::And(id("a"), id("b"))), id("c")),
            ),
            (
                "cpu-high && (mem-high || swap.high)",
                Expr::And(
                    id("cpu-high"),
                    Box::new(Expr::Or(id("mem-high"), id("swap.high"))),
                ),
            ),
        ];
        for (src, want) in cases {
            assert_eq!(parse_expr(src), Ok(want), "{src}");
        }
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            (
                "",
                1,
                "unexpected the end of the expression: expected a monitor id",
            ),
            ("a &&", 5, "unexpected the end of the expression"),
            ("a & b", 3, "a single `&`: write `&&`"),
            ("a | b", 3, "a single `|`: write `||`"),
            ("(a || b", 8, "expected `)` for the `(` at column 1"),
            (
                "a b",
                3,
                "unexpected monitor id \"b\": expected `&&`, `||` or the end",
            ),
            ("a && )", 6, "unexpected `)`: expected a monitor id"),
            ("a)", 2, "unexpected `)`"),
        ];
        for (src, col, msg) in cases {
            let e = parse_expr(src).unwrap_err();
            assert_eq!(e.column, col, "{src}: {e}");
            assert!(e.message.contains(msg), "{src}: {e}");
        }
    }

    #[test]
    fn evaluation_follows_the_truth_table() {
        let e = parse_expr("a && (b || !c)").unwrap();
        for (a, b, c, want) in [
            (false, true, false, false),
            (true, false, false, true),
            (true, false, true, false),
            (true, true, true, true),
        ] {
            let holds = |i: &str| match i {
                "a" => a,
                "b" => b,
                _ => c,
            };
            assert_eq!(e.eval(&holds), want, "{a} {b} {c}");
        }
        assert_eq!(e.ids().into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
