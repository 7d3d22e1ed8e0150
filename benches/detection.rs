//! Detection at scale, with the peer beside it: `cargo bench --bench detection`.
//!
//! Sections (all by default; pick some with `BENCH=backtest,eval,live,lag`):
//! - `backtest`: a day of 1,000 hosts at one point a minute (1.44 M points), one `by = host`
//!   threshold monitor every minute: `tocsin replay` (wall time, peak RSS) against
//!   VictoriaMetrics ingesting the same file plus `vmalert -replay` of
//!   `avg_over_time(cpu_usage[1m]) > 98` (when `victoria-metrics` and `vmalert` are on PATH:
//!   Debian's `victoria-metrics` package), median of `BENCH_RUNS` (default 3) each;
//! - `eval`: 100 threshold monitors (critical/warning rules) × 1,000 hosts × 60 ticks (6 M
//!   object-checks) in `tocsin replay`, object-checks/s;
//! - `live`: the same 100 monitors in `tocsin serve` over the same hosts, each run through
//!   `POST /api/v1/monitors/{id}/run` by two clients (the live check path: durable state and
//!   events), object-checks/s;
//! - `lag`: 1,000 monitors over 1,000 hosts on a one-minute crontab in `tocsin serve`: after a
//!   first tick (which writes a million new objects' states) and a restart, for
//!   `BENCH_LAG_MINUTES` (default 2) ticks: the quantiles of `tocsin_schedule_lag_seconds`
//!   (how late checks started) and `tocsin_check_finish_lag_seconds` (how late they finished)
//!   (`BENCH_LAG_HOSTS` changes the number of hosts).
//!
//! `BENCH_TOCSIN=<binary>` measures another build (A/B comparisons on one machine).
//!
//! Everything runs on loopback with temporary directories, and every server is stopped at
//! the end.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tocsin binary measured: `BENCH_TOCSIN` (another build, for A/B runs on one machine),
/// else the one cargo built.
fn tocsin() -> String {
    std::env::var("BENCH_TOCSIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tocsin").to_string())
}
/// 2024-05-01T00:00:00Z
const DAY0: i64 = 1_714_521_600;

/// A small deterministic generator (xorshift64*), so every run sees the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `hosts` hosts at one point a minute (second 30) for `minutes` minutes from `t0`: each host
/// around its own level in 20..80 (±10), with a 0.5 % chance of a 99 spike.
fn write_cpu(path: &Path, hosts: usize, t0: i64, minutes: i64) {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let base: Vec<f64> = (0..hosts).map(|_| 20.0 + 60.0 * r.next()).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("data file"));
    for m in 0..minutes {
        let ts = t0 + m * 60 + 30;
        for (h, b) in base.iter().enumerate() {
            let v = if r.next() < 0.005 {
                99.0
            } else {
                b + 20.0 * r.next() - 10.0
            };
            writeln!(out, "cpu,host=h{h:04} usage={v:.2} {ts}").expect("write data");
        }
    }
    out.flush().expect("flush data");
}

/// `n` threshold monitors on `cpu.usage` by host, with thresholds spread over 90..99 and
/// 80..89 so they do not all fire together.
fn write_monitors(dir: &Path, n: usize, every: &str, interval: &str) {
    std::fs::create_dir_all(dir).expect("monitors dir");
    for i in 0..n {
        let text = format!(
            "id = \"cpu-{i:04}\"\n{every}\ninterval = \"{interval}\"\n\
             [query]\nmeasurement = \"cpu\"\nfield = \"usage\"\nagg = \"avg\"\nby = [\"host\"]\n\
             [rules]\ncritical = \"Result > {}\"\nwarning = \"Result > {}\"\n\
             [template]\ntitle = \"{{{{ host }}}}: CPU {{{{ Result }}}}\"\n",
            90 + i % 10,
            80 + i % 10
        );
        std::fs::write(dir.join(format!("cpu-{i:04}.toml")), text).expect("monitor file");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs a command to its end; returns (wall seconds, peak RSS in MB).
fn timed(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let child = cmd.spawn().expect("command starts");
    let (status, rss_kb) = wait_rusage(child);
    assert!(status == 0, "{cmd:?} exited with {status}");
    (start.elapsed().as_secs_f64(), rss_kb as f64 / 1024.0)
}

/// Waits for a child and returns its exit status and peak resident set (KB).
fn wait_rusage(child: Child) -> (i32, i64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (Child::wait was never called).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child);
    (libc::WEXITSTATUS(status), ru.ru_maxrss)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// A server process, killed when dropped.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_ready(url: &str, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ureq::get(url)
            .timeout(Duration::from_secs(1))
            .call()
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} not ready within {timeout:?}");
}

