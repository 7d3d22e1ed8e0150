//! HTTP routes (SPEC §6): ingest, queries, admin, metrics. Business rules live elsewhere;
//! this module maps requests to them, checks tokens and limits, and shapes errors as JSON.

use crate::check::RecoverUser;
use crate::engine::{now_secs, Engine, RecoverSelector};
use crate::events::EventQuery;
use crate::ingest::lineproto::Precision;
use crate::ingest::{decode_body, echo_json, parse_body, Ingest, IngestError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// the engine
    pub engine: Arc<Engine>,
    /// the ingest pipeline
    pub ingest: Arc<Ingest>,
    /// token for write and event endpoints
    pub ingest_token: Option<String>,
    /// token for recover, run and reload
    pub admin_token: Option<String>,
    /// largest body accepted
    pub max_body: usize,
    /// cloud access keys: when any are set, Alibaba and Huawei dialect requests must be signed
    pub access_keys: Vec<crate::config::AccessKey>,
    /// the outbox worker
    pub worker: Arc<crate::notify::worker::Worker>,
    /// admission for write requests: beyond these many in flight, 429 before reading the body
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
}

/// Write requests allowed in flight at once (each holds at most `max_body` bytes).
pub const INGEST_SLOTS: usize = 32;

/// An error answer: status plus a JSON body naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status
    pub status: StatusCode,
    /// JSON body (`{"error": ..., ...}`)
    pub body: Value,
    /// extra headers (e.g. Retry-After)
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"error": msg.into()}),
            retry_after: None,
        }
    }

    /// A 400 naming a field and the rule it broke.
    pub fn field(field: &str, rule: impl Into<String>) -> ApiError {
        let rule = rule.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": format!("{field}: {rule}"), "field": field, "rule": rule}),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        match e {
            IngestError::Parse(p) => ApiError {
                status: StatusCode::BAD_REQUEST,
                body: json!({"error": p.to_string(), "line": p.line, "column": p.column}),
                retry_after: None,
            },
            IngestError::Decode(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            IngestError::TooLarge(n) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {n} bytes"),
            ),
            IngestError::Busy => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: json!({"error": "ingest is saturated; retry later"}),
                retry_after: Some(1),
            },
            IngestError::Store(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Compares in constant time.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `Authorization: Bearer <token>` when a token is configured: 401 without, 403 wrong.
pub fn check_token(headers: &HeaderMap, token: Option<&str>) -> ApiResult<()> {
    let Some(token) = token else { return Ok(()) };
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token>",
        ));
    };
    let given = h
        .to_str()
        .unwrap_or("")
        .strip_prefix("Bearer ")
        .unwrap_or("");
    if ct_eq(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "wrong token"))
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body;
    let writes = Router::new()
        .route("/v1/write/metric", post(write_datakit))
        .route("/write", post(write_influx))
        .route("/api/v2/write", post(write_influx))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admit_write,
        ));
    Router::new()
        .merge(writes)
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/stats", get(event_stats))
        .route("/api/v1/events/stream", get(event_stream))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/events/:id", get(get_event))
        .route("/api/v1/issues", get(list_issues))
        .route("/api/v1/issues/recover", post(recover))
        .route("/api/v1/monitors", get(list_monitors))
        .route("/api/v1/monitors/reload", post(reload))
        .route("/api/v1/monitors/:id/run", post(run_monitor))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/ping",
            get(|| async { StatusCode::NO_CONTENT }).head(|| async { StatusCode::NO_CONTENT }),
        )
        .merge(crate::custom::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct WriteParams {
    precision: Option<String>,
    dry: Option<String>,
    echo: Option<String>,
}

/// Decodes and parses a write body.
async fn ingest_body(
    st: &AppState,
    headers: &HeaderMap,
    p: &WriteParams,
    body: &Bytes,
) -> ApiResult<Vec<crate::ingest::lineproto::Point>> {
    check_token(headers, st.ingest_token.as_deref())?;
    let precision = match p.precision.as_deref() {
        None | Some("") => Precision::Nanos,
        Some(s) => Precision::parse(s).ok_or_else(|| {
            ApiError::field(
                "precision",
                format!("{s:?} is not one of n, ns, u, us, µs, ms, s, m, h"),
            )
        })?,
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let decoded = decode_body(body, gzip, st.max_body).map_err(|e| {
        st.engine
            .metrics
            .ingest_rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ApiError::from(e)
    })?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    parse_body(&decoded, precision, now).map_err(|e| {
        st.engine
            .metrics
            .ingest_rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ApiError::from(e)
    })
}

/// Admission for write requests, before their body is read: beyond [`INGEST_SLOTS`] in
/// flight, 429 with Retry-After, so memory stays bounded under any load.
async fn admit_write(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match st.ingest_slots.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            st.engine
                .metrics
                .ingest_throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError::from(IngestError::Busy).into_response()
        }
    }
}

