//! Durable HTTP ingest, tocsin against VictoriaMetrics: `cargo bench --bench ingest_vs_vm`.
//!
//! Starts the release `tocsin serve` (host input off, a temporary data directory, loopback)
//! and then `victoria-metrics` (temporary `-storageDataPath`, `-retentionPeriod=100y`), one at
//! a time, and drives each with `wrk -t2 -c8` and `tools/bench/write.lua`: `POST
//! /write?precision=s` (InfluxDB v1 line protocol), 5,000 points a request (`cpu`, 3 tags, 5
//! float fields; 1,000 hosts × 5 cpus, so 25,000 series), every request with its own timestamp
//! (10 s apart, as if the 1,000 hosts reported every 10 s), so nothing is a duplicate. Each
//! server gets a warm-up run (creating the series) and then the measured run. Prints points/s
//! for both, the ratio, whether every tocsin answer was 2xx, and tocsin's RSS over the run.
//!
//! A tocsin 2xx means the points are fsynced (SQLite WAL, `synchronous = FULL`, group
//! commit); VictoriaMetrics acknowledges before its data reaches the disk (it does not fsync
//! writes), so the comparison favours it.
//!
//! Environment:
//! - `INGEST_BENCH_SECS` (default 10): length of each measured run; 60 for the memory claim.
//! - `INGEST_BENCH_ROUNDS` (default 1): rounds of tocsin then VictoriaMetrics; medians shown.
//! - `INGEST_BENCH_ONLY` (`tocsin` or `vm`): run one side only.
//! - `INGEST_BENCH_PERF=<file>`: `perf record -g` the tocsin server during its measured runs
//!   (the figures are then lower by perf's overhead).
//! - `INGEST_BENCH_TOCSIN`: another tocsin binary to measure (default the one cargo built), for
//!   A/B comparisons of two builds on the same machine.
//! - `VICTORIA_METRICS`: the binary (default `victoria-metrics` on `PATH`, else
//!   `/usr/bin/victoria-metrics`); without one the VictoriaMetrics side is skipped.
//!
//! Needs `wrk` on `PATH` (Debian package `wrk`); without it the bench says so and exits.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POINTS: usize = 5_000;
const FIELDS: usize = 5;
/// Bodies with different values, cycled through by each wrk thread.
const TEMPLATES: usize = 8;
/// Seconds between the timestamps of consecutive requests.
const STEP_S: i64 = 10;
const WRK_THREADS: usize = 2;
const WRK_CONNECTIONS: usize = 8;
const WARMUP_SECS: u64 = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        Err(_) => default,
    }
}

