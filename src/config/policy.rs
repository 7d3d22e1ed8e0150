//! `[[policies]]` and `[[access_keys]]`: alert policies with their targets and mutes, typed at
//! deserialise time (statuses, formats, durations, cron and time points).

use super::{statuses, Cron, Seconds, Status, Timestamp};
use crate::model::event::ALL_STATUSES;
use serde::Deserialize;

/// `[[access_keys]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// access key id
    pub id: String,
    /// access key secret
    pub secret: String,
}

/// `[[policies]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `df_monitor_id`
    pub id: String,
    /// `df_monitor_name` (absent: the id)
    pub name: Option<String>,
    /// the same alert is not sent again within this (absent: no repeat suppression)
    pub silent_timeout: Option<Seconds>,
    /// where events go
    #[serde(default)]
    pub targets: Vec<Target>,
    /// when events are held back
    #[serde(default)]
    pub mutes: Vec<Mute>,
    /// give up on a delivery after this long
    #[serde(default = "default_expire")]
    pub expire: Seconds,
}

fn default_expire() -> Seconds {
    Seconds(24 * 3600)
}

impl Policy {
    /// `df_monitor_name`: the name, else the id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// A tag filter value: one value, or a list of which any may match.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TagValues {
    /// `env = "prod"`
    One(String),
    /// `env = ["prod", "staging"]`
    Many(Vec<String>),
}

impl TagValues {
    /// Whether `v` is one of the values.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            TagValues::One(x) => x == v,
            TagValues::Many(xs) => xs.iter().any(|x| x == v),
        }
    }
}

/// Tag filters: every key must be present with one of its values.
pub type TagFilter = std::collections::BTreeMap<String, TagValues>;

/// Payload shapes of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// the event as a flat JSON object
    #[default]
    Json,
    /// Alertmanager webhook v4 (tocsin as an Alertmanager, for receivers that take its webhooks)
    Alertmanager,
    /// Alertmanager's own API: postable alerts to `{url}/api/v2/alerts`, re-sent while open
    AlertmanagerApi,
    /// DingTalk robot markdown message
    Dingtalk,
}

impl Format {
    /// Every format, in documentation order.
    pub const ALL: &'static [Format] = &[
        Format::Json,
        Format::Alertmanager,
        Format::AlertmanagerApi,
        Format::Dingtalk,
    ];

    /// The name in config files and in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Alertmanager => "alertmanager",
            Format::AlertmanagerApi => "alertmanager_api",
            Format::Dingtalk => "dingtalk",
        }
    }

    /// Parses a name; the error names it and lists the valid ones.
    pub fn parse(s: &str) -> Result<Format, String> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown format {s:?}: expected one of {}", names.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Format::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(HttpUrl(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "{s:?}: expected an http:// or https:// URL"
            )))
        }
    }
}

/// `[[policies.targets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTarget")]
pub struct Target {
    /// webhook URL; for `alertmanager_api`, Alertmanager's base URL (see [`Target::post_url`])
    pub url: HttpUrl,
    /// statuses sent
    pub statuses: Vec<Status>,
    /// only events whose tags match (same key: any value; different keys: all)
    pub tags: Option<TagFilter>,
    /// payload shape
    pub format: Format,
    /// HMAC-SHA256 signing secret: adds `X-Tocsin-Signature: sha256=<hex>` of the body
    pub secret: Option<String>,
    /// request timeout
    pub timeout: Seconds,
    /// `alertmanager_api` only (and always set there, default 1m): how often open alerts are
    /// posted again
    pub resend: Option<Seconds>,
}

/// Where Alertmanager takes alerts, below its base URL.
pub const ALERTMANAGER_ALERTS_PATH: &str = "/api/v2/alerts";

impl Target {
    /// The URL requests go to: `url`, or for `alertmanager_api` the base URL with
    /// `/api/v2/alerts` appended.
    pub fn post_url(&self) -> String {
        match self.format {
            Format::AlertmanagerApi => format!(
                "{}{ALERTMANAGER_ALERTS_PATH}",
                self.url.0.trim_end_matches('/')
            ),
            _ => self.url.0.clone(),
        }
    }
}

