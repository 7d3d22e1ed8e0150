//! tocsin as an InfluxDB drop-in, against the real clients on loopback: the v1 Python client
//! (`influxdb`: Basic auth, ping, CREATE/SHOW DATABASES, writes), the v2 client
//! (`influxdb-client`: `Token` auth, health, ping, synchronous writes) and Glances' InfluxDB
//! export, each with the ingest token, and refused with a wrong one. Then the read side of a
//! server with every token set: which token reads, and deliveries that never show a secret.
//!
//! The clients come from the virtualenv `.ci/run` builds (`target/sdk-venv`, or `TOCSIN_PY`);
//! without it the client tests print "skipping". Points are counted through manual
//! monitors ([`COUNTER`] over `durable`).

mod common;

use common::python::{python, run_bounded, sdk_script};
use common::{eventually, free_port, Tocsin, COUNTER};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const INGEST: &str = "in-secret";
const ADMIN: &str = "ad-secret";
const READ: &str = "rd-secret";

/// A tocsin with all three tokens, [`COUNTER`] and the monitors given, host input off.
fn server(dir: &Path, extra: &str, monitors: &[(&str, &str)]) -> Tocsin {
    std::fs::create_dir_all(dir.join("monitors")).unwrap();
    std::fs::write(dir.join("monitors/count.toml"), COUNTER).unwrap();
    for (name, body) in monitors {
        std::fs::write(dir.join("monitors").join(name), body).unwrap();
    }
    Tocsin::start(
        dir,
        &format!(
            "ingest_token = \"{INGEST}\"\nadmin_token = \"{ADMIN}\"\nread_token = \"{READ}\"\n{extra}\n[host_input]\nenabled = false\n"
        ),
    )
}

/// Runs `tests/sdk/<script>` with the virtualenv's interpreter, for at most 30 s.
fn script(py: &Path, name: &str, args: &[&str]) -> (i32, String) {
    sdk_script(py, name, args, 30)
}

fn host_port(t: &Tocsin) -> (String, String) {
    let hp = t.url.trim_start_matches("http://");
    let (h, p) = hp.split_once(':').unwrap();
    (h.to_string(), p.to_string())
}

#[test]
fn influxdb_v1_client_pings_creates_lists_and_writes_with_the_token_as_password() {
    let Some(py) = python("influxdb") else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = server(dir.path(), "", &[]);
    let (host, port) = host_port(&t);
    let (rc, out) = script(
        &py,
        "influx_v1_write.py",
        &[&host, &port, INGEST, "durable", "5"],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("ping version=1.8.10"), "{out}");
    assert!(
        out.contains("databases=['tocsin', 'telemetry']"),
        "SHOW DATABASES lists tocsin and the client's database: {out}"
    );
    assert_eq!(t.count_points(Some(ADMIN)), 5.0);
    // a wrong password: the write itself is refused (403), and so is CREATE DATABASE
    for extra in [&["write-only"][..], &[]] {
        let mut args = vec![host.as_str(), port.as_str(), "wrong", "durable", "5"];
        args.extend_from_slice(extra);
        let (rc, out) = script(&py, "influx_v1_write.py", &args);
        assert_eq!(rc, 3, "{out}");
        assert!(out.contains("status=403"), "{out}");
        assert!(out.contains("wrong token in Authorization: Basic"), "{out}");
    }
    assert_eq!(t.count_points(Some(ADMIN)), 5.0, "nothing more stored");
}

#[test]
fn influxdb_client_v2_checks_health_and_writes_with_the_token() {
    let Some(py) = python("influxdb_client") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = server(dir.path(), "", &[]);
    let (rc, out) = script(&py, "influx_v2_write.py", &[&t.url, INGEST, "durable", "4"]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("health status=pass version=1.8.10 message=ready for queries and writes"),
        "{out}"
    );
    assert!(out.contains("ping=True version=1.8.10 build=OSS"), "{out}");
    assert_eq!(t.count_points(Some(ADMIN)), 4.0);
    let (rc, out) = script(
        &py,
        "influx_v2_write.py",
        &[&t.url, "wrong", "durable", "4"],
    );
    assert_eq!(rc, 3, "{out}");
    assert!(
        out.contains("status=403") && out.contains("wrong token in Authorization: Token"),
        "{out}"
    );
    // the read token is no ingest token either
    let (rc, out) = script(&py, "influx_v2_write.py", &[&t.url, READ, "durable", "4"]);
    assert_eq!(rc, 3, "{out}");
    assert_eq!(t.count_points(Some(ADMIN)), 4.0, "nothing more stored");
}

/// Counts Glances' `load` points (field `min1`) by the `source` tag its config adds.
const GLANCES_LOAD: &str = r#"
id = "glances-load"
manual = true
interval = "1h"
[query]
measurement = "load"
field = "min1"
agg = "count"
by = ["source"]
[rules]
info = "Result >= 0"
"#;