async fn write_datakit(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WriteParams>,
    body: Bytes,
) -> ApiResult<Response> {
    let points = ingest_body(&st, &headers, &p, &body).await?;
    if p.dry.as_deref() == Some("true") {
        if p.echo.as_deref() == Some("json") {
            return Ok(Json(echo_json(&points)).into_response());
        }
        return Ok(Json(json!({"points": points.len(), "dry": true})).into_response());
    }
    let n = points.len();
    st.ingest.write(points).await?;
    Ok(Json(json!({"points": n})).into_response())
}

async fn write_influx(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WriteParams>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let points = ingest_body(&st, &headers, &p, &body).await?;
    st.ingest.write(points).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn time_param(name: &str, v: Option<&String>) -> ApiResult<Option<i64>> {
    v.filter(|s| !s.is_empty())
        .map(|s| crate::model::time::parse_time(s).map_err(|e| ApiError::field(name, e)))
        .transpose()
}

fn num_param(name: &str, v: Option<&String>) -> ApiResult<Option<usize>> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| ApiError::field(name, format!("{s:?} is not a non-negative integer")))
        })
        .transpose()
}

fn event_query(p: &HashMap<String, String>) -> ApiResult<EventQuery> {
    let s = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    let limit = num_param("limit", p.get("limit"))?;
    if limit.is_some_and(|l| l > 10_000) {
        return Err(ApiError::field("limit", "at most 10000"));
    }
    Ok(EventQuery {
        status: s("status"),
        source: s("source"),
        monitor: s("monitor"),
        event_ref: s("ref"),
        from: time_param("from", p.get("from"))?,
        to: time_param("to", p.get("to"))?,
        text: s("q"),
        limit,
        offset: num_param("offset", p.get("offset"))?,
    })
}

fn db_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(db_err)?
}

async fn list_events(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = event_query(&p)?;
    let db = st.engine.runner.db.clone();
    let events = blocking(move || db.events(&q).map_err(db_err)).await?;
    Ok(Json(json!({"count": events.len(), "events": events})))
}

async fn get_event(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let db = st.engine.runner.db.clone();
    match blocking(move || db.event(&id).map_err(db_err)).await? {
        Some(e) => Ok(Json(e.to_value())),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such event")),
    }
}

async fn event_stats(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let by = p.get("by").cloned().unwrap_or_else(|| "source".into());
    if !["source", "status", "name", "group", "monitor"].contains(&by.as_str()) {
        return Err(ApiError::field(
            "by",
            format!("{by:?} is not one of source, status, name, group, monitor"),
        ));
    }
    let mut q = event_query(&p)?;
    q.limit = None;
    let db = st.engine.runner.db.clone();
    let by2 = by.clone();
    let counts = blocking(move || db.stats(&by2, &q).map_err(db_err)).await?;
    let total: i64 = counts.values().sum();
    Ok(Json(json!({"by": by, "total": total, "counts": counts})))
}

