//! Monitor files (docs/monitors.md): the model, loading and validation with file and line.
//!
//! Every field is read through `toml::Spanned` so an error names the line of the bad value.
//! One broken file never stops the others: [`load`] returns the good monitors and every error.

use crate::detect::{NodataAction, Settings, NODATA_ACTIONS};
use crate::model::event::md5_hex;
use crate::model::time::parse_duration;
use crate::script::{Compiled, ScriptEngine};
use crate::store::query::{Agg, Filter, Tags, AGG_NAMES};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::Spanned;

mod schedule;
pub use schedule::{parse_cron, Cron, Schedule};

/// A validation error in a monitor file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorError {
    /// the file
    pub file: PathBuf,
    /// 1-based line of the bad value (0 when the file could not be read)
    pub line: usize,
    /// the field, e.g. `query.agg`
    pub field: String,
    /// what was wrong and what is allowed
    pub message: String,
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for MonitorError {}

/// `df_monitor_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorType {
    /// custom metric monitor
    Custom,
    /// service level objective
    Slo,
    /// inspection bot: a script that calls `report(...)`
    BotObs,
}

impl MonitorType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorType::Custom => "custom",
            MonitorType::Slo => "slo",
            MonitorType::BotObs => "bot_obs",
        }
    }
}

/// The rule kinds of `[rules] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `Result` = the aggregate of the window
    Threshold,
    /// `Result` = aggregate of the window minus aggregate of the window before it
    Mutation,
    /// `Result` = z-score of the window's aggregate against the baseline window's points
    Range,
    /// `Result` = robust z-score of the object's aggregate among all objects of the check
    Outlier,
    /// `Result` as threshold; rules combine it with host functions for multi-metric conditions
    Composite,
}

/// Names accepted for `[rules] kind`.
pub const RULE_KINDS: &[&str] = &["threshold", "mutation", "range", "outlier", "composite"];

/// A compiled rule expression with its source.
#[derive(Debug, Clone)]
pub struct Rule {
    /// the expression as written
    pub source: String,
    /// compiled once, evaluated every check
    pub compiled: Compiled,
}

/// What a monitor queries.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// measurement name
    pub measurement: String,
    /// field key
    pub field: String,
    /// aggregation
    pub agg: Agg,
    /// dimension tags
    pub by: Vec<String>,
    /// `where` as written
    pub where_raw: Tags,
    /// `where` compiled
    pub filters: Vec<Filter>,
}

/// A compiled script with the name it was given by (`script` or `rules.script`).
#[derive(Debug, Clone)]
pub struct Script {
    /// the name as written in the monitor file
    pub name: String,
    /// compiled once, run every check
    pub compiled: Compiled,
}

/// How a query monitor turns an object's `Result` into a level.
#[derive(Debug, Clone)]
pub enum Eval {
    /// `(level, rule)` in check order (critical, error, warning, info); never empty
    Levels(Vec<(crate::detect::Level, Rule)>),
    /// a check script that returns the status itself
    Script(Script),
}

/// `[rules]` of a query monitor.
#[derive(Debug, Clone)]
pub struct Rules {
    /// rule kind
    pub kind: RuleKind,
    /// level expressions or a check script
    pub eval: Eval,
    /// hysteresis expression
    pub recovery: Option<Rule>,
    /// baseline window for `range`, seconds
    pub baseline: i64,
}

/// What a monitor is: a query with rules, or a bot whose script reports on its own.
#[derive(Debug, Clone)]
pub enum MonitorKind {
    /// `custom` and `slo`: aggregate a query per object and evaluate rules on it
    Query {
        /// what is queried
        query: QuerySpec,
        /// how the result is judged
        rules: Rules,
    },
    /// `bot_obs`: the script queries through host functions and calls `report(...)`
    Bot {
        /// the bot script
        script: Script,
    },
}

/// `[template]`.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// title of fault and info events
    pub title: Option<String>,
    /// message of fault and info events
    pub message: Option<String>,
    /// title of recovery events
    pub recover_title: Option<String>,
    /// message of recovery events
    pub recover_message: Option<String>,
    /// title of nodata events
    pub nodata_title: Option<String>,
    /// message of nodata events
    pub nodata_message: Option<String>,
}

