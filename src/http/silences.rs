//! Runtime silences (README "Silences"): `POST /api/v1/silences` and
//! `DELETE /api/v1/silences/{id}` with the admin token, `GET /api/v1/silences[/{id}]` to read.
//! The rules are in [`crate::notify::silence`].

use super::auth::{check_token, require_json};
use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::{blocking, AppState};
use crate::notify::silence::{self, NewSilence, Silence};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The silence routes: behind the read rule (the admin token passes it too); adding and
/// expiring check the admin token as well.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/silences", get(list).post(create))
        .route("/api/v1/silences/:id", get(one).delete(expire))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::admit_read,
        ))
}

/// A silence with its state at `now`.
fn shown(s: &Silence, now: i64) -> Value {
    let mut v = serde_json::to_value(s).expect("silence serialises");
    v["state"] = json!(silence::state(s, now));
    v
}

#[derive(Deserialize, Default)]
struct ListParams {
    /// `true`: expired ones too
    all: Option<bool>,
    limit: Option<usize>,
}

async fn list(State(st): State<AppState>, Query(p): Query<ListParams>) -> ApiResult<Json<Value>> {
    let db = st.engine.runner.db.clone();
    let now = st.clock.now_secs();
    let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
    let all = p.all.unwrap_or(false);
    let list = blocking(move || {
        db.with_conn(|c| silence::list(c, now, all, limit))
            .map_err(ApiError::internal)
    })
    .await?;
    let shown: Vec<Value> = list.iter().map(|s| shown(s, now)).collect();
    Ok(Json(json!({"count": shown.len(), "silences": shown})))
}

async fn one(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let db = st.engine.runner.db.clone();
    let now = st.clock.now_secs();
    let q = id.clone();
    let s = blocking(move || {
        db.with_conn(|c| silence::get(c, &q))
            .map_err(ApiError::internal)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no silence {id:?}")))?;
    Ok(Json(shown(&s, now)))
}

async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_token(&headers, st.admin_token.as_deref())?;
    require_json(&headers)?;
    let req: NewSilence = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field(
            "body",
            format!(
                "expected JSON {{matchers: {{monitor|status|<tag>: value}}, duration | start, end, \
                 created_by, comment}}: {e}"
            ),
        )
    })?;
    let now = st.clock.now_secs();
    let s = req
        .build(now)
        .map_err(|e| ApiError::field(e.field, e.message))?;
    let db = st.engine.runner.db.clone();
    let stored = s.clone();
    blocking(move || {
        db.with_conn(|c| silence::insert(c, &stored))
            .map_err(ApiError::internal)
    })
    .await?;
    tracing::info!(id = %s.id, by = %s.created_by, matchers = ?s.matchers, start = s.start, end = s.end, "silence added");
    Ok((StatusCode::CREATED, Json(shown(&s, now))))
}

async fn expire(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    let db = st.engine.runner.db.clone();
    let now = st.clock.now_secs();
    let q = id.clone();
    let s = blocking(move || {
        db.with_conn(|c| silence::expire(c, &q, now))
            .map_err(ApiError::internal)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no silence {id:?}")))?;
    tracing::info!(id = %s.id, "silence expired");
    Ok(Json(shown(&s, now)))
}
