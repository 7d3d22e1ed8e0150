//! A webhook receiver on loopback for the delivery tests: every POST is recorded.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Req {
    /// the last path segment
    pub path: String,
    /// the headers, names in lower case
    pub headers: Vec<(String, String)>,
    /// the JSON body (null when it was not JSON)
    pub body: Value,
}

/// A webhook receiver: `/hook` answers 200, `/fail` 503, `/slow` hangs for 30 s.
pub struct Receiver {
    log: Arc<Mutex<Vec<Req>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on loopback `port` until dropped.
    pub fn start(port: u16) -> Receiver {
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let l2 = log.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use axum::extract::{Path as AxPath, State};
                use axum::http::{HeaderMap, StatusCode};
                let app = axum::Router::new()
                    .route(
                        "/:name",
                        axum::routing::post(
                            |State(log): State<Arc<Mutex<Vec<Req>>>>,
                             AxPath(name): AxPath<String>,
                             headers: HeaderMap,
                             body: axum::body::Bytes| async move {
                                if name == "slow" {
                                    tokio::time::sleep(Duration::from_secs(30)).await;
                                }
                                let req = Req {
                                    path: name.clone(),
                                    headers: headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (k.to_string(), v.to_str().unwrap_or("").to_string())
                                        })
                                        .collect(),
                                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                };
                                log.lock().unwrap().push(req);
                                if name == "fail" {
                                    StatusCode::SERVICE_UNAVAILABLE
                                } else {
                                    StatusCode::OK
                                }
                            },
                        ),
                    )
                    .with_state(l2);
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Receiver {
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The requests to `/path` so far.
    pub fn got(&self, path: &str) -> Vec<Req> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits up to `secs` for `n` requests to `/path`; what arrived.
    pub fn wait_for(&self, path: &str, n: usize, secs: u64) -> Vec<Req> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got(path);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            // a /slow handler may still hang; don't wait for it
            drop(t);
        }
    }
}