/// The points of one request without timestamps (wrk appends one per request).
fn template(k: usize) -> String {
    let mut s = String::with_capacity(POINTS * 120);
    for i in 0..POINTS {
        let host = i % 1000;
        let cpu = i / 1000;
        // values move between templates like real usage does
        let u = ((i * 7 + k * 13) % 97) as f64 * 0.7;
        writeln!(
            s,
            "cpu,host=host-{host:04},cpu=cpu{cpu},dc=dc{} usage_user={u:.1},usage_system={},usage_idle={:.1},usage_iowait=0.5,usage_total={:.1}",
            host % 3,
            (i + k) % 13,
            90.0 - u,
            10.0 + u,
        )
        .unwrap();
    }
    s
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Server {
    proc: Proc,
    url: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_ready(server: &mut Server, path: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{}{path}", server.url)).call().is_err() {
        if let Ok(Some(status)) = server.proc.0.try_wait() {
            panic!("{name} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_tocsin() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("tocsin.toml");
    // retention past the bench's timestamps (days in the past), so nothing is dropped
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[host_input]\nenabled = false\n[retention]\nmetrics = \"30d\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    let bin = std::env::var("INGEST_BENCH_TOCSIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tocsin").to_string());
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--monitors")
        .arg(dir.path().join("monitors"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tocsin serve");
    let mut s = Server {
        proc: Proc(child),
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_ready(&mut s, "/healthz", "tocsin");
    s
}

fn start_vm(bin: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!(
            "-storageDataPath={}",
            dir.path().join("vm").display()
        ))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics");
    let mut s = Server {
        proc: Proc(child),
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_ready(&mut s, "/health", "victoria-metrics");
    s
}

fn find_vm() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("VICTORIA_METRICS") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("victoria-metrics"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/victoria-metrics")).filter(|p| p.is_file()))
}

/// What write.lua reports.
#[derive(Debug, Default, Clone)]
struct WrkResult {
    requests: u64,
    non2xx: u64,
    errors: u64,
    duration_us: u64,
    max_n: i64,
    p50_ms: f64,
    p99_ms: f64,
    status: u64,
}

impl WrkResult {
    fn points_per_s(&self) -> f64 {
        (self.requests - self.non2xx) as f64 * POINTS as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// Runs wrk against `url` for `secs`, timestamps starting at `*base` (advanced past the run).
fn run_wrk(url: &str, secs: u64, bodies: &Path, base: &mut i64) -> WrkResult {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/bench/write.lua");
    let out = Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "30s", "-s", script])
        .arg(format!("{url}/write?precision=s"))
        .arg("--")
        .arg(bodies)
        .arg(TEMPLATES.to_string())
        .arg(base.to_string())
        .arg(STEP_S.to_string())
        .arg(WRK_THREADS.to_string())
        .output()
        .expect("run wrk");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT ")) else {
        panic!(
            "wrk gave no RESULT line ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut r = WrkResult::default();
    for kv in line["RESULT ".len()..].split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "requests" => r.requests = v.parse().unwrap(),
            "non2xx" => r.non2xx = v.parse().unwrap(),
            "errors" => r.errors = v.parse().unwrap(),
            "duration_us" => r.duration_us = v.parse().unwrap(),
            "max_n" => r.max_n = v.parse().unwrap(),
            "p50_ms" => r.p50_ms = v.parse().unwrap(),
            "p99_ms" => r.p99_ms = v.parse().unwrap(),
            "status" => r.status = v.parse().unwrap(),
            _ => {}
        }
    }
    *base += (r.max_n + 1) * WRK_THREADS as i64 * STEP_S;
    r
}

fn rss_kb(pid: u32) -> Option<u64> {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Samples a process's RSS every 250 ms until stopped: (seconds since start, kB).
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    samples.push((t0.elapsed().as_secs_f64(), kb));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// RSS at 0, 25, 50, 75 and 100 % of the run, and the peak, in MB.
fn rss_profile(samples: &[(f64, u64)]) -> String {
    if samples.is_empty() {
        return "no RSS samples".into();
    }
    let end = samples.last().unwrap().0;
    let mut s = String::new();
    for pct in [0, 25, 50, 75, 100] {
        let t = end * pct as f64 / 100.0;
        let (at, kb) = samples
            .iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .unwrap();
        write!(s, "{at:.0}s {:.0}, ", *kb as f64 / 1024.0).unwrap();
    }
    let peak = samples.iter().map(|s| s.1).max().unwrap();
    write!(s, "peak {:.0} MB", peak as f64 / 1024.0).unwrap();
    s
}

struct Measured {
    wrk: WrkResult,
    /// server CPU seconds during the measured run
    cpu_s: f64,
    rss_before_kb: u64,
    rss: Vec<(f64, u64)>,
}

/// Warm-up run, then the measured run with RSS sampling (and perf when asked).
fn measure(
    server: &Server,
    secs: u64,
    bodies: &Path,
    base: &mut i64,
    perf: Option<&str>,
) -> Measured {
    let pid = server.proc.0.id();
    let warm = run_wrk(&server.url, WARMUP_SECS, bodies, base);
    assert!(warm.requests > 0, "warm-up stored nothing: {warm:?}");
    let rss_before_kb = rss_kb(pid).unwrap_or(0);
    let sampler = RssSampler::start(pid);
    let perf = perf.map(|out| {
        Proc(
            Command::new("perf")
                .args(["record", "-g", "-o", out, "-p"])
                .arg(pid.to_string())
                .args(["--", "sleep"])
                .arg(secs.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run perf"),
        )
    });
    let cpu0 = cpu_secs(pid);
    let wrk = run_wrk(&server.url, secs, bodies, base);
    let cpu_s = cpu_secs(pid) - cpu0;
    if let Some(mut p) = perf {
        let _ = p.0.wait();
    }
    Measured {
        wrk,
        cpu_s,
        rss_before_kb,
        rss: sampler.finish(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, m: &Measured) {
    let w = &m.wrk;
    println!(
        "  {name:<17} {:>9.0} points/s ({:.2} M samples/s), {} requests, {} non-2xx{}, {} socket errors, latency p50 {:.0} ms p99 {:.0} ms",
        w.points_per_s(),
        w.points_per_s() * FIELDS as f64 / 1e6,
        w.requests,
        w.non2xx,
        if w.non2xx > 0 {
            format!(" (last {})", w.status)
        } else {
            String::new()
        },
        w.errors,
        w.p50_ms,
        w.p99_ms,
    );
    println!(
        "  {:<17} server CPU {:.2} cores, {:.2} µs a point; RSS MB before the run {:.0}; during: {}",
        "",
        m.cpu_s / (w.duration_us as f64 / 1e6),
        m.cpu_s * 1e6 / ((w.requests - w.non2xx).max(1) as f64 * POINTS as f64),
        m.rss_before_kb as f64 / 1024.0,
        rss_profile(&m.rss)
    );
}

fn main() {
    let secs: u64 = env_or("INGEST_BENCH_SECS", 10);
    let rounds: usize = env_or::<usize>("INGEST_BENCH_ROUNDS", 1).max(1);
    let only = std::env::var("INGEST_BENCH_ONLY").ok();
    let perf = std::env::var("INGEST_BENCH_PERF").ok();
    if Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        println!("ingest_vs_vm: skipped, `wrk` is not on PATH (Debian: apt-get install wrk)");
        return;
    }
    let run_tocsin = only.as_deref() != Some("vm");
    let vm = if only.as_deref() == Some("tocsin") {
        None
    } else {
        let vm = find_vm();
        if vm.is_none() {
            println!(
                "ingest_vs_vm: victoria-metrics not found (set VICTORIA_METRICS or put it on PATH); measuring tocsin only"
            );
        }
        vm
    };

    let work = tempfile::tempdir().unwrap();
    let bodies = work.path().join("bodies");
    std::fs::create_dir_all(&bodies).unwrap();
    for k in 0..TEMPLATES {
        std::fs::write(bodies.join(format!("body{k}.lp")), template(k)).unwrap();
    }
    // Timestamps start six days back, so a long run stays in the past (VictoriaMetrics refuses
    // points far in the future) and within tocsin's retention.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut base = (now - 6 * 86_400) / 86_400 * 86_400;

    println!(
        "ingest_vs_vm: POST /write?precision=s, {POINTS} points ({FIELDS} fields, 3 tags) a request, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{secs}s after a {WARMUP_SECS} s warm-up, {rounds} round(s)"
    );
    let mut tocsin_rates = Vec::new();
    let mut vm_rates = Vec::new();
    let mut tocsin_failed = false;
    for round in 0..rounds {
        println!("round {}", round + 1);
        if run_tocsin {
            let server = start_tocsin();
            let m = measure(&server, secs, &bodies, &mut base, perf.as_deref());
            drop(server);
            report("tocsin (fsync)", &m);
            tocsin_failed |= m.wrk.non2xx > 0;
            tocsin_rates.push(m.wrk.points_per_s());
        }
        if let Some(bin) = &vm {
            let server = start_vm(bin);
            let m = measure(&server, secs, &bodies, &mut base, None);
            drop(server);
            report("victoria-metrics", &m);
            vm_rates.push(m.wrk.points_per_s());
        }
    }
    let t = (!tocsin_rates.is_empty()).then(|| median(tocsin_rates));
    let v = (!vm_rates.is_empty()).then(|| median(vm_rates));
    println!("median over {rounds} round(s):");
    if let Some(t) = t {
        println!("  tocsin            {t:>9.0} points/s (every 2xx fsynced)");
    }
    if let Some(v) = v {
        println!("  victoria-metrics  {v:>9.0} points/s (no fsync)");
    }
    if let (Some(t), Some(v)) = (t, v) {
        println!("  ratio tocsin / VictoriaMetrics: {:.2}", t / v);
    }
    if tocsin_failed {
        println!("FAILED: tocsin answered some writes with a non-2xx status");
        std::process::exit(1);
    }
}
