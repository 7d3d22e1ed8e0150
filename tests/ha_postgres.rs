//! High availability end to end: two `tocsin serve` replicas on one real PostgreSQL (Debian's
//! `postgresql`, started by `initdb` + `pg_ctl` into a temporary directory on a loopback port),
//! the same monitor files, every write sent to both, a webhook receiver on loopback.
//!
//! What must hold: each tick stored once, whichever replica ran it; the replica that owns the
//! monitors is killed with SIGKILL and the other takes them over within the lease time with
//! the open rounds intact; each round start delivered once per target across replicas; a
//! manual recovery on one replica closes the round for the other. Skips (and says so) where
//! PostgreSQL is not installed.

mod common;
#[path = "../src/events/pg_test_server.rs"]
mod pg_test_server;

use common::hook::Receiver;
use common::{eventually, free_port, now, Tocsin};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Monitors run every second over `cpu`, one object per host.
const SCHEDULED: [&str; 4] = ["m1", "m2", "m3", "m4"];

fn scheduled(id: &str) -> String {
    format!(
        "id = \"{id}\"\npolicy = \"oncall\"\nevery = \"1s\"\ninterval = \"10s\"\n[query]\nmeasurement = \"cpu\"\nfield = \"usage\"\nagg = \"last\"\nby = [\"host\"]\n[rules]\ncritical = \"Result > 90\"\n"
    )
}

/// A manual monitor over `mem`, for the recovery across replicas.
const MANUAL: &str = "id = \"manual\"\nmanual = true\ninterval = \"1m\"\n[query]\nmeasurement = \"mem\"\nfield = \"used\"\nagg = \"last\"\nby = [\"host\"]\n[rules]\ncritical = \"Result > 90\"\n";

fn replica(dir: &Path, name: &str, pg: &str, hook: u16) -> Tocsin {
    std::fs::create_dir_all(dir.join("monitors")).unwrap();
    for id in SCHEDULED {
        std::fs::write(dir.join(format!("monitors/{id}.toml")), scheduled(id)).unwrap();
    }
    std::fs::write(dir.join("monitors/manual.toml"), MANUAL).unwrap();
    Tocsin::start(
        dir,
        &format!(
            "[host_input]\nenabled = false\n[state]\npostgres = \"{pg}\"\nreplica = \"{name}\"\n\
             [[policies]]\nid = \"oncall\"\nsilent_timeout = \"1h\"\n[[policies.targets]]\nurl = \"http://127.0.0.1:{hook}/hook\"\n"
        ),
    )
}

/// Every write goes to every live replica (the "each replica receives every write" setup).
fn write_all(urls: &[String], line: &str) {
    for u in urls {
        // A replica being killed may refuse; the others still get it.
        let _ = ureq::post(&format!("{u}/write?precision=s"))
            .timeout(Duration::from_secs(5))
            .send_string(line);
    }
}

