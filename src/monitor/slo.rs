//! `[slo]`: a service level objective (`type = "slo"`): a target share of good events over a
//! period, measured from a good/total pair of queries, alerting on multiwindow burn rates.
//!
//! The pair is read from the embedded store (two tables `{ measurement, field, where }`, whose
//! points are counts that are summed per window) or from a data source (two PromQL strings in
//! which `$window` stands for the window, e.g. `increase(requests_total[$window])`).

use super::errs::Errs;
use super::raw::{Dur, RawMonitor, StrList};
use super::MonitorType;
use crate::detect::Level;
use crate::model::time::parse_duration;
use crate::store::query::Filter;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use toml::Spanned;

/// `[slo]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    pub(super) target: Option<Spanned<f64>>,
    pub(super) window: Option<Spanned<Dur>>,
    pub(super) good: Option<Spanned<toml::Value>>,
    pub(super) total: Option<Spanned<toml::Value>>,
    pub(super) by: Option<Spanned<StrList>>,
    pub(super) datasource: Option<Spanned<String>>,
    pub(super) burn: Option<Spanned<Vec<Spanned<RawBurn>>>>,
}

/// One `[[slo.burn]]` pair as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBurn {
    pub(super) level: Option<Spanned<String>>,
    pub(super) rate: Option<Spanned<f64>>,
    pub(super) long: Option<Spanned<Dur>>,
    pub(super) short: Option<Spanned<Dur>>,
}

/// A store side of the pair as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSide {
    measurement: String,
    field: String,
    #[serde(default, rename = "where")]
    where_: BTreeMap<String, String>,
}

/// One side of the pair in the embedded store: its points are summed per window.
#[derive(Debug, Clone)]
pub struct SloSeries {
    /// measurement name
    pub measurement: String,
    /// field key
    pub field: String,
    /// `where` as written
    pub where_raw: BTreeMap<String, String>,
    /// `where` compiled
    pub filters: Vec<Filter>,
}

/// Where the good and total counts come from.
#[derive(Debug, Clone)]
pub enum SloSource {
    /// the embedded store, grouped by `by`
    Store {
        /// good events
        good: SloSeries,
        /// all events
        total: SloSeries,
        /// dimension tags
        by: Vec<String>,
    },
    /// a data source; `$window` in each expression is replaced by the window
    Promql {
        /// the `[[datasources]]` id
        datasource: String,
        /// good events over `$window`
        good: String,
        /// all events over `$window`
        total: String,
    },
}

/// One multiwindow burn-rate alert: both windows must burn faster than `rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnPair {
    /// the level it gives
    pub level: Level,
    /// the burn rate both windows must exceed (1 = the budget lasts exactly the period)
    pub rate: f64,
    /// the long window, seconds
    pub long: i64,
    /// the short window, seconds (it makes the alert stop soon after the burn does)
    pub short: i64,
}

/// A validated `[slo]`.
#[derive(Debug, Clone)]
pub struct SloSpec {
    /// the objective, percent of good events (e.g. 99.9)
    pub target: f64,
    /// the period the objective and its error budget cover, seconds
    pub window: i64,
    /// the pair of queries
    pub source: SloSource,
    /// burn-rate alerts, most severe level first
    pub burn: Vec<BurnPair>,
}

impl SloSpec {
    /// The longest window the check reads.
    pub fn longest(&self) -> i64 {
        self.burn
            .iter()
            .map(|b| b.long.max(b.short))
            .fold(self.window, i64::max)
    }
}

/// The Google SRE workbook's pairs for a 30-day objective: 2 % of the budget in an hour
/// pages, 5 % in six hours warns.
pub const DEFAULT_BURN: [BurnPair; 2] = [
    BurnPair {
        level: Level::Critical,
        rate: 14.4,
        long: 3600,
        short: 300,
    },
    BurnPair {
        level: Level::Warning,
        rate: 6.0,
        long: 6 * 3600,
        short: 1800,
    },
];

/// `[slo]` and the counts of `[rules]`, before the monitor is built.
pub(super) struct ParsedSlo {
    pub(super) spec: SloSpec,
    pub(super) trigger_after: u32,
    pub(super) recover_after: u32,
}

/// Whether the file is an objective: `type = "slo"` with an `[slo]` section (an `slo`
/// monitor with `[query]` and `[rules]` instead keeps working as a custom one).
pub(super) fn wanted(raw: &RawMonitor, mtype: MonitorType) -> bool {
    mtype == MonitorType::Slo && raw.slo.is_some()
}

