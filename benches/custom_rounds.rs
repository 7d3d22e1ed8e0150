//! Custom-event batches against many open issues: `cargo bench --bench custom_rounds`.
//!
//! Opens N rounds (one custom fault per resource), then times batches of 100 faults that
//! continue rounds spread over those N keys: each event's round is looked up by key. Prints
//! the median batch time at 100 and at 10,000 open issues and their ratio, which should stay
//! near 1 (the lookup is by key, not a scan of the issue table).

use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin::custom::{store_batch, CustomEvent};
use tocsin::events::EventDb;
use tocsin::model::event::Status;
use tocsin::model::Tags;

const BATCH: usize = 100;
const RUNS: usize = 15;

fn event(id: String, date: i64, resource: usize) -> CustomEvent {
    CustomEvent {
        dialect: "bench",
        id,
        date,
        status: Status::Critical,
        title: "disk full".into(),
        message: "disk full".into(),
        name: "disk".into(),
        source: "bench".into(),
        key_name: None,
        resource: format!("res-{resource}"),
        group: String::new(),
        tags: Tags::new(),
        detail: Value::Null,
        extra: vec![],
    }
}

/// Median time of one batch with `open` rounds open.
fn median_batch(open: usize) -> Duration {
    let db = EventDb::scratch();
    let opening: Vec<CustomEvent> = (0..open)
        .map(|r| event(format!("event-open-{r}"), 1_000, r))
        .collect();
    for chunk in opening.chunks(1000) {
        store_batch(&db, chunk).expect("opening batch stores");
    }
    assert_eq!(db.issues(None, 1_000).unwrap().len(), open);
    let mut times = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let batch: Vec<CustomEvent> = (0..BATCH)
            .map(|i| {
                let r = (i * 7919 + run * 104_729) % open;
                event(format!("event-{run}-{i}"), 2_000 + run as i64, r)
            })
            .collect();
        let started = Instant::now();
        let out = store_batch(&db, &batch).expect("batch stores");
        times.push(started.elapsed());
        assert!(out.iter().all(|s| s.fresh));
    }
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let small = median_batch(100);
    let large = median_batch(10_000);
    println!("custom batch of {BATCH} faults, median of {RUNS}:");
    println!(
        "  100 open issues:    {:>10.3} ms",
        small.as_secs_f64() * 1e3
    );
    println!(
        "  10,000 open issues: {:>10.3} ms",
        large.as_secs_f64() * 1e3
    );
    println!(
        "  ratio 10,000 / 100: {:.2}",
        large.as_secs_f64() / small.as_secs_f64()
    );
}
