//! Several replicas on one shared backend: the loop that keeps this replica's leases
//! ([`crate::events::lease`]) and tells the engine which monitors it took over.
//!
//! A monitor whose lease this replica gains runs its previous owner's latest missed tick once
//! (from the `last_tick` the owner recorded), on the state the owner stored: the first check
//! reads it again because its version moved on. Monitor files that differ between live
//! replicas are logged whenever the difference changes, and `GET /api/v1/monitors` lists them.

use super::Engine;
use crate::events::lease::{self, Leases};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Names besides the monitors that this replica wants leases for (its `alertmanager_api`
/// targets), asked at every pass since a reload may change them.
pub type OtherNames = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Renews and takes leases every [`lease::RENEW_EVERY`] until `stop` is raised, then gives
/// them all back so the other replicas take over at once.
pub async fn keep_leases(
    engine: Arc<Engine>,
    leases: Arc<Leases>,
    others: OtherNames,
    stop: Arc<AtomicBool>,
) {
    let mut last_error: Option<String> = None;
    let mut last_diff: Vec<String> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (e, l, o) = (engine.clone(), leases.clone(), others.clone());
        let res = tokio::task::spawn_blocking(move || {
            let mine = e.fingerprints();
            let changes = l.pass(&e.runner.db, &mine, &o())?;
            for name in &changes.gained {
                if let Some(id) = name.strip_prefix("monitor:") {
                    tracing::info!(monitor = %id, "lease taken: this replica evaluates it now");
                    e.took_over(id);
                }
            }
            for name in &changes.lost {
                tracing::info!(lease = %name, "lease lost to another replica");
            }
            Ok::<_, String>(lease::differences(&mine, &l.me, &l.replicas()))
        })
        .await;
        match res {
            Ok(Ok(diff)) => {
                if last_error.take().is_some() {
                    tracing::info!("state backend reachable again: leases renewed");
                }
                if diff != last_diff {
                    for d in &diff {
                        tracing::warn!("monitor files differ between replicas: {d}");
                    }
                    last_diff = diff;
                }
            }
            Ok(Err(e)) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!("leases not renewed (state backend unreachable?): {e}");
                }
                last_error = Some(e);
            }
            Err(e) => tracing::error!("lease task failed: {e}"),
        }
        tokio::time::sleep(lease::RENEW_EVERY).await;
    }
    let (e, l) = (engine.clone(), leases.clone());
    let _ = tokio::task::spawn_blocking(move || l.release(&e.runner.db)).await;
}