/// Keeps `cpu,host=web01 usage=95` arriving every 300 ms at the replicas in `urls`.
struct Feeder {
    stop: Arc<AtomicBool>,
    urls: Arc<parking_lot::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    fn start(urls: Vec<String>) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let urls = Arc::new(parking_lot::Mutex::new(urls));
        let (s, u) = (stop.clone(), urls.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let list = u.lock().clone();
                write_all(&list, &format!("cpu,host=web01 usage=95 {}", now()));
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Feeder {
            stop,
            urls,
            thread: Some(thread),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn events(t: &Tocsin, query: &str) -> Vec<Value> {
    t.get(&format!("/api/v1/events?limit=5000&{query}"))["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// monitor id → owning replica, as `t` reports it.
fn owners(t: &Tocsin) -> BTreeMap<String, Option<String>> {
    t.get("/api/v1/monitors")["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["owner"]["replica"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn recover_body(monitor: &str) -> Vec<u8> {
    json!({"monitor": monitor, "user_id": "u1", "user_name": "Ann",
           "user_email": "ann@example.com", "message": "handled on b"})
    .to_string()
    .into_bytes()
}

/// One test: the PostgreSQL server is per test binary and the second part stops it.
#[test]
fn ha_pair_on_postgres() {
    let Some(pg) = pg_test_server::server() else {
        return;
    };
    two_replicas_share_monitors_survive_kill9_and_see_each_others_recoveries(pg);
    losing_postgres_is_visible_and_recovers_and_a_newer_schema_is_refused(pg);
}

fn two_replicas_share_monitors_survive_kill9_and_see_each_others_recoveries(
    pg: &pg_test_server::TestPg,
) {
    let url = pg.fresh_db();
    let hook_port = free_port();
    let hook = Receiver::start(hook_port);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = replica(da.path(), "a", &url, hook_port);
    // a starts alone, so it takes every lease; b joins as the standby.
    let all_owned_by = |t: &Tocsin, who: &str| {
        let o = owners(t);
        o.values().all(|r| r.as_deref() == Some(who)).then_some(o)
    };
    eventually(20, || all_owned_by(&a, "a")).expect("a holds every monitor");
    let mut b = replica(db.path(), "b", &url, hook_port);
    let feeder = Feeder::start(vec![a.url.clone(), b.url.clone()]);

    // Both replicas serve the same store of events; every tick is stored once.
    let opened = eventually(20, || {
        let ev = events(&b, "status=critical");
        let per: BTreeSet<&str> = ev
            .iter()
            .map(|e| e["df_monitor_checker_id"].as_str().unwrap_or(""))
            .collect();
        (SCHEDULED.iter().all(|m| per.contains(m)) && ev.len() >= 12).then_some(ev)
    })
    .expect("every scheduled monitor alerts");
    assert_eq!(
        owners(&b).get("m1").cloned().flatten().as_deref(),
        Some("a")
    );
    let ids: BTreeSet<&str> = opened
        .iter()
        .map(|e| e["df_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), opened.len(), "no event stored twice");
    let mut per_tick: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for e in &opened {
        *per_tick
            .entry((
                e["df_monitor_checker_id"].as_str().unwrap().to_string(),
                e["date"].as_i64().unwrap(),
            ))
            .or_default() += 1;
    }
    assert!(
        per_tick.values().all(|n| *n == 1),
        "one event per monitor and tick: {per_tick:?}"
    );
    let starts: BTreeMap<String, i64> = b.get("/api/v1/issues")["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["monitor"].as_str().unwrap().to_string(),
                i["issue_start"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        starts.len(),
        SCHEDULED.len(),
        "one open round per monitor: {starts:?}"
    );

    // kill -9 the owner: b takes every monitor over within the lease time.
    let killed_at = Instant::now();
    let killed_sec = now();
    a.kill9();
    feeder.urls.lock().retain(|u| u != &a.url);
    eventually(30, || all_owned_by(&b, "b")).expect("b takes the monitors over");
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");
    // b's checks continue the rounds a opened: same issue start, no new round.
    let after = eventually(20, || {
        let ev: Vec<Value> = events(&b, "status=critical")
            .into_iter()
            .filter(|e| e["date"].as_i64().unwrap() > killed_sec + 1)
            .collect();
        let per: BTreeSet<&str> = ev
            .iter()
            .map(|e| e["df_monitor_checker_id"].as_str().unwrap_or(""))
            .collect();
        SCHEDULED.iter().all(|m| per.contains(m)).then_some(ev)
    })
    .expect("b checks every monitor after the takeover");
    for e in &after {
        let m = e["df_monitor_checker_id"].as_str().unwrap();
        assert_eq!(
            e["df_issue_start_time"].as_i64(),
            starts.get(m).copied(),
            "the round a opened goes on: {e}"
        );
    }
    assert_eq!(b.get("/api/v1/issues")["count"], SCHEDULED.len());

    // One delivery per round start and target, across both replicas and the takeover (repeats
    // are held back by silent_timeout).
    hook.wait_for("hook", SCHEDULED.len(), 20);
    std::thread::sleep(Duration::from_millis(2500));
    let got = hook.got("hook");
    assert_eq!(got.len(), SCHEDULED.len(), "one alert per monitor: {got:?}");
    let sent: BTreeSet<&str> = got
        .iter()
        .map(|r| r.body["df_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), SCHEDULED.len());

    // a comes back as the standby: a manual recovery on it closes b's round.
    a.spawn();
    drop(feeder);
    write_all(
        &[a.url.clone(), b.url.clone()],
        &format!("mem,host=db1 used=97 {}", now() - 5),
    );
    common::next_second();
    let first = b.run("manual", None);
    assert_eq!(first["events"][0]["df_status"], "critical", "{first}");
    let start = first["events"][0]["df_issue_start_time"].as_i64().unwrap();
    let (code, body) = a.post(
        "/api/v1/issues/recover",
        &recover_body("manual"),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 200, "{body}");
    let rec: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rec["recovered"], 1, "{rec}");
    assert_eq!(rec["events"][0]["df_status"], "manual_ok");
    let open_manual = |t: &Tocsin| {
        t.get("/api/v1/issues?monitor=manual")["count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(open_manual(&b), 0, "b sees the recovery made on a");
    assert_eq!(events(&b, "status=manual_ok").len(), 1);
    // b's next check of the still-high value opens a new round: it knows the old one closed.
    common::next_second();
    let again = b.run("manual", None);
    assert_eq!(again["events"][0]["df_status"], "critical");
    assert!(
        again["events"][0]["df_issue_start_time"].as_i64().unwrap() > start,
        "a new round after the recovery: {again}"
    );
    // Both replicas report the backend; /metrics says how many monitors each owns.
    let h = a.get("/healthz");
    assert_eq!(h["state"]["backend"], "postgres", "{h}");
    assert_eq!(h["state"]["reachable"], true);
    assert_eq!(h["state"]["replica"], "a");
    let metrics = ureq::get(&format!("{}/metrics", b.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(&format!("tocsin_monitors_owned {}", SCHEDULED.len() + 1)),
        "b owns every monitor: {metrics}"
    );
    a.stop();
    b.stop();
}

/// PostgreSQL going away makes checks fail visibly and `/healthz` degrade; when it returns the
/// replica carries on by itself. A database of a newer schema is refused at start.
fn losing_postgres_is_visible_and_recovers_and_a_newer_schema_is_refused(
    pg: &pg_test_server::TestPg,
) {
    let url = pg.fresh_db();
    let hook_port = free_port();
    let _hook = Receiver::start(hook_port);
    let dir = tempfile::tempdir().unwrap();
    let t = replica(dir.path(), "solo", &url, hook_port);
    let feeder = Feeder::start(vec![t.url.clone()]);
    eventually(20, || {
        (!events(&t, "status=critical").is_empty()).then_some(())
    })
    .expect("checks run on PostgreSQL");
    // As a crash would: immediate stop, then start again on the same port.
    pg.stop();
    let degraded = eventually(15, || {
        let (code, body) = t.get_status("/healthz", None);
        (code == 503).then_some(body)
    })
    .expect("healthz degrades without PostgreSQL");
    assert!(degraded.contains("\"reachable\":false"), "{degraded}");
    let failing = eventually(15, || {
        let m = t.get("/api/v1/monitors");
        let m1 = m["monitors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "m1")
            .cloned()
            .unwrap();
        m1["last_error"].as_str().map(str::to_string)
    })
    .expect("the check failure shows in last_error");
    assert!(!failing.is_empty());
    // A custom event or a recovery that cannot be stored is refused, never acknowledged.
    let custom = |t: &Tocsin| {
        t.post(
            "/api/v1/events/create",
            json!({"status": "warning", "title": "disk filling on db01", "customTags": {"host": "db01"}})
                .to_string()
                .as_bytes(),
            &[("Content-Type", "application/json")],
        )
    };
    let (code, body) = custom(&t);
    assert!(
        code >= 500,
        "refused while PostgreSQL is away: {code} {body}"
    );
    let (code, body) = t.post(
        "/api/v1/issues/recover",
        &recover_body("m1"),
        &[("Content-Type", "application/json")],
    );
    assert!(
        code >= 500,
        "recovery refused while PostgreSQL is away: {code} {body}"
    );
    pg.restart().expect("PostgreSQL starts again");
    let back = now();
    eventually(30, || {
        let (code, _) = t.get_status("/healthz", None);
        let fresh = events(&t, "status=critical")
            .iter()
            .any(|e| e["date"].as_i64().unwrap() > back);
        (code == 200 && fresh).then_some(())
    })
    .expect("checks go on once PostgreSQL is back");
    let (code, body) = custom(&t);
    assert_eq!(code, 200, "accepted again: {body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["content"]["df_event_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        t.get(&format!("/api/v1/events/{id}"))["df_status"],
        "warning"
    );
    drop(feeder);
    drop(t);

    // A schema from the future: serve refuses to start and says why.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE tocsin_schema SET version = version + 100")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::write(
        dir.path().join("tocsin.toml"),
        format!(
            "listen = \"127.0.0.1:{}\"\n[host_input]\nenabled = false\n[state]\npostgres = \"{url}\"\n",
            free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(dir.path().join("tocsin.toml"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--monitors")
        .arg(dir.path().join("monitors"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version") && err.contains("newer tocsin"),
        "{err}"
    );
}
