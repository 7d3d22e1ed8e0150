//! Monitor files (docs/monitors.md): the model, loading and validation with file and line.
//!
//! Every field is read through `toml::Spanned` so an error names the line of the bad value.
//! One broken file never stops the others: [`load`] returns the good monitors and every error.
//!
//! This file holds the model; `raw` the file as written, `parse` the top level and one module
//! per section (`query`, `rules`, `nodata`, `template`) reporting into `errs`, `load` the files
//! and scripts, `schedule` the every/cron/manual timing.

use crate::detect::{NodataAction, Settings};
use crate::script::Compiled;
use crate::store::query::{Agg, Filter, Tags};
use std::fmt;
use std::path::PathBuf;

mod composite;
mod errs;
mod kinds;
mod load;
mod nodata;
mod outlier;
mod parse;
mod query;
mod raw;
mod rules;
mod schedule;
mod slo;
mod template;
pub use composite::{parse_expr, ranks, CompositeRule, CompositeSpec, Expr, ExprError};
pub use kinds::{
    BandParams, ChangeParams, Crossing, Diff, Direction, ForecastParams, KindParams, Method, Side,
    Spread, When,
};
pub use load::{load, load_file, monitor_files, LoadContext, Loaded};
pub use outlier::{OutlierAlgo, DEFAULT_TOLERANCE};
pub use parse::parse_monitor;
pub use query::check_promql;
pub use schedule::{parse_cron, Cron, Schedule};
pub use slo::{BurnPair, SloSeries, SloSource, SloSpec, DEFAULT_BURN};

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
    /// Every type, in the order error messages list them.
    pub const ALL: [MonitorType; 3] = [MonitorType::Custom, MonitorType::Slo, MonitorType::BotObs];

    /// Parses a wire name (`type = ...`).
    pub fn parse(s: &str) -> Option<MonitorType> {
        MonitorType::ALL.into_iter().find(|t| t.as_str() == s)
    }

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
    /// `Result` = hours until the trend over the look-back crosses a threshold
    Forecast,
}

impl RuleKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [RuleKind; 6] = [
        RuleKind::Threshold,
        RuleKind::Mutation,
        RuleKind::Range,
        RuleKind::Outlier,
        RuleKind::Composite,
        RuleKind::Forecast,
    ];

    /// The name in `[rules] kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleKind::Threshold => "threshold",
            RuleKind::Mutation => "mutation",
            RuleKind::Range => "range",
            RuleKind::Outlier => "outlier",
            RuleKind::Composite => "composite",
            RuleKind::Forecast => "forecast",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Names accepted for `[rules] kind`, derived from [`RuleKind::ALL`].
pub const RULE_KINDS: &[&str] = &{
    let mut out = [""; RuleKind::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = RuleKind::ALL[i].as_str();
        i += 1;
    }
    out
};

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

/// `[query]` with `datasource` and `promql`: an instant query against a `[[datasources]]`
/// entry at the window end; each series of the result is one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromqlSpec {
    /// the `[[datasources]]` id
    pub datasource: String,
    /// the PromQL expression (checked by a PromQL parser at load time)
    pub promql: String,
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
    /// the rule kind's typed parameters (`mutation`, `forecast`, `range` with a band)
    pub params: KindParams,
    /// how `outlier` picks its outliers
    pub outlier: OutlierAlgo,
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
    /// `custom` and `slo` over a data source: the PromQL result's series are the objects,
    /// their values the `Result`
    Promql {
        /// what is queried
        query: PromqlSpec,
        /// how the result is judged
        rules: Rules,
    },
    /// `kind = "composite"` without a `[query]`: level rules over other monitors' open rounds
    Composite(CompositeSpec),
    /// `type = "slo"` with `[slo]`: burn rates of an objective over a good/total pair
    Slo(SloSpec),
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
            MonitorKind::Promql { .. }
            | MonitorKind::Bot { .. }
            | MonitorKind::Composite(_)
            | MonitorKind::Slo(_) => None,
        }
    }

    /// The PromQL query of a data-source monitor.
    pub fn promql(&self) -> Option<&PromqlSpec> {
        match &self.kind {
            MonitorKind::Promql { query, .. } => Some(query),
            _ => None,
        }
    }

    /// Whether its checks read the embedded store (a data-source monitor or objective does
    /// not, nor does a composite: it reads other monitors' rounds).
    pub fn reads_store(&self) -> bool {
        match &self.kind {
            MonitorKind::Query { .. } | MonitorKind::Bot { .. } => true,
            MonitorKind::Promql { .. } | MonitorKind::Composite(_) => false,
            MonitorKind::Slo(s) => matches!(s.source, SloSource::Store { .. }),
        }
    }

    /// The rules, unless this is a bot.
    pub fn rules(&self) -> Option<&Rules> {
        match &self.kind {
            MonitorKind::Query { rules, .. } | MonitorKind::Promql { rules, .. } => Some(rules),
            MonitorKind::Bot { .. } | MonitorKind::Composite(_) | MonitorKind::Slo(_) => None,
        }
    }

    /// `df_monitor_checker`: the function name in Guance terms.
    pub fn checker(&self) -> &'static str {
        if let MonitorKind::Composite(_) = self.kind {
            return "composite";
        }
        match self.mtype {
            MonitorType::BotObs => "bot_obs",
            MonitorType::Slo => "slo",
            MonitorType::Custom => "custom_metric",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::ScriptEngine;
    use std::path::Path;

    fn load_text(text: &str) -> Result<Monitor, Vec<MonitorError>> {
        let engine = ScriptEngine::new(Default::default());
        let ctx = LoadContext {
            scripts_dir: Path::new("/nonexistent"),
            policies: &[],
            engine: &engine,
            datasources: None,
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
    fn name_lists_come_from_the_enums_and_parse_back() {
        assert_eq!(
            RULE_KINDS,
            [
                "threshold",
                "mutation",
                "range",
                "outlier",
                "composite",
                "forecast"
            ]
        );
        for k in RuleKind::ALL {
            assert_eq!(RuleKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(RuleKind::parse("Threshold"), None);
        for t in MonitorType::ALL {
            assert_eq!(MonitorType::parse(t.as_str()), Some(t));
        }
        let e = load_text("type = \"bot\"\nevery = \"1m\"\n[query]\nmeasurement = \"c\"\nfield = \"u\"\n[rules]\ncritical = \"Result > 1\"\n")
            .unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "m.toml:1: type: type = \"bot\": expected one of custom, slo, bot_obs"
        );
        for a in NodataAction::ALL {
            assert_eq!(NodataAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(crate::detect::NODATA_ACTIONS.len(), NodataAction::ALL.len());
        let e = load_text("every = \"1m\"\n[query]\nmeasurement = \"c\"\nfield = \"u\"\n[rules]\nkind = \"steep\"\ncritical = \"Result > 1\"\n")
            .unwrap_err();
        assert!(
            e[0].to_string().ends_with(
                "rules.kind: kind = \"steep\": expected one of threshold, mutation, range, outlier, composite, forecast"
            ),
            "{}",
            e[0]
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
            datasources: None,
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
