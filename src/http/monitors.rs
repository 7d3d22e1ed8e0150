//! Monitors: `GET /api/v1/monitors` (health of each; a read, behind
//! [`super::auth::admit_read`]), and with the admin token
//! `POST /api/v1/monitors/:id/run` and `POST /api/v1/monitors/reload`.

use super::auth::check_token;
use super::error::{ApiError, ApiResult};
use super::{blocking, AppState};
use crate::monitor::Schedule;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// The monitor routes: the list behind the read token, run and reload behind the admin token.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/monitors", get(list_monitors))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::admit_read,
        ))
        .route("/api/v1/monitors/reload", post(reload))
        .route("/api/v1/monitors/:id/run", post(run_monitor))
}

async fn list_monitors(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let db = st.engine.runner.db.clone();
    let now = st.clock.now_secs();
    let silences = blocking(move || {
        db.with_conn(|c| crate::notify::silence::list(c, now, false, 10_000))
            .map_err(ApiError::internal)
    })
    .await?;
    // A silence without a `monitor` matcher may cover any monitor's objects.
    let silences_of = |id: &str| -> Vec<Value> {
        silences
            .iter()
            .filter(|s| s.matchers.get("monitor").is_none_or(|m| m == id))
            .map(|s| {
                json!({"id": s.id, "matchers": s.matchers, "start": s.start, "end": s.end,
                       "state": crate::notify::silence::state(s, now), "created_by": s.created_by})
            })
            .collect()
    };
    let list: Vec<Value> = st
        .engine
        .slots()
        .iter()
        .map(|s| {
            let m = &s.monitor;
            let h = s.health.lock().clone();
            let schedule = match &m.schedule {
                Schedule::Every(n) => json!({"every": crate::model::time::format_duration(*n)}),
                Schedule::Cron { expr, .. } => json!({"cron": expr}),
                Schedule::Manual => json!({"manual": true}),
            };
            json!({
                "id": m.id, "name": m.name, "type": m.mtype.as_str(), "policy": m.policy,
                "file": m.file.display().to_string(), "schedule": schedule,
                "objects": s.state.try_lock().map(|st| st.objects.len()),
                "running": s.running.load(Ordering::SeqCst),
                "last_run": h.last_run, "last_error": h.last_error, "last_duration_ms": h.last_duration_ms,
                "next_run": h.next_run, "runs": h.runs, "errors": h.errors,
                "skipped_ticks": st.engine.metrics.skipped(&m.id),
                "silences": silences_of(&m.id),
            })
        })
        .collect();
    let errors: Vec<String> = st
        .engine
        .load_errors()
        .iter()
        .map(|e| e.to_string())
        .collect();
    Ok(Json(json!({"monitors": list, "errors": errors})))
}

async fn run_monitor(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    match st.engine.run_now(&id).await {
        None => Err(ApiError::NotFound(format!("no monitor {id:?}"))),
        Some(Err(e)) => Err(ApiError::Internal(e)),
        Some(Ok(rep)) => Ok(Json(
            json!({"monitor": id, "objects": rep.objects, "events": rep.events, "errors": rep.errors}),
        )),
    }
}

async fn reload(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    check_token(&headers, st.admin_token.as_deref())?;
    let engine = st.engine.clone();
    let rep = blocking(move || Ok(engine.reload())).await?;
    Ok(Json(serde_json::to_value(rep).map_err(ApiError::internal)?))
}
