//! The event centre's read side: `GET /api/v1/events` (list), `/events/:id`, `/events/stats`,
//! `/events/stream` (server-sent events, the same filter as the list) and
//! `/api/v1/deliveries` (the notification outbox of those events, URLs redacted by
//! [`super::redact`]). Every route is a read: behind [`super::auth::admit_read`].

use super::error::{ApiError, ApiResult};
use super::{blocking, heavy_read, AppState};
use crate::events::EventQuery;
use crate::model::event::{Status, ALL_STATUSES};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Largest `limit` of a list.
pub const MAX_LIMIT: usize = 10_000;

/// The event and delivery routes, behind the read token.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/stats", get(event_stats))
        .route("/api/v1/events/stream", get(event_stream))
        .route("/api/v1/events/:id", get(get_event))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::admit_read,
        ))
}

fn time_param(name: &str, v: Option<&String>) -> ApiResult<Option<i64>> {
    v.filter(|s| !s.is_empty())
        .map(|s| crate::model::time::parse_time(s).map_err(|e| ApiError::field(name, e)))
        .transpose()
}

/// A count parameter: a non-negative integer SQLite can take (at most `i64::MAX`).
pub(super) fn num_param(name: &str, v: Option<&String>) -> ApiResult<Option<usize>> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| {
                    ApiError::field(
                        name,
                        format!("{s:?} is not a non-negative integer up to {}", i64::MAX),
                    )
                })
        })
        .transpose()
}

/// A `status` filter: one of the event statuses, else 400 naming the value (an unknown status
/// would match nothing and look like "no events").
pub(super) fn status_param(v: Option<&String>) -> ApiResult<Option<String>> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            Status::parse(s)
                .map(|st| st.as_str().to_string())
                .ok_or_else(|| {
                    let names: Vec<&str> = ALL_STATUSES.iter().map(|st| st.as_str()).collect();
                    ApiError::field(
                        "status",
                        format!("{s:?} is not one of {}", names.join(", ")),
                    )
                })
        })
        .transpose()
}

/// `tag=host:web01,region:eu`: dimension tags the events must carry, each `key:value`
/// (split at the first `:`), all of them.
fn tag_param(v: Option<&String>) -> ApiResult<Vec<(String, String)>> {
    let Some(v) = v.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    v.split(',')
        .map(|kv| match kv.split_once(':') {
            Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
            _ => Err(ApiError::field(
                "tag",
                format!("{kv:?} is not key:value (for example tag=host:web01,region:eu)"),
            )),
        })
        .collect()
}

/// The filter of the query string (`status`, `source`, `monitor`, `ref`, `from`, `to`, `q`,
/// `tag`, `limit`, `offset`).
pub fn event_query(p: &HashMap<String, String>) -> ApiResult<EventQuery> {
    let s = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    let limit = num_param("limit", p.get("limit"))?;
    if limit.is_some_and(|l| l > MAX_LIMIT) {
        return Err(ApiError::field("limit", format!("at most {MAX_LIMIT}")));
    }
    Ok(EventQuery {
        status: status_param(p.get("status"))?,
        source: s("source"),
        monitor: s("monitor"),
        event_ref: s("ref"),
        from: time_param("from", p.get("from"))?,
        to: time_param("to", p.get("to"))?,
        text: s("q"),
        tags: tag_param(p.get("tag"))?,
        limit,
        offset: num_param("offset", p.get("offset"))?,
    })
}

async fn list_events(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let q = event_query(&p)?;
    let db = st.engine.runner.db.clone();
    let events = heavy_read(&st, move || db.events(&q).map_err(ApiError::internal)).await?;
    Ok(Json(json!({"count": events.len(), "events": events})))
}

async fn get_event(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let db = st.engine.runner.db.clone();
    match blocking(move || db.event(&id).map_err(ApiError::internal)).await? {
        Some(e) => Ok(Json(e.to_value())),
        None => Err(ApiError::NotFound("no such event".into())),
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
    let counts = heavy_read(&st, move || db.stats(&by2, &q).map_err(ApiError::internal)).await?;
    let total: i64 = counts.values().sum();
    Ok(Json(json!({"by": by, "total": total, "counts": counts})))
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
        .min(MAX_LIMIT);
    let db = st.engine.runner.db.clone();
    let mut list = heavy_read(&st, move || {
        crate::notify::worker::list(&db, &statuses, limit).map_err(ApiError::internal)
    })
    .await?;
    // Target URLs can carry secrets (a DingTalk access_token, user:password): the API shows
    // them redacted; the worker still posts to the real URL.
    for d in &mut list {
        d.url = super::redact::url(&d.url);
        d.last_error = d.last_error.as_deref().map(super::redact::urls_in);
    }
    Ok(Json(json!({"count": list.len(), "deliveries": list})))
}

/// Server-sent events: every new event matching the filter of `GET /api/v1/events` (the same
/// [`EventQuery`], paging aside) as it is committed.
async fn event_stream(
    State(st): State<AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl futures_core::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let q = event_query(&p)?;
    let mut rx = st.engine.runner.db.subscribe();
    let stream = channel_stream(move |tx| async move {
        loop {
            let sse = match rx.recv().await {
                Ok(ev) if !q.matches(&ev) => continue,
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    SseEvent::default().event("event").id(ev.id()).data(data)
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
                Err(_) => return,
            };
            if tx.send(Ok(sse)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

/// A stream fed by a task through a small channel (back-pressure: the task waits for the
/// client).
fn channel_stream<T, F, Fut>(f: F) -> ReceiverStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    ReceiverStream(rx)
}

/// A minimal `Stream` over an mpsc receiver (what tokio-stream's ReceiverStream does).
pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
