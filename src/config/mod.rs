//! The config file: every key is optional; flags override the file, the file overrides the
//! defaults declared beside each field.
//!
//! The file deserialises straight into typed values (durations, statuses, formats, cron
//! schedules, time points), so a bad value is refused at load time with its line, and the
//! rest of the program never parses config text again.

use crate::model::event::{Status, ALL_STATUSES};
use crate::model::time::{Seconds, Timestamp};
use crate::monitor::Cron;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

mod datasource;
mod policy;
#[cfg(test)]
mod tests;

pub use datasource::{BasicAuth, Datasource};
pub use policy::{
    AccessKey, Format, Mute, MuteWindow, Policy, TagFilter, TagValues, Target,
    ALERTMANAGER_ALERTS_PATH,
};

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// the file could not be read
    #[error("{file}: cannot read: {message}")]
    Read {
        /// the file
        file: PathBuf,
        /// the OS error
        message: String,
    },
    /// a key or value is wrong
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// the file
        file: PathBuf,
        /// 1-based line of the bad key or value
        line: usize,
        /// what was wrong (naming the key) and what is allowed
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// data directory (absent: the command's default, `./data`)
    pub data: Option<PathBuf>,
    /// listen address (absent: `127.0.0.1:9530`)
    pub listen: Option<String>,
    /// monitors directory (absent: the command's default)
    pub monitors: Option<PathBuf>,
    /// scripts directory (absent: the command's default)
    pub scripts: Option<PathBuf>,
    /// token for write and event endpoints
    pub ingest_token: Option<String>,
    /// Bearer token for recover, run and reload; reads too
    pub admin_token: Option<String>,
    /// token for the read endpoints (events, issues, monitors, deliveries); when any token is
    /// set, reads need this one or the admin token
    pub read_token: Option<String>,
    /// base of `df_event_url`
    pub public_url: Option<String>,
    /// retention ages
    #[serde(default)]
    pub retention: Retention,
    /// the built-in host input
    #[serde(default)]
    pub host_input: HostInput,
    /// cloud access keys for signed custom-event requests
    #[serde(default)]
    pub access_keys: Vec<AccessKey>,
    /// alert policies
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// largest accepted request body in bytes
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// `[limits]`: bounds on what writes may create
    #[serde(default)]
    pub limits: Limits,
    /// Prometheus-compatible query APIs that monitors may read
    #[serde(default)]
    pub datasources: Vec<Datasource>,
    /// `[state]`: where events, issues, detection state and the outbox live
    #[serde(default)]
    pub state: StateConfig,
}

/// `[state]`: absent, the embedded SQLite file in the data directory; with `postgres`, a
/// PostgreSQL server that several replicas share (README "High availability on PostgreSQL").
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `postgresql://user[:password]@host[:port]/database`
    pub postgres: Option<String>,
    /// this replica's name in leases and reports (default: host name and listen port); must
    /// differ between replicas
    pub replica: Option<String>,
}

impl Default for Config {
    /// The config of an empty file: every default declared on the fields, nothing else (a
    /// derived `Default` would give zeros where serde gives the declared defaults).
    fn default() -> Config {
        toml::from_str("").expect("an empty config file is valid")
    }
}

fn default_max_body_bytes() -> usize {
    32 << 20
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// keep metrics this long
    #[serde(default = "default_metrics_keep")]
    pub metrics: Seconds,
    /// keep events this long
    #[serde(default = "default_events_keep")]
    pub events: Seconds,
}

fn default_metrics_keep() -> Seconds {
    Seconds(7 * 86_400)
}

fn default_events_keep() -> Seconds {
    Seconds(30 * 86_400)
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            metrics: default_metrics_keep(),
            events: default_events_keep(),
        }
    }
}

/// `[limits]`: bounds that protect the metric store from hostile or broken writers. Writes past
/// them are refused whole (HTTP 422 for a new series past `max_series`, 400 for a point past
/// the point limits), by the HTTP parser and again by the store (replay, `tocsin write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// most series the store holds; new series past it are refused, existing ones keep
    /// being written (default 2,000,000, see [`crate::store::DEFAULT_MAX_SERIES`])
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// most fields one point may carry (default 1,000)
    #[serde(default = "default_max_fields")]
    pub max_fields_per_point: usize,
    /// most tags one series may carry (default 64)
    #[serde(default = "default_max_tags")]
    pub max_tags_per_series: usize,
}

