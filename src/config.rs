//! The config file (SPEC §6a). Every key is optional; flags override the file, the file
//! overrides defaults.

use crate::model::time::parse_duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// data directory (default `./data`)
    pub data: Option<PathBuf>,
    /// listen address (default `127.0.0.1:9530`)
    pub listen: Option<String>,
    /// monitors directory (default `./monitors`)
    pub monitors: Option<PathBuf>,
    /// scripts directory (default `./scripts`)
    pub scripts: Option<PathBuf>,
    /// Bearer token for write and event endpoints
    pub ingest_token: Option<String>,
    /// Bearer token for recover, run and reload
    pub admin_token: Option<String>,
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
    /// largest accepted request body in bytes (default 32 MiB)
    pub max_body_bytes: Option<usize>,
}

/// `[retention]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// keep metrics this long (default `7d`)
    pub metrics: Option<String>,
    /// keep events this long (default `30d`)
    pub events: Option<String>,
}

/// `[host_input]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInput {
    /// collect cpu, mem, disk, load, net of this machine (default true)
    pub enabled: Option<bool>,
    /// collection interval (default `10s`)
    pub every: Option<String>,
}

/// `[[access_keys]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// access key id
    pub id: String,
    /// access key secret
    pub secret: String,
}

/// `[[policies]]` (SPEC §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `df_monitor_id`
    pub id: String,
    /// `df_monitor_name`
    pub name: Option<String>,
    /// the same alert is not sent again within this
    pub silent_timeout: Option<String>,
    /// where events go
    #[serde(default)]
    pub targets: Vec<Target>,
    /// when events are held back
    #[serde(default)]
    pub mutes: Vec<Mute>,
    /// give up on a delivery after this long (default `24h`)
    pub expire: Option<String>,
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

/// `[[policies.targets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// webhook URL
    pub url: String,
    /// statuses sent (default: all but info)
    pub statuses: Option<Vec<String>>,
    /// only events whose tags match (same key: any value; different keys: all)
    pub tags: Option<TagFilter>,
    /// `json` (default), `alertmanager` or `dingtalk`
    pub format: Option<String>,
    /// HMAC-SHA256 signing secret: adds `X-Tocsin-Signature: sha256=<hex>` of the body
    pub secret: Option<String>,
    /// request timeout (default `10s`)
    pub timeout: Option<String>,
}

/// `[[policies.mutes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    /// one-off start
    pub start: Option<String>,
    /// one-off end
    pub end: Option<String>,
    /// repeating: crontab of the start
    pub cron: Option<String>,
    /// repeating: how long
    pub duration: Option<String>,
    /// only these monitors
    pub monitors: Option<Vec<String>>,
    /// only events with these tags
    pub tags: Option<TagFilter>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            format!("{}:{}: {}", path.display(), line, e.message())
        })?;
        cfg.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("retention.metrics", &self.retention.metrics),
            ("retention.events", &self.retention.events),
            ("host_input.every", &self.host_input.every),
        ] {
            if let Some(v) = v {
                parse_duration(v).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        let mut ids = std::collections::HashSet::new();
        for p in &self.policies {
            if !ids.insert(p.id.as_str()) {
                return Err(format!("policies: id {:?} is used twice", p.id));
            }
            for (name, v) in [("silent_timeout", &p.silent_timeout), ("expire", &p.expire)] {
                if let Some(s) = v {
                    parse_duration(s).map_err(|e| format!("policies.{}.{name}: {e}", p.id))?;
                }
            }
            for (i, m) in p.mutes.iter().enumerate() {
                let at = format!("policies.{}.mutes[{i}]", p.id);
                match (&m.start, &m.end, &m.cron, &m.duration) {
                    (Some(a), Some(b), None, None) => {
                        let a = crate::model::time::parse_time(a).map_err(|e| format!("{at}.start: {e}"))?;
                        let b = crate::model::time::parse_time(b).map_err(|e| format!("{at}.end: {e}"))?;
                        if b <= a {
                            return Err(format!("{at}: end must be after start"));
                        }
                    }
                    (None, None, Some(c), Some(d)) => {
                        crate::monitor::parse_cron(c).map_err(|e| format!("{at}.cron: {e}"))?;
                        parse_duration(d).map_err(|e| format!("{at}.duration: {e}"))?;
                    }
                    _ => return Err(format!("{at}: give either start and end (one-off) or cron and duration (repeating)")),
                }
            }
            for t in &p.targets {
                if let Some(f) = &t.format {
                    if !["json", "alertmanager", "dingtalk"].contains(&f.as_str()) {
                        return Err(format!("policies.{}.targets.format = {f:?}: expected json, alertmanager or dingtalk", p.id));
                    }
                }
                if let Some(d) = &t.timeout {
                    parse_duration(d)
                        .map_err(|e| format!("policies.{}.targets.timeout: {e}", p.id))?;
                }
                if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                    return Err(format!(
                        "policies.{}.targets.url = {:?}: expected an http:// or https:// URL",
                        p.id, t.url
                    ));
                }
                for s in t.statuses.iter().flatten() {
                    if crate::model::event::Status::parse(s).is_none() {
                        return Err(format!(
                            "policies.{}.targets.statuses: unknown status {s:?}",
                            p.id
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Policy ids.
    pub fn policy_ids(&self) -> Vec<String> {
        self.policies.iter().map(|p| p.id.clone()).collect()
    }

    /// Policy names by id.
    pub fn policy_names(&self) -> crate::check::PolicyNames {
        self.policies
            .iter()
            .map(|p| (p.id.clone(), p.name.clone().unwrap_or_else(|| p.id.clone())))
            .collect()
    }
}
