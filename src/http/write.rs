//! Metric writes: DataKit `POST /v1/write/metric`, InfluxDB `POST /write`,
//! `POST /api/v2/write`, and Prometheus remote write 1.0 `POST /api/v1/write`
//! ([`crate::ingest::remote_write`]). Admission ([`admit_write`]) checks the token, then takes
//! one of [`INGEST_SLOTS`] before the body is read, so memory stays bounded under any load and
//! an unauthenticated client cannot take slots.

use super::auth::check_write_token;
use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::ingest::lineproto::{Point, Precision};
use crate::ingest::{
    decode_body, echo_json, parse_body_refs, parse_body_with, remote_write, Ingest, IngestError,
};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;

/// Write requests allowed in flight at once (each holds at most `max_body` bytes).
pub const INGEST_SLOTS: usize = 32;

/// The write routes, behind admission.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/write/metric", post(write_datakit))
        .route("/write", post(write_influx))
        .route("/api/v2/write", post(write_influx))
        .route("/api/v1/write", post(write_prometheus))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admit_write,
        ))
}

#[derive(Deserialize, Default)]
struct WriteParams {
    precision: Option<String>,
    dry: Option<String>,
    echo: Option<String>,
}

/// Admission for write requests, before their body is read: the token first, in any form
/// InfluxDB clients send ([`check_write_token`]; a request without one takes no slot), then
/// beyond [`INGEST_SLOTS`] in flight, 429 with Retry-After.
pub(super) async fn admit_write(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(e) = check_write_token(req.headers(), req.uri().query(), st.ingest_token.as_deref())
    {
        return e.into_response();
    }
    match st.ingest_slots.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            st.engine
                .metrics
                .ingest_throttled
                .fetch_add(1, Ordering::Relaxed);
            ApiError::from(IngestError::Busy).into_response()
        }
    }
}

/// How to read a write body: precision, gzip, and the limits the store applies too.
struct BodyReader {
    precision: Precision,
    gzip: bool,
    max_body: usize,
    limits: crate::model::limits::PointLimits,
    now: i64,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl BodyReader {
    fn new(st: &AppState, headers: &HeaderMap, p: &WriteParams) -> ApiResult<BodyReader> {
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
        Ok(BodyReader {
            precision,
            gzip,
            max_body: st.max_body,
            // The store's limits (`[limits]` in the config), so the parser and the store agree.
            limits: st.engine.runner.store.point_limits(),
            now: st.clock.now_ns(),
            metrics: st.engine.metrics.clone(),
        })
    }

    fn rejected(&self, e: IngestError) -> ApiError {
        self.metrics.ingest_rejected.fetch_add(1, Ordering::Relaxed);
        ApiError::from(e)
    }

    /// The body's points with their own strings (for the dry-run echo).
    fn points(&self, body: &[u8]) -> ApiResult<Vec<Point>> {
        let decoded = decode_body(body, self.gzip, self.max_body).map_err(|e| self.rejected(e))?;
        parse_body_with(&decoded, self.precision, self.now, &self.limits)
            .map_err(|e| self.rejected(e))
    }

    /// Parses the body into points borrowing from it and stores them durably.
    fn store(&self, body: &[u8], ingest: &Ingest) -> ApiResult<usize> {
        let decoded = decode_body(body, self.gzip, self.max_body).map_err(|e| self.rejected(e))?;
        let points = parse_body_refs(&decoded, self.precision, self.now, &self.limits)
            .map_err(|e| self.rejected(e))?;
        Ok(ingest.write_blocking(&points)?)
    }
}

// Parsing 5,000 points takes milliseconds, which would stall the connections an async worker
// serves, and storing waits for the commit: both run on a blocking thread.

async fn write_datakit(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WriteParams>,
    Body(body): Body,
) -> ApiResult<Response> {
    let reader = BodyReader::new(&st, &headers, &p)?;
    if p.dry.as_deref() == Some("true") {
        let echo = p.echo.as_deref() == Some("json");
        return super::blocking(move || {
            let points = reader.points(&body)?;
            Ok(if echo {
                Json(echo_json(&points)).into_response()
            } else {
                Json(json!({"points": points.len(), "dry": true})).into_response()
            })
        })
        .await;
    }
    let ingest = st.ingest.clone();
    let n = super::blocking(move || reader.store(&body, &ingest)).await?;
    Ok(Json(json!({"points": n})).into_response())
}

async fn write_influx(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WriteParams>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let reader = BodyReader::new(&st, &headers, &p)?;
    let ingest = st.ingest.clone();
    super::blocking(move || reader.store(&body, &ingest)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prometheus remote write 1.0: 204 once the samples are durable.
async fn write_prometheus(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let metrics = st.engine.metrics.clone();
    let rejected = move |e: remote_write::RemoteWriteError| {
        metrics.ingest_rejected.fetch_add(1, Ordering::Relaxed);
        ApiError::from(e)
    };
    let header = |name| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not ASCII)"))
    };
    remote_write::check_headers(
        header(header::CONTENT_TYPE.as_str()),
        header(header::CONTENT_ENCODING.as_str()),
        header("x-prometheus-remote-write-version"),
    )
    .map_err(&rejected)?;
    let max_body = st.max_body;
    let limits = st.engine.runner.store.point_limits();
    let ingest = st.ingest.clone();
    let figures = st.engine.metrics.clone();
    super::blocking(move || {
        let req = remote_write::decode(&body, max_body).map_err(&rejected)?;
        let batch = remote_write::points(&req, &limits).map_err(&rejected)?;
        let n = ingest.write_blocking(&batch.points)?;
        batch.ignored.record(n, &figures.remote_write);
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