fn default_max_series() -> usize {
    crate::store::DEFAULT_MAX_SERIES
}

fn default_max_fields() -> usize {
    crate::ingest::limits::MAX_FIELDS_PER_POINT
}

fn default_max_tags() -> usize {
    crate::ingest::limits::MAX_TAGS_PER_SERIES
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_series: default_max_series(),
            max_fields_per_point: default_max_fields(),
            max_tags_per_series: default_max_tags(),
        }
    }
}

impl Limits {
    /// The point bounds these limits set (times keep their defaults).
    pub fn point_limits(&self) -> crate::ingest::PointLimits {
        crate::ingest::PointLimits {
            max_fields: self.max_fields_per_point,
            max_tags: self.max_tags_per_series,
            ..Default::default()
        }
    }
}

/// `[host_input]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInput {
    /// collect cpu, mem, disk, load, net of this machine
    #[serde(default = "yes")]
    pub enabled: bool,
    /// collection interval
    #[serde(default = "default_host_every")]
    pub every: Seconds,
}

fn yes() -> bool {
    true
}

fn default_host_every() -> Seconds {
    Seconds(10)
}

impl Default for HostInput {
    fn default() -> HostInput {
        HostInput {
            enabled: true,
            every: default_host_every(),
        }
    }
}

/// Deserialises a list of status names; an unknown name is an error that names it and lists
/// the valid ones.
pub fn statuses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Status>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown status {s:?}: expected one of {}",
                    status_names()
                ))
            })
        })
        .collect()
}

/// The valid status names, comma separated, from [`ALL_STATUSES`].
fn status_names() -> String {
    ALL_STATUSES
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key set on `line` (1-based), from the `[table]` or `[[array]]` header above it,
/// so a value error names its key (`policies.targets.format`).
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate().take(line) {
        let t = l.trim();
        if t.starts_with('[') && t.ends_with(']') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        if i + 1 == line {
            let (key, _) = t.split_once('=')?;
            let key = key.trim().trim_matches('"');
            if key.is_empty() || key.contains(' ') {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |line: usize, message: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            line,
            message,
        };
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            let message = e.message().trim_end().to_string();
            // Unknown keys already name themselves; value errors get their key in front.
            let message = match key_at(text, line) {
                Some(key) if !message.contains("unknown field") => format!("{key}: {message}"),
                _ => message,
            };
            invalid(line, message)
        })?;
        let mut ids = std::collections::HashSet::new();
        for p in &cfg.policies {
            if !ids.insert(p.id.as_str()) {
                let line = text
                    .match_indices(&format!("{:?}", p.id))
                    .nth(1)
                    .map_or(1, |(at, _)| line_of(text, at));
                return Err(invalid(
                    line,
                    format!(
                        "policies.id: id {:?} is used twice; ids must be unique",
                        p.id
                    ),
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for d in &cfg.datasources {
            let line = || {
                text.match_indices(&format!("{:?}", d.id))
                    .next()
                    .map_or(1, |(at, _)| line_of(text, at))
            };
            if d.id.is_empty() {
                return Err(invalid(1, "datasources.id: must not be empty".into()));
            }
            if !ids.insert(d.id.as_str()) {
                let line = text
                    .match_indices(&format!("{:?}", d.id))
                    .nth(1)
                    .map_or(1, |(at, _)| line_of(text, at));
                return Err(invalid(
                    line,
                    format!(
                        "datasources.id: id {:?} is used twice; ids must be unique",
                        d.id
                    ),
                ));
            }
            if d.timeout.get() <= 0 {
                return Err(invalid(
                    line(),
                    format!(
                        "datasources.timeout: the timeout of {:?} must be longer than 0s",
                        d.id
                    ),
                ));
            }
        }
        Ok(cfg)
    }

    /// Datasource ids.
    pub fn datasource_ids(&self) -> Vec<String> {
        self.datasources.iter().map(|d| d.id.clone()).collect()
    }

    /// Policy ids.
    pub fn policy_ids(&self) -> Vec<String> {
        self.policies.iter().map(|p| p.id.clone()).collect()
    }

    /// Policy names by id.
    pub fn policy_names(&self) -> std::collections::HashMap<String, String> {
        self.policies
            .iter()
            .map(|p| (p.id.clone(), p.display_name().to_string()))
            .collect()
    }
}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}
