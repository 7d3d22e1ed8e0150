//! `tocsin serve`: wires the store, event store, engine, ingest, host input, retention and the
//! HTTP server together, and stops them gracefully on SIGTERM/SIGINT.

use crate::check::Runner;
use crate::cli::load_config;
use crate::engine::{Engine, Sources};
use crate::events::EventDb;
use crate::http::{app, AppState};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::script::ScriptEngine;
use crate::store::{Store, StoreOptions};
use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Flags of `tocsin serve`; each overrides the config file.
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    /// config file
    pub config: Option<PathBuf>,
    /// data directory
    pub data: Option<PathBuf>,
    /// listen address
    pub listen: Option<String>,
    /// monitors directory
    pub monitors: Option<PathBuf>,
    /// scripts directory
    pub scripts: Option<PathBuf>,
}

/// Runs the server until a stop signal.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    let data = args
        .data
        .or(cfg.data.clone())
        .unwrap_or_else(|| PathBuf::from("./data"));
    let listen = args
        .listen
        .or(cfg.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:9530".into());
    let monitors = args
        .monitors
        .or(cfg.monitors.clone())
        .unwrap_or_else(|| PathBuf::from("./monitors"));
    let scripts = args
        .scripts
        .or(cfg.scripts.clone())
        .unwrap_or_else(|| PathBuf::from("./scripts"));
    let addr: SocketAddr = tokio::net::lookup_host(&listen)
        .await
        .with_context(|| {
            format!("listen address {listen:?}: expected host:port such as 127.0.0.1:9530")
        })?
        .next()
        .ok_or_else(|| anyhow!("listen address {listen:?} resolves to nothing"))?;
    // Beyond loopback, every endpoint group needs its token: one missing token would leave
    // its endpoints (ingest, or recover/run/reload) open to anyone who reaches the address.
    if !addr.ip().is_loopback() {
        let missing: Vec<&str> = [
            ("ingest_token", cfg.ingest_token.is_none()),
            ("admin_token", cfg.admin_token.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        if !missing.is_empty() {
            bail!(
                "refusing to listen on non-loopback {addr} without {}: set ingest_token and admin_token in the config file, or listen on 127.0.0.1",
                missing.join(" and ")
            );
        }
    }
    let metrics_keep = cfg.retention.metrics.get();
    let events_keep = cfg.retention.events.get();

    let store_opts = StoreOptions {
        limits: cfg.limits.point_limits(),
        max_series: cfg.limits.max_series,
        ..Default::default()
    };
    let store = Arc::new(Store::open(&data, store_opts).map_err(|e| anyhow!("{e}"))?);
    let db = Arc::new(match &cfg.state.postgres {
        Some(url) => EventDb::connect(url).map_err(|e| {
            anyhow!(
                "[state] postgres = {:?}: {e}",
                crate::events::pg::redact(url)
            )
        })?,
        None => EventDb::open(&data).map_err(|e| anyhow!("{e}"))?,
    });
    // Policies plan deliveries inside each event's own transaction (durable outbox).
    let notifier = crate::notify::Notifier::new(&cfg);
    let alertmanagers = notifier.alertmanager_targets();
    db.set_hook(Arc::new(notifier))
        .map_err(|e| anyhow!("{e}"))?;
    let worker = crate::notify::worker::Worker::with_alertmanagers(db.clone(), alertmanagers);
    let metrics = Arc::new(Metrics::default());
    let runner = Arc::new(Runner {
        store: store.clone(),
        db: db.clone(),
        engine: Arc::new(ScriptEngine::new(Default::default())),
        policies: cfg.policy_names().into(),
        public_url: cfg.public_url.clone(),
        workers: Default::default(),
        datasources: Arc::new(crate::datasource::Datasources::new(&cfg.datasources)),
    });
    let engine = Engine::new(
        runner,
        metrics.clone(),
        Sources {
            monitors: monitors.clone(),
            scripts,
            policies: cfg.policy_ids(),
            datasources: cfg.datasource_ids(),
        },
    );
    // Reload (API, SIGHUP) applies the config's policies, targets and mutes again; the outbox
    // and everything else stay (listen, tokens, data sources and limits need a restart).
    if let Some(path) = args.config.clone() {
        let (db, worker, runner) = (db.clone(), worker.clone(), engine.runner.clone());
        engine.set_config_reloader(Box::new(move || {
            let cfg = crate::config::Config::load(&path).map_err(|e| e.to_string())?;
            let notifier = crate::notify::Notifier::new(&cfg);
            let alertmanagers = notifier.alertmanager_targets();
            db.set_hook(Arc::new(notifier)).map_err(|e| e.to_string())?;
            worker.set_alertmanagers(alertmanagers);
            runner.policies.set(cfg.policy_names());
            tracing::info!(
                policies = cfg.policies.len(),
                "config reloaded: policies, targets and mutes"
            );
            Ok(cfg.policy_ids())
        }));
    }
    // Bounded: beyond a million queued points, writers get 429 (Retry-After) instead.
    let ingest = Ingest::start(store.clone(), metrics.clone(), 1_000_000);
    let clock: crate::model::SharedClock = Arc::new(crate::model::SystemClock);
    let state = AppState {
        ingest_token: cfg.ingest_token.clone(),
        admin_token: cfg.admin_token.clone(),
        read_token: cfg.read_token.clone(),
        max_body: cfg.max_body_bytes,
        access_keys: cfg.access_keys.clone(),
        ..AppState::new(engine.clone(), ingest.clone(), worker.clone(), clock)
    };

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Once, through the log (which goes to stderr), so it is not printed twice.
    tracing::info!(data = %data.display(), monitors = %monitors.display(), "tocsin listening on http://{addr}");

    // Several replicas on one PostgreSQL: leases decide which one evaluates each monitor and
    // talks to each alertmanager_api target.
    let lease_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lease_task = if db.is_shared() {
        let me = cfg.state.replica.clone().unwrap_or_else(|| {
            format!(
                "{}:{}",
                crate::ingest::hostinput::default_hostname(),
                addr.port()
            )
        });
        tracing::info!(replica = %me, "state on PostgreSQL: sharing the monitors with the other replicas");
        let leases = Arc::new(crate::events::lease::Leases::new(me, addr.to_string()));
        engine.set_leases(leases.clone());
        worker.set_leases(leases.clone());
        let w = worker.clone();
        let others: crate::engine::ha::OtherNames = Arc::new(move || {
            w.alertmanager_keys()
                .iter()
                .map(|k| crate::events::lease::alertmanager_lease(k))
                .collect()
        });
        Some(tokio::spawn(crate::engine::ha::keep_leases(
            engine.clone(),
            leases,
            others,
            lease_stop.clone(),
        )))
    } else {
        None
    };
    let scheduler = tokio::spawn(engine.clone().scheduler());
    let delivering = tokio::spawn(worker.clone().run());
    let mut background = Vec::new();
    if cfg.host_input.enabled {
        let every = cfg.host_input.every.get();
        background.push(tokio::spawn(host_input(ingest.clone(), every.max(1))));
    }
    background.push(tokio::spawn(retention(
        store.clone(),
        db.clone(),
        metrics_keep,
        events_keep,
    )));
    #[cfg(unix)]
    {
        let e = engine.clone();
        background.push(tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config's policies and the monitors");
                let e2 = e.clone();
                let _ = tokio::task::spawn_blocking(move || e2.reload()).await;
            }
        }));
    }

    axum::serve(listener, app(state))
        .with_graceful_shutdown(stop_signal())
        .await
        .context("HTTP server failed")?;
    tracing::info!("stopping: finishing in-flight checks and writes");
    for b in background {
        b.abort();
    }
    engine.stop().await;
    let _ = scheduler.await;
    if let Some(t) = lease_task {
        // Leases go back once no check of this replica runs any more.
        lease_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = t.await;
    }
    worker.stop();
    let _ = delivering.await;
    let ing = ingest.clone();
    tokio::task::spawn_blocking(move || ing.shutdown())
        .await
        .ok();
    eprintln!("tocsin stopped");
    Ok(())
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn host_input(ingest: Arc<Ingest>, every: i64) {
    let mut input = crate::ingest::hostinput::HostInput::new(None);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let points = input.collect(now);
        if let Err(e) = ingest.write(points).await {
            tracing::warn!("host input not stored: {e}");
        }
    }
}

async fn retention(store: Arc<Store>, db: Arc<EventDb>, metrics_keep: i64, events_keep: i64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let now = chrono::Utc::now().timestamp();
        let (s, d) = (store.clone(), db.clone());
        let res = tokio::task::spawn_blocking(move || {
            let m = s
                .drop_before((now - metrics_keep) * 1_000_000_000)
                .map_err(|e| e.to_string())?;
            let e = d
                .drop_events_before(now - events_keep)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((m, e))
        })
        .await;
        match res {
            Ok(Ok((m, e))) if m + e > 0 => {
                tracing::info!(metric_chunks = m, events = e, "retention removed old data")
            }
            Ok(Err(e)) => tracing::warn!("retention failed: {e}"),
            _ => {}
        }
    }
}
