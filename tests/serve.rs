//! End-to-end tests of `tocsin serve` on loopback with a temporary data directory: ingest,
//! async runs, events, issues, manual recovery, restarts, kill -9 durability, limits, tokens.

mod common;

use common::{free_port, next_second, now, Tocsin as Server, COUNTER};
use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

const MONITOR: &str = r#"
id = "m1"
name = "Test CPU"
manual = true
interval = "5m"
[query]
measurement = "cpu"
field = "usage"
by = ["host"]
[rules]
critical = "Result > 90"
recover_after = 1
"#;

fn setup(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("monitors/m1.toml"), MONITOR).unwrap();
    std::fs::write(dir.path().join("monitors/count.toml"), COUNTER).unwrap();
    let s = Server::start(
        dir.path(),
        &format!("{config}[host_input]\nenabled = false\n"),
    );
    (dir, s)
}

#[test]
fn lifecycle_write_run_issue_recover_restart_kill() {
    let (_dir, mut s) = setup("");
    // write → run → critical event → issue
    let line = format!("cpu,host=web01 usage=95 {}", now() - 30);
    let (code, body) = s.post_token("/v1/write/metric?precision=s", line.as_bytes(), None);
    assert_eq!(code, 200, "{body}");
    let o = s.cli(&["run", "m1"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("critical"));
    let o = s.cli(&["events", "--monitor", "m1", "--json"], None);
    let events: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1);
    let first = &events[0];
    assert_eq!(first["df_status"], "critical");
    assert_eq!(first["df_exec_mode"], "async");
    assert_eq!(first["host"], "web01");
    let o = s.cli(&["issues", "--json"], None);
    let issues: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(issues.as_array().unwrap().len(), 1, "{issues}");
    let issue_start = issues[0]["issue_start"].as_i64().unwrap();
    assert_eq!(issues[0]["fault_id"], first["df_event_id"]);
    let table = String::from_utf8_lossy(&s.cli(&["issues"], None).stdout).into_owned();
    assert!(
        table.contains("REF") && table.contains("m1") && table.contains("critical"),
        "{table}"
    );

    // restart: the open issue and state survive; a re-run continues the same round
    assert!(s.stop().success(), "SIGTERM exits 0");
    s.spawn();
    let issues = s.get("/api/v1/issues");
    assert_eq!(issues["count"], 1);
    std::thread::sleep(Duration::from_millis(1100));
    let v = s.run("m1", None);
    assert_eq!(v["events"][0]["df_status"], "critical");
    assert_eq!(
        v["events"][0]["df_issue_start_time"].as_i64().unwrap(),
        issue_start,
        "same round after restart"
    );
    assert_eq!(v["events"][0]["df_fault_id"], first["df_event_id"]);

    // manual recovery
    let o = s.cli(
        &[
            "recover",
            "--monitor",
            "m1",
            "--user-id",
            "u1",
            "--user-name",
            "Ann",
            "--user-email",
            "ann@example.com",
            "--message",
            "rebooted",
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec[0]["df_status"], "manual_ok");
    assert_eq!(rec[0]["df_user_name"], "Ann");
    assert_eq!(rec[0]["df_user_email"], "ann@example.com");
    assert_eq!(rec[0]["df_message"], "rebooted");
    assert_eq!(rec[0]["df_issue_start_time"].as_i64().unwrap(), issue_start);
    assert_eq!(s.get("/api/v1/issues")["count"], 0);
    let manual = s.get("/api/v1/events?status=manual_ok");
    assert_eq!(manual["count"], 1);

    // kill -9 right after an acknowledged write: the write is there after restart
    let before = s.count_points(None);
    let mut body = String::new();
    for i in 0..1000 {
        body.push_str(&format!(
            "durable,k=a v={i} {}\n",
            (now() - 60) * 1_000_000_000 + i
        ));
    }
    let (code, _) = s.post_token("/write", body.as_bytes(), None);
    assert_eq!(code, 204);
    s.kill9();
    s.spawn();
    assert_eq!(
        s.count_points(None),
        before + 1000.0,
        "acknowledged points survive kill -9"
    );
    // no event stored twice across all of this
    let all = s.get("/api/v1/events?limit=1000");
    let ids: std::collections::HashSet<_> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["df_event_id"].clone())
        .collect();
    assert_eq!(ids.len(), all["count"].as_u64().unwrap() as usize);
}

