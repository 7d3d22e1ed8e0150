//! Resident memory per series of the metric store: `cargo bench --bench store_memory`.
//!
//! Opens a real on-disk store (temp dir, default options: 2 h memory window), writes
//! 1,000,000 distinct series the way an ingest would (measurement `cpu`, tags `cpu`, `dc`,
//! `host`, 5 fields a point, 3 points per series 10 s apart, 5,000-point batches), and reports
//! (RSS after - RSS before) / series from `/proc/self/statm`, also after `malloc_trim` (what
//! the allocator keeps of freed request buffers is not the store's).
//!
//! `FIELDS=1 cargo bench --bench store_memory` writes one field per point instead (1 M tag
//! sets: the worst case for the per-tag-set part of the catalog).

use std::time::Instant;

use tocsin::ingest::lineproto::{FieldValue, Point};
use tocsin::store::{Store, StoreOptions};

const SERIES: usize = 1_000_000;
const CPUS: usize = 4;
const POINTS_PER_SERIES: usize = 3;
const BATCH: usize = 5_000;
const INTERVAL_NS: i64 = 10_000_000_000;
const FIELD_NAMES: [&str; 5] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_iowait",
    "usage_total",
];

/// Resident set size of this process in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("resident pages in statm");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page as u64
}

/// Gives freed heap back to the OS (glibc), so RSS shows what is still allocated.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() {
    let fields: usize = std::env::var("FIELDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=FIELD_NAMES.len()).contains(n))
        .unwrap_or(FIELD_NAMES.len());
    let tagsets = SERIES / fields;
    let hosts = tagsets / CPUS;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    // recent points, so they all stay in the memory window
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let t0 = now - 10 * 60 * 1_000_000_000;
    trim();
    let before = rss();
    let start = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 100.0
    };
    let mut batch: Vec<Point> = Vec::with_capacity(BATCH);
    for step in 0..POINTS_PER_SERIES {
        let time = t0 + step as i64 * INTERVAL_NS;
        for h in 0..hosts {
            let host = format!("host-{h:06}");
            let dc = format!("dc{}", h % 8);
            for c in 0..CPUS {
                batch.push(Point {
                    measurement: "cpu".into(),
                    tags: vec![
                        ("cpu".into(), format!("cpu{c}")),
                        ("dc".into(), dc.clone()),
                        ("host".into(), host.clone()),
                    ],
                    fields: FIELD_NAMES[..fields]
                        .iter()
                        .map(|f| (f.to_string(), FieldValue::Float(rnd())))
                        .collect(),
                    time,
                });
                if batch.len() == BATCH {
                    store.write(&batch).expect("write");
                    batch.clear();
                }
            }
        }
    }
    if !batch.is_empty() {
        store.write(&batch).expect("write");
    }
    drop(batch);
    // a compaction the last writes started runs in the background; its working memory is
    // transient, not the series'
    store.wait_for_compaction();
    let secs = start.elapsed().as_secs_f64();
    let series = store.series_count();
    assert_eq!(series, hosts * CPUS * fields, "every series created");
    let after = rss();
    trim();
    let trimmed = rss();
    let per = |rss: u64| rss.saturating_sub(before) as f64 / series as f64;
    println!(
        "tocsin store memory: {series} series ({} tag sets x {fields} fields: cpu, tags cpu/dc/host), \
         {} samples in memory, written in {secs:.1} s",
        hosts * CPUS,
        store.sample_count(),
    );
    println!(
        "RSS before {:.1} MiB, after {:.1} MiB, after malloc_trim {:.1} MiB",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        trimmed as f64 / 1048576.0
    );
    println!(
        "resident per series: {:.0} bytes ({:.0} bytes after malloc_trim)",
        per(after),
        per(trimmed)
    );
    println!(
        "for context (not measured here): Prometheus' head block needs a few KiB per active series"
    );
}
