//! The parameters of the detector rule kinds (`mutation`, `forecast`, `range` with a learned
//! band), read from `[rules]` into typed values at load time. Every bad value is reported
//! with its field through [`Errs`]; a parameter given to a kind that does not read it is an
//! error too, so a typo in `kind` cannot silently turn a forecast into a threshold.

use super::errs::Errs;
use super::raw::RawRules;
use super::RuleKind;
use crate::model::time::parse_duration;
use crate::script::NativeExpr;
use toml::Spanned;

/// `mutation`: what the change is measured against and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeParams {
    /// how far back the compared window is, seconds (the window length when not given: the
    /// window just before)
    pub compare: i64,
    /// difference or percentage
    pub diff: Diff,
    /// which way counts
    pub direction: Direction,
    /// precondition on the current value (`when = "Current > 100"`)
    pub when: Option<When>,
    /// no parameter was given: the output (detail included) is as before the parameters
    pub plain: bool,
}

/// `diff`: how the two windows are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diff {
    /// current − past
    Value,
    /// (current − past) / past × 100
    Percent,
}

/// `direction` of a `mutation`: which change `Result` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// current − past as it is (the default, as before `direction` existed)
    Signed,
    /// the rise (a fall is a negative rise)
    Up,
    /// the drop (a rise is a negative drop), so rules stay `Result > X`
    Down,
    /// the size of the change either way
    Both,
}

/// A precondition on the window's own value: native comparisons over `Current`.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    /// as written
    pub source: String,
    /// compiled (`Current` read as the compared variable)
    pub expr: NativeExpr,
}

/// `forecast`: the trend fitted over the look-back and the threshold it must not reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastParams {
    /// how the trend is fitted
    pub method: Method,
    /// the points fitted: `[end - lookback, end)`, seconds
    pub lookback: i64,
    /// the level whose crossing is forecast
    pub threshold: f64,
    /// how far ahead the forecast looks, seconds; `Result` is capped at it
    pub horizon: i64,
    /// whether the crossing is upwards (disk filling) or downwards (free space draining)
    pub crossing: Crossing,
}

/// `method` of a forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// least-squares line over the look-back
    Linear,
    /// Holt's double exponential smoothing: level and trend smoothed by `alpha` and `beta`
    Holt {
        /// level smoothing, (0, 1]
        alpha: f64,
        /// trend smoothing, (0, 1]
        beta: f64,
    },
}

/// `direction` of a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// the value rises to the threshold or above
    Up,
    /// the value falls to the threshold or below
    Down,
}

/// `range` with a learned band: how the band is learned and which side of it counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandParams {
    /// the band's edges
    pub spread: Spread,
    /// seasonal: the same window `season`, 2·`season`... ago, one sample each
    pub season: Option<i64>,
    /// samples the history needs before the band may judge
    pub min_history: usize,
    /// which side of the band counts
    pub side: Side,
}

/// `band`: the band's edges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// mean ± k·stddev
    Stddev {
        /// the multiplier
        k: f64,
    },
    /// from the `low`-th to the `high`-th percentile (0-100)
    Percentile {
        /// lower edge's percentile
        low: f64,
        /// upper edge's percentile
        high: f64,
    },
}

/// `side` of a band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// above or below
    Both,
    /// only above the upper edge
    Above,
    /// only below the lower edge
    Below,
}

/// The typed parameters of a monitor's rule kind.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum KindParams {
    /// threshold, outlier, composite, and `range` as a z-score against the baseline window
    #[default]
    Plain,
    /// `mutation`
    Change(ChangeParams),
    /// `forecast`
    Forecast(ForecastParams),
    /// `range` with a learned band
    Band(BandParams),
}

/// Which parameter belongs to which kind, for the "does not apply" error.
const OWNERS: &[(&str, &[RuleKind])] = &[
    ("compare", &[RuleKind::Mutation]),
    ("diff", &[RuleKind::Mutation]),
    ("when", &[RuleKind::Mutation]),
    ("direction", &[RuleKind::Mutation, RuleKind::Forecast]),
    ("method", &[RuleKind::Forecast]),
    ("lookback", &[RuleKind::Forecast]),
    ("threshold", &[RuleKind::Forecast]),
    ("horizon", &[RuleKind::Forecast]),
    ("alpha", &[RuleKind::Forecast]),
    ("beta", &[RuleKind::Forecast]),
    ("band", &[RuleKind::Range]),
    ("k", &[RuleKind::Range]),
    ("percentiles", &[RuleKind::Range]),
    ("season", &[RuleKind::Range]),
    ("min_history", &[RuleKind::Range]),
    ("side", &[RuleKind::Range]),
];

