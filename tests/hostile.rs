//! Hostile load against a real `tocsin serve` on loopback: requests that try to lock writers
//! out, absurd input, and limits. Each test is bounded in time and connection count.

mod common;

use common::{Tocsin as Server, COUNTER};
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

fn setup(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::write(dir.path().join("monitors/count.toml"), COUNTER).unwrap();
    let s = Server::start(
        dir.path(),
        &format!("{config}\n[host_input]\nenabled = false\n"),
    );
    (dir, s)
}

/// Reads what the server has answered so far on a raw connection (at most `wait`).
fn read_answer(c: &mut std::net::TcpStream, wait: Duration) -> String {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn unauthenticated_stalled_uploads_cannot_lock_writers_out() {
    let (_dir, s) = setup("ingest_token = \"in-secret\"\nadmin_token = \"ad-secret\"");
    let addr = s.url.trim_start_matches("http://").to_string();
    // More stalled uploads without a token than there are ingest slots: each sends its headers
    // and the first bytes of a large body, then stalls.
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            c,
            "POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\ndurable v=1"
        )
        .unwrap();
        c.flush().unwrap();
        stalled.push(c);
    }
    // An authorised write goes through while they wait.
    let (code, body) = s.post_token("/write?precision=s", b"durable v=1", Some("in-secret"));
    assert_eq!(code, 204, "{body}");
    // Each stalled upload was told 401 without the server waiting for its body.
    for c in stalled.iter_mut().take(5) {
        let answer = read_answer(c, Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    }
    assert_eq!(s.count_points(Some("ad-secret")), 1.0);
}

#[test]
fn admin_token_alone_does_not_open_ingest_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tocsin.toml"),
        "listen = \"0.0.0.0:0\"\nadmin_token = \"x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(dir.path().join("tocsin.toml"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that (wrongly) starts would run for ever: give it 10 s, then kill it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = out;
    while out.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = out.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = out.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without ingest_token"), "{err}");
}

/// The text of `GET /metrics`.
fn metrics_text(s: &Server) -> String {
    ureq::get(&format!("{}/metrics", s.url))
        .timeout(Duration::from_secs(20))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

#[test]
fn new_series_past_max_series_are_refused_whole_with_422_and_counted() {
    let (_dir, s) = setup("[limits]\nmax_series = 3");
    let t = common::now() - 60;
    for (i, host) in ["a", "b", "c"].iter().enumerate() {
        let line = format!("durable,host={host} v=1 {}", t + i as i64);
        let (code, body) = s.post_token("/write?precision=s", line.as_bytes(), None);
        assert_eq!(code, 204, "{host}: {body}");
    }
    let before = s.count_points(None);
    assert_eq!(before, 3.0);
    // A fourth series is refused, and the whole request with it (the point for host=a too).
    let body = format!(
        "durable,host=a v=2 {}\ndurable,host=d v=1 {}",
        t + 10,
        t + 10
    );
    let (code, answer) = s.post_token("/write?precision=s", body.as_bytes(), None);
    assert_eq!(code, 422, "{answer}");
    let err: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(err["limit"], "max_series", "{answer}");
    let message = err["error"].as_str().unwrap();
    assert!(message.contains("series limit"), "{message}");
    assert!(message.contains("at most 3"), "{message}");
    assert_eq!(s.count_points(None), before);
    // An existing series still writes.
    let line = format!("durable,host=a v=3 {}", t + 20);
    let (code, body) = s.post_token("/write?precision=s", line.as_bytes(), None);
    assert_eq!(code, 204, "{body}");
    assert_eq!(s.count_points(None), before + 1.0);
    let text = metrics_text(&s);
    assert!(text.contains("\ntocsin_series_refused_total 1\n"), "{text}");
    assert!(text.contains("\ntocsin_series_limit 3\n"), "{text}");
    assert!(text.contains("\ntocsin_store_series 3\n"), "{text}");
}
