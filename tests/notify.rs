//! Alert delivery end to end: the real binary, a real HTTP receiver on loopback.

mod common;

use common::hook::{Receiver, Req};
use common::{free_port, next_second, Tocsin};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts tocsin in `dir` with these policies and monitor files (host input off).
fn start(dir: &Path, policies: &str, monitors: &[(&str, &str)]) -> Tocsin {
    std::fs::create_dir_all(dir.join("monitors")).unwrap();
    for (name, body) in monitors {
        std::fs::write(dir.join("monitors").join(name), body).unwrap();
    }
    Tocsin::start(dir, &format!("[host_input]\nenabled = false\n{policies}"))
}

/// Writes one `cpu,host=web01 usage=<value>` point a second old.
fn write(t: &Tocsin, value: f64) {
    let ts = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 1_000_000_000;
    let (code, body) = t.post(
        "/write",
        format!("cpu,host=web01 usage={value} {ts}").as_bytes(),
        &[],
    );
    assert_eq!(code, 204, "{body}");
}

/// Runs a monitor in a fresh second and returns its events.
fn run(t: &Tocsin, id: &str) -> Vec<Value> {
    next_second();
    t.run(id, None)["events"].as_array().unwrap().clone()
}

fn monitor(id: &str, policy: &str) -> String {
    // agg = last: each run sees the latest write
    format!(
        "id = \"{id}\"\npolicy = \"{policy}\"\nmanual = true\ninterval = \"30s\"\n[query]\nmeasurement = \"cpu\"\nfield = \"usage\"\nagg = \"last\"\nby = [\"host\"]\n[rules]\ncritical = \"Result > 90\"\nwarning = \"Result > 50\"\n"
    )
}