/// The span of parameter `name` in `r`, when it is given.
fn given(r: &RawRules, name: &str) -> Option<std::ops::Range<usize>> {
    match name {
        "compare" => r.compare.as_ref().map(|s| s.span()),
        "diff" => r.diff.as_ref().map(|s| s.span()),
        "when" => r.when.as_ref().map(|s| s.span()),
        "direction" => r.direction.as_ref().map(|s| s.span()),
        "method" => r.method.as_ref().map(|s| s.span()),
        "lookback" => r.lookback.as_ref().map(|s| s.span()),
        "threshold" => r.threshold.as_ref().map(|s| s.span()),
        "horizon" => r.horizon.as_ref().map(|s| s.span()),
        "alpha" => r.alpha.as_ref().map(|s| s.span()),
        "beta" => r.beta.as_ref().map(|s| s.span()),
        "band" => r.band.as_ref().map(|s| s.span()),
        "k" => r.k.as_ref().map(|s| s.span()),
        "percentiles" => r.percentiles.as_ref().map(|s| s.span()),
        "season" => r.season.as_ref().map(|s| s.span()),
        "min_history" => r.min_history.as_ref().map(|s| s.span()),
        "side" => r.side.as_ref().map(|s| s.span()),
        _ => None,
    }
}

/// Reads the parameters of `kind` from `[rules]` (window `interval`, band history
/// `baseline`, both seconds).
pub(super) fn parse(
    r: Option<&RawRules>,
    kind: RuleKind,
    interval: i64,
    baseline: i64,
    e: &mut Errs,
) -> KindParams {
    let Some(r) = r else {
        return match kind {
            RuleKind::Mutation => KindParams::Change(change(None, interval, e)),
            _ => KindParams::Plain,
        };
    };
    for (name, owners) in OWNERS {
        if let Some(span) = given(r, name) {
            if !owners.contains(&kind) {
                let kinds: Vec<String> =
                    owners.iter().map(|k| format!("{:?}", k.as_str())).collect();
                e.at(
                    span,
                    &format!("rules.{name}"),
                    format!(
                        "{name} applies to kind = {} only, not to kind = {:?}",
                        kinds.join(" or kind = "),
                        kind.as_str()
                    ),
                );
            }
        }
    }
    match kind {
        RuleKind::Mutation => KindParams::Change(change(Some(r), interval, e)),
        RuleKind::Forecast => {
            forecast(r, interval, e).map_or(KindParams::Plain, KindParams::Forecast)
        }
        RuleKind::Range => {
            band(r, interval, baseline, e).map_or(KindParams::Plain, KindParams::Band)
        }
        _ => KindParams::Plain,
    }
}

/// A positive duration, or `default` when not given (a bad value is reported).
fn positive(e: &mut Errs, v: &Option<Spanned<super::raw::Dur>>, field: &str, default: i64) -> i64 {
    match v {
        None => default,
        Some(s) => match parse_duration(&s.get_ref().0) {
            Ok(d) if d > 0 => d,
            Ok(_) => {
                e.bad(s, field, "must be longer than 0s");
                default
            }
            Err(msg) => {
                e.bad(s, field, &msg);
                default
            }
        },
    }
}

/// One of `names` (the first is what an absent value means), as its index.
fn choice(e: &mut Errs, v: &Option<Spanned<String>>, field: &str, names: &[&str]) -> usize {
    match v {
        None => 0,
        Some(s) => names
            .iter()
            .position(|n| n == s.get_ref())
            .unwrap_or_else(|| {
                e.bad(s, field, &format!("expected one of {}", names.join(", ")));
                0
            }),
    }
}

/// A finite number within `ok`, described as `what` in the error.
fn number(
    e: &mut Errs,
    v: &Option<Spanned<f64>>,
    field: &str,
    default: f64,
    ok: impl Fn(f64) -> bool,
    what: &str,
) -> f64 {
    match v {
        None => default,
        Some(s) if s.get_ref().is_finite() && ok(*s.get_ref()) => *s.get_ref(),
        Some(s) => {
            e.bad(s, field, &format!("expected {what}"));
            default
        }
    }
}

fn change(r: Option<&RawRules>, interval: i64, e: &mut Errs) -> ChangeParams {
    let none = ChangeParams {
        compare: interval,
        diff: Diff::Value,
        direction: Direction::Signed,
        when: None,
        plain: true,
    };
    let Some(r) = r else { return none };
    let compare = positive(e, &r.compare, "rules.compare", interval);
    let diff =
        [Diff::Value, Diff::Percent][choice(e, &r.diff, "rules.diff", &["value", "percent"])];
    let direction = [
        Direction::Signed,
        Direction::Up,
        Direction::Down,
        Direction::Both,
    ][choice(
        e,
        &r.direction,
        "rules.direction",
        &["signed", "up", "down", "both"],
    )];
    let when = r.when.as_ref().and_then(|s| match when(s.get_ref()) {
        Ok(w) => Some(w),
        Err(why) => {
            e.bad(s, "rules.when", &why);
            None
        }
    });
    ChangeParams {
        compare,
        diff,
        direction,
        when,
        plain: r.compare.is_none() && r.diff.is_none() && r.direction.is_none() && r.when.is_none(),
    }
}