/// `[nodata]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodataSpec {
    /// gap length, seconds
    pub after: i64,
    /// what a gap does
    pub action: NodataAction,
}

/// A validated monitor.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// `df_monitor_checker_id`
    pub id: String,
    /// `df_monitor_checker_name`
    pub name: String,
    /// `df_monitor_type`
    pub mtype: MonitorType,
    /// alert policy id (`df_monitor_id`)
    pub policy: String,
    /// when it runs
    pub schedule: Schedule,
    /// window length, seconds
    pub interval: i64,
    /// window end before the trigger time, seconds
    pub delay: i64,
    /// query and rules, or the bot script
    pub kind: MonitorKind,
    /// state-machine settings
    pub settings: Settings,
    /// nodata handling (absent: no gaps)
    pub nodata: Option<NodataSpec>,
    /// templates
    pub template: Templates,
    /// objects silent longer than this leave detection state, seconds
    pub forget_after: i64,
    /// the file it came from
    pub file: PathBuf,
    /// hash of the file's text: reload keeps state when unchanged
    pub fingerprint: String,
    /// `df_monitor_checker_ref`: identifies the query definition
    pub checker_ref: String,
}

impl Monitor {
    /// The query, unless this is a bot.
    pub fn query(&self) -> Option<&QuerySpec> {
        match &self.kind {
            MonitorKind::Query { query, .. } => Some(query),
            MonitorKind::Bot { .. } => None,
        }
    }

    /// `df_monitor_checker`: the function name in Guance terms.
    pub fn checker(&self) -> &'static str {
        match self.mtype {
            MonitorType::BotObs => "bot_obs",
            MonitorType::Slo => "slo",
            MonitorType::Custom => "custom_metric",
        }
    }
}

