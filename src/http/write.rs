//! Metric writes: DataKit `POST /v1/write/metric` and InfluxDB `POST /write`,
//! `POST /api/v2/write`. Admission ([`admit_write`]) checks the token, then takes one of
//! [`INGEST_SLOTS`] before the body is read, so memory stays bounded under any load and an
//! unauthenticated client cannot take slots.

use super::auth::check_token;
use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::ingest::lineproto::{Point, Precision};
use crate::ingest::{decode_body, echo_json, parse_body_with, IngestError};
use axum::body::Bytes;
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

/// Admission for write requests, before their body is read: the token first (a request
/// without one takes no slot), then beyond [`INGEST_SLOTS`] in flight, 429 with Retry-After.
async fn admit_write(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(e) = check_token(req.headers(), st.ingest_token.as_deref()) {
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

/// Decodes and parses a write body (the token was checked on admission), then hands the
/// points to `then`, all on a blocking thread: parsing 5,000 points takes milliseconds, which
/// would stall the connections an async worker serves, and `then` may wait for a commit.
async fn with_points<T: Send + 'static>(
    st: &AppState,
    headers: &HeaderMap,
    p: &WriteParams,
    body: Bytes,
    then: impl FnOnce(Vec<Point>) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
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
    let metrics = st.engine.metrics.clone();
    let max_body = st.max_body;
    // The store's limits (`[limits]` in the config), so the parser and the store agree.
    let limits = st.engine.runner.store.point_limits();
    let now = st.clock.now_ns();
    super::blocking(move || {
        let rejected = |e: IngestError| {
            metrics.ingest_rejected.fetch_add(1, Ordering::Relaxed);
            ApiError::from(e)
        };
        let points = {
            let decoded = decode_body(&body, gzip, max_body).map_err(rejected)?;
            parse_body_with(&decoded, precision, now, &limits).map_err(rejected)?
        };
        // the body is not needed once parsed: free it before waiting for the commit
        drop(body);
        then(points)
    })
    .await
}

async fn write_datakit(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WriteParams>,
    Body(body): Body,
) -> ApiResult<Response> {
    if p.dry.as_deref() == Some("true") {
        let echo = p.echo.as_deref() == Some("json");
        return with_points(&st, &headers, &p, body, move |points| {
            Ok(if echo {
                Json(echo_json(&points)).into_response()
            } else {
                Json(json!({"points": points.len(), "dry": true})).into_response()
            })
        })
        .await;
    }
    let ingest = st.ingest.clone();
    let n = with_points(&st, &headers, &p, body, move |points| {
        Ok(ingest.write_blocking(points)?)
    })
    .await?;
    Ok(Json(json!({"points": n})).into_response())
}

async fn write_influx(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WriteParams>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let ingest = st.ingest.clone();
    with_points(&st, &headers, &p, body, move |points| {
        Ok(ingest.write_blocking(points)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
