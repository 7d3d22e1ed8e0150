//! End-to-end ingest over HTTP: `cargo bench --bench http_ingest`.
//!
//! Starts the real `tocsin serve` (release build, host input off) on loopback and posts
//! line-protocol bodies of 5,000 points from several client threads to `/write`; every 204 is a
//! durable commit. Prints the median points/s over several runs. Client and server share the
//! machine's cores, so this understates what a dedicated server does.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BATCH: usize = 5_000;
const BATCHES_PER_RUN: usize = 120; // 600k points a run
const RUNS: usize = 5;
const CLIENTS: usize = 4;

fn body(run: usize, batch: usize) -> String {
    let mut s = String::with_capacity(BATCH * 120);
    let t0: i64 =
        1_700_000_000_000_000_000 + (run * BATCHES_PER_RUN + batch) as i64 * 10_000_000_000;
    for i in 0..BATCH {
        let host = i % 1000;
        let cpu = i / 1000;
        s.push_str(&format!(
            "cpu,host=host-{host:04},cpu=cpu{cpu},dc=dc{} usage_user={},usage_system={},usage_idle={},usage_iowait=0.5,usage_total={} {}\n",
            host % 3,
            (i % 97) as f64 * 0.7,
            (i % 13) as f64,
            90.0 - (i % 97) as f64 * 0.7,
            10.0 + (i % 97) as f64 * 0.7,
            t0
        ));
    }
    s
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(
        &cfg,
        format!("listen = \"127.0.0.1:{port}\"\n[host_input]\nenabled = false\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--monitors")
            .arg(dir.path().join("monitors"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{url}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rates = Vec::new();
    let throttled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for run in 0..RUNS {
        let bodies: Vec<String> = (0..BATCHES_PER_RUN).map(|b| body(run, b)).collect();
        let bodies = std::sync::Arc::new(bodies);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let threads: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (bodies, next, url) = (bodies.clone(), next.clone(), url.clone());
                let throttled = throttled.clone();
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(60))
                        .build();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= bodies.len() {
                            return;
                        }
                        loop {
                            match agent.post(&format!("{url}/write")).send_string(&bodies[i]) {
                                Ok(r) => {
                                    assert_eq!(r.status(), 204);
                                    break;
                                }
                                // saturated: back off as Retry-After says, then resend
                                Err(ureq::Error::Status(429, _)) => {
                                    throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    std::thread::sleep(Duration::from_millis(50))
                                }
                                Err(e) => panic!("write failed: {e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        rates.push((BATCH * BATCHES_PER_RUN) as f64 / secs);
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "http ingest (/write, {CLIENTS} clients, {BATCH}-line bodies, 5 fields each): median of {RUNS} runs {:.0} points/s (min {:.0}, max {:.0}); {} answers 429",
        rates[RUNS / 2],
        rates[0],
        rates[RUNS - 1],
        throttled.load(std::sync::atomic::Ordering::Relaxed)
    );
}
