//! `[[datasources]]`: Prometheus-compatible query APIs (Prometheus, VictoriaMetrics, Mimir,
//! Thanos) that monitors can read instead of the embedded store.

use super::policy::HttpUrl;
use crate::model::time::Seconds;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[[datasources]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasource {
    /// what monitors name in `[query] datasource`
    pub id: String,
    /// base of the Prometheus HTTP API (`{url}/api/v1/query` is queried)
    pub url: HttpUrl,
    /// one query's time limit
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    /// extra request headers, e.g. `Authorization = "Bearer ..."` or `X-Scope-OrgID` (Mimir)
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication
    pub basic_auth: Option<BasicAuth>,
}

/// `basic_auth = { user = "...", password = "..." }`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// user name
    pub user: String,
    /// password
    pub password: String,
}

// The password never reaches logs through `{:?}`.
impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

fn default_timeout() -> Seconds {
    Seconds(30)
}
