//! Prometheus-compatible data sources (`[[datasources]]`): Prometheus, VictoriaMetrics,
//! Mimir, Thanos, or anything else that answers the Prometheus HTTP query API.
//!
//! A datasource monitor's check asks for the value of its PromQL expression at the window
//! end ([`Datasources::at`]); each series of the answer is one object. Live checks send one
//! instant query per check. A replay sends range queries instead, a chunk of
//! [`REPLAY_CHUNK_STEPS`] evaluation steps at a time, and answers each tick from the chunk
//! that covers it: a range query evaluates the expression at `start + k·step` exactly as an
//! instant query at that time would, so both give the same objects and values.
//!
//! - `client`: one API's HTTP calls and JSON answers

mod client;

use crate::config::Datasource;
use crate::model::Tags;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub use client::Client;

/// Evaluation steps per range query of a replay: 720 one-minute ticks are 12 hours, well under
/// Prometheus' 11,000 points per series and VictoriaMetrics' 30,000, and a thousand series of
/// it are about 12 MB in memory.
pub const REPLAY_CHUNK_STEPS: i64 = 720;

/// One series of an answer: its labels without `__name__`, its points `(Unix s, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// the object's dimension tags
    pub tags: Tags,
    /// evaluation times and values, in time order
    pub points: Vec<(i64, f64)>,
}

/// Why a data source gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DatasourceError {
    /// the monitor names a data source the config does not have
    #[error("no datasource {id:?} in the config")]
    Unknown {
        /// the id
        id: String,
    },
    /// connection refused, timeout, DNS...
    #[error("datasource {id:?}: {url}: {message}")]
    Unreachable {
        /// the id
        id: String,
        /// what was asked
        url: String,
        /// the transport error
        message: String,
    },
    /// an HTTP error status
    #[error("datasource {id:?}: {url} answered HTTP {code}: {message}")]
    Status {
        /// the id
        id: String,
        /// what was asked
        url: String,
        /// the status
        code: u16,
        /// the API's error text, or the start of the body
        message: String,
    },
    /// `"status": "error"` in a 200
    #[error("datasource {id:?}: query failed ({kind}): {message}")]
    Query {
        /// the id
        id: String,
        /// `errorType`
        kind: String,
        /// `error`
        message: String,
    },
    /// an answer that is not the API's JSON
    #[error("datasource {id:?}: unreadable answer: {message}")]
    Decode {
        /// the id
        id: String,
        /// what was wrong
        message: String,
    },
}

/// Which of a check's evaluation times a query is for; a replay keeps one chunk per lane so
/// that the window and the window before it (for `mutation`) do not evict each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// the window end
    Window,
    /// the end of the window before it
    Previous,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChunkKey {
    datasource: String,
    promql: String,
    step: i64,
    lane: Lane,
}

/// A range query's answer: the expression at `start`, `start + step`, ... `end`.
#[derive(Debug)]
struct Chunk {
    start: i64,
    end: i64,
    step: i64,
    series: Vec<Series>,
}

impl Chunk {
    fn covers(&self, at: i64) -> bool {
        self.start <= at && at <= self.end && (at - self.start) % self.step == 0
    }

    /// The series that have a point at `at`, with that point's value.
    fn at(&self, at: i64) -> Vec<(Tags, f64)> {
        self.series
            .iter()
            .filter_map(|s| {
                let i = s.points.partition_point(|p| p.0 < at);
                s.points
                    .get(i)
                    .filter(|p| p.0 == at)
                    .map(|p| (s.tags.clone(), p.1))
            })
            .collect()
    }
}

/// Range-query chunks of a replay.
#[derive(Debug)]
struct ReplayChunks {
    /// no chunk reaches past this (the replay's last window end)
    until: i64,
    chunks: Mutex<HashMap<ChunkKey, Chunk>>,
}

/// What one data source answered since start (for `/metrics`).
#[derive(Debug, Default)]
struct Stats {
    ok: AtomicU64,
    failed: AtomicU64,
    /// time spent in queries, microseconds
    micros: AtomicU64,
}

/// The configured data sources.
#[derive(Debug, Default)]
pub struct Datasources {
    clients: HashMap<String, Client>,
    stats: HashMap<String, Stats>,
    replay: Option<ReplayChunks>,
}

impl Datasources {
    /// Live: one instant query per check.
    pub fn new(cfg: &[Datasource]) -> Datasources {
        Datasources {
            clients: cfg.iter().map(|d| (d.id.clone(), Client::new(d))).collect(),
            stats: cfg
                .iter()
                .map(|d| (d.id.clone(), Stats::default()))
                .collect(),
            replay: None,
        }
    }

    /// For a replay whose windows end at or before `until`: monitors with a fixed period are
    /// answered from range queries.
    pub fn for_replay(cfg: &[Datasource], until: i64) -> Datasources {
        Datasources {
            replay: Some(ReplayChunks {
                until,
                chunks: Mutex::default(),
            }),
            ..Datasources::new(cfg)
        }
    }