/// A duration as written: `"5m"`, or an integer number of seconds.
#[derive(Clone, PartialEq)]
struct Dur(String);

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\", \"1h\", or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Ok(Dur(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                Ok(Dur(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings, or one string for a list of one (`by = "host"`).
#[derive(Debug, Clone, PartialEq)]
struct StrList(Vec<String>);

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tag names such as [\"host\"], or one name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrList, E> {
                Ok(StrList(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<StrList, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = a.next_element::<String>()? {
                    out.push(x);
                }
                Ok(StrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    id: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    mtype: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    every: Option<Spanned<Dur>>,
    cron: Option<Spanned<String>>,
    manual: Option<Spanned<bool>>,
    interval: Option<Spanned<Dur>>,
    delay: Option<Spanned<Dur>>,
    forget_after: Option<Spanned<Dur>>,
    script: Option<Spanned<String>>,
    query: Option<Spanned<RawQuery>>,
    rules: Option<Spanned<RawRules>>,
    nodata: Option<Spanned<RawNodata>>,
    template: Option<Spanned<RawTemplate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    measurement: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
    agg: Option<Spanned<String>>,
    by: Option<Spanned<StrList>>,
    #[serde(rename = "where")]
    where_: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    kind: Option<Spanned<String>>,
    critical: Option<Spanned<String>>,
    error: Option<Spanned<String>>,
    warning: Option<Spanned<String>>,
    info: Option<Spanned<String>>,
    script: Option<Spanned<String>>,
    trigger_after: Option<Spanned<i64>>,
    recover_after: Option<Spanned<i64>>,
    recovery: Option<Spanned<String>>,
    baseline: Option<Spanned<Dur>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodata {
    after: Option<Spanned<Dur>>,
    action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    title: Option<Spanned<String>>,
    message: Option<Spanned<String>>,
    recover_title: Option<Spanned<String>>,
    recover_message: Option<Spanned<String>>,
    nodata_title: Option<Spanned<String>>,
    nodata_message: Option<Spanned<String>>,
}

/// Where scripts and policies are looked up while loading.
#[derive(Debug, Clone)]
pub struct LoadContext<'a> {
    /// the scripts directory (`--scripts`)
    pub scripts_dir: &'a Path,
    /// known policy ids; `default` is always known
    pub policies: &'a [String],
    /// the engine that compiles rules and scripts
    pub engine: &'a ScriptEngine,
}

/// The outcome of loading: the valid monitors and every error.
#[derive(Debug, Default)]
pub struct Loaded {
    /// valid monitors, sorted by id
    pub monitors: Vec<Monitor>,
    /// errors, by file then line
    pub errors: Vec<MonitorError>,
    /// files read
    pub files: usize,
}

/// Lists the `*.toml` files of the given directories and files (directories not recursed
/// beyond their own entries), sorted.
pub fn monitor_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, MonitorError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| MonitorError {
                file: p.clone(),
                line: 0,
                field: String::new(),
                message: format!("cannot read directory: {e}"),
            })?;
            for entry in rd.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
                    files.push(path);
                }
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(MonitorError {
                file: p.clone(),
                line: 0,
                field: String::new(),
                message: "no such file or directory".into(),
            });
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Loads and validates monitor files; duplicate ids are errors on the later file.
pub fn load(paths: &[PathBuf], ctx: &LoadContext) -> Loaded {
    let mut loaded = Loaded::default();
    let files = match monitor_files(paths) {
        Ok(f) => f,
        Err(e) => {
            loaded.errors.push(e);
            return loaded;
        }
    };
    let mut seen: HashSet<String> = HashSet::new();
    for file in files {
        loaded.files += 1;
        match load_file(&file, ctx) {
            Ok(m) => {
                if !seen.insert(m.id.clone()) {
                    loaded.errors.push(MonitorError {
                        file: file.clone(),
                        line: 1,
                        field: "id".into(),
                        message: format!(
                            "id = {:?}: already used by another monitor; ids must be unique",
                            m.id
                        ),
                    });
                } else {
                    loaded.monitors.push(m);
                }
            }
            Err(errs) => loaded.errors.extend(errs),
        }
    }
    loaded.monitors.sort_by(|a, b| a.id.cmp(&b.id));
    loaded
}

/// Loads one monitor file, returning every error found in it.
pub fn load_file(file: &Path, ctx: &LoadContext) -> Result<Monitor, Vec<MonitorError>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![MonitorError {
            file: file.to_path_buf(),
            line: 0,
            field: String::new(),
            message: format!("cannot read file: {e}"),
        }]
    })?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_monitor(&text, file, &stem, ctx)
}

/// Collects errors with positions for one file.
struct Errs<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<MonitorError>,
}

impl Errs<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }
    fn at(&mut self, span: std::ops::Range<usize>, field: &str, message: String) {
        let line = self.line_of(span.start);
        self.list.push(MonitorError {
            file: self.file.to_path_buf(),
            line,
            field: field.to_string(),
            message,
        });
    }
    fn bad<T: fmt::Debug>(&mut self, v: &Spanned<T>, field: &str, why: &str) {
        let short = field.rsplit('.').next().unwrap_or(field);
        self.at(
            v.span(),
            field,
            format!("{short} = {:?}: {why}", v.get_ref()),
        );
    }
    fn duration(&mut self, v: &Option<Spanned<Dur>>, field: &str, default: i64) -> i64 {
        match v {
            None => default,
            Some(s) => match parse_duration(&s.get_ref().0) {
                Ok(d) => d,
                Err(e) => {
                    self.bad(s, field, &e);
                    default
                }
            },
        }
    }
}

/// The dotted name of the key set on `line` (1-based), from the `[section]` above it.
fn field_at(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') && t.ends_with(']') && !t.starts_with("[[") {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line {
            let (key, _) = t.split_once('=')?;
            let key = key.trim().trim_matches('"');
            if key.is_empty() || key.contains(' ') {
                return None;
            }
            return Some(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    None
}