async fn list_issues(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let db = st.engine.runner.db.clone();
    let monitor = p.get("monitor").filter(|s| !s.is_empty()).cloned();
    let mut issues =
        blocking(move || db.issues(monitor.as_deref(), now_secs()).map_err(db_err)).await?;
    if let Some(s) = p.get("status").filter(|s| !s.is_empty()) {
        issues.retain(|i| &i.status == s);
    }
    if let Some(s) = p.get("source").filter(|s| !s.is_empty()) {
        issues.retain(|i| &i.source == s);
    }
    if let Some(s) = p.get("ref").filter(|s| !s.is_empty()) {
        issues.retain(|i| &i.event_ref == s);
    }
    if let Some(s) = p.get("q").filter(|s| !s.is_empty()) {
        issues.retain(|i| i.title.contains(s.as_str()) || i.message.contains(s.as_str()));
    }
    Ok(Json(json!({"count": issues.len(), "issues": issues})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    refs: Option<Vec<String>>,
    monitor: Option<String>,
    all: Option<bool>,
    user_id: Option<String>,
    user_name: Option<String>,
    user_email: Option<String>,
    message: Option<String>,
}

async fn recover(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    let b: RecoverBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field(
            "body",
            format!(
                "expected JSON {{refs|monitor|all, user_id, user_name, user_email, message}}: {e}"
            ),
        )
    })?;
    let sel = match (b.refs, b.monitor, b.all.unwrap_or(false)) {
        (Some(r), None, false) if !r.is_empty() => RecoverSelector::Refs(r),
        (None, Some(m), false) => RecoverSelector::Monitor(m),
        (None, None, true) => RecoverSelector::All,
        _ => {
            return Err(ApiError::field(
                "refs",
                "give exactly one of refs (non-empty), monitor, or all = true",
            ))
        }
    };
    let need = |v: Option<String>, name: &str| -> ApiResult<String> {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::field(name, "required: who recovers the issue"))
    };
    let user = RecoverUser {
        id: need(b.user_id, "user_id")?,
        name: need(b.user_name, "user_name")?,
        email: need(b.user_email, "user_email")?,
        message: b.message,
    };
    let engine = st.engine.clone();
    let events = blocking(move || engine.recover_blocking(&sel, &user).map_err(db_err)).await?;
    Ok(Json(json!({"recovered": events.len(), "events": events})))
}

async fn list_monitors(State(st): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = st
        .engine
        .slots()
        .iter()
        .map(|s| {
            let m = &s.monitor;
            let h = s.health.lock().clone();
            let schedule = match &m.schedule {
                crate::monitor::Schedule::Every(n) => json!({"every": crate::model::time::format_duration(*n)}),
                crate::monitor::Schedule::Cron { expr, .. } => json!({"cron": expr}),
                crate::monitor::Schedule::Manual => json!({"manual": true}),
            };
            json!({
                "id": m.id, "name": m.name, "type": m.mtype.as_str(), "policy": m.policy,
                "file": m.file.display().to_string(), "schedule": schedule,
                "objects": s.state.try_lock().map(|st| st.objects.len()),
                "running": s.running.load(std::sync::atomic::Ordering::SeqCst),
                "last_run": h.last_run, "last_error": h.last_error, "last_duration_ms": h.last_duration_ms,
                "next_run": h.next_run, "runs": h.runs, "errors": h.errors,
                "skipped_ticks": st.engine.metrics.skipped(&m.id),
            })
        })
        .collect();
    let errors: Vec<String> = st
        .engine
        .load_errors()
        .iter()
        .map(|e| e.to_string())
        .collect();
    Json(json!({"monitors": list, "errors": errors}))
}

async fn run_monitor(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    match st.engine.run_now(&id).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no monitor {id:?}"),
        )),
        Some(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Some(Ok(rep)) => Ok(Json(
            json!({"monitor": id, "objects": rep.objects, "events": rep.events, "errors": rep.errors}),
        )),
    }
}

async fn reload(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    let engine = st.engine.clone();
    let rep = blocking(move || Ok(engine.reload())).await?;
    Ok(Json(serde_json::to_value(rep).map_err(db_err)?))
}