/// `[[policies.targets]]` as written; [`Target`] checks the keys that depend on `format`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: HttpUrl,
    #[serde(default = "default_statuses", deserialize_with = "statuses")]
    statuses: Vec<Status>,
    tags: Option<TagFilter>,
    #[serde(default)]
    format: Format,
    secret: Option<String>,
    #[serde(default = "default_timeout")]
    timeout: Seconds,
    resend: Option<Seconds>,
}

impl TryFrom<RawTarget> for Target {
    type Error = String;
    fn try_from(t: RawTarget) -> Result<Target, String> {
        let resend = match (t.format, t.resend) {
            (Format::AlertmanagerApi, r) => {
                let r = r.unwrap_or(Seconds(60));
                if r.get() < 1 {
                    return Err(format!(
                        "policies.targets.resend: {r} is too short; give at least \"1s\" (default \"1m\")"
                    ));
                }
                check_alertmanager_base(&t.url.0)?;
                Some(r)
            }
            (f, Some(_)) => {
                return Err(format!(
                    "policies.targets.resend: only format = \"alertmanager_api\" re-sends alerts; remove resend from this {:?} target ({})",
                    f.as_str(),
                    t.url.0
                ))
            }
            (_, None) => None,
        };
        Ok(Target {
            url: t.url,
            statuses: t.statuses,
            tags: t.tags,
            format: t.format,
            secret: t.secret,
            timeout: t.timeout,
            resend,
        })
    }
}

/// An `alertmanager_api` URL is Alertmanager's base URL (a route prefix is fine): tocsin adds
/// the API path itself, so a URL that already names it, or carries a query, would be wrong.
fn check_alertmanager_base(url: &str) -> Result<(), String> {
    let path = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let named_api = ["/api/v2/alerts", "/api/v2", "/api/v1/alerts", "/api/v1"]
        .iter()
        .any(|p| path.trim_end_matches('/').ends_with(p));
    if named_api || url.contains(['?', '#']) {
        return Err(format!(
            "policies.targets.url: {url:?}: format = \"alertmanager_api\" takes Alertmanager's base URL, such as \"http://127.0.0.1:9093\" (tocsin appends {ALERTMANAGER_ALERTS_PATH}), without a query or fragment"
        ));
    }
    Ok(())
}

/// Every status but `info`.
fn default_statuses() -> Vec<Status> {
    ALL_STATUSES
        .iter()
        .copied()
        .filter(|s| *s != Status::Info)
        .collect()
}

fn default_timeout() -> Seconds {
    Seconds(10)
}

/// When a mute holds.
#[derive(Debug, Clone, PartialEq)]
pub enum MuteWindow {
    /// `start` and `end`: once, `start <= date < end`
    OneOff {
        /// first muted second
        start: Timestamp,
        /// first second no longer muted
        end: Timestamp,
    },
    /// `cron` and `duration`: from every start of the crontab, for `duration`
    Repeating {
        /// when each mute starts (UTC)
        cron: Cron,
        /// how long each lasts
        duration: Seconds,
    },
}

/// `[[policies.mutes]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawMute")]
pub struct Mute {
    /// when it holds
    pub window: MuteWindow,
    /// only these monitors
    pub monitors: Option<Vec<String>>,
    /// only events with these tags
    pub tags: Option<TagFilter>,
}

/// `[[policies.mutes]]` as written: the window is either pair of keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMute {
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    cron: Option<Cron>,
    duration: Option<Seconds>,
    monitors: Option<Vec<String>>,
    tags: Option<TagFilter>,
}

impl TryFrom<RawMute> for Mute {
    type Error = String;
    fn try_from(m: RawMute) -> Result<Mute, String> {
        let window = match (m.start, m.end, m.cron, m.duration) {
            (Some(start), Some(end), None, None) => {
                if end <= start {
                    return Err("mute: end must be after start".into());
                }
                MuteWindow::OneOff { start, end }
            }
            (None, None, Some(cron), Some(duration)) => MuteWindow::Repeating { cron, duration },
            _ => {
                return Err(
                    "mute: give either start and end (one-off) or cron and duration (repeating)"
                        .into(),
                )
            }
        };
        Ok(Mute {
            window,
            monitors: m.monitors,
            tags: m.tags,
        })
    }
}