/// Compiles a `when` precondition: the native rule subset with `Current` for the variable.
fn when(src: &str) -> Result<When, String> {
    let wrong = || {
        "expected comparisons of Current with numbers joined by && and ||, \
         e.g. \"Current > 100\""
            .to_string()
    };
    // The native compiler knows one variable, `Result`; `Current` is put in its place, and a
    // `Result` already there would be read as the current value, so it is refused.
    if src.contains("Result") || !src.contains("Current") {
        return Err(wrong());
    }
    let expr = NativeExpr::compile(&src.replace("Current", "Result")).ok_or_else(wrong)?;
    Ok(When {
        source: src.to_string(),
        expr,
    })
}

fn forecast(r: &RawRules, interval: i64, e: &mut Errs) -> Option<ForecastParams> {
    let holt = choice(e, &r.method, "rules.method", &["linear", "holt"]) == 1;
    let unit = |x: f64| x > 0.0 && x <= 1.0;
    let alpha = number(e, &r.alpha, "rules.alpha", 0.5, unit, "a number in (0, 1]");
    let beta = number(e, &r.beta, "rules.beta", 0.3, unit, "a number in (0, 1]");
    if !holt {
        for (v, name) in [(&r.alpha, "alpha"), (&r.beta, "beta")] {
            if let Some(s) = v {
                e.bad(
                    s,
                    &format!("rules.{name}"),
                    "applies to method = \"holt\" only",
                );
            }
        }
    }
    let method = if holt {
        Method::Holt { alpha, beta }
    } else {
        Method::Linear
    };
    let lookback = positive(e, &r.lookback, "rules.lookback", interval.saturating_mul(6));
    let horizon = positive(e, &r.horizon, "rules.horizon", 86_400);
    let crossing =
        [Crossing::Up, Crossing::Down][choice(e, &r.direction, "rules.direction", &["up", "down"])];
    let Some(threshold) = &r.threshold else {
        e.at(
            0..0,
            "rules.threshold",
            "a forecast needs the level it must not reach, e.g. threshold = 95".into(),
        );
        return None;
    };
    let threshold = number(
        e,
        &Some(threshold.clone()),
        "rules.threshold",
        0.0,
        |_| true,
        "a finite number",
    );
    Some(ForecastParams {
        method,
        lookback,
        threshold,
        horizon,
        crossing,
    })
}