#[test]
fn bad_batches_are_rejected_whole_and_limits_hold() {
    let (_dir, s) = setup("max_body_bytes = 4096\n");
    let before = s.count_points(None);
    let t = (now() - 60) * 1_000_000_000;
    let bad = format!(
        "durable v=1 {t}\ndurable v=2 {}\ndurable v=\"unterminated {t}\n",
        t + 1
    );
    let (code, body) = s.post_token("/write", bad.as_bytes(), None);
    assert_eq!(code, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["line"], 3, "{err}");
    assert!(err["column"].as_u64().unwrap() > 0);
    assert_eq!(
        s.count_points(None),
        before,
        "nothing of a bad batch is stored"
    );
    // oversized body
    let big = vec![b'x'; 10_000];
    let (code, _) = s.post_token("/write", &big, None);
    assert_eq!(code, 413);
    // gzip
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("durable v=7 {t}\n").as_bytes())
        .unwrap();
    let gz = gz.finish().unwrap();
    let resp = ureq::post(&format!("{}/api/v2/write", s.url))
        .set("Content-Encoding", "gzip")
        .send_bytes(&gz)
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(s.count_points(None), before + 1.0);
    // bad precision
    let (code, body) = s.post_token("/write?precision=weeks", b"durable v=1", None);
    assert_eq!(code, 400);
    assert!(body.contains("precision"), "{body}");
    // dry run echo keeps types and stores nothing
    let (code, body) = s.post_token(
        "/v1/write/metric?dry=true&echo=json&precision=s",
        b"durable,t=x f=1.5,i=-2i,u=3u,s=\"hi\",b=true 1700000000",
        None,
    );
    assert_eq!(code, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo[0]["measurement"], "durable");
    assert_eq!(echo[0]["tags"]["t"], "x");
    assert_eq!(echo[0]["fields"]["f"], 1.5);
    assert_eq!(echo[0]["fields"]["i"], -2);
    assert_eq!(echo[0]["fields"]["u"], 3);
    assert_eq!(echo[0]["fields"]["s"], "hi");
    assert_eq!(echo[0]["fields"]["b"], true);
    assert_eq!(echo[0]["time"].as_i64(), Some(1_700_000_000_000_000_000));
    assert_eq!(s.count_points(None), before + 1.0);
    // unknown monitor
    let (code, _) = s.post_token("/api/v1/monitors/nope/run", b"", None);
    assert_eq!(code, 404);
    let o = s.cli(&["run", "nope"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"));
    // bad recover request
    let (code, body) = s.post(
        "/api/v1/issues/recover",
        br#"{"all": true}"#,
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 400);
    assert!(body.contains("user_id"), "{body}");
    // metrics and monitors
    let text = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        text.contains("tocsin_checks_total{monitor=\"count\"}"),
        "{text}"
    );
    assert!(text.contains("tocsin_ingest_points_total"));
    assert!(text.contains("tocsin_open_issues 0"));
    let mons = s.get("/api/v1/monitors");
    let count = mons["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "count")
        .unwrap()
        .clone();
    assert!(count["last_run"].as_i64().is_some());
    assert!(count["last_error"].is_null());
}

#[test]
fn tokens_guard_ingest_and_admin() {
    let (_dir, s) = setup("ingest_token = \"in-secret\"\nadmin_token = \"ad-secret\"\n");
    let (code, _) = s.post_token("/write", b"durable v=1", None);
    assert_eq!(code, 401);
    let (code, _) = s.post_token("/write", b"durable v=1", Some("wrong"));
    assert_eq!(code, 403);
    let (code, _) = s.post_token("/write", b"durable v=1", Some("in-secret"));
    assert_eq!(code, 204);
    let (code, _) = s.post_token("/api/v1/monitors/count/run", b"", None);
    assert_eq!(code, 401);
    let (code, _) = s.post_token("/api/v1/monitors/count/run", b"", Some("in-secret"));
    assert_eq!(code, 403);
    let (code, _) = s.post_token("/api/v1/monitors/reload", b"", Some("ad-secret"));
    assert_eq!(code, 200);
    let o = s.cli(&["run", "count"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
    let o = s.cli(&["run", "count"], Some("ad-secret"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn cli_reads_send_the_read_token_or_the_admin_token() {
    let (_dir, s) = setup(
        "ingest_token = \"in-secret\"\nadmin_token = \"ad-secret\"\nread_token = \"rd-secret\"\n",
    );
    let line = format!("cpu,host=a usage=99 {}", now() - 10);
    let (code, _) = s.post_token(
        "/v1/write/metric?precision=s",
        line.as_bytes(),
        Some("in-secret"),
    );
    assert_eq!(code, 200);
    assert_eq!(
        s.run("m1", Some("ad-secret"))["events"][0]["df_status"],
        "critical"
    );
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    for args in [["events", "--json"], ["issues", "--json"]] {
        let o = s.cli_env(&args, &[]);
        assert!(!o.status.success(), "{args:?} without a token");
        assert!(
            text(&o).contains("401") && text(&o).contains("TOCSIN_READ_TOKEN"),
            "{}",
            text(&o)
        );
        let o = s.cli_env(&args, &[("TOCSIN_READ_TOKEN", "in-secret")]);
        assert!(!o.status.success(), "the ingest token does not read");
        assert!(
            text(&o).contains("403") && text(&o).contains("TOCSIN_READ_TOKEN is wrong"),
            "{}",
            text(&o)
        );
        for env in [
            ("TOCSIN_READ_TOKEN", "rd-secret"),
            ("TOCSIN_ADMIN_TOKEN", "ad-secret"),
        ] {
            let o = s.cli_env(&args, &[env]);
            assert!(o.status.success(), "{args:?} {env:?}: {}", text(&o));
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(
                v[0]["df_status"].as_str().or(v[0]["status"].as_str()),
                Some("critical"),
                "{v}"
            );
        }
    }
    // the read token does not run monitors: admin requests send the admin token only
    let o = s.cli_env(&["run", "m1"], &[("TOCSIN_READ_TOKEN", "rd-secret")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("TOCSIN_ADMIN_TOKEN"), "{}", text(&o));
}

#[test]
fn refuses_public_listen_without_tokens_and_unreachable_server_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--monitors")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to listen"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let port = free_port();
    let o = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["issues", "--server", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach tocsin"));
}

#[test]
fn reload_keeps_state_of_unchanged_monitors() {
    let (dir, s) = setup("");
    let line = format!("cpu,host=a usage=99 {}", now() - 10);
    s.post_token("/v1/write/metric?precision=s", line.as_bytes(), None);
    assert_eq!(s.run("m1", None)["events"][0]["df_status"], "critical");
    std::fs::write(
        dir.path().join("monitors/extra.toml"),
        COUNTER.replace("id = \"count\"", "id = \"extra\""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("monitors/broken.toml"),
        "every = \"soon\"\n",
    )
    .unwrap();
    let (code, body) = s.post_token("/api/v1/monitors/reload", b"", None);
    assert_eq!(code, 200);
    let rep: Value = serde_json::from_str(&body).unwrap();
    assert!(
        rep["unchanged"]
            .as_array()
            .unwrap()
            .contains(&Value::from("m1")),
        "{rep}"
    );
    assert!(
        rep["changed"]
            .as_array()
            .unwrap()
            .contains(&Value::from("extra")),
        "{rep}"
    );
    let errors = rep["errors"].as_array().unwrap();
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e.as_str().unwrap().contains("broken.toml:1:")),
        "{rep}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let v = s.run("m1", None);
    assert_eq!(
        v["events"][0]["df_issue_duration"].as_i64().map(|d| d >= 1),
        Some(true),
        "round continues: {v}"
    );
    let mons = s.get("/api/v1/monitors");
    assert_eq!(mons["errors"].as_array().unwrap().len(), errors.len());
    assert_eq!(
        mons["monitors"].as_array().unwrap().len(),
        3,
        "the valid monitors keep running"
    );
}

#[test]
fn scheduler_runs_on_boundaries_counts_overruns_and_collects_host_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("monitors");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::write(
        m.join("tick.toml"),
        "every = \"1s\"\ninterval = \"30s\"\n[query]\nmeasurement = \"durable\"\nfield = \"v\"\nagg = \"count\"\n[rules]\ninfo = \"Result >= 0\"\n",
    )
    .unwrap();
    // a script that never ends, with costly steps: each check hits the 2 s wall-clock limit
    // (not the operation limit), so 1 s ticks overrun
    std::fs::write(
        dir.path().join("scripts/spin.rhai"),
        "let a = [];\nfor i in 0..9000 { a.push(9000 - i); }\nloop { a.sort(); a.reverse(); }\n",
    )
    .unwrap();
    std::fs::write(
        m.join("slow.toml"),
        "every = \"1s\"\n[query]\nmeasurement = \"durable\"\nfield = \"v\"\n[rules]\nscript = \"spin.rhai\"\n",
    )
    .unwrap();
    std::fs::write(
        m.join("hostmem.toml"),
        "manual = true\ninterval = \"1m\"\n[query]\nmeasurement = \"mem\"\nfield = \"used_percent\"\nby = [\"host\"]\n[rules]\ninfo = \"Result >= 0\"\n",
    )
    .unwrap();
    let s = Server::start(dir.path(), "[host_input]\nevery = \"1s\"\n");
    let (code, _) = s.post_token(
        "/write?precision=s",
        format!("durable v=1 {}", now() - 1).as_bytes(),
        None,
    );
    assert_eq!(code, 204);
    std::thread::sleep(Duration::from_millis(5500));

    let ticks = s.get("/api/v1/events?monitor=tick&limit=100");
    let events = ticks["events"].as_array().unwrap();
    assert!(events.len() >= 2, "scheduled checks ran: {ticks}");
    let mut dates: Vec<i64> = events.iter().map(|e| e["date"].as_i64().unwrap()).collect();
    for e in events {
        assert_eq!(e["df_exec_mode"], "crontab");
        assert_eq!(
            e["df_check_range_end"], e["date"],
            "window anchored to the tick (delay 0)"
        );
    }
    dates.dedup();
    assert_eq!(dates.len(), events.len(), "one check per tick");

    let text = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let skipped: u64 = text
        .lines()
        .find(|l| l.starts_with("tocsin_skipped_ticks_total{monitor=\"slow\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(skipped >= 1, "overruns skip ticks:\n{text}");
    let mons = s.get("/api/v1/monitors");
    let slow = mons["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "slow")
        .unwrap()
        .clone();
    let err = slow["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        err.contains("time"),
        "the runaway script is the monitor's last_error: {slow}"
    );

    // the built-in host input feeds the store: a monitor sees this machine's memory
    let v = s.run("hostmem", None);
    let ev = &v["events"][0];
    let used: f64 = ev["df_monitor_checker_value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..=100.0).contains(&used), "{v}");
    assert!(!ev["host"].as_str().unwrap().is_empty());
}

#[test]
fn event_stream_follows_new_events_with_filters() {
    use std::io::BufRead;
    let (_dir, s) = setup("");
    let resp = ureq::get(&format!("{}/api/v1/events/stream?monitor=m1", s.url))
        .timeout(Duration::from_secs(20))
        .call()
        .unwrap();
    assert!(resp
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let mut reader = std::io::BufReader::new(resp.into_reader());
    // an event of another monitor must not show up; then one of m1 must
    s.post_token(
        "/write?precision=s",
        format!(
            "cpu,host=a usage=99 {}\ndurable v=1 {}",
            now() - 5,
            now() - 5
        )
        .as_bytes(),
        None,
    );
    s.run("count", None);
    let v = s.run("m1", None);
    let want = v["events"][0]["df_event_id"].as_str().unwrap().to_string();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if let Some(data) = line.strip_prefix("data:") {
            let ev: Value = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(ev["df_monitor_checker_id"], "m1", "filter applies: {ev}");
            assert_eq!(ev["df_event_id"], want.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "no event on the stream");
    }
}

#[test]
fn streaks_and_gaps_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::write(
        dir.path().join("monitors/two.toml"),
        "id = \"two\"\nmanual = true\ninterval = \"1m\"\n[query]\nmeasurement = \"cpu\"\nfield = \"usage\"\nby = [\"host\"]\n[rules]\ncritical = \"Result > 90\"\ntrigger_after = 2\n",
    )
    .unwrap();
    let mut s = Server::start(dir.path(), "[host_input]\nenabled = false\n");
    s.post_token(
        "/v1/write/metric?precision=s",
        format!("cpu,host=a usage=99 {}", now() - 3).as_bytes(),
        None,
    );
    let v = s.run("two", None);
    assert_eq!(
        v["events"].as_array().unwrap().len(),
        0,
        "fault streak 1 of 2: {v}"
    );
    assert!(s.stop().success());
    s.spawn();
    next_second();
    let v = s.run("two", None);
    assert_eq!(
        v["events"][0]["df_status"], "critical",
        "the streak of 1 survived the restart: {v}"
    );

    // a gap that spans a restart: one nodata before, none repeated after, nodata_ok on return
    std::fs::write(
        dir.path().join("monitors/gap.toml"),
        "id = \"gap\"\nmanual = true\ninterval = \"2s\"\n[query]\nmeasurement = \"beat\"\nfield = \"v\"\n[rules]\ncritical = \"Result > 1\"\n[nodata]\nafter = \"2s\"\naction = \"nodata\"\n",
    )
    .unwrap();
    s.post_token("/api/v1/monitors/reload", b"", None);
    s.post_token(
        "/write?precision=s",
        format!("beat v=0 {}", now() - 1).as_bytes(),
        None,
    );
    assert_eq!(
        s.run("gap", None)["events"].as_array().unwrap().len(),
        0,
        "seen, clean"
    );
    std::thread::sleep(Duration::from_secs(3));
    let v = s.run("gap", None);
    assert_eq!(v["events"][0]["df_status"], "nodata", "{v}");
    assert!(s.stop().success());
    s.spawn();
    next_second();
    let v = s.run("gap", None);
    assert_eq!(
        v["events"].as_array().unwrap().len(),
        0,
        "the gap goes on; no second nodata: {v}"
    );
    s.post_token(
        "/write?precision=s",
        format!("beat v=0 {}", now() - 1).as_bytes(),
        None,
    );
    next_second();
    let v = s.run("gap", None);
    assert_eq!(v["events"][0]["df_status"], "nodata_ok", "{v}");
}

#[test]
fn writes_beyond_the_admission_limit_get_429_before_their_body_is_read() {
    use std::io::Write as _;
    let (_dir, s) = setup("");
    let addr = s.url.trim_start_matches("http://").to_string();
    // 32 uploads that send their headers and half of the body, then stall
    let mut stalled = Vec::new();
    for _ in 0..tocsin::http::INGEST_SLOTS {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            c,
            "POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\ndurable v=1"
        )
        .unwrap();
        c.flush().unwrap();
        stalled.push(c);
    }
    // wait until the server has admitted all of them, then one more write is refused
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_flight = format!(
        "tocsin_ingest_requests_in_flight {}",
        tocsin::http::INGEST_SLOTS
    );
    loop {
        let text = ureq::get(&format!("{}/metrics", s.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        if text.contains(&in_flight) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled uploads were not all admitted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, body) = s.post_token("/write", b"durable v=1", None);
    assert_eq!(code, 429, "{body}");
    let text = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(!text.contains("tocsin_ingest_throttled_total 0"), "{text}");
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = s.post_token("/write", b"durable v=1", None);
        if code == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "slots were not released: {code}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
