//! Monitors: `GET /api/v1/monitors` (health of each), `GET /api/v1/monitors/:id` (one, with
//! its definition, query, rules and drawable thresholds) and `GET /api/v1/monitors/:id/points`
//! (an object's points over a range, what the console charts) — reads, behind
//! [`super::auth::admit_read`] — and with the admin token `POST /api/v1/monitors/:id/run` and
//! `POST /api/v1/monitors/reload`.

use super::auth::check_token;
use super::error::{ApiError, ApiResult};
use super::{blocking, heavy_read, AppState};
use crate::engine::Slot;
use crate::model::Tags;
use crate::monitor::Schedule;
use crate::monitor::{Eval, MonitorKind, SloSource};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// The monitor routes: the list behind the read token, run and reload behind the admin token.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/monitors", get(list_monitors))
        .route("/api/v1/monitors/:id", get(get_monitor))
        .route("/api/v1/monitors/:id/points", get(object_points))
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
    // With the state backend away the list still answers (health and last_error are what an
    // operator needs then); silences and issue counts are left out and `state_error` says why.
    let (silences, open, state_error) = blocking(move || {
        let read = db
            .with_conn(|c| crate::notify::silence::list(c, now, false, 10_000))
            .map_err(|e| e.to_string())
            .and_then(|s| Ok((s, db.open_issue_counts().map_err(|e| e.to_string())?)));
        Ok(match read {
            Ok((s, o)) => (s, Some(o), None),
            Err(e) => (Vec::new(), None, Some(e)),
        })
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
    // On a shared backend: which replica evaluates each monitor, since when.
    let leases = st.engine.leases();
    let owner_of = |id: &str| -> Value {
        let Some(l) = &leases else {
            return Value::Null;
        };
        match l.lease(&crate::events::lease::monitor_lease(id)) {
            Some(lease) => json!({
                "replica": lease.owner, "since": lease.since / 1000, "expires": lease.expires / 1000,
                "this_replica": lease.owner == l.me,
            }),
            None => json!({"replica": null}),
        }
    };
    let list: Vec<Value> = st
        .engine
        .slots()
        .iter()
        .map(|s| {
            let mut v = summary(&st, s);
            v["silences"] = Value::Array(silences_of(&s.monitor.id));
            v["owner"] = json!(owner_of(&s.monitor.id));
            v["open_issues"] = json!(open
                .as_ref()
                .map(|o| o.get(&s.monitor.id).copied().unwrap_or(0)));
            v
        })
        .collect();
    let errors: Vec<String> = st
        .engine
        .load_errors()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let mut out = json!({"monitors": list, "errors": errors});
    if let Some(e) = state_error {
        out["state_error"] = json!(e);
    }
    if let Some(l) = &leases {
        let replicas = l.replicas();
        out["replica"] = json!(l.me);
        out["replicas"] = replicas
            .iter()
            .map(|r| {
                json!({"id": r.id, "listen": r.listen, "started": r.started / 1000,
                       "heartbeat": r.heartbeat / 1000, "monitors": r.monitors.len()})
            })
            .collect();
        out["monitor_differences"] = json!(crate::events::lease::differences(
            &st.engine.fingerprints(),
            &l.me,
            &replicas
        ));
        out["leases_renewed_at"] = json!(l.renewed_at().map(|t| t / 1000));
        out["lease_error"] = json!(l.error());
    }
    Ok(Json(out))
}

/// What the list says of one monitor: definition summary and health.
fn summary(st: &AppState, s: &Slot) -> Value {
    let m = &s.monitor;
    let h = s.health.lock().clone();
    let schedule = match &m.schedule {
        Schedule::Every(n) => json!({"every": crate::model::time::format_duration(*n)}),
        Schedule::Cron { expr, .. } => json!({"cron": expr}),
        Schedule::Manual => json!({"manual": true}),
    };
    json!({
        "id": m.id, "name": m.name, "type": m.mtype.as_str(), "policy": m.policy,
        "kind": m.rules().map(|r| r.kind.as_str()).or(match m.kind {
            MonitorKind::Composite(_) => Some("composite"),
            _ => None,
        }),
        "file": m.file.display().to_string(), "schedule": schedule,
        "interval": m.interval, "delay": m.delay,
        "objects": s.state.try_lock().map(|st| st.objects.len()),
        "running": s.running.load(Ordering::SeqCst),
        "last_run": h.last_run, "last_error": h.last_error, "last_duration_ms": h.last_duration_ms,
        "next_run": h.next_run, "runs": h.runs, "errors": h.errors,
        "skipped_ticks": st.engine.metrics.skipped(&m.id),
    })
}

fn slot_of(st: &AppState, id: &str) -> ApiResult<std::sync::Arc<Slot>> {
    st.engine
        .slot(id)
        .ok_or_else(|| ApiError::NotFound(format!("no monitor {id:?}")))
}

/// One monitor: the summary, its query and rules as loaded, the thresholds the console
/// draws, and the text of its file.
async fn get_monitor(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let slot = slot_of(&st, &id)?;
    let m = slot.monitor.clone();
    let mut v = summary(&st, &slot);
    v["query"] = match &m.kind {
        MonitorKind::Query { query: q, .. } => json!({
            "measurement": q.measurement, "field": q.field, "agg": q.agg.name(),
            "by": q.by, "where": q.where_raw,
        }),
        MonitorKind::Promql { query: q, .. } => {
            json!({"datasource": q.datasource, "promql": q.promql})
        }
        MonitorKind::Bot { .. } => Value::Null,
        MonitorKind::Composite(c) => json!({"composite": c.inputs}),
        MonitorKind::Slo(s) => {
            let side = |x: &crate::monitor::SloSeries| json!({"measurement": x.measurement, "field": x.field, "where": x.where_raw});
            let source = match &s.source {
                SloSource::Store { good, total, by } => {
                    json!({"good": side(good), "total": side(total), "by": by})
                }
                SloSource::Promql {
                    datasource,
                    good,
                    total,
                } => json!({"datasource": datasource, "good": good, "total": total}),
            };
            json!({"slo": source, "target": s.target, "window": s.window})
        }
    };
    v["rules"] = match m.rules().map(|r| &r.eval) {
        Some(Eval::Levels(levels)) => Value::Object(
            levels
                .iter()
                .map(|(l, r)| (l.status().as_str().to_string(), json!(r.source)))
                .collect(),
        ),
        Some(Eval::Script(s)) => json!({"script": s.name}),
        None => match &m.kind {
            MonitorKind::Composite(c) => Value::Object(
                c.levels
                    .iter()
                    .map(|r| (r.level.status().as_str().to_string(), json!(r.source)))
                    .collect(),
            ),
            _ => Value::Null,
        },
    };
    v["recovery"] = json!(m
        .rules()
        .and_then(|r| r.recovery.as_ref().map(|r| &r.source)));
    v["thresholds"] = json!(crate::check::inspect::thresholds(&m));
    let file = m.file.clone();
    // The file as it is now: it may have been edited since the last reload.
    v["definition"] = json!(blocking(move || Ok(std::fs::read_to_string(file).ok())).await?);
    Ok(Json(v))
}

/// `GET /api/v1/monitors/:id/points?tags={"host":"web01"}&from=..&to=..`: the object's points
/// in `[from, to)`, read as the monitor's checks read them.
async fn object_points(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let slot = slot_of(&st, &id)?;
    let tags: Tags = match p.get("tags").filter(|s| !s.is_empty()) {
        None => Tags::new(),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            ApiError::field(
                "tags",
                format!("{t:?} is not a JSON object of strings (df_dimension_tags): {e}"),
            )
        })?,
    };
    let time = |name: &str| -> ApiResult<i64> {
        let v = p
            .get(name)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::field(name, "required: Unix seconds or RFC 3339"))?;
        crate::model::time::parse_time(v).map_err(|e| ApiError::field(name, e))
    };
    let (from, to) = (time("from")?, time("to")?);
    let runner = st.engine.runner.clone();
    let m = slot.monitor.clone();
    let tags2 = tags.clone();
    let pts = heavy_read(&st, move || {
        crate::check::inspect::object_points(&runner, &m, &tags2, from, to).map_err(|e| match e {
            crate::check::inspect::InspectError::Range { .. }
            | crate::check::inspect::InspectError::NoQuery(_) => {
                ApiError::field("from", e.to_string())
            }
            other => ApiError::internal(other),
        })
    })
    .await?;
    Ok(Json(json!({
        "monitor": id, "tags": tags, "from": from, "to": to,
        "source": pts.source, "thinned": pts.thinned, "points": pts.points,
    })))
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