/// Reads `[slo]` (and `[rules]`, where only the streak counts mean something).
pub(super) fn parse(
    raw: &RawMonitor,
    datasources: Option<&[String]>,
    e: &mut Errs,
) -> Option<ParsedSlo> {
    let sec = raw.slo.as_ref()?;
    let span = sec.span();
    let s = sec.get_ref();
    if let Some(q) = &raw.query {
        e.at(
            q.span(),
            "query",
            "an objective reads [slo] good and total; remove [query]".into(),
        );
    }
    if let Some(sc) = &raw.script {
        e.at(
            sc.span(),
            "script",
            "an objective's levels come from [[slo.burn]]; remove the script".into(),
        );
    }
    if let Some(n) = &raw.nodata {
        e.at(
            n.span(),
            "nodata",
            "an objective without traffic has no error ratio and stays as it is; remove \
             [nodata]"
                .into(),
        );
    }
    let (mut trigger_after, mut recover_after) = (1, 1);
    if let Some(r) = &raw.rules {
        let rr = r.get_ref();
        let others = [
            (rr.kind.as_ref().map(|x| x.span()), "rules.kind"),
            (rr.critical.as_ref().map(|x| x.span()), "rules.critical"),
            (rr.error.as_ref().map(|x| x.span()), "rules.error"),
            (rr.warning.as_ref().map(|x| x.span()), "rules.warning"),
            (rr.info.as_ref().map(|x| x.span()), "rules.info"),
            (rr.script.as_ref().map(|x| x.span()), "rules.script"),
            (rr.recovery.as_ref().map(|x| x.span()), "rules.recovery"),
            (rr.baseline.as_ref().map(|x| x.span()), "rules.baseline"),
            (rr.algorithm.as_ref().map(|x| x.span()), "rules.algorithm"),
            (rr.tolerance.as_ref().map(|x| x.span()), "rules.tolerance"),
        ];
        for (at, field) in others {
            if let Some(at) = at {
                e.at(
                    at,
                    field,
                    "an objective's levels come from [[slo.burn]]; [rules] takes only \
                     trigger_after and recover_after"
                        .into(),
                );
            }
        }
        trigger_after =
            super::composite::count(rr.trigger_after.as_ref(), "rules.trigger_after", 1, e);
        recover_after =
            super::composite::count(rr.recover_after.as_ref(), "rules.recover_after", 0, e);
    }
    let target = match &s.target {
        None => {
            e.at(
                span.clone(),
                "slo.target",
                "missing: the objective in percent, e.g. target = 99.9".into(),
            );
            99.9
        }
        Some(t) if *t.get_ref() > 0.0 && *t.get_ref() < 100.0 => *t.get_ref(),
        Some(t) => {
            e.bad(
                t,
                "slo.target",
                "expected a percentage above 0 and below 100, e.g. 99.9",
            );
            99.9
        }
    };
    let window = match &s.window {
        None => 30 * 86_400,
        Some(w) => match parse_duration(&w.get_ref().0) {
            Ok(d) if d > 0 => d,
            Ok(_) => {
                e.bad(w, "slo.window", "must be longer than 0s");
                30 * 86_400
            }
            Err(why) => {
                e.bad(w, "slo.window", &why);
                30 * 86_400
            }
        },
    };
    let source = parse_source(s, span.clone(), datasources, e);
    let burn = match &s.burn {
        None => {
            let longest = DEFAULT_BURN.iter().map(|b| b.long).max().unwrap_or(0);
            if window < longest {
                if let Some(w) = &s.window {
                    e.bad(w, "slo.window", "shorter than the default burn pairs' 6h: set [[slo.burn]] pairs with windows within it");
                }
            }
            DEFAULT_BURN.to_vec()
        }
        Some(list) if list.get_ref().is_empty() => {
            e.at(list.span(), "slo.burn", "empty: give at least one pair, or leave it out for the defaults (14.4x over 1h and 5m, 6x over 6h and 30m)".into());
            DEFAULT_BURN.to_vec()
        }
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|b| parse_burn(b, window, e))
            .collect(),
    };
    let mut burn = burn;
    // Most severe first, so the first pair that fires gives the level.
    burn.sort_by_key(|b| std::cmp::Reverse(severity(b.level)));
    Some(ParsedSlo {
        spec: SloSpec {
            target,
            window,
            source: source?,
            burn,
        },
        trigger_after,
        recover_after,
    })
}

fn severity(l: Level) -> u8 {
    match l {
        Level::Ok => 0,
        Level::Info => 1,
        Level::Warning => 2,
        Level::Error => 3,
        Level::Critical => 4,
    }
}

