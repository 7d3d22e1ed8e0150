//! Open issues: `GET /api/v1/issues` (the unrecovered-issue table; a read, behind
//! [`super::auth::admit_read`]) and manual recovery `POST /api/v1/issues/recover` (admin
//! token, JSON body).

use super::auth::{check_token, require_json};
use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::{blocking, heavy_read, AppState};
use crate::check::RecoverUser;
use crate::engine::RecoverSelector;
use crate::events::filter::contains_ascii_ci;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The issue routes: the list behind the read token, recovery behind the admin token.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/issues", get(list_issues))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::admit_read,
        ))
        .route("/api/v1/issues/recover", post(recover))
}

async fn list_issues(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let status = super::events::status_param(p.get("status"))?;
    let db = st.engine.runner.db.clone();
    let monitor = p.get("monitor").filter(|s| !s.is_empty()).cloned();
    let now = st.clock.now_secs();
    let mut issues = heavy_read(&st, move || {
        db.issues(monitor.as_deref(), now)
            .map_err(ApiError::internal)
    })
    .await?;
    if let Some(s) = status {
        issues.retain(|i| i.status == s);
    }
    if let Some(s) = p.get("source").filter(|s| !s.is_empty()) {
        issues.retain(|i| &i.source == s);
    }
    if let Some(s) = p.get("ref").filter(|s| !s.is_empty()) {
        issues.retain(|i| &i.event_ref == s);
    }
    if let Some(s) = p.get("q").filter(|s| !s.is_empty()) {
        // The same text match as the event list's `q`: ASCII case folded.
        issues.retain(|i| contains_ascii_ci(&i.title, s) || contains_ascii_ci(&i.message, s));
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
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    require_json(&headers)?;
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
    // The engine dates the recovery with its own clock.
    let events = blocking(move || {
        engine
            .recover_blocking(&sel, &user)
            .map_err(ApiError::internal)
    })
    .await?;
    Ok(Json(json!({"recovered": events.len(), "events": events})))
}
