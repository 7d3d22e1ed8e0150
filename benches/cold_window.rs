//! Cold window reads (older than the memory floor, answered from SQLite):
//! `cargo bench --bench cold_window`.
//!
//! A real on-disk store (temp dir) with 10,000 series (`cpu` `usage_total`, tags `cpu`, `dc`,
//! `host`) over 7 days at one point every 5 minutes (20 M samples; one a minute would
//! be 100 M, too slow to set up for a bench), written in time order in 5,000-point batches and
//! then compacted into per-series blocks. The memory window is one hour, so a 7-day window is
//! read from the day tables. Prints the median of several runs of `Store::window` for:
//! the 7-day window over all 10,000 series (`by = ["host"]`), over 1,000 of them (a `dc`
//! filter), and over one series (a `host` filter), in wall time and in CPU time of the
//! querying thread (steadier on a shared machine); plus a checksum of each answer, so runs on
//! different code can be compared.

use std::time::Instant;

use tocsin::ingest::lineproto::{FieldValue, Point};
use tocsin::store::query::{Filter, Group, WindowQuery};
use tocsin::store::{Store, StoreOptions};

const HOSTS: usize = 10_000;
const DCS: usize = 10;
const STEP_NS: i64 = 5 * 60 * 1_000_000_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;
const BATCH: usize = 5_000;
const RUNS: usize = 5;

/// CPU time (user + system) of this thread, in seconds: less disturbed than wall time
/// when other work shares the cores.
fn thread_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and has no other effect.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (groups, points, sum of values): equal answers give equal checksums.
fn checksum(groups: &[Group]) -> (usize, usize, f64) {
    let points = groups.iter().map(|g| g.points.len()).sum();
    let sum = groups
        .iter()
        .flat_map(|g| g.points.iter())
        .map(|p| p.1 + (p.0 % 1_000_000_007) as f64 * 1e-9)
        .sum();
    (groups.len(), points, sum)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        memory_window_ns: 3_600 * 1_000_000_000,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).expect("open");
    // fixed times (the 7 days before 2023-11-14), so the checksums of runs compare
    let end = 19_675 * DAY_NS;
    let start = end - 7 * DAY_NS;

    let setup = Instant::now();
    let hosts: Vec<String> = (0..HOSTS).map(|h| format!("host-{h:05}")).collect();
    let dcs: Vec<String> = (0..DCS).map(|d| format!("dc{d}")).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 100.0
    };
    let mut batch: Vec<Point> = Vec::with_capacity(BATCH);
    let mut samples = 0;
    let mut t = start;
    while t < end {
        for (h, host) in hosts.iter().enumerate() {
            batch.push(Point {
                measurement: "cpu".into(),
                tags: vec![
                    ("cpu".into(), "cpu-total".into()),
                    ("dc".into(), dcs[h % DCS].clone()),
                    ("host".into(), host.clone()),
                ],
                fields: vec![("usage_total".into(), FieldValue::Float(rnd()))],
                time: t,
            });
            if batch.len() == BATCH {
                samples += store.write(&batch).expect("write");
                batch.clear();
            }
        }
        t += STEP_NS;
    }
    if !batch.is_empty() {
        samples += store.write(&batch).expect("write");
    }
    store.compact().expect("compact");
    println!(
        "tocsin cold window: {} series x 7 days, one point every {} min ({samples} samples, \
         compacted), memory window 1 h; set up in {:.1} s; median of {RUNS} runs",
        store.series_count(),
        STEP_NS / 60_000_000_000,
        setup.elapsed().as_secs_f64()
    );
    assert!(
        store.memory_floor() > start,
        "the window starts below the memory floor"
    );

    let query = |filters: &[(&str, &str)]| WindowQuery {
        measurement: "cpu".into(),
        field: "usage_total".into(),
        by: vec!["host".into()],
        filters: filters
            .iter()
            .map(|(t, v)| Filter::parse(t, v).expect("filter"))
            .collect(),
        start_ns: start,
        end_ns: end,
    };
    let cases: [(&str, WindowQuery); 3] = [
        ("7-day window, all 10,000 series", query(&[])),
        (
            "7-day window, 1,000 series (dc = dc3)",
            query(&[("dc", "dc3")]),
        ),
        (
            "7-day window, 1 series (host = host-04242)",
            query(&[("host", "host-04242")]),
        ),
    ];
    for (name, q) in &cases {
        let (mut times, mut cpu) = (Vec::new(), Vec::new());
        let mut sum = None;
        for _ in 0..RUNS {
            let (t, c) = (Instant::now(), thread_cpu());
            let groups = store.window(q).expect("window");
            times.push(t.elapsed().as_secs_f64());
            cpu.push(thread_cpu() - c);
            let c = checksum(&groups);
            assert!(sum.is_none_or(|s| s == c), "runs agree");
            sum = Some(c);
        }
        let (groups, points, total) = sum.expect("runs");
        println!(
            "{name:<46} {:>8.1} ms (CPU {:>7.1} ms)  ({groups} groups, {points} points, checksum {total:.6})",
            median(times) * 1e3,
            median(cpu) * 1e3
        );
    }
}
