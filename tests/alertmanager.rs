//! `format = "alertmanager_api"` against the real Alertmanager (Debian's
//! `prometheus-alertmanager`): firing, a level change, re-sends keeping an alert alive, recovery,
//! an HA pair with one member down, and re-sends after a tocsin restart. Loopback only; skipped
//! when Alertmanager is not installed.

mod common;

use common::{eventually, free_port, next_second, program, Program, Tocsin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A real Alertmanager on a free loopback port, clustering off, one receiver that sends nowhere.
struct Alertmanager {
    proc: Option<Program>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    url: String,
}

impl Alertmanager {
    fn start(bin: &Path, dir: &Path) -> Alertmanager {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("alertmanager.yml"),
            "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
        )
        .unwrap();
        let port = free_port();
        let mut am = Alertmanager {
            proc: None,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        am.spawn();
        am
    }

    /// kill -9 (an outage).
    fn kill(&mut self) {
        self.proc = None;
    }

    fn log_text(&self) -> String {
        self.proc
            .as_ref()
            .map(Program::log_text)
            .unwrap_or_default()
    }

    /// Starts (or restarts) the process on the same port and storage, and waits until ready.
    fn spawn(&mut self) {
        let args: Vec<String> = vec![
            format!(
                "--config.file={}",
                self.dir.join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", self.dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", self.port),
            // empty: no cluster (it would bind 0.0.0.0:9094)
            "--cluster.listen-address=".into(),
        ];
        let p = Program::start(&self.bin, &args, &self.dir.join("alertmanager.log"));
        p.wait_ready(&format!("{}/-/ready", self.url), 20);
        self.proc = Some(p);
    }

    /// The alerts it lists (by default the unresolved ones).
    fn alerts(&self) -> Vec<Value> {
        ureq::get(&format!("{}/api/v2/alerts", self.url))
            .timeout(Duration::from_secs(5))
            .call()
            .unwrap()
            .into_json::<Value>()
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits (at most 20 s) until the listed alerts satisfy `ok`; panics with what it saw.
    fn wait_for(&self, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut last = vec![];
        eventually(20, || {
            last = self.alerts();
            ok(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "{what}: Alertmanager at {} lists {last:#?}\n{}",
                self.url,
                self.log_text()
            )
        })
    }
}

const MONITOR: &str = r#"
id = "m1"
name = "Test CPU"
manual = true
interval = "5m"
[query]
measurement = "cpu"
field = "usage"
agg = "last"
by = ["host", "k8s.pod"]
[rules]
critical = "Result > 90"
error = "Result > 50"
[template]
title = "{{ host }}: CPU {{ Result }}% ({{ df_status }})"
message = "CPU on {{ host }} is {{ Result }}%"
"#;

/// Starts tocsin in `dir` with the monitor above and a policy whose targets are these
/// Alertmanager base URLs, re-sending every second (so `endsAt` is about 4 s ahead).
fn start_tocsin(dir: &Path, alertmanagers: &[&str]) -> Tocsin {
    std::fs::create_dir_all(dir.join("monitors")).unwrap();
    std::fs::write(dir.join("monitors/m1.toml"), MONITOR).unwrap();
    let mut config = String::from(
        "public_url = \"http://tocsin.example:9530\"\n[host_input]\nenabled = false\n[[policies]]\nid = \"default\"\n",
    );
    for url in alertmanagers {
        config.push_str(&format!(
            "[[policies.targets]]\nurl = \"{url}/\"\nformat = \"alertmanager_api\"\nresend = \"1s\"\n"
        ));
    }
    Tocsin::start(dir, &config)
}

/// Writes `cpu,host=web01,k8s.pod=api-1 usage=<value>` a second old, then runs the monitor in
/// a fresh second; its one event.
fn check(t: &Tocsin, value: f64) -> Value {
    let ts = chrono::Utc::now().timestamp() - 1;
    let line = format!("cpu,host=web01,k8s.pod=api-1 usage={value} {ts}");
    let (code, body) = t.post("/v1/write/metric?precision=s", line.as_bytes(), &[]);
    assert_eq!(code, 200, "{body}");
    next_second();
    let v = t.run("m1", None);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{v}");
    events[0].clone()
}

fn severities(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["labels"]["severity"].as_str().unwrap_or("").to_string())
        .collect()
}

fn time(a: &Value, key: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(a[key].as_str().unwrap()).unwrap()
}

#[test]
fn fire_resend_level_change_and_recovery_in_a_real_alertmanager() {
    let Some(bin) = program(&["prometheus-alertmanager", "alertmanager"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(&bin, &dir.path().join("am"));
    let t = start_tocsin(&dir.path().join("tocsin"), &[&am.url]);

    // fire
    let e1 = check(&t, 60.0);
    assert_eq!(e1["df_status"], "error");
    let got = am.wait_for("the error alert", |a| a.len() == 1);
    let a = &got[0];
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["labels"]["alertname"], "Test CPU");
    assert_eq!(a["labels"]["monitor"], "m1");
    assert_eq!(a["labels"]["severity"], "error");
    assert_eq!(a["labels"]["host"], "web01");
    assert_eq!(a["labels"]["k8s_pod"], "api-1", "sanitised label name");
    assert_eq!(a["annotations"]["summary"], e1["df_title"]);
    assert_eq!(a["annotations"]["description"], "CPU on web01 is 60%");
    assert_eq!(a["annotations"]["df_event_id"], e1["df_event_id"]);
    assert_eq!(a["annotations"]["df_event_url"], e1["df_event_url"]);
    assert_eq!(a["generatorURL"], e1["df_event_url"]);
    assert_eq!(
        time(a, "startsAt").timestamp(),
        e1["df_issue_start_time"].as_i64().unwrap()
    );
    let first_end = time(a, "endsAt");
    let ahead = first_end.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (2..=5).contains(&ahead),
        "endsAt about 4 x 1s ahead: {ahead}"
    );

    // re-sends keep it alive well past the first endsAt
    std::thread::sleep(Duration::from_millis(5500));
    let got = am.alerts();
    assert_eq!(severities(&got), ["error"], "still active: {got:#?}");
    assert!(
        time(&got[0], "endsAt") > first_end,
        "re-sent with a later endsAt"
    );
    let metrics = ureq::get(&format!("{}/metrics", t.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let resends: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tocsin_alertmanager_resends_total "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(resends >= 3.0, "{metrics}");

    // level change: one alert for the round, the new level; the old one is resolved by the
    // same POST, well before the endsAt its last re-send gave it (at least 3 s ahead)
    let e2 = check(&t, 95.0);
    assert_eq!(e2["df_status"], "critical");
    let changed = Instant::now();
    let got = am.wait_for("only the critical alert", |a| severities(a) == ["critical"]);
    assert!(
        changed.elapsed() < Duration::from_millis(2500),
        "the error alert expired rather than being resolved: {:?}",
        changed.elapsed()
    );
    assert_eq!(got[0]["annotations"]["df_event_id"], e2["df_event_id"]);
    assert_eq!(
        time(&got[0], "startsAt").timestamp(),
        e1["df_issue_start_time"].as_i64().unwrap(),
        "the round's start"
    );

    // manual recovery resolves it, and nothing re-sends it afterwards
    let o = t.cli(
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
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recovered = Instant::now();
    am.wait_for("no active alert after the recovery", |a| a.is_empty());
    assert!(
        recovered.elapsed() < Duration::from_millis(2500),
        "the alert expired rather than being resolved: {:?}",
        recovered.elapsed()
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(am.alerts().is_empty(), "not re-sent after the recovery");

    let d = t.get("/api/v1/deliveries?status=delivered");
    assert_eq!(d["count"], 3, "fire, change, recovery: {d}");
    for row in d["deliveries"].as_array().unwrap() {
        assert_eq!(row["format"], "alertmanager_api");
        assert_eq!(row["url"], format!("{}/api/v2/alerts", am.url));
        assert_eq!(row["last_code"], 200);
    }
    assert_eq!(t.get("/api/v1/deliveries")["count"], 0, "nothing pending");
}

#[test]
fn an_ha_pair_gets_the_alert_when_a_member_comes_up_and_after_a_tocsin_restart() {
    let Some(bin) = program(&["prometheus-alertmanager", "alertmanager"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Alertmanager::start(&bin, &dir.path().join("am-a"));
    let mut b = Alertmanager::start(&bin, &dir.path().join("am-b"));
    b.kill(); // the second member is down when the alert fires
    let mut t = start_tocsin(&dir.path().join("tocsin"), &[&a.url, &b.url]);

    let e = check(&t, 99.0);
    assert_eq!(e["df_status"], "critical");
    a.wait_for("the alert in the live member", |x| {
        severities(x) == ["critical"]
    });
    let failed = eventually(10, || {
        let d = t.get("/api/v1/deliveries?status=failed");
        (d["count"] == 1).then_some(d)
    })
    .expect("the delivery to the down member is retrying");
    assert_eq!(
        failed["deliveries"][0]["url"],
        format!("{}/api/v2/alerts", b.url)
    );
    b.spawn();
    b.wait_for("the alert once the member is up", |x| {
        severities(x) == ["critical"]
    });

    // tocsin down longer than endsAt is ahead: Alertmanager resolves the alert by itself...
    assert!(t.stop().success());
    a.wait_for("the alert expired while tocsin was down", |x| x.is_empty());
    // ...and the restarted tocsin re-sends the open alert to both at once
    t.spawn();
    for am in [&a, &b] {
        let got = am.wait_for("the alert re-sent after the restart", |x| {
            severities(x) == ["critical"]
        });
        assert_eq!(got[0]["labels"]["host"], "web01");
        assert_eq!(got[0]["annotations"]["df_event_id"], e["df_event_id"]);
    }
}
