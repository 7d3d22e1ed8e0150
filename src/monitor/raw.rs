//! The monitor file as written: serde structs read through `toml::Spanned`, so every value
//! keeps its position for error messages, and the loose value forms (`Dur`, `StrList`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A duration as written: `"5m"`, or an integer number of seconds.
#[derive(Clone, PartialEq)]
pub(super) struct Dur(pub(super) String);

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
pub(super) struct StrList(pub(super) Vec<String>);

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

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    pub(super) id: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub(super) mtype: Option<Spanned<String>>,
    pub(super) policy: Option<Spanned<String>>,
    pub(super) every: Option<Spanned<Dur>>,
    pub(super) cron: Option<Spanned<String>>,
    pub(super) manual: Option<Spanned<bool>>,
    pub(super) interval: Option<Spanned<Dur>>,
    pub(super) delay: Option<Spanned<Dur>>,
    pub(super) forget_after: Option<Spanned<Dur>>,
    pub(super) script: Option<Spanned<String>>,
    pub(super) query: Option<Spanned<RawQuery>>,
    pub(super) rules: Option<Spanned<RawRules>>,
    pub(super) nodata: Option<Spanned<RawNodata>>,
    pub(super) template: Option<Spanned<RawTemplate>>,
    pub(super) slo: Option<Spanned<super::slo::RawSlo>>,
}

/// `[query]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuery {
    pub(super) measurement: Option<Spanned<String>>,
    pub(super) field: Option<Spanned<String>>,
    pub(super) agg: Option<Spanned<String>>,
    pub(super) by: Option<Spanned<StrList>>,
    #[serde(rename = "where")]
    pub(super) where_: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(super) datasource: Option<Spanned<String>>,
    pub(super) promql: Option<Spanned<String>>,
}

/// `[rules]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) critical: Option<Spanned<String>>,
    pub(super) error: Option<Spanned<String>>,
    pub(super) warning: Option<Spanned<String>>,
    pub(super) info: Option<Spanned<String>>,
    pub(super) script: Option<Spanned<String>>,
    pub(super) trigger_after: Option<Spanned<i64>>,
    pub(super) recover_after: Option<Spanned<i64>>,
    pub(super) recovery: Option<Spanned<String>>,
    pub(super) baseline: Option<Spanned<Dur>>,
    // Detector parameters (see `kinds`): mutation, forecast, range with a learned band.
    pub(super) compare: Option<Spanned<Dur>>,
    pub(super) diff: Option<Spanned<String>>,
    pub(super) direction: Option<Spanned<String>>,
    pub(super) when: Option<Spanned<String>>,
    pub(super) method: Option<Spanned<String>>,
    pub(super) lookback: Option<Spanned<Dur>>,
    pub(super) threshold: Option<Spanned<f64>>,
    pub(super) horizon: Option<Spanned<Dur>>,
    pub(super) alpha: Option<Spanned<f64>>,
    pub(super) beta: Option<Spanned<f64>>,
    pub(super) band: Option<Spanned<String>>,
    pub(super) k: Option<Spanned<f64>>,
    pub(super) percentiles: Option<Spanned<Vec<f64>>>,
    pub(super) season: Option<Spanned<Dur>>,
    pub(super) min_history: Option<Spanned<i64>>,
    pub(super) side: Option<Spanned<String>>,
    pub(super) algorithm: Option<Spanned<String>>,
    pub(super) tolerance: Option<Spanned<f64>>,
}

/// `[nodata]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNodata {
    pub(super) after: Option<Spanned<Dur>>,
    pub(super) action: Option<Spanned<String>>,
}

/// `[template]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplate {
    pub(super) title: Option<Spanned<String>>,
    pub(super) message: Option<Spanned<String>>,
    pub(super) recover_title: Option<Spanned<String>>,
    pub(super) recover_message: Option<Spanned<String>>,
    pub(super) nodata_title: Option<Spanned<String>>,
    pub(super) nodata_message: Option<Spanned<String>>,
}
