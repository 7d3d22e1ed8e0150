//! Ingest: request bodies to durable points. Each write is prepared on its own blocking thread
//! and concurrent writes are grouped into one SQLite transaction (the store's group commit),
//! so they share one fsync; a bound on the points waiting refuses work (429) instead of
//! growing without limit.

pub mod file;
pub mod hostinput;
pub mod lineproto;
pub mod remote_write;

#[cfg(test)]
mod limit_tests;

/// The point limits live with the point type in [`crate::model`]; re-exported for callers here.
pub use crate::model::limits;

use crate::metrics::Metrics;
use crate::model::point::PointLike;
use crate::store::{Store, StoreError};
pub use limits::PointLimits;
use lineproto::{ParseError, Point, PointRef, Precision};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a write was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// the body is not valid line protocol
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// the body could not be decoded (gzip)
    #[error("cannot decode body: {0}")]
    Decode(String),
    /// the decoded body is larger than allowed
    #[error("body larger than {0} bytes after decompression")]
    TooLarge(usize),
    /// the queue is full; try again later
    #[error("ingest is saturated; retry later")]
    Busy,
    /// the batch alone is larger than the queue: it could never be admitted, so retrying is
    /// pointless (413, not 429)
    #[error("a batch of {points} points is larger than the ingest queue ({max} points); split it into smaller requests")]
    BatchTooLarge {
        /// points in the batch
        points: usize,
        /// the queue bound
        max: usize,
    },
    /// the store refused the points (a new series past its series limit, or a point past its
    /// limits that the parser let through); nothing of the request was stored
    #[error("{message}")]
    Refused {
        /// the limit broken, as named in the `[limits]` config section (`max_series`,
        /// `max_fields_per_point`, `max_tags_per_series`) or `time_range`
        limit: &'static str,
        /// the store's explanation
        message: String,
    },
    /// the store failed
    #[error("store: {0}")]
    Store(String),
}

/// The ingest pipeline.
pub struct Ingest {
    /// taken away by shutdown, so the store (and its lock on the data directory) can close
    store: parking_lot::Mutex<Option<Arc<Store>>>,
    metrics: Arc<Metrics>,
    max_queued_points: usize,
    shared: Arc<Shared>,
}

/// What admitted writes hold until they are answered.
struct Shared {
    /// points admitted and not answered yet (the queue bound)
    queued_points: AtomicUsize,
    /// writes under way, and whether shutdown has begun (then no new write starts)
    running: parking_lot::Mutex<(usize, bool)>,
    idle: parking_lot::Condvar,
}

/// One admitted write: gives its points and its running slot back when dropped, whatever
/// way the write ends.
struct Admitted {
    /// `Some` until dropped, and let go of before the slot, so that once shutdown has seen
    /// no write running, nothing but the caller holds the store
    store: Option<Arc<Store>>,
    shared: Arc<Shared>,
    points: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.store.take();
        self.shared
            .queued_points
            .fetch_sub(self.points, Ordering::SeqCst);
        let mut running = self.shared.running.lock();
        running.0 -= 1;
        if running.0 == 0 {
            self.shared.idle.notify_all();
        }
    }
}

impl Ingest {
    /// The pipeline over `store`, refusing writes (429) beyond `max_queued_points` waiting.
    pub fn start(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        max_queued_points: usize,
    ) -> Arc<Ingest> {
        Arc::new(Ingest {
            store: parking_lot::Mutex::new(Some(store)),
            metrics,
            max_queued_points,
            shared: Arc::new(Shared {
                queued_points: AtomicUsize::new(0),
                running: parking_lot::Mutex::new((0, false)),
                idle: parking_lot::Condvar::new(),
            }),
        })
    }