fn parse_burn(b: &Spanned<RawBurn>, window: i64, e: &mut Errs) -> Option<BurnPair> {
    let span = b.span();
    let r = b.get_ref();
    let level = match &r.level {
        None => {
            e.at(
                span.clone(),
                "slo.burn.level",
                "missing: critical, error, warning or info".into(),
            );
            None
        }
        Some(l) => match Level::parse(l.get_ref()).filter(|l| *l != Level::Ok) {
            Some(l) => Some(l),
            None => {
                e.bad(
                    l,
                    "slo.burn.level",
                    "expected one of critical, error, warning, info",
                );
                None
            }
        },
    };
    let rate = match &r.rate {
        None => {
            e.at(
                span.clone(),
                "slo.burn.rate",
                "missing: the burn rate both windows must exceed, e.g. 14.4".into(),
            );
            None
        }
        Some(x) if x.get_ref().is_finite() && *x.get_ref() > 0.0 => Some(*x.get_ref()),
        Some(x) => {
            e.bad(
                x,
                "slo.burn.rate",
                "expected a number above 0 (1 spends the budget in exactly the period)",
            );
            None
        }
    };
    let mut dur = |v: &Option<Spanned<Dur>>, field: &str| -> Option<i64> {
        match v {
            None => {
                e.at(
                    span.clone(),
                    field,
                    "missing: a window such as \"1h\"".into(),
                );
                None
            }
            Some(d) => match parse_duration(&d.get_ref().0) {
                Ok(n) if n > 0 && n <= window => Some(n),
                Ok(_) => {
                    e.bad(
                        d,
                        field,
                        "must be longer than 0s and at most the objective's window",
                    );
                    None
                }
                Err(why) => {
                    e.bad(d, field, &why);
                    None
                }
            },
        }
    };
    let long = dur(&r.long, "slo.burn.long");
    let short = dur(&r.short, "slo.burn.short");
    if let (Some(l), Some(s), Some(at)) = (long, short, r.short.as_ref()) {
        if s >= l {
            e.bad(at, "slo.burn.short", "must be shorter than long (the short window ends the alert soon after the burn stops)");
            return None;
        }
    }
    Some(BurnPair {
        level: level?,
        rate: rate?,
        long: long?,
        short: short?,
    })
}

fn parse_source(
    s: &RawSlo,
    span: std::ops::Range<usize>,
    datasources: Option<&[String]>,
    e: &mut Errs,
) -> Option<SloSource> {
    let (Some(good), Some(total)) = (&s.good, &s.total) else {
        for (v, field) in [(&s.good, "slo.good"), (&s.total, "slo.total")] {
            if v.is_none() {
                e.at(span.clone(), field, "missing: a table { measurement, field, where } for the embedded store, or a PromQL string with $window when datasource is set".into());
            }
        }
        return None;
    };
    match &s.datasource {
        Some(ds) => {
            if let Some(known) = datasources {
                if !known.iter().any(|k| k == ds.get_ref()) {
                    e.bad(
                        ds,
                        "slo.datasource",
                        &format!("no such datasource (known: {})", known.join(", ")),
                    );
                }
            }
            if let Some(b) = &s.by {
                e.at(b.span(), "slo.by", "not with a datasource: the PromQL result's labels are the dimension tags; remove it".into());
            }
            let mut promql = |v: &Spanned<toml::Value>, field: &str| -> Option<String> {
                let toml::Value::String(q) = v.get_ref() else {
                    e.at(
                        v.span(),
                        field,
                        "expected a PromQL string with a datasource".into(),
                    );
                    return None;
                };
                if !q.contains("$window") {
                    e.at(v.span(), field, format!("{q:?}: has no $window: write the range as [$window], e.g. increase(requests_total[$window])"));
                    return None;
                }
                if let Err(why) = super::check_promql(&q.replace("$window", "5m")) {
                    e.at(v.span(), field, format!("{q:?}: {why}"));
                    return None;
                }
                Some(q.clone())
            };
            let (g, t) = (promql(good, "slo.good"), promql(total, "slo.total"));
            Some(SloSource::Promql {
                datasource: ds.get_ref().clone(),
                good: g?,
                total: t?,
            })
        }
        None => {
            let by =
                s.by.as_ref()
                    .map(|b| b.get_ref().0.clone())
                    .unwrap_or_default();
            if let Some(b) = &s.by {
                let mut seen = HashSet::new();
                if b.get_ref()
                    .0
                    .iter()
                    .any(|t| t.is_empty() || !seen.insert(t))
                {
                    e.bad(b, "slo.by", "tag names must be non-empty and distinct");
                }
            }
            let (g, t) = (side(good, "slo.good", e), side(total, "slo.total", e));
            Some(SloSource::Store {
                good: g?,
                total: t?,
                by,
            })
        }
    }
}

fn side(v: &Spanned<toml::Value>, field: &str, e: &mut Errs) -> Option<SloSeries> {
    let raw: RawSide = match v.get_ref().clone().try_into() {
        Ok(r) => r,
        Err(err) => {
            e.at(v.span(), field, format!("expected {{ measurement = \"...\", field = \"...\", where = {{ ... }} }} (a PromQL string needs slo.datasource): {}", err.message()));
            return None;
        }
    };
    if raw.measurement.is_empty() || raw.field.is_empty() {
        e.at(
            v.span(),
            field,
            "measurement and field must not be empty".into(),
        );
        return None;
    }
    let mut filters = Vec::new();
    for (k, w) in &raw.where_ {
        match Filter::parse(k, w) {
            Ok(f) => filters.push(f),
            Err(why) => {
                e.at(
                    v.span(),
                    &format!("{field}.where.{k}"),
                    format!("{w:?}: {why}"),
                );
                return None;
            }
        }
    }
    Some(SloSeries {
        measurement: raw.measurement,
        field: raw.field,
        where_raw: raw.where_,
        filters,
    })
}