#[test]
fn first_alert_delivered_repeats_held_recovery_delivered_signed() {
    let rport = free_port();
    let rx = Receiver::start(rport);
    let dir = tempfile::tempdir().unwrap();
    let policies = format!(
        "[[policies]]\nid = \"oncall\"\nname = \"On-call\"\nsilent_timeout = \"1h\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/hook\"\nsecret = \"s3cret\"\n"
    );
    let t = start(
        dir.path(),
        &policies,
        &[("m1.toml", &monitor("m1", "oncall"))],
    );
    write(&t, 95.0);
    let e1 = run(&t, "m1");
    assert_eq!(e1[0]["df_status"], "critical");
    assert_eq!(e1[0]["df_monitor_id"], "oncall");
    assert_eq!(e1[0]["df_monitor_name"], "On-call");
    write(&t, 96.0);
    let e2 = run(&t, "m1");
    assert_eq!(
        e2[0]["df_status"], "critical",
        "a repeat, held back by silent_timeout"
    );
    write(&t, 60.0);
    let e3 = run(&t, "m1");
    assert_eq!(e3[0]["df_status"], "warning", "a change of status is sent");
    write(&t, 10.0);
    let e4 = run(&t, "m1");
    assert_eq!(e4[0]["df_status"], "ok");
    let got = rx.wait_for("hook", 3, 15);
    std::thread::sleep(Duration::from_millis(1500));
    let got2 = rx.got("hook");
    assert_eq!(got.len(), got2.len(), "nothing more arrives");
    let statuses: Vec<&str> = got2
        .iter()
        .map(|r| r.body["df_status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["critical", "warning", "ok"]);
    assert_eq!(got2[0].body["df_event_id"], e1[0]["df_event_id"]);
    let header = |r: &Req, k: &str| {
        r.headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        header(&got2[0], "x-tocsin-event-id"),
        e1[0]["df_event_id"].as_str().unwrap()
    );
    // the signature is an HMAC-SHA256 of the exact body
    let body = serde_json::to_string(&got2[0].body).unwrap();
    let sig = header(&got2[0], "x-tocsin-signature");
    assert_eq!(
        sig,
        format!(
            "sha256={}",
            tocsin::notify::worker::sign("s3cret", body.as_bytes())
        )
    );
    let d = t.get("/api/v1/deliveries");
    assert_eq!(d["count"], 0, "nothing pending or failed: {d}");
    let d = t.get("/api/v1/deliveries?status=delivered");
    assert_eq!(d["count"], 3);
}

#[test]
fn dead_receiver_then_restart_delivers_exactly_once() {
    let rport = free_port(); // nothing listens here yet
    let dir = tempfile::tempdir().unwrap();
    let policies = format!(
        "[[policies]]\nid = \"p\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/hook\"\n"
    );
    let mut t = start(dir.path(), &policies, &[("m1.toml", &monitor("m1", "p"))]);
    write(&t, 99.0);
    let ev = run(&t, "m1");
    assert_eq!(ev[0]["df_status"], "critical");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = t.get("/api/v1/deliveries");
        if d["deliveries"][0]["status"] == "failed" {
            assert!(d["deliveries"][0]["attempts"].as_i64().unwrap() >= 1);
            assert!(d["deliveries"][0]["last_error"].as_str().is_some());
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = ureq::get(&format!("{}/metrics", t.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("tocsin_deliveries_failed 1"), "{text}");
    t.stop();
    let rx = Receiver::start(rport);
    t.spawn();
    let got = rx.wait_for("hook", 1, 20);
    assert_eq!(got.len(), 1, "delivered after restart");
    assert_eq!(got[0].body["df_event_id"], ev[0]["df_event_id"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.got("hook").len(), 1, "exactly once");
    assert_eq!(t.get("/api/v1/deliveries")["count"], 0);
}

#[test]
fn mutes_hold_back_and_mark_events() {
    let rport = free_port();
    let rx = Receiver::start(rport);
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp();
    let policies = format!(
        "[[policies]]\nid = \"cronmute\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/hook\"\n[[policies.mutes]]\ncron = \"* * * * *\"\nduration = \"1m\"\n\
         [[policies]]\nid = \"oneoff\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/hook\"\n[[policies.mutes]]\nstart = \"{}\"\nend = \"{}\"\nmonitors = [\"m2\"]\n\
         [[policies]]\nid = \"open\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/hook\"\n",
        now - 60,
        now + 3600
    );
    let t = start(
        dir.path(),
        &policies,
        &[
            ("m1.toml", &monitor("m1", "cronmute")),
            ("m2.toml", &monitor("m2", "oneoff")),
            ("m3.toml", &monitor("m3", "open")),
        ],
    );
    write(&t, 99.0);
    let e1 = run(&t, "m1");
    let e2 = run(&t, "m2");
    let e3 = run(&t, "m3");
    assert_eq!(e1[0]["df_is_silent"], "true");
    assert_eq!(e2[0]["df_is_silent"], "true");
    assert_eq!(e3[0]["df_is_silent"], "false");
    let stored = t.get("/api/v1/events?monitor=m2");
    assert_eq!(stored["events"][0]["df_is_silent"], "true");
    let got = rx.wait_for("hook", 1, 10);
    std::thread::sleep(Duration::from_millis(1500));
    let got = if got.len() == 1 { rx.got("hook") } else { got };
    assert_eq!(got.len(), 1, "only the unmuted policy sends");
    assert_eq!(got[0].body["df_monitor_checker_id"], "m3");
}

#[test]
fn alertmanager_and_dingtalk_payloads_and_a_hanging_target_does_not_delay_others() {
    let rport = free_port();
    let rx = Receiver::start(rport);
    let dir = tempfile::tempdir().unwrap();
    let policies = format!(
        "[[policies]]\nid = \"p\"\n\
         [[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/slow\"\ntimeout = \"20s\"\n\
         [[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/am\"\nformat = \"alertmanager\"\n\
         [[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/ding\"\nformat = \"dingtalk\"\n"
    );
    let t = start(dir.path(), &policies, &[("m1.toml", &monitor("m1", "p"))]);
    write(&t, 99.0);
    let started = Instant::now();
    let ev = run(&t, "m1");
    let am = rx.wait_for("am", 1, 10);
    let ding = rx.wait_for("ding", 1, 10);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the hanging /slow target held others up"
    );
    assert_eq!(am.len(), 1);
    let a = &am[0].body;
    assert_eq!(a["version"], "4");
    assert_eq!(a["status"], "firing");
    assert_eq!(a["receiver"], "p");
    assert_eq!(a["alerts"][0]["status"], "firing");
    assert_eq!(a["alerts"][0]["labels"]["alertname"], "m1");
    assert_eq!(a["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(a["alerts"][0]["labels"]["host"], "web01");
    assert_eq!(a["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(a["alerts"][0]["startsAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        a["alerts"][0]["annotations"]["df_event_id"],
        ev[0]["df_event_id"]
    );
    assert_eq!(ding.len(), 1);
    assert_eq!(ding[0].body["msgtype"], "markdown");
    assert!(ding[0].body["markdown"]["text"]
        .as_str()
        .unwrap()
        .contains("CRITICAL"));
    // recovery: Alertmanager sees `resolved`
    write(&t, 1.0);
    let ok = run(&t, "m1");
    assert_eq!(ok[0]["df_status"], "ok");
    let am = rx.wait_for("am", 2, 10);
    assert_eq!(am[1].body["status"], "resolved");
    assert_eq!(
        am[1].body["alerts"][0]["fingerprint"],
        am[0].body["alerts"][0]["fingerprint"]
    );
    assert_ne!(am[1].body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

#[test]
fn a_runtime_silence_holds_back_deliveries_and_a_reload_applies_a_changed_target() {
    let rport = free_port();
    let rx = Receiver::start(rport);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::write(dir.path().join("monitors/m1.toml"), monitor("m1", "oncall")).unwrap();
    let t = Tocsin::start(
        dir.path(),
        &format!(
            "admin_token = \"adm\"\n[host_input]\nenabled = false\n[[policies]]\nid = \"oncall\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{rport}/hook\"\n"
        ),
    );
    let run = |t: &Tocsin, id: &str| -> Vec<Value> {
        next_second();
        t.run(id, Some("adm"))["events"].as_array().unwrap().clone()
    };
    let cli = |args: &[&str]| {
        let o = t.cli(args, Some("adm"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Without the admin token a silence is refused.
    let (code, _) = t.post(
        "/api/v1/silences",
        br#"{"matchers":{"host":"web01"},"duration":"1h","created_by":"ann"}"#,
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 401);
    let added = cli(&[
        "silence",
        "add",
        "--match",
        "monitor=m1",
        "--match",
        "host=web01",
        "--duration",
        "1h",
        "--created-by",
        "ann",
        "--comment",
        "disk swap",
    ]);
    let id = added.split_whitespace().next().unwrap().to_string();
    assert!(
        id.starts_with("silence-") && added.contains("active"),
        "{added}"
    );
    assert!(cli(&["silence", "list"]).contains(&id));
    let monitors = t.get_token("/api/v1/monitors", Some("adm"));
    assert_eq!(
        monitors["monitors"][0]["silences"][0]["id"],
        id.as_str(),
        "{monitors}"
    );

    // Silenced: stored with df_is_silent, nothing sent.
    write(&t, 95.0);
    let e = run(&t, "m1");
    assert_eq!(e[0]["df_status"], "critical");
    assert_eq!(e[0]["df_is_silent"], "true");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(rx.got("hook").is_empty(), "a silenced fault was delivered");

    // Expired: the next change is sent, to the configured target.
    assert!(cli(&["silence", "expire", &id]).contains("expired"));
    assert!(cli(&["silence", "list"]).contains("no silences"));
    write(&t, 60.0);
    let e = run(&t, "m1");
    assert_eq!(e[0]["df_status"], "warning");
    assert_eq!(e[0]["df_is_silent"], "false");
    let got = rx.wait_for("hook", 1, 15);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["df_status"], "warning");

    // A changed target applies at reload, without a restart.
    let cfg_path = dir.path().join("tocsin.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("/hook\"", "/other\"")).unwrap();
    let (code, body) = t.post_token("/api/v1/monitors/reload", b"", Some("adm"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"config_reloaded\":true"), "{body}");
    write(&t, 95.0);
    let e = run(&t, "m1");
    assert_eq!(e[0]["df_status"], "critical");
    let other = rx.wait_for("other", 1, 15);
    assert_eq!(other.len(), 1, "the new target got nothing");
    assert_eq!(rx.got("hook").len(), 1, "the old target still got events");

    // A broken config is refused at reload and the running policies stay.
    std::fs::write(&cfg_path, "[[policies]]\nid = 3\n").unwrap();
    let (code, body) = t.post_token("/api/v1/monitors/reload", b"", Some("adm"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("config not reloaded"), "{body}");
    assert!(body.contains("\"config_reloaded\":false"), "{body}");
}