    /// Stores points durably; answers once they are committed. Admission is decided here, so
    /// a refused write costs no thread.
    pub async fn write(self: &Arc<Self>, points: Vec<Point>) -> Result<usize, IngestError> {
        if points.is_empty() {
            return Ok(0);
        }
        let admitted = self.admit(points.len())?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.store(&points, admitted))
            .await
            .map_err(|e| IngestError::Store(format!("write failed: {e}")))?
    }

    /// [`Ingest::write`] on the calling thread, which blocks until the commit (never call it
    /// on an async worker).
    pub fn write_blocking<P: PointLike>(&self, points: &[P]) -> Result<usize, IngestError> {
        if points.is_empty() {
            return Ok(0);
        }
        let admitted = self.admit(points.len())?;
        self.store(points, admitted)
    }

    /// Writes admitted points. Every write prepares its points (series resolution, encoding)
    /// on its own thread, so concurrent requests prepare in parallel; the store groups their
    /// commits into one transaction and one fsync. A request past the series limit is refused
    /// on its own, without failing the others.
    fn store<P: PointLike>(&self, points: &[P], admitted: Admitted) -> Result<usize, IngestError> {
        let n = points.len();
        let res = admitted
            .store
            .as_ref()
            .expect("held until dropped")
            .write(points);
        drop(admitted);
        match res {
            Ok(_) => {
                self.metrics
                    .ingest_points
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.metrics.ingest_requests.fetch_add(1, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                if !is_refusal(&e) {
                    tracing::error!("ingest commit failed: {e}");
                }
                Err(answer(&e))
            }
        }
    }

    /// Takes room for `n` points in the queue, or refuses: 413 when they could never fit, 429
    /// when the queue is full or the pipeline is shutting down.
    fn admit(&self, n: usize) -> Result<Admitted, IngestError> {
        if n > self.max_queued_points {
            return Err(IngestError::BatchTooLarge {
                points: n,
                max: self.max_queued_points,
            });
        }
        let busy = || {
            self.metrics
                .ingest_throttled
                .fetch_add(1, Ordering::Relaxed);
            IngestError::Busy
        };
        let store = {
            let mut running = self.shared.running.lock();
            let store = match (running.1, self.store.lock().as_ref()) {
                (false, Some(store)) => store.clone(),
                _ => return Err(busy()),
            };
            running.0 += 1;
            store
        };
        // From here on, dropping `admitted` undoes both counts.
        let admitted = Admitted {
            store: Some(store),
            shared: self.shared.clone(),
            points: n,
        };
        if self.shared.queued_points.fetch_add(n, Ordering::SeqCst) + n > self.max_queued_points {
            return Err(busy());
        }
        Ok(admitted)
    }

    /// Refuses new writes and returns once the writes under way are committed; then lets go
    /// of the store.
    pub fn shutdown(&self) {
        let mut running = self.shared.running.lock();
        running.1 = true;
        while running.0 > 0 {
            self.shared.idle.wait(&mut running);
        }
        self.store.lock().take();
    }
}

/// Whether the store refused a write for a limit (the request's fault) rather than failed.
fn is_refusal(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::SeriesLimit { .. } | StoreError::InvalidPoint { .. }
    )
}

/// The answer to a request whose write failed with `e`.
fn answer(e: &StoreError) -> IngestError {
    if is_refusal(e) {
        refusal(e)
    } else {
        IngestError::Store(e.to_string())
    }
}

/// A store refusal as an ingest error naming the limit broken.
fn refusal(e: &StoreError) -> IngestError {
    let limit = match e {
        StoreError::SeriesLimit { .. } => "max_series",
        StoreError::InvalidPoint { limit, .. } => limit,
        _ => "unknown",
    };
    IngestError::Refused {
        limit,
        message: e.to_string(),
    }
}

/// Decodes a request body (gzip when `gzip` is set), refusing more than `limit` bytes.
pub fn decode_body(
    body: &[u8],
    gzip: bool,
    limit: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, IngestError> {
    if !gzip {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| IngestError::Decode(e.to_string()))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge(limit));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Parses a body into points; points without a timestamp get `now_ns`. Points past the
/// default [`PointLimits`] (too many fields or tags, a time out of range) fail the body with
/// the line and column.
pub fn parse_body(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
) -> Result<Vec<Point>, IngestError> {
    parse_body_with(body, precision, now_ns, &PointLimits::default())
}

/// [`parse_body`] with explicit limits (e.g. from the configuration).
pub fn parse_body_with(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
) -> Result<Vec<Point>, IngestError> {
    Ok(lineproto::parse_with_limits(
        body, precision, now_ns, limits,
    )?)
}

/// [`parse_body_with`] into points borrowing their strings from `body` (see
/// [`lineproto::parse_refs_with_limits`]).
pub fn parse_body_refs<'a>(
    body: &'a [u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
) -> Result<Vec<PointRef<'a>>, IngestError> {
    Ok(lineproto::parse_refs_with_limits(
        body, precision, now_ns, limits,
    )?)
}