/// Runs Glances headless for three refreshes of a second (it exports from the second on)
/// with its InfluxDB (v1) export pointed at `t` and `password`; its log and cache stay in
/// `dir`.
fn glances(glances: &Path, t: &Tocsin, dir: &Path, password: &str) -> (i32, String) {
    let (host, port) = host_port(t);
    let conf = dir.join("glances.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\ncheck_update=false\n[influxdb]\nhost={host}\nport={port}\nprotocol=http\nuser=glances\npassword={password}\ndb=glances\ntags=source:glances-test\n"
        ),
    )
    .unwrap();
    let (rc, out) = run_bounded(
        glances,
        &[
            "-C",
            conf.to_str().unwrap(),
            "--export",
            "influxdb",
            "--quiet",
            "--disable-check-update",
            "--stop-after",
            "3",
            "-t",
            "1",
            "--disable-plugin",
            "all",
            "--enable-plugin",
            "cpu,load,mem",
        ],
        &[("HOME", dir), ("XDG_CACHE_HOME", dir)],
        30,
    );
    let log = std::fs::read_to_string(dir.join("glances/glances.log")).unwrap_or_default();
    (rc, format!("{out}\n--- glances.log\n{log}"))
}

#[test]
fn glances_exports_its_stats_with_the_token_as_password() {
    let Some(py) = python("glances, influxdb") else {
        return;
    };
    let bin = py.with_file_name("glances");
    if !bin.is_file() {
        eprintln!("skipping: {} is missing", bin.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = server(dir.path(), "", &[("glances-load.toml", GLANCES_LOAD)]);
    let gdir = dir.path().join("glances-home");
    std::fs::create_dir_all(&gdir).unwrap();
    // Glances checks that its database exists (SHOW DATABASES) before it starts exporting.
    let (rc, out) = glances(&bin, &t, &gdir, INGEST);
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("Cannot export"), "{out}");
    // a fresh second: a check reads up to the start of its second
    common::next_second();
    let v = t.run("glances-load", Some(ADMIN));
    let ev = &v["events"][0];
    let n: f64 = ev["df_monitor_checker_value"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap();
    assert!(n >= 1.0, "Glances' load points were stored: {v}");
    assert!(
        ev["df_dimension_tags"]
            .as_str()
            .unwrap()
            .contains("glances-test"),
        "with the tags of its config: {v}"
    );
    // with a wrong password Glances cannot list its database and exits; nothing more arrives
    let (rc, out) = glances(&bin, &t, &gdir, "wrong");
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("403"), "{out}");
    common::next_second();
    let again = t.run("glances-load", Some(ADMIN));
    assert_eq!(
        again["events"][0]["df_monitor_checker_value"], ev["df_monitor_checker_value"],
        "{again}"
    );
}

/// A critical event on every run, for a policy whose target carries secrets.
const ALERT: &str = r#"
id = "alert"
policy = "dingtalk"
manual = true
interval = "1h"
[query]
measurement = "durable"
field = "v"
agg = "count"
[rules]
critical = "Result >= 1"
"#;

#[test]
fn reads_need_the_read_or_admin_token_and_deliveries_hide_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the delivery fails, and its error names the URL too.
    let dead = free_port();
    let policy = format!(
        "[[policies]]\nid = \"dingtalk\"\n[[policies.targets]]\nurl = \"http://bot:hunter2@127.0.0.1:{dead}/robot/send?access_token=s3cr3t-dingtalk&sign=sig-9f2e\"\n"
    );
    let t = server(dir.path(), &policy, &[("alert.toml", ALERT)]);
    let (code, body) = t.post_token("/write", b"durable v=1", Some(INGEST));
    assert_eq!(code, 204, "{body}");
    common::next_second();
    assert_eq!(
        t.run("alert", Some(ADMIN))["events"][0]["df_status"],
        "critical"
    );

    let reads = [
        "/api/v1/events",
        "/api/v1/events/stats",
        "/api/v1/events/stream",
        "/api/v1/issues",
        "/api/v1/monitors",
        "/api/v1/deliveries",
    ];
    for path in reads {
        let (code, body) = t.get_status(path, None);
        assert_eq!(code, 401, "{path}: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("read_token or the admin_token"),
            "{path}: {body}"
        );
        let (code, body) = t.get_status(path, Some(INGEST));
        assert_eq!(code, 403, "the ingest token does not read {path}: {body}");
        for token in [READ, ADMIN] {
            if path.ends_with("/stream") {
                // The stream stays open: the status is enough, the body is never read.
                let r = ureq::get(&format!("{}{path}", t.url))
                    .timeout(Duration::from_secs(5))
                    .set("Authorization", &format!("Bearer {token}"))
                    .call()
                    .unwrap_or_else(|e| panic!("{path} with {token}: {e}"));
                assert_eq!(r.status(), 200);
                assert_eq!(r.header("content-type"), Some("text/event-stream"));
                continue;
            }
            let (code, body) = t.get_status(path, Some(token));
            assert_eq!(code, 200, "{path} with {token}: {body}");
        }
    }
    // liveness, the InfluxDB probes and the Prometheus scrape stay open
    for path in ["/healthz", "/ping", "/health", "/metrics"] {
        let code = match ureq::get(&format!("{}{path}", t.url)).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{path}: {e}"),
        };
        assert!((200..300).contains(&code), "{path}: {code}");
    }

    // the delivery, once tried: neither the URL nor the error shows a secret
    let d = eventually(15, || {
        let d = t.get_token("/api/v1/deliveries", Some(READ));
        (d["deliveries"][0]["attempts"].as_i64() >= Some(1)).then_some(d)
    })
    .expect("the delivery is tried within 15 s");
    let text = d.to_string();
    for secret in ["s3cr3t-dingtalk", "hunter2", "bot:", "sig-9f2e"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let row = &d["deliveries"][0];
    assert_eq!(
        row["url"],
        format!("http://***@127.0.0.1:{dead}/robot/send?access_token=***&sign=***")
    );
    assert!(row["last_error"].as_str().is_some(), "{row}");
}