async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let engine = st.engine.clone();
    let worker = st.worker.clone();
    let writes_in_flight = (INGEST_SLOTS - st.ingest_slots.available_permits()) as f64;
    let text = blocking(move || {
        let open = engine
            .runner
            .db
            .issues(None, now_secs())
            .map(|v| v.len())
            .unwrap_or(0) as f64;
        let series = engine.runner.store.series_count() as f64;
        let samples = engine.runner.store.sample_count() as f64;
        let monitors = engine.slots().len() as f64;
        let errors = engine.load_errors().len() as f64;
        let d = crate::notify::worker::counts(&engine.runner.db);
        let dc = |k: &str| d.get(k).copied().unwrap_or(0) as f64;
        Ok(engine.metrics.render(&[
            (
                "tocsin_open_issues",
                "Rounds open in the unrecovered-issue table.",
                open,
            ),
            ("tocsin_store_series", "Series in the metric store.", series),
            (
                "tocsin_store_samples_in_memory",
                "Samples held in memory.",
                samples,
            ),
            ("tocsin_monitors_loaded", "Monitors loaded.", monitors),
            (
                "tocsin_monitor_load_errors",
                "Monitor files that failed to load.",
                errors,
            ),
            (
                "tocsin_ingest_requests_in_flight",
                "Write requests admitted and not yet answered.",
                writes_in_flight,
            ),
            (
                "tocsin_deliveries_pending",
                "Outbox deliveries not tried yet.",
                dc("pending"),
            ),
            (
                "tocsin_deliveries_failed",
                "Outbox deliveries failed and waiting for a retry.",
                dc("failed"),
            ),
            (
                "tocsin_deliveries_expired",
                "Outbox deliveries given up on.",
                dc("expired"),
            ),
            (
                "tocsin_deliveries_delivered",
                "Outbox deliveries answered 2xx.",
                dc("delivered"),
            ),
            (
                "tocsin_delivery_failures",
                "Delivery attempts that failed since start.",
                worker.failures.load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
        ]))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn list_deliveries(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let statuses: Vec<String> = p
        .get("status")
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for s in &statuses {
        if !["pending", "failed", "expired", "delivered"].contains(&s.as_str()) {
            return Err(ApiError::field(
                "status",
                format!("{s:?} is not one of pending, failed, expired, delivered"),
            ));
        }
    }
    let limit = num_param("limit", p.get("limit"))?
        .unwrap_or(100)
        .min(10_000);
    let db = st.engine.runner.db.clone();
    let list = blocking(move || crate::notify::worker::list(&db, &statuses, limit).map_err(db_err))
        .await?;
    Ok(Json(json!({"count": list.len(), "deliveries": list})))
}

/// Server-sent events: every new event matching the filters of `GET /api/v1/events`
/// (status, source, monitor, ref, q) as it is committed.
async fn event_stream(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<
    axum::response::sse::Sse<
        impl futures_core::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
> {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let q = event_query(&p)?;
    let mut rx = st.engine.runner.db.subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if !stream_match(&q, &ev) {
                        continue;
                    }
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    let sse = SseEvent::default().event("event").id(ev.id()).data(data);
                    if tx.send(Ok(sse)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let sse = SseEvent::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}"));
                    if tx.send(Ok(sse)).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

fn stream_match(q: &EventQuery, ev: &crate::model::event::Event) -> bool {
    let eq = |want: &Option<String>, key: &str| {
        want.as_ref()
            .is_none_or(|w| ev.str(key) == Some(w.as_str()))
    };
    eq(&q.status, "df_status")
        && eq(&q.source, "df_source")
        && eq(&q.monitor, "df_monitor_checker_id")
        && eq(&q.event_ref, "df_monitor_checker_event_ref")
        && q.text.as_ref().is_none_or(|t| {
            ev.str("df_title").is_some_and(|x| x.contains(t.as_str()))
                || ev.str("df_message").is_some_and(|x| x.contains(t.as_str()))
        })
}

/// A stream fed by a task through a small channel (back-pressure: the task waits for the
/// client).
fn async_stream<T, F, Fut>(f: F) -> tokio_stream_shim::ReceiverStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream_shim::ReceiverStream(rx)
}

mod tokio_stream_shim {
    //! A minimal `Stream` over an mpsc receiver (what tokio-stream's ReceiverStream does).
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Yields what the channel receives.
    pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_core::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