fn sha256_short(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("replay output");
    hex::encode(sha2::Sha256::digest(&bytes))[..16].to_string()
}

/// `tocsin replay` of `mons` over `data` from 2024-05-01T00:00:00Z to `to`, events to `out`;
/// (wall seconds, peak RSS in MB).
fn replay(mons: &Path, data: &Path, to: &str, out: &Path) -> (f64, f64) {
    timed(
        Command::new(tocsin())
            .args(["replay", "--monitors"])
            .arg(mons)
            .arg("--metrics")
            .arg(data)
            .args([
                "--precision",
                "s",
                "--from",
                "2024-05-01T00:00:00Z",
                "--to",
                to,
            ])
            .stdout(std::fs::File::create(out).expect("replay output file")),
    )
}

fn backtest(tmp: &Path, runs: usize) {
    println!("== backtest: a day, 1,000 hosts, one point a minute (1.44 M points), one by-host threshold monitor every minute");
    let data = tmp.join("day.lp");
    write_cpu(&data, 1000, DAY0, 1440);
    let mons = tmp.join("day-monitors");
    std::fs::create_dir_all(&mons).unwrap();
    std::fs::write(
        mons.join("cpu-hot.toml"),
        "id = \"cpu-hot\"\nevery = \"1m\"\ninterval = \"1m\"\n[query]\nmeasurement = \"cpu\"\n\
         field = \"usage\"\nagg = \"avg\"\nby = [\"host\"]\n[rules]\ncritical = \"Result > 98\"\n\
         [template]\ntitle = \"{{ host }} hot: {{ Result }}\"\n",
    )
    .unwrap();
    let out = tmp.join("day.jsonl");
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let (secs, mb) = replay(&mons, &data, "2024-05-01T23:59:00Z", &out);
        times.push(secs);
        rss.push(mb);
    }
    let events = std::fs::read_to_string(&out).unwrap().lines().count();
    let tocsin = median(times);
    println!(
        "tocsin replay: {tocsin:.2} s (median of {runs}), peak RSS {:.0} MB, {events} events, sha256 {} (events name the monitor file: compare runs with the same BENCH_DIR)",
        median(rss),
        sha256_short(&out)
    );
    if !(on_path("victoria-metrics") && on_path("vmalert")) {
        println!("VictoriaMetrics + vmalert: skipped (victoria-metrics or vmalert not on PATH; apt-get install victoria-metrics)");
        return;
    }
    let rules = tmp.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: bench\n    interval: 1m\n    rules:\n      - alert: CpuHot\n        expr: avg_over_time(cpu_usage[1m]) > 98\n",
    )
    .unwrap();
    let body = std::fs::read(&data).unwrap();
    let mut vm_times = Vec::new();
    let mut ingest_times = Vec::new();
    let mut alerts = String::new();
    for run in 0..runs {
        let port = free_port();
        let storage = tmp.join(format!("vm-{run}"));
        let base = format!("http://127.0.0.1:{port}");
        let _vm = Server(
            Command::new("victoria-metrics")
                .arg(format!("-storageDataPath={}", storage.display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .args(["-retentionPeriod=100y", "-search.disableCache"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("victoria-metrics starts"),
        );
        wait_ready(&format!("{base}/health"), Duration::from_secs(20));
        let start = Instant::now();
        ureq::post(&format!("{base}/write?precision=s"))
            .send_bytes(&body)
            .expect("VictoriaMetrics accepts the day");
        ureq::get(&format!("{base}/internal/force_flush"))
            .call()
            .expect("force_flush");
        let ingested = start.elapsed().as_secs_f64();
        let replay = Command::new("vmalert")
            .arg(format!("-rule={}", rules.display()))
            .arg(format!("-datasource.url={base}"))
            .arg(format!("-remoteWrite.url={base}"))
            .args([
                "-replay.timeFrom=2024-05-01T00:00:00Z",
                "-replay.timeTo=2024-05-01T23:59:00Z",
            ])
            .output()
            .expect("vmalert runs");
        assert!(
            replay.status.success(),
            "vmalert -replay failed: {}",
            String::from_utf8_lossy(&replay.stderr)
        );
        vm_times.push(start.elapsed().as_secs_f64());
        ingest_times.push(ingested);
        let text = String::from_utf8_lossy(&replay.stdout).to_string()
            + &String::from_utf8_lossy(&replay.stderr);
        if let Some(l) = text.lines().rev().find(|l| l.contains("replay finished")) {
            alerts = l
                .split("replay finished!")
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string();
        }
    }
    let vm = median(vm_times);
    println!(
        "VictoriaMetrics ingest + vmalert -replay: {vm:.2} s (median of {runs}; ingest {:.2} s; vmalert: {alerts})",
        median(ingest_times)
    );
    println!(
        "ratio: tocsin is {:.2}x the speed of VictoriaMetrics + vmalert",
        vm / tocsin
    );
}

fn eval(tmp: &Path, runs: usize) {
    println!("== eval: 100 threshold monitors x 1,000 hosts x 60 ticks (6 M object-checks), tocsin replay");
    let data = tmp.join("hour.lp");
    write_cpu(&data, 1000, DAY0 - 300, 65);
    let mons = tmp.join("eval-monitors");
    write_monitors(&mons, 100, "every = \"1m\"", "5m");
    let mut rates = Vec::new();
    let mut rss = Vec::new();
    let out = tmp.join("eval.jsonl");
    for _ in 0..runs {
        let (secs, mb) = replay(&mons, &data, "2024-05-01T00:59:00Z", &out);
        rates.push(6_000_000.0 / secs);
        rss.push(mb);
    }
    let events = std::fs::read_to_string(&out).unwrap().lines().count();
    println!(
        "tocsin replay: {:.0} object-checks/s (median of {runs}, whole run incl. loading), peak RSS {:.0} MB, {events} events",
        median(rates),
        median(rss)
    );
}

/// Starts `tocsin serve` on `dir` with `monitors`; returns it and its base URL.
fn serve(dir: &Path, monitors: &Path) -> (Server, String) {
    let port = free_port();
    let config = dir.join("tocsin.toml");
    std::fs::write(&config, "[host_input]\nenabled = false\n").unwrap();
    let child = Command::new(tocsin())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--monitors")
        .arg(monitors)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tocsin serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let server = Server(child);
    wait_ready(&format!("{base}/healthz"), Duration::from_secs(60));
    (server, base)
}

/// Writes `minutes` of the hosts' points ending now into a stopped server's data dir.
fn preload(dir: &Path, hosts: usize, minutes: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t0 = now - minutes * 60;
    let data = dir.join("recent.lp");
    write_cpu(&data, hosts, t0, minutes);
    let st = Command::new(tocsin())
        .arg("write")
        .arg(&data)
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--precision", "s"])
        .stdout(Stdio::null())
        .status()
        .expect("tocsin write runs");
    assert!(st.success(), "tocsin write failed");
    now
}

fn live(tmp: &Path, runs: usize) {
    println!("== live: 100 threshold monitors x 1,000 hosts in tocsin serve, run through the API by 2 clients");
    let dir = tmp.join("live");
    let mons = dir.join("monitors");
    write_monitors(&mons, 100, "manual = true", "5m");
    preload(&dir, 1000, 30);
    let (_server, base) = serve(&dir, &mons);
    let mut rates = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let objects: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|c| {
                    let base = &base;
                    s.spawn(move || {
                        let mut n = 0;
                        for i in (c..100).step_by(2) {
                            let v: serde_json::Value =
                                ureq::post(&format!("{base}/api/v1/monitors/cpu-{i:04}/run"))
                                    .call()
                                    .expect("run answers")
                                    .into_json()
                                    .expect("run report");
                            n += v["objects"].as_u64().expect("objects in the run report");
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(objects, 100_000, "every monitor evaluates its 1,000 hosts");
        rates.push(objects as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "tocsin serve: {:.0} object-checks/s (median of {runs} rounds of 100 runs, durable events and state)",
        median(rates)
    );
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Checks run so far, from `/metrics`.
fn checks_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("tocsin_checks_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the server at `base` has run `n` checks.
fn wait_checks(base: &str, n: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let t = ureq::get(&format!("{base}/metrics"))
            .call()
            .expect("metrics")
            .into_string()
            .expect("metrics text");
        if checks_total(&t) >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} checks not run within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lag(tmp: &Path) {
    let minutes: u64 = std::env::var("BENCH_LAG_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let hosts: usize = std::env::var("BENCH_LAG_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!("== lag: 1,000 monitors x {hosts} hosts on a 1-minute crontab in tocsin serve, {minutes} tick(s)");
    let dir = tmp.join(format!("lag-{hosts}"));
    let mons = dir.join("monitors");
    write_monitors(&mons, 1000, "every = \"1m\"", "5m");
    preload(&dir, hosts, 30);
    // The first tick meets a million new objects and writes all their states once; the
    // server is restarted after it, so the figures are those of the ticks that follow.
    let warm = serve(&dir, &mons);
    wait_checks(&warm.1, 1000.0, Duration::from_secs(180));
    drop(warm);
    let (_server, base) = serve(&dir, &mons);
    let scrape = || {
        ureq::get(&format!("{base}/metrics"))
            .call()
            .expect("metrics")
            .into_string()
            .expect("metrics text")
    };
    let count = |t: &str| metric(t, "tocsin_schedule_lag_seconds_count").unwrap_or(0.0);
    let checks = |t: &str| checks_total(t);
    let deadline = Instant::now() + Duration::from_secs(70 * minutes + 30);
    let mut ticks_seen = 0;
    while ticks_seen < minutes && Instant::now() < deadline {
        // Wait for all 1,000 checks of the next tick to finish. Rendering /metrics with a
        // thousand monitors costs the server some milliseconds of CPU, so it is read rarely
        // (it would otherwise compete with the checks it measures); how late the checks
        // finished comes from the server's own summary, not from when the bench looked.
        let target = ((checks(&scrape()) / 1000.0).floor() + 1.0) * 1000.0;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if checks(&scrape()) >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the ticks did not finish in time"
            );
        }
        ticks_seen += 1;
    }
    let t = scrape();
    let q = |name: &str, p: &str| {
        metric(&t, &format!("{name}{{quantile=\"{p}\"}}")).unwrap_or(f64::NAN) * 1000.0
    };
    let (lag, fin) = (
        "tocsin_schedule_lag_seconds",
        "tocsin_check_finish_lag_seconds",
    );
    println!(
        "scheduling lag over {} checks: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms; finished after the tick: p50 {:.1} ms, p99 {:.1} ms",
        count(&t),
        q(lag, "0.5"),
        q(lag, "0.9"),
        q(lag, "0.99"),
        q(fin, "0.5"),
        q(fin, "0.99"),
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else to read from the arguments.
    let which = std::env::var("BENCH").unwrap_or_else(|_| "backtest,eval,live,lag".into());
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // BENCH_DIR keeps the generated data and outputs (e.g. to compare builds); by default a
    // temporary directory holds them.
    let scratch = tempfile::tempdir().expect("temp dir");
    let tmp: PathBuf = match std::env::var_os("BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => scratch.path().to_path_buf(),
    };
    std::fs::create_dir_all(&tmp).expect("bench dir");
    println!(
        "machine: {} cores; tocsin {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        tocsin()
    );
    for part in which.split(',') {
        match part.trim() {
            "backtest" => backtest(&tmp, runs),
            "eval" => eval(&tmp, runs),
            "live" => live(&tmp, runs),
            "lag" => lag(&tmp),
            other => panic!("unknown section {other:?}: expected backtest, eval, live or lag"),
        }
    }
}
