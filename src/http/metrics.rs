//! `GET /metrics`: the Prometheus text exposition of the engine's counters plus gauges read
//! at scrape time (open issues, store size, monitors, writes in flight, the outbox).

use super::error::{ApiError, ApiResult};
use super::write::INGEST_SLOTS;
use super::{blocking, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;

/// The metrics route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let engine = st.engine.clone();
    let worker = st.worker.clone();
    let writes_in_flight = (INGEST_SLOTS - st.ingest_slots.available_permits()) as f64;
    let now = st.clock.now_secs();
    let text = blocking(move || {
        let open = engine
            .runner
            .db
            .issues(None, now)
            .map(|v| v.len())
            .unwrap_or(0) as f64;
        let series = engine.runner.store.series_count() as f64;
        let samples = engine.runner.store.sample_count() as f64;
        let monitors = engine.slots().len() as f64;
        let errors = engine.load_errors().len() as f64;
        let d = crate::notify::worker::counts(&engine.runner.db);
        let backend_up = if engine.runner.db.ping().is_ok() {
            1.0
        } else {
            0.0
        };
        let owned = engine
            .slots()
            .iter()
            .filter(|s| engine.owns(&s.monitor.id))
            .count() as f64;
        let dc = |k: &str| d.get(k).copied().unwrap_or(0) as f64;
        let store = &engine.runner.store;
        let limit = crate::metrics::SeriesLimitFigures {
            limit: store.max_series(),
            refused: store.series_refused(),
        };
        let mut text = engine.metrics.render(&[
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
                "tocsin_monitors_owned",
                "Monitors this replica evaluates (all of them without a shared backend).",
                owned,
            ),
            (
                "tocsin_state_backend_up",
                "Whether the state backend (SQLite or PostgreSQL) answered at this scrape.",
                backend_up,
            ),
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
        ]);
        limit.render(&mut text);
        text.push_str(&format!(
            "# HELP tocsin_delivery_failures_total Delivery attempts that failed since start.\n\
             # TYPE tocsin_delivery_failures_total counter\ntocsin_delivery_failures_total {}\n",
            worker.failures.load(Ordering::Relaxed)
        ));
        for (name, help, v) in [
            (
                "tocsin_alertmanager_resends_total",
                "Re-sends of open alerts to alertmanager_api targets answered 2xx since start.",
                &worker.resends,
            ),
            (
                "tocsin_alertmanager_resend_failures_total",
                "Re-sends of open alerts to alertmanager_api targets that failed since start.",
                &worker.resend_failures,
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        engine.runner.datasources.render(&mut text);
        crate::process::render(&mut text);
        Ok::<_, ApiError>(text)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
