//! Ingest throughput of the metric store: `cargo bench --bench ingest`.
//!
//! Realistic host metrics (per host and interval: `cpu` for cpu-total and 4 cores with 5
//! fields each, `mem` with 4 fields: 6 points, 29 samples) for 1000 hosts, written to a
//! temp-dir store (WAL, synchronous=FULL: every commit is durable). Prints the median over
//! several runs of points/s (lines) and samples/s (numeric field values).

use std::sync::Arc;
use std::time::Instant;

use tocsin::ingest::lineproto::{FieldValue, Point};
use tocsin::store::{Store, StoreOptions};

const HOSTS: usize = 1000;
const INTERVAL_NS: i64 = 10_000_000_000;
const T0: i64 = 1_700_000_000_000_000_000;
const RUNS: usize = 5;
/// Points written per timed run.
const POINTS_PER_RUN: usize = 600_000;

/// The points of `intervals` consecutive intervals starting at interval `first`.
fn points(first: usize, intervals: usize) -> Vec<Point> {
    let mut out = Vec::with_capacity(intervals * HOSTS * 6);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ first as u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 100.0
    };
    for i in first..first + intervals {
        let time = T0 + i as i64 * INTERVAL_NS;
        for h in 0..HOSTS {
            let host = format!("host-{h:04}");
            let dc = format!("dc{}", h % 3);
            for cpu in ["cpu-total", "cpu0", "cpu1", "cpu2", "cpu3"] {
                let mut tags = vec![
                    ("cpu".to_string(), cpu.to_string()),
                    ("dc".to_string(), dc.clone()),
                    ("host".to_string(), host.clone()),
                ];
                tags.sort();
                let fields = [
                    "usage_user",
                    "usage_system",
                    "usage_idle",
                    "usage_iowait",
                    "usage_total",
                ]
                .iter()
                .map(|f| (f.to_string(), FieldValue::Float(rnd())))
                .collect();
                out.push(Point {
                    measurement: "cpu".into(),
                    tags,
                    fields,
                    time,
                });
            }
            let tags = vec![
                ("dc".to_string(), dc.clone()),
                ("host".to_string(), host.clone()),
            ];
            let fields = vec![
                ("used".to_string(), FieldValue::Int((rnd() * 1e8) as i64)),
                ("free".to_string(), FieldValue::Int((rnd() * 1e8) as i64)),
                ("used_percent".to_string(), FieldValue::Float(rnd())),
                (
                    "available".to_string(),
                    FieldValue::UInt((rnd() * 1e8) as u64),
                ),
            ];
            out.push(Point {
                measurement: "mem".into(),
                tags,
                fields,
                time,
            });
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One timed run: a fresh store with the series created beforehand (untimed), then
/// `POINTS_PER_RUN` points written by `writers` threads in batches of `batch` points, `group`
/// batches per `write_batches` call. Returns (points/s, samples/s).
fn run(batch: usize, group: usize, writers: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("open"));
    store.write(&points(0, 1)).expect("warm-up write");
    let data = points(1, POINTS_PER_RUN / (HOSTS * 6));
    let batches: Vec<&[Point]> = data.chunks(batch).collect();
    let per_writer = batches.len().div_ceil(writers);
    let start = Instant::now();
    let samples: usize = std::thread::scope(|s| {
        let handles: Vec<_> = batches
            .chunks(per_writer)
            .map(|mine| {
                let store = Arc::clone(&store);
                s.spawn(move || {
                    mine.chunks(group)
                        .map(|g| store.write_batches(g).expect("write"))
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer")).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    (data.len() as f64 / secs, samples as f64 / secs)
}

fn main() {
    println!(
        "tocsin store ingest: {HOSTS} hosts, {} series, {POINTS_PER_RUN} points per run, median of {RUNS} runs",
        HOSTS * 29
    );
    let cases: &[(&str, usize, usize, usize)] = &[
        ("write, 5k-point batches", 5_000, 1, 1),
        ("write, 20k-point batches", 20_000, 1, 1),
        ("write, 50k-point batches", 50_000, 1, 1),
        ("write_batches, 4 x 5k per commit", 5_000, 4, 1),
        ("write_batches, 10 x 5k per commit", 5_000, 10, 1),
        (
            "write from 2 threads, 5k batches (group commit)",
            5_000,
            1,
            2,
        ),
        (
            "write from 4 threads, 5k batches (group commit)",
            5_000,
            1,
            4,
        ),
        (
            "write from 2 threads, 50k batches (group commit)",
            50_000,
            1,
            2,
        ),
    ];
    // `cargo bench --bench ingest -- 50k` runs the cases whose name contains "50k"
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for &(name, batch, group, writers) in cases {
        if !filter.iter().all(|f| name.contains(f.as_str())) {
            continue;
        }
        let results: Vec<(f64, f64)> = (0..RUNS).map(|_| run(batch, group, writers)).collect();
        let pts = median(results.iter().map(|r| r.0).collect());
        let smp = median(results.iter().map(|r| r.1).collect());
        println!("{name:<52} {:>10.0} points/s {:>11.0} samples/s", pts, smp);
    }
}