fn band(r: &RawRules, interval: i64, baseline: i64, e: &mut Errs) -> Option<BandParams> {
    let any = r.band.is_some()
        || r.k.is_some()
        || r.percentiles.is_some()
        || r.season.is_some()
        || r.min_history.is_some()
        || r.side.is_some();
    if !any {
        return None;
    }
    let percentile = choice(e, &r.band, "rules.band", &["stddev", "percentile"]) == 1;
    let k = number(e, &r.k, "rules.k", 3.0, |x| x > 0.0, "a number above 0");
    let spread = if percentile {
        if let Some(s) = &r.k {
            e.bad(s, "rules.k", "applies to band = \"stddev\" only");
        }
        let (low, high) = match &r.percentiles {
            None => (5.0, 95.0),
            Some(s) => match s.get_ref()[..] {
                [low, high] if (0.0..=100.0).contains(&low) && low < high && high <= 100.0 => {
                    (low, high)
                }
                _ => {
                    e.bad(
                        s,
                        "rules.percentiles",
                        "expected [low, high] with 0 <= low < high <= 100, e.g. [5, 95]",
                    );
                    (5.0, 95.0)
                }
            },
        };
        Spread::Percentile { low, high }
    } else {
        if let Some(s) = &r.percentiles {
            e.bad(
                s,
                "rules.percentiles",
                "applies to band = \"percentile\" only",
            );
        }
        Spread::Stddev { k }
    };
    let season = r
        .season
        .as_ref()
        .and_then(|s| match parse_duration(&s.get_ref().0) {
            Ok(d) if d <= 0 => {
                e.bad(s, "rules.season", "must be longer than 0s");
                None
            }
            Ok(d) if d < interval => {
                e.bad(s, "rules.season", "must be at least the window (interval)");
                None
            }
            Ok(d) if d > baseline => {
                e.bad(
                    s,
                    "rules.season",
                    "is longer than baseline, so there is no season to learn from; set baseline \
                 to several seasons, e.g. baseline = \"4w\" for season = \"1w\"",
                );
                None
            }
            Ok(d) => Some(d),
            Err(msg) => {
                e.bad(s, "rules.season", &msg);
                None
            }
        });
    let min_history = match &r.min_history {
        None => 3,
        Some(s) if (1..=100_000).contains(s.get_ref()) => *s.get_ref() as usize,
        Some(s) => {
            e.bad(
                s,
                "rules.min_history",
                "expected an integer from 1 to 100000",
            );
            3
        }
    };
    let side = [Side::Both, Side::Above, Side::Below]
        [choice(e, &r.side, "rules.side", &["both", "above", "below"])];
    Some(BandParams {
        spread,
        season,
        min_history,
        side,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{parse_monitor, LoadContext, Monitor, MonitorError};
    use crate::script::ScriptEngine;
    use std::path::Path;

    fn load(kind: &str, params: &str) -> Result<Monitor, Vec<MonitorError>> {
        let engine = ScriptEngine::new(Default::default());
        let ctx = LoadContext {
            scripts_dir: Path::new("/nonexistent"),
            policies: &[],
            engine: &engine,
            datasources: None,
        };
        let text = format!(
            "every = \"1m\"\ninterval = \"10m\"\n[query]\nmeasurement = \"m\"\nfield = \"f\"\n\
             [rules]\nkind = \"{kind}\"\ncritical = \"Result > 1\"\n{params}\n"
        );
        parse_monitor(&text, Path::new("m.toml"), "m", &ctx)
    }

    fn params(kind: &str, text: &str) -> KindParams {
        load(kind, text)
            .expect("loads")
            .rules()
            .unwrap()
            .params
            .clone()
    }

    #[test]
    fn parameters_become_typed_values_with_their_defaults() {
        let plain = ChangeParams {
            compare: 600,
            diff: Diff::Value,
            direction: Direction::Signed,
            when: None,
            plain: true,
        };
        // (kind, parameters, typed)
        let cases: Vec<(&str, &str, KindParams)> = vec![
            ("threshold", "", KindParams::Plain),
            ("mutation", "", KindParams::Change(plain.clone())),
            (
                "mutation",
                "compare = \"1w\"\ndiff = \"percent\"\ndirection = \"down\"",
                KindParams::Change(ChangeParams {
                    compare: 604_800,
                    diff: Diff::Percent,
                    direction: Direction::Down,
                    plain: false,
                    ..plain.clone()
                }),
            ),
            ("range", "baseline = \"1h\"", KindParams::Plain),
            (
                "range",
                "side = \"above\"",
                KindParams::Band(BandParams {
                    spread: Spread::Stddev { k: 3.0 },
                    season: None,
                    min_history: 3,
                    side: Side::Above,
                }),
            ),
            (
                "range",
                "band = \"percentile\"\npercentiles = [1, 99]\nseason = \"1d\"\nbaseline = \"7d\"\nmin_history = 5",
                KindParams::Band(BandParams {
                    spread: Spread::Percentile {
                        low: 1.0,
                        high: 99.0,
                    },
                    season: Some(86_400),
                    min_history: 5,
                    side: Side::Both,
                }),
            ),
            (
                "forecast",
                "threshold = 95",
                KindParams::Forecast(ForecastParams {
                    method: Method::Linear,
                    lookback: 3600,
                    threshold: 95.0,
                    horizon: 86_400,
                    crossing: Crossing::Up,
                }),
            ),
            (
                "forecast",
                "threshold = 5.5\nmethod = \"holt\"\nalpha = 0.8\nlookback = \"6h\"\nhorizon = \"4h\"\ndirection = \"down\"",
                KindParams::Forecast(ForecastParams {
                    method: Method::Holt {
                        alpha: 0.8,
                        beta: 0.3,
                    },
                    lookback: 6 * 3600,
                    threshold: 5.5,
                    horizon: 4 * 3600,
                    crossing: Crossing::Down,
                }),
            ),
        ];
        for (kind, text, want) in cases {
            assert_eq!(params(kind, text), want, "{kind}: {text}");
        }
    }

    #[test]
    fn when_reads_current_natively() {
        let KindParams::Change(p) =
            params("mutation", "when = \"Current > 100 && Current < 1000000\"")
        else {
            panic!("a mutation has change parameters");
        };
        let w = p.when.unwrap();
        assert!(!p.plain);
        assert!(w.expr.eval(200.0) && !w.expr.eval(50.0) && !w.expr.eval(2e6));
        assert_eq!(w.source, "Current > 100 && Current < 1000000");
    }

    #[test]
    fn a_bad_season_is_one_error_naming_the_field() {
        let e = load("range", "season = \"0s\"").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "rules.season");
        assert_eq!(e[0].line, 9);
    }
}
