//! Line-protocol parsing throughput: parses ~100k realistic lines several times and prints
//! the median in points/s. Run with `cargo bench --bench lineproto`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tocsin::ingest::lineproto::{parse, Precision};

const LINES: usize = 100_000;
const RUNS: usize = 9;

/// A small deterministic generator (no dependencies).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn float(&mut self, scale: f64) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 * scale
    }
}

/// Telegraf/DataKit-like metrics: cpu, mem, disk, net, http and a few log-ish string points.
fn body() -> Vec<u8> {
    use std::fmt::Write;
    let mut rng = Lcg(42);
    let mut out = String::with_capacity(LINES * 160);
    let t0: i64 = 1_700_000_000_000_000_000;
    for i in 0..LINES {
        let host = format!("web-{:02}", rng.below(50));
        let ts = t0 + i as i64 * 10_000_000;
        match rng.below(10) {
            0..=2 => writeln!(
                out,
                "cpu,cpu=cpu{},host={host},region=eu-west usage_user={:.2},usage_system={:.2},usage_idle={:.2},usage_iowait={:.3} {ts}",
                rng.below(16),
                rng.float(100.0),
                rng.float(30.0),
                rng.float(100.0),
                rng.float(5.0)
            ),
            3 => writeln!(
                out,
                "mem,host={host} used={}i,available={}i,used_percent={:.4},buffered={}i {ts}",
                rng.next() % 17_179_869_184,
                rng.next() % 17_179_869_184,
                rng.float(100.0),
                rng.next() % 1_000_000_000
            ),
            4 => writeln!(
                out,
                "disk,device=nvme0n1p{},fstype=ext4,host={host},mode=rw,path=/var/lib/data free={}i,total={}i,used={}i,used_percent={:.3},inodes_free={}u {ts}",
                rng.below(4),
                rng.next(),
                rng.next(),
                rng.next(),
                rng.float(100.0),
                rng.next()
            ),
            5 => writeln!(
                out,
                "net,host={host},interface=eth{} bytes_recv={}i,bytes_sent={}i,packets_recv={}i,packets_sent={}i,err_in=0i,err_out=0i {ts}",
                rng.below(2),
                rng.next(),
                rng.next(),
                rng.next() % 100_000_000,
                rng.next() % 100_000_000
            ),
            6..=8 => writeln!(
                out,
                "http_requests,host={host},method={},route=/api/v1/items,status={} count={}i,latency_ms={:.3},error={} {ts}",
                ["GET", "POST", "PUT"][rng.below(3) as usize],
                [200, 201, 404, 500][rng.below(4) as usize],
                rng.below(1000),
                rng.float(250.0),
                rng.below(20) == 0
            ),
            _ => writeln!(
                out,
                "app_log,host={host},service=checkout\\ api,level=warn message=\"upstream \\\"payments\\\" timed out after {}ms, retrying\",attempt={}i {ts}",
                rng.below(5000),
                rng.below(5)
            ),
        }
        .unwrap();
    }
    out.into_bytes()
}

fn main() {
    let input = body();
    // Warm up and check.
    let points = parse(&input, Precision::Nanos, 0).expect("bench input parses");
    assert_eq!(points.len(), LINES);
    drop(points);

    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let points = parse(black_box(&input), Precision::Nanos, 0).unwrap();
            let elapsed = start.elapsed();
            black_box(points);
            elapsed
        })
        .collect();
    times.sort();
    let median = times[RUNS / 2];
    let secs = median.as_secs_f64();
    println!(
        "lineproto parse: {LINES} lines, {:.1} MB, median of {RUNS} runs {:.1} ms: {:.0} points/s, {:.0} MB/s (min {:.1} ms, max {:.1} ms)",
        input.len() as f64 / 1e6,
        secs * 1e3,
        LINES as f64 / secs,
        input.len() as f64 / 1e6 / secs,
        times[0].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
    );
}