/// Parses and validates one monitor's text.
pub fn parse_monitor(
    text: &str,
    file: &Path,
    stem: &str,
    ctx: &LoadContext,
) -> Result<Monitor, Vec<MonitorError>> {
    let mut e = Errs {
        file,
        text,
        list: Vec::new(),
    };
    let raw: RawMonitor = match toml::from_str(text) {
        Ok(r) => r,
        Err(err) => {
            let line = err.span().map(|s| e.line_of(s.start)).unwrap_or(1);
            let mut msg = err.message().to_string();
            if let Some(field) = field_at(text, line) {
                msg = format!("{field}: {msg}");
            }
            let msg = if msg.contains("unknown field") {
                format!("{msg} (see docs/monitors.md for the monitor file format)")
            } else {
                msg
            };
            return Err(vec![MonitorError {
                file: file.to_path_buf(),
                line,
                field: String::new(),
                message: msg,
            }]);
        }
    };

    let id = raw
        .id
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| stem.to_string());
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        match &raw.id {
            Some(s) => e.bad(s, "id", "expected 1-128 characters without spaces"),
            None => e.at(
                0..0,
                "id",
                format!("file stem {stem:?} is not a usable id; set id = \"...\""),
            ),
        }
    }
    let name = raw
        .name
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| id.clone());
    let mtype = match raw.mtype.as_ref() {
        None => MonitorType::Custom,
        Some(s) => match s.get_ref().as_str() {
            "custom" => MonitorType::Custom,
            "slo" => MonitorType::Slo,
            "bot_obs" => MonitorType::BotObs,
            _ => {
                e.bad(s, "type", "expected one of custom, slo, bot_obs");
                MonitorType::Custom
            }
        },
    };
    let policy = raw
        .policy
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "default".to_string());
    if let Some(p) = &raw.policy {
        if p.get_ref() != "default" && !ctx.policies.iter().any(|x| x == p.get_ref()) {
            let known: Vec<&str> = std::iter::once("default")
                .chain(ctx.policies.iter().map(String::as_str))
                .collect();
            e.bad(
                p,
                "policy",
                &format!(
                    "unknown policy; known: {} (policies come from the config file)",
                    known.join(", ")
                ),
            );
        }
    }

    // Schedule: exactly one of every, cron, manual.
    let manual = raw.manual.as_ref().is_some_and(|m| *m.get_ref());
    let set = [raw.every.is_some(), raw.cron.is_some(), manual]
        .iter()
        .filter(|x| **x)
        .count();
    let schedule = if set > 1 {
        e.at(
            0..0,
            "every",
            "set only one of every, cron or manual = true".into(),
        );
        Schedule::Manual
    } else if let Some(ev) = &raw.every {
        match parse_duration(&ev.get_ref().0) {
            Ok(n) if n > 0 => Schedule::Every(n),
            Ok(_) => {
                e.bad(ev, "every", "must be longer than 0s");
                Schedule::Manual
            }
            Err(msg) => {
                e.bad(ev, "every", &msg);
                Schedule::Manual
            }
        }
    } else if let Some(c) = &raw.cron {
        match parse_cron(c.get_ref()) {
            Ok(s) => Schedule::Cron {
                expr: c.get_ref().clone(),
                schedule: Box::new(s),
            },
            Err(msg) => {
                e.bad(c, "cron", &msg);
                Schedule::Manual
            }
        }
    } else if manual {
        Schedule::Manual
    } else {
        e.at(
            0..0,
            "every",
            "no schedule: set every = \"1m\", cron = \"*/5 * * * *\" or manual = true".into(),
        );
        Schedule::Manual
    };

    let interval = e.duration(&raw.interval, "interval", 300);
    if interval <= 0 && mtype != MonitorType::BotObs {
        if let Some(s) = &raw.interval {
            e.bad(s, "interval", "must be longer than 0s");
        }
    }
    let delay = e.duration(&raw.delay, "delay", 0);
    let forget_after = e.duration(&raw.forget_after, "forget_after", 86_400);

    // Query.
    let query = match (&raw.query, mtype) {
        (Some(q), MonitorType::BotObs) => {
            e.at(
                q.span(),
                "query",
                "bot_obs monitors have no [query]: the script queries through host functions"
                    .into(),
            );
            None
        }
        (None, MonitorType::BotObs) => None,
        (None, _) => {
            e.at(
                0..0,
                "query",
                "missing [query] section (measurement, field, agg)".into(),
            );
            None
        }
        (Some(q), _) => parse_query(q, &mut e),
    };

    // Rules.
    let raw_rules = raw.rules.as_ref().map(|r| r.get_ref());
    let rule_kind = match raw_rules.and_then(|r| r.kind.as_ref()) {
        None => RuleKind::Threshold,
        Some(k) => match k.get_ref().as_str() {
            "threshold" => RuleKind::Threshold,
            "mutation" => RuleKind::Mutation,
            "range" => RuleKind::Range,
            "outlier" => RuleKind::Outlier,
            "composite" => RuleKind::Composite,
            _ => {
                e.bad(
                    k,
                    "rules.kind",
                    &format!("expected one of {}", RULE_KINDS.join(", ")),
                );
                RuleKind::Threshold
            }
        },
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
        use crate::detect::Level;
        for (lvl, src, field) in [
            (Level::Critical, &r.critical, "rules.critical"),
            (Level::Error, &r.error, "rules.error"),
            (Level::Warning, &r.warning, "rules.warning"),
            (Level::Info, &r.info, "rules.info"),
        ] {
            if let Some(s) = src {
                if let Some(rule) = compile(s, field, &mut e) {
                    levels.push((lvl, rule));
                }
            }
        }
    }
    let recovery = raw_rules
        .and_then(|r| r.recovery.as_ref())
        .and_then(|s| compile(s, "rules.recovery", &mut e));
    let script_src = match (
        raw_rules.and_then(|r| r.script.as_ref()),
        raw.script.as_ref(),
    ) {
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
    let script = script_src.and_then(|s| match load_script(s.get_ref(), file, ctx) {
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
            raw.rules.as_ref().map(|r| r.span()).unwrap_or(0..0),
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
            raw.rules.as_ref().map(|r| r.span()).unwrap_or(0..0),
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
        &mut e,
    );
    let recover_after = count(
        raw_rules.and_then(|r| r.recover_after.as_ref()),
        "rules.recover_after",
        1,
        0,
        &mut e,
    );
    let baseline = e.duration(
        &raw_rules.and_then(|r| r.baseline.clone()),
        "rules.baseline",
        interval.saturating_mul(6),
    );

    // Nodata.
    let nodata = raw.nodata.as_ref().map(|n| {
        let n = n.get_ref();
        let after = match &n.after {
            Some(s) => match parse_duration(&s.get_ref().0) {
                Ok(d) if d > 0 => d,
                Ok(_) => {
                    e.bad(s, "nodata.after", "must be longer than 0s");
                    600
                }
                Err(msg) => {
                    e.bad(s, "nodata.after", &msg);
                    600
                }
            },
            None => 600,
        };
        let action = match &n.action {
            None => NodataAction::Nodata,
            Some(s) => NodataAction::parse(s.get_ref()).unwrap_or_else(|| {
                e.bad(
                    s,
                    "nodata.action",
                    &format!("expected one of {}", NODATA_ACTIONS.join(", ")),
                );
                NodataAction::None
            }),
        };
        NodataSpec { after, action }
    });
    if let (Some(n), MonitorType::BotObs) = (&raw.nodata, mtype) {
        e.at(
            n.span(),
            "nodata",
            "bot_obs monitors have no [nodata]: a bot reports what it sees".into(),
        );
    }

    // Templates.
    let mut template = Templates::default();
    if let Some(t) = &raw.template {
        let t = t.get_ref();
        for (src, field, slot) in [
            (&t.title, "template.title", &mut template.title),
            (&t.message, "template.message", &mut template.message),
            (
                &t.recover_title,
                "template.recover_title",
                &mut template.recover_title,
            ),
            (
                &t.recover_message,
                "template.recover_message",
                &mut template.recover_message,
            ),
            (
                &t.nodata_title,
                "template.nodata_title",
                &mut template.nodata_title,
            ),
            (
                &t.nodata_message,
                "template.nodata_message",
                &mut template.nodata_message,
            ),
        ] {
            if let Some(s) = src {
                match crate::model::event::validate_template(s.get_ref()) {
                    Ok(()) => *slot = Some(s.get_ref().clone()),
                    Err(msg) => e.bad(s, field, &msg),
                }
            }
        }
    }

    // Every combination that yields no kind has recorded an error above.
    let kind = match (mtype, query, script) {
        (MonitorType::BotObs, _, Some(script)) => Some(MonitorKind::Bot { script }),
        (MonitorType::BotObs, _, None) => None,
        (_, Some(query), script) => Some(MonitorKind::Query {
            query,
            rules: Rules {
                kind: rule_kind,
                eval: match script {
                    Some(s) => Eval::Script(s),
                    None => Eval::Levels(levels),
                },
                recovery,
                baseline,
            },
        }),
        (_, None, _) => None,
    };
    let Some(kind) = kind.filter(|_| e.list.is_empty()) else {
        debug_assert!(!e.list.is_empty(), "a monitor without a kind has an error");
        return Err(e.list);
    };
    let nodata_action = nodata.map(|n| n.action).unwrap_or(NodataAction::None);
    let checker_ref = md5_hex(&match &kind {
        MonitorKind::Query { query: q, .. } => format!(
            "{}|{}|{}|{}|{:?}|{}",
            q.measurement,
            q.field,
            q.agg.name(),
            q.by.join(","),
            q.where_raw,
            interval
        ),
        MonitorKind::Bot { .. } => format!("bot|{id}"),
    });
    Ok(Monitor {
        id,
        name,
        mtype,
        policy,
        schedule,
        interval,
        delay,
        kind,
        settings: Settings {
            trigger_after,
            recover_after,
            nodata: nodata_action,
        },
        nodata,
        template,
        forget_after,
        file: file.to_path_buf(),
        fingerprint: md5_hex(text),
        checker_ref,
    })
}

fn parse_query(q: &Spanned<RawQuery>, e: &mut Errs) -> Option<QuerySpec> {
    let span = q.span();
    let q = q.get_ref();
    let measurement = match &q.measurement {
        Some(m) if !m.get_ref().is_empty() => m.get_ref().clone(),
        Some(m) => {
            e.bad(m, "query.measurement", "must not be empty");
            String::new()
        }
        None => {
            e.at(
                span.clone(),
                "query.measurement",
                "missing: the measurement to query, e.g. \"cpu\"".into(),
            );
            String::new()
        }
    };
    let field = match &q.field {
        Some(m) if !m.get_ref().is_empty() => m.get_ref().clone(),
        Some(m) => {
            e.bad(m, "query.field", "must not be empty");
            String::new()
        }
        None => {
            e.at(
                span.clone(),
                "query.field",
                "missing: the field to aggregate, e.g. \"usage_total\"".into(),
            );
            String::new()
        }
    };
    let agg = match &q.agg {
        None => Agg::Avg,
        Some(a) => match Agg::from_str(a.get_ref()) {
            Ok(x) => x,
            Err(_) => {
                e.bad(
                    a,
                    "query.agg",
                    &format!("expected one of {}", AGG_NAMES.join(", ")),
                );
                Agg::Avg
            }
        },
    };
    let by =
        q.by.as_ref()
            .map(|b| b.get_ref().0.clone())
            .unwrap_or_default();
    if let Some(b) = &q.by {
        let mut seen = HashSet::new();
        for t in &b.get_ref().0 {
            if t.is_empty() || !seen.insert(t) {
                e.bad(b, "query.by", "tag names must be non-empty and distinct");
                break;
            }
        }
    }
    let mut where_raw = Tags::new();
    let mut filters = Vec::new();
    if let Some(w) = &q.where_ {
        for (k, v) in w.get_ref() {
            match Filter::parse(k, v.get_ref()) {
                Ok(f) => filters.push(f),
                Err(msg) => e.bad(v, &format!("query.where.{k}"), &msg),
            }
            where_raw.insert(k.clone(), v.get_ref().clone());
        }
    }
    Some(QuerySpec {
        measurement,
        field,
        agg,
        by,
        where_raw,
        filters,
    })
}

/// Finds a script in the scripts directories: `--scripts`, else next to the monitor file, else
/// `../scripts` beside the monitors directory.
///
/// A monitor file must not make tocsin open files elsewhere (its compile errors would show
/// their text through the API), so an absolute path is refused, and so is a name that
/// resolves out of its directory through `..` or a symlink; the error never shows the file.
fn load_script(
    name: &str,
    monitor_file: &Path,
    ctx: &LoadContext,
) -> Result<(PathBuf, String), String> {
    let p = Path::new(name);
    if p.has_root() || p.is_absolute() {
        return Err(format!(
            "an absolute path is not allowed: the script must be inside the scripts directory ({}); give its name relative to it",
            ctx.scripts_dir.display()
        ));
    }
    let mut dirs = vec![ctx.scripts_dir.to_path_buf()];
    if let Some(dir) = monitor_file.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join("..").join("scripts"));
    }
    let mut outside = false;
    for dir in &dirs {
        let candidate = dir.join(p);
        if !candidate.is_file() {
            continue;
        }
        let (Ok(root), Ok(real)) = (dir.canonicalize(), candidate.canonicalize()) else {
            continue;
        };
        if !real.starts_with(&root) {
            outside = true;
            continue;
        }
        return std::fs::read_to_string(&real)
            .map(|s| (candidate.clone(), s))
            .map_err(|e| format!("cannot read {}: {e}", candidate.display()));
    }
    if outside {
        return Err(format!(
            "the script must be inside the scripts directory ({}): this name leads out of it (through .. or a symlink)",
            ctx.scripts_dir.display()
        ));
    }
    Err(format!(
        "script not found; looked in {}",
        dirs.iter()
            .map(|d| d.join(p).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Monitor, Vec<MonitorError>> {
        let engine = ScriptEngine::new(Default::default());
        let ctx = LoadContext {
            scripts_dir: Path::new("/nonexistent"),
            policies: &[],
            engine: &engine,
        };
        parse_monitor(text, Path::new("m.toml"), "m", &ctx)
    }

    #[test]
    fn integer_durations_and_a_single_by_tag_are_accepted() {
        let m = load_text(
            "every = 60\ninterval = 300\ndelay = 0\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\nby = \"host\"\n[rules]\ncritical = \"Result > 1\"\n[nodata]\nafter = 600\n",
        )
        .unwrap();
        assert!(matches!(m.schedule, Schedule::Every(60)));
        assert_eq!((m.interval, m.delay), (300, 0));
        assert_eq!(m.query().unwrap().by, vec!["host".to_string()]);
        assert_eq!(m.nodata.unwrap().after, 600);
        assert_eq!(m.id, "m", "the id defaults to the file stem");
    }

    #[test]
    fn type_errors_name_the_field_and_all_value_errors_are_reported() {
        let e = load_text("every = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\n[rules]\ntrigger_after = \"2\"\n")
            .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 6);
        assert!(
            e[0].message
                .starts_with("rules.trigger_after: invalid type"),
            "{}",
            e[0]
        );
        let e = load_text(
            "every = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"u\"\n[rules]\ncritical = \"Reslt > 1\"\ntrigger_after = 0\n[nodata]\nafter = \"0s\"\naction = \"loud\"\n",
        )
        .unwrap_err();
        let text: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        assert_eq!(e.len(), 4, "{text:#?}");
        assert!(
            text[0].starts_with(
                "m.toml:6: rules.critical: critical = \"Reslt > 1\": does not compile"
            ),
            "{text:#?}"
        );
        assert!(text
            .iter()
            .any(|t| t.starts_with("m.toml:7: rules.trigger_after: trigger_after = 0")));
        assert!(text.iter().any(|t| t.starts_with("m.toml:9: nodata.after")));
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("m.toml:10: nodata.action: action = \"loud\": expected one of"))
        );
    }

    #[test]
    fn every_fires_on_epoch_multiples() {
        let s = Schedule::Every(300);
        assert_eq!(s.next_after(1000), Some(1200));
        assert_eq!(s.next_after(1200), Some(1500));
        assert_eq!(s.latest_at_or_before(1499), Some(1200));
        assert_eq!(s.latest_at_or_before(1500), Some(1500));
        assert_eq!(s.ticks(1200, 1800), vec![1200, 1500, 1800]);
    }

    #[test]
    fn cron_five_and_six_fields_and_weekdays() {
        let s = Schedule::Cron {
            expr: String::new(),
            schedule: Box::new(parse_cron("*/5 * * * *").unwrap()),
        };
        // 2024-05-01T10:02:00Z
        assert_eq!(s.next_after(1_714_557_720), Some(1_714_557_900));
        assert_eq!(s.latest_at_or_before(1_714_557_720), Some(1_714_557_600));
        assert_eq!(s.latest_at_or_before(1_714_557_600), Some(1_714_557_600));
        let secs = Schedule::Cron {
            expr: String::new(),
            schedule: Box::new(parse_cron("*/10 * * * * *").unwrap()),
        };
        assert_eq!(secs.next_after(1_714_557_600), Some(1_714_557_610));
        // 2024-05-01 is a Wednesday: weekday 3 in crontab numbering
        let wed = Schedule::Cron {
            expr: String::new(),
            schedule: Box::new(parse_cron("0 12 * * 3").unwrap()),
        };
        assert_eq!(
            wed.next_after(1_714_557_600),
            Some(1_714_557_600 + 2 * 3600)
        );
        let sun = parse_cron("0 0 * * 0").unwrap();
        let sun7 = parse_cron("0 0 * * 7").unwrap();
        let t = chrono::DateTime::from_timestamp(1_714_557_600, 0).unwrap();
        assert_eq!(sun.after(&t).next(), sun7.after(&t).next());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("* * *")
            .unwrap_err()
            .contains("expected 5 fields"));
        assert!(parse_cron("0 0 * * 9").is_err());
    }

    /// A bot monitor file in `dir/monitors` whose script is `script`, loaded with the
    /// scripts directory `dir/scripts`.
    fn load_bot(dir: &Path, script: &str) -> Result<Monitor, Vec<MonitorError>> {
        let engine = ScriptEngine::new(Default::default());
        let scripts = dir.join("scripts");
        let ctx = LoadContext {
            scripts_dir: &scripts,
            policies: &[],
            engine: &engine,
        };
        let file = dir.join("monitors").join("bot.toml");
        std::fs::write(
            &file,
            format!("type = \"bot_obs\"\nevery = \"1m\"\nscript = {script:?}\n"),
        )
        .unwrap();
        load_file(&file, &ctx)
    }

    #[test]
    fn scripts_must_stay_inside_the_scripts_directories() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tree");
        for d in ["monitors", "scripts", "secret"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("scripts/ok.rhai"), "report(\"ok\", #{})").unwrap();
        let secret = dir.join("secret/passwd");
        std::fs::write(&secret, "root:x:0:0:secret-token").unwrap();
        assert!(
            load_bot(&dir, "ok.rhai").is_ok(),
            "a script inside still loads"
        );

        let refused = |script: &str| {
            let e = load_bot(&dir, script).expect_err(script);
            assert_eq!(e.len(), 1, "{e:?}");
            let text = e[0].to_string();
            assert_eq!(e[0].field, "rules.script", "{text}");
            assert!(
                text.contains("the script must be inside the scripts directory"),
                "{text}"
            );
            assert!(
                !text.contains("root:x") && !text.contains("secret-token"),
                "{text}"
            );
        };
        refused("../secret/passwd");
        refused("../../tree/secret/passwd");
        refused(secret.to_str().unwrap());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&secret, dir.join("scripts/link.rhai")).unwrap();
            refused("link.rhai");
            std::os::unix::fs::symlink(dir.join("secret"), dir.join("scripts/sub")).unwrap();
            refused("sub/passwd");
        }
    }
}
