//! The HTTP surface (docs/event-centre.md and the README's HTTP section): [`app`] builds the
//! router from one file per route group. Business rules live elsewhere; this layer maps
//! requests to them, checks tokens and limits, reads "now" from the injected clock and shapes
//! every error as JSON ([`error::ApiError`]).
//!
//! | file | routes |
//! |---|---|
//! | [`write`] | `/v1/write/metric`, `/write`, `/api/v2/write`, `/api/v1/write` (behind admission) |
//! | [`influx`] | `/ping`, `/health`, `/query` (what InfluxDB clients probe) |
//! | [`events`] | `/api/v1/events`, `/events/:id`, `/events/stats`, `/events/stream`, `/api/v1/deliveries` |
//! | [`issues`] | `/api/v1/issues`, `/api/v1/issues/recover` |
//! | [`monitors`] | `/api/v1/monitors`, `/monitors/:id`, `/monitors/:id/points`, `/monitors/reload`, `/monitors/:id/run` |
//! | [`silences`] | `/api/v1/silences`, `/silences/:id` |
//! | [`metrics`] | `/metrics` |
//! | [`custom`] | the four custom-event dialects (`GET /?Action=` among them) |
//! | [`console`] | the web console: `GET /` and its assets under `/console/` |
//!
//! Reads (events, issues, monitors, deliveries) sit behind [`auth::admit_read`]. Unknown
//! paths answer 404 and unknown methods 405, both with the JSON error body.

pub mod auth;
pub mod body;
pub mod console;
pub mod custom;
pub mod error;
pub mod events;
pub mod influx;
pub mod issues;
pub mod metrics;
pub mod monitors;
pub mod redact;
pub mod silences;
pub mod write;

#[cfg(test)]
mod tests;

pub use auth::check_token;
pub use body::BODY_READ_TIMEOUT;
pub use error::{ApiError, ApiResult};
pub use write::INGEST_SLOTS;

use crate::custom::sign::NonceCache;
use crate::engine::Engine;
use crate::ingest::Ingest;
use crate::model::SharedClock;
use crate::notify::worker::Worker;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// the engine
    pub engine: Arc<Engine>,
    /// the ingest pipeline
    pub ingest: Arc<Ingest>,
    /// the outbox worker
    pub worker: Arc<Worker>,
    /// where handlers and dialects read "now"
    pub clock: SharedClock,
    /// token for write and event endpoints
    pub ingest_token: Option<String>,
    /// token for recover, run and reload (reads too)
    pub admin_token: Option<String>,
    /// token for the read endpoints (events, issues, monitors, deliveries)
    pub read_token: Option<String>,
    /// largest body accepted
    pub max_body: usize,
    /// how long a request body may take to arrive (then 408)
    pub body_timeout: Duration,
    /// cloud access keys: when any are set, Alibaba and Huawei dialect requests must be signed
    pub access_keys: Vec<crate::config::AccessKey>,
    /// Alibaba signature nonces seen by this server (replay protection)
    pub nonces: Arc<NonceCache>,
    /// admission for write requests: beyond these many in flight, 429 before reading the body
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    /// heavy reads (event lists, stats, issues, deliveries) running at once; see [`HEAVY_READS`]
    pub heavy_reads: Arc<tokio::sync::Semaphore>,
    /// how long a heavy read waits for its turn (then 429)
    pub heavy_read_wait: Duration,
}

/// Heavy reads allowed at once. A list of 10,000 events holds tens of MB while it is built
/// and serialised; bounding how many run together bounds that memory whatever the load.
pub const HEAVY_READS: usize = 4;

/// How long a heavy read waits for its turn before the answer is 429 with Retry-After.
pub const HEAVY_READ_WAIT: Duration = Duration::from_secs(10);

/// Largest body accepted unless configured.
pub const DEFAULT_MAX_BODY: usize = 32 << 20;

impl AppState {
    /// State with no tokens, no access keys and the default limits.
    pub fn new(
        engine: Arc<Engine>,
        ingest: Arc<Ingest>,
        worker: Arc<Worker>,
        clock: SharedClock,
    ) -> AppState {
        AppState {
            engine,
            ingest,
            worker,
            clock,
            ingest_token: None,
            admin_token: None,
            read_token: None,
            max_body: DEFAULT_MAX_BODY,
            body_timeout: BODY_READ_TIMEOUT,
            access_keys: Vec::new(),
            nonces: Arc::new(NonceCache::default()),
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(INGEST_SLOTS)),
            heavy_reads: Arc::new(tokio::sync::Semaphore::new(HEAVY_READS)),
            heavy_read_wait: HEAVY_READ_WAIT,
        }
    }
}

/// The application: every route, with the body limit and the state.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body;
    let routes = Router::new()
        .merge(write::routes(&state))
        .merge(influx::routes(&state))
        .merge(events::routes(&state))
        .merge(issues::routes(&state))
        .merge(monitors::routes(&state))
        .merge(silences::routes(&state))
        .merge(metrics::routes())
        .merge(custom::routes())
        .merge(console::routes())
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    // The 405 body is filled in around the router, not inside it: axum adds the Allow header
    // that the body names only once the method router has answered, after inner layers ran.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(method_not_allowed_json))
}

/// `GET /healthz`: 200 `{"status": "ok", "state": {...}}` while the state backend answers,
/// else 503 with `"status": "degraded"` and why (the HTTP API and ingest still run).
async fn healthz(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    let db = st.engine.runner.db.clone();
    let backend = match db.dialect() {
        crate::events::Dialect::Sqlite => "sqlite",
        crate::events::Dialect::Postgres => "postgres",
    };
    let ping = tokio::task::spawn_blocking(move || db.ping())
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut state = json!({"backend": backend, "reachable": ping.is_ok()});
    if let Err(e) = &ping {
        state["error"] = json!(e);
    }
    if let Some(l) = st.engine.leases() {
        state["replica"] = json!(l.me);
    }
    let (code, status) = match ping {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
    };
    (code, Json(json!({"status": status, "state": state}))).into_response()
}

/// Unknown paths: 404 with the JSON error body.
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {method} {}: the endpoints are listed in docs/api.md",
        uri.path()
    ))
}

/// Gives axum's empty 405 (a known path, another method) the JSON error body, naming the
/// methods of its `Allow` header.
async fn method_not_allowed_json(req: axum::extract::Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    ApiError::MethodNotAllowed {
        method,
        path,
        allow,
    }
    .into_response()
}

/// Runs a heavy read off the async runtime once one of the [`HEAVY_READS`] turns is free;
/// waits at most `heavy_read_wait` ([`HEAVY_READ_WAIT`] by default), then answers 429.
async fn heavy_read<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let permit = tokio::time::timeout(st.heavy_read_wait, st.heavy_reads.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Busy {
            message: format!(
                "{HEAVY_READS} heavy reads are already running; retry later or ask for fewer items"
            ),
            retry_after: 1,
        })?
        .map_err(ApiError::internal)?;
    let out = blocking(f).await;
    drop(permit);
    out
}

/// Runs blocking work (SQLite, reloads) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}