/// The JSON echo of parsed points for `?dry=true&echo=json`, types kept.
pub fn echo_json(points: &[Point]) -> serde_json::Value {
    use crate::ingest::lineproto::FieldValue;
    use serde_json::{json, Map, Value};
    Value::Array(
        points
            .iter()
            .map(|p| {
                let tags: Map<String, Value> = p.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                let fields: Map<String, Value> = p
                    .fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            FieldValue::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
                            FieldValue::Int(i) => json!(i),
                            FieldValue::UInt(u) => json!(u),
                            FieldValue::Str(s) => json!(s),
                            FieldValue::Bool(b) => json!(b),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                json!({"measurement": p.measurement, "tags": tags, "fields": fields, "time": p.time})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::lineproto::FieldValue;

    fn batch(n: usize, base: i64) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                measurement: "m".into(),
                tags: vec![("k".into(), format!("{}", i % 7))],
                fields: vec![("v".into(), FieldValue::Float(i as f64))],
                time: base + i as i64,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_queue_is_413_not_retry_forever() {
        let store = Arc::new(Store::scratch());
        let ingest = Ingest::start(store.clone(), Arc::new(Metrics::default()), 100);
        match ingest.write(batch(101, 0)).await {
            Err(
                e @ IngestError::BatchTooLarge {
                    points: 101,
                    max: 100,
                },
            ) => {
                assert!(e.to_string().contains("split it"), "{e}")
            }
            other => panic!("expected BatchTooLarge, got {other:?}"),
        }
        assert_eq!(store.sample_count(), 0);
        assert_eq!(ingest.write(batch(100, 0)).await.unwrap(), 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_instead_of_growing_and_accepted_writes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
        let metrics = Arc::new(Metrics::default());
        // room for two batches in flight
        let ingest = Ingest::start(store.clone(), metrics.clone(), 10_000);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let ing = ingest.clone();
            tasks.push(tokio::spawn(async move {
                ing.write(batch(5_000, i * 10_000)).await
            }));
        }
        let mut ok = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => {
                    assert_eq!(n, 5_000);
                    ok += 1;
                }
                Err(IngestError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            busy > 0,
            "40 concurrent 5k batches must overflow a 10k queue"
        );
        assert!(ok > 0);
        assert_eq!(metrics.ingest_throttled.load(Ordering::Relaxed), busy);
        assert_eq!(metrics.ingest_points.load(Ordering::Relaxed), ok * 5_000);
        ingest.shutdown();
        // exactly the accepted batches are durable
        drop(store);
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let q = crate::store::query::WindowQuery {
            measurement: "m".into(),
            field: "v".into(),
            by: vec![],
            filters: vec![],
            start_ns: 0,
            end_ns: i64::MAX,
        };
        let total: usize = store
            .window(&q)
            .unwrap()
            .iter()
            .map(|g| g.points.len())
            .sum();
        assert_eq!(total as u64, ok * 5_000);
    }

    #[test]
    fn gzip_bodies_decode_within_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'a'; 1000]).unwrap();
        let body = gz.finish().unwrap();
        assert_eq!(decode_body(&body, true, 1000).unwrap().len(), 1000);
        assert!(matches!(
            decode_body(&body, true, 999),
            Err(IngestError::TooLarge(999))
        ));
        assert!(matches!(
            decode_body(b"not gzip", true, 1000),
            Err(IngestError::Decode(_))
        ));
        assert_eq!(&*decode_body(b"plain", false, 10).unwrap(), b"plain");
    }
}
