//! The custom-event endpoints: each handler authenticates (ingest token, or a cloud
//! signature when `[[access_keys]]` are configured), hands the body to its dialect in
//! [`crate::custom`] with the time from the app clock, stores the batch and answers in the
//! dialect's shape.

use super::auth::{check_token, require_json};
use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::custom::cloudevents::CeError;
use crate::custom::{alibaba, cloudevents, guance, huawei, sign, store_batch, CustomEvent, Stored};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::sync::atomic::Ordering;

/// The four custom-event routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/V1.0/:project_id/events", post(huawei_create))
        .route("/", post(alibaba_put).get(super::console::root))
        .route("/v1/cloudevents", post(cloudevents_send))
        .route("/api/v1/events/create", post(guance_create))
}

/// Stores a batch off the async runtime and counts the new events.
pub async fn store(st: &AppState, batch: Vec<CustomEvent>) -> ApiResult<Vec<Stored>> {
    let db = st.engine.runner.db.clone();
    let out = tokio::task::spawn_blocking(move || store_batch(&db, &batch))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let n = out.iter().filter(|s| s.fresh).count() as u64;
    st.engine
        .metrics
        .custom_events
        .fetch_add(n, Ordering::Relaxed);
    Ok(out)
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

fn header_text(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn guance_create(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.ingest_token.as_deref())?;
    require_json(&headers)?;
    let (batch, many) = guance::parse(&body, st.clock.now_ms())?;
    let stored = store(&st, batch).await?;
    Ok(Json(guance::answer(&stored, many)))
}

async fn huawei_create(
    State(st): State<AppState>,
    Path(project_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    if st.access_keys.is_empty() {
        if let Err(e) = check_token(&headers, st.ingest_token.as_deref()) {
            return e.into_response();
        }
    } else {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        if let Err(e) = sign::verify_huawei(
            &st.access_keys,
            method.as_str(),
            uri.path(),
            uri.query().unwrap_or(""),
            header,
            &body,
            st.clock.now_secs(),
        ) {
            return reply(
                e.status(),
                huawei::error_answer(e.code(), e.message(), None),
            );
        }
    }
    let batch = match huawei::parse_batch(&project_id, &body, st.clock.now_ms()) {
        Ok(b) => b,
        Err(e) => {
            let body = huawei::error_answer(huawei::INVALID_CODE, &e.to_string(), Some(&e));
            return reply(400, body);
        }
    };
    match store(&st, batch.clone()).await {
        Ok(_) => reply(201, huawei::created_answer(&batch)),
        Err(e) => e.into_response(),
    }
}

/// An Alibaba call that arrived as a whole request (`GET /?Action=...`, routed with the
/// console page).
pub(super) async fn alibaba_request(st: AppState, req: axum::extract::Request) -> Response {
    use axum::extract::FromRequest;
    let (method, uri, headers) = (
        req.method().clone(),
        req.uri().clone(),
        req.headers().clone(),
    );
    match Body::from_request(req, &st).await {
        Ok(body) => alibaba_put(State(st), method, uri, headers, body).await,
        Err(e) => e.into_response(),
    }
}

async fn alibaba_put(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let ct = header_text(&headers, header::CONTENT_TYPE);
    let req = match alibaba::read_request(uri.query().unwrap_or(""), &ct, &body) {
        Ok(r) => r,
        Err(e) => return reply(e.status, e.answer()),
    };
    if st.access_keys.is_empty() {
        if let Err(e) = check_token(&headers, st.ingest_token.as_deref()) {
            let code = if e.status() == StatusCode::UNAUTHORIZED {
                "MissingToken"
            } else {
                "Forbidden.Token"
            };
            return reply(e.status().as_u16(), alibaba::answer(code, &e.to_string()));
        }
    } else if let Err(e) = sign::verify_alibaba(
        &st.access_keys,
        &st.nonces,
        method.as_str(),
        &req.signed_params(),
        st.clock.now_secs(),
    ) {
        return reply(e.status(), alibaba::answer(e.code(), e.message()));
    }
    let batch = match alibaba::parse(&req, st.clock.now_ms()) {
        Ok(b) => b,
        Err(e) => return reply(e.status, e.answer()),
    };
    match store(&st, batch).await {
        Ok(_) => reply(200, alibaba::success_answer()),
        Err(e) => reply(500, alibaba::answer("InternalError", &e.to_string())),
    }
}

async fn cloudevents_send(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.ingest_token.as_deref())?;
    let ct = header_text(&headers, header::CONTENT_TYPE);
    let all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    let batch = cloudevents::parse(&ct, &all, &body, st.clock.now_ms()).map_err(|e| match e {
        CeError::Invalid(i) => ApiError::Invalid(i),
        CeError::TooLarge { index, size } => ApiError::EventTooLarge {
            index,
            size,
            max: cloudevents::MAX_EVENT_BYTES,
        },
    })?;
    let stored = store(&st, batch.clone()).await?;
    Ok(Json(cloudevents::answer(&batch, &stored)))
}