    fn client(&self, id: &str) -> Result<&Client, DatasourceError> {
        self.clients
            .get(id)
            .ok_or_else(|| DatasourceError::Unknown { id: id.to_string() })
    }

    /// Appends `tocsin_datasource_queries_total{datasource, outcome}` and
    /// `tocsin_datasource_query_seconds_total{datasource}` to `out`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        if self.stats.is_empty() {
            return;
        }
        let mut ids: Vec<&String> = self.stats.keys().collect();
        ids.sort();
        let _ = writeln!(
            out,
            "# HELP tocsin_datasource_queries_total Queries sent to each data source, by outcome.\n\
             # TYPE tocsin_datasource_queries_total counter"
        );
        for id in &ids {
            let s = &self.stats[*id];
            for (outcome, n) in [("ok", &s.ok), ("error", &s.failed)] {
                let _ = writeln!(
                    out,
                    "tocsin_datasource_queries_total{{datasource=\"{}\",outcome=\"{outcome}\"}} {}",
                    crate::metrics::escape(id),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tocsin_datasource_query_seconds_total Time spent waiting for each data source.\n\
             # TYPE tocsin_datasource_query_seconds_total counter"
        );
        for id in &ids {
            let micros = self.stats[*id].micros.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tocsin_datasource_query_seconds_total{{datasource=\"{}\"}} {}",
                crate::metrics::escape(id),
                micros as f64 / 1e6
            );
        }
    }

    /// The value of `promql` at `at` (Unix s) in data source `id`: the series of the answer
    /// with their values. `step` is the monitor's fixed period, when it has one.
    pub fn at(
        &self,
        id: &str,
        promql: &str,
        at: i64,
        step: Option<i64>,
        lane: Lane,
    ) -> Result<Vec<(Tags, f64)>, DatasourceError> {
        let started = std::time::Instant::now();
        let out = self.ask(id, promql, at, step, lane);
        self.count(id, started, out.is_ok());
        out
    }

    /// Counts one query of data source `id` in its `/metrics` figures.
    fn count(&self, id: &str, started: std::time::Instant, ok: bool) {
        if let Some(s) = self.stats.get(id) {
            let n = if ok { &s.ok } else { &s.failed };
            n.fetch_add(1, Ordering::Relaxed);
            s.micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// `promql` over `[start, end]` every `step` seconds in data source `id` (what the console
    /// draws), counted like the checks' queries.
    pub fn range(
        &self,
        id: &str,
        promql: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, DatasourceError> {
        let started = std::time::Instant::now();
        let out = self.client(id)?.range(promql, start, end, step);
        self.count(id, started, out.is_ok());
        out
    }

    fn ask(
        &self,
        id: &str,
        promql: &str,
        at: i64,
        step: Option<i64>,
        lane: Lane,
    ) -> Result<Vec<(Tags, f64)>, DatasourceError> {
        let client = self.client(id)?;
        let (Some(replay), Some(step)) = (&self.replay, step.filter(|s| *s > 0)) else {
            let series = client.instant(promql, at, step)?;
            return Ok(series
                .into_iter()
                .filter_map(|s| s.points.last().map(|p| (s.tags, p.1)))
                .collect());
        };
        let key = ChunkKey {
            datasource: id.to_string(),
            promql: promql.to_string(),
            step,
            lane,
        };
        let mut chunks = replay.chunks.lock();
        if let Some(c) = chunks.get(&key).filter(|c| c.covers(at)) {
            return Ok(c.at(at));
        }
        let end = (at + (REPLAY_CHUNK_STEPS - 1) * step).min(replay.until.max(at));
        let end = at + (end - at) / step * step;
        tracing::debug!(datasource = id, start = at, end, step, "replay range query");
        let series = client.range(promql, at, end, step)?;
        let chunk = Chunk {
            start: at,
            end,
            step,
            series,
        };
        let out = chunk.at(at);
        chunks.insert(key, chunk);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_answers_only_its_steps() {
        let tags = Tags::from([("host".to_string(), "a".to_string())]);
        let c = Chunk {
            start: 60,
            end: 240,
            step: 60,
            series: vec![
                Series {
                    tags: tags.clone(),
                    points: vec![(60, 1.0), (180, 3.0)],
                },
                Series {
                    tags: Tags::new(),
                    points: vec![(120, 2.0)],
                },
            ],
        };
        assert!(c.covers(60) && c.covers(240) && !c.covers(90) && !c.covers(300));
        assert_eq!(c.at(60), vec![(tags.clone(), 1.0)]);
        assert_eq!(c.at(120), vec![(Tags::new(), 2.0)]);
        assert_eq!(c.at(240), vec![]);
    }

    #[test]
    fn an_unknown_datasource_is_named() {
        let d = Datasources::new(&[]);
        let e = d.at("vm", "up", 0, None, Lane::Window).unwrap_err();
        assert_eq!(e.to_string(), "no datasource \"vm\" in the config");
    }
}
