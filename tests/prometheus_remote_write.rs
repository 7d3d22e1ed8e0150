//! Prometheus remote write 1.0 into `POST /api/v1/write` of a real `tocsin serve`: the HTTP
//! contract (204 once durable, 400/413/415 with a message, all-or-nothing, what is ignored is
//! counted in `/metrics`), then real senders: Prometheus and vmagent scraping tocsin's own
//! `/metrics` and writing it back, with the ingest token (and a wrong one). Those two skip
//! when the program is not installed.

mod common;

use common::{eventually, free_port, next_second, program, Program, Tocsin};
use prost::Message;
use serde_json::Value;
use std::path::Path;
use tocsin::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, STALE_NAN};

/// A manual monitor summing `rw` (field `value`) per `job` over the last hour.
const SUM: &str = r#"
id = "rw"
manual = true
interval = "1h"
[query]
measurement = "rw"
field = "value"
agg = "sum"
by = ["job"]
[rules]
info = "Result >= 0"
"#;

/// A manual monitor reading the last `tocsin_series_limit` per scrape target, as a Prometheus
/// sender stores it after scraping tocsin's own `/metrics`.
const LIMIT: &str = r#"
id = "limit"
manual = true
interval = "1h"
[query]
measurement = "tocsin_series_limit"
field = "value"
agg = "last"
by = ["job", "instance"]
[rules]
info = "Result >= 0"
"#;

/// `[limits] max_series` in the servers the real senders write to: the value they must carry
/// back from `/metrics`.
const MAX_SERIES: u64 = 54_321;

const TOKEN: &str = "rw-secret";

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn body(series: Vec<TimeSeries>) -> Vec<u8> {
    snappy(
        &WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec(),
    )
}

/// The headers Prometheus sends.
const PROM: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn metrics_text(t: &Tocsin) -> String {
    ureq::get(&format!("{}/metrics", t.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

/// The value of one sample line of `/metrics` (`name{labels}` exactly as written).
fn metric(t: &Tocsin, series: &str) -> Option<f64> {
    metrics_text(t)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"].as_str().unwrap().to_string()
}

/// A server with [`SUM`] installed, no host input, `config` added.
fn server(dir: &Path, config: &str) -> Tocsin {
    std::fs::create_dir_all(dir.join("monitors")).unwrap();
    std::fs::write(dir.join("monitors/rw.toml"), SUM).unwrap();
    std::fs::write(dir.join("monitors/limit.toml"), LIMIT).unwrap();
    Tocsin::start(dir, &format!("{config}\n[host_input]\nenabled = false\n"))
}

#[test]
fn remote_write_is_durable_all_or_nothing_and_explains_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(
        dir.path(),
        &format!("ingest_token = \"{TOKEN}\"\nmax_body_bytes = 4096"),
    );
    let auth = format!("Bearer {TOKEN}");
    let mut headers = PROM.to_vec();
    headers.push(("Authorization", auth.as_str()));
    let post = |body: &[u8], headers: &[(&str, &str)]| s.post("/api/v1/write", body, headers);
    let t = now_ms() - 5_000;

    // tokens, as on every write endpoint
    let good = body(vec![series(
        &[("__name__", "rw"), ("job", "a")],
        &[(1.5, t), (2.0, t + 1)],
    )]);
    assert_eq!(post(&good, &PROM).0, 401);
    let (code, _) = post(&good, &[("Authorization", "Bearer wrong")]);
    assert_eq!(code, 403);

    // 204, and what is not a sample is counted: a stale marker, a native histogram, metadata
    let (code, text) = post(&good, &headers);
    assert_eq!((code, text.as_str()), (204, ""));
    let mut marked = series(
        &[("__name__", "rw"), ("job", "a")],
        &[(f64::from_bits(STALE_NAN), t + 2), (0.5, t + 3)],
    );
    marked.histograms = vec![Default::default(); 2];
    let req = WriteRequest {
        timeseries: vec![marked],
        metadata: vec![Default::default()],
    };
    // no Content-Encoding: snappy is assumed
    let (code, text) = post(
        &snappy(&req.encode_to_vec()),
        &[("Authorization", auth.as_str())],
    );
    assert_eq!(code, 204, "{text}");
    // a series the store's limits refuse, and one without a name: 400 naming it, and the
    // good series sent with it is not stored (all or nothing)
    for (bad, want) in [
        (
            series(&[("job", "b")], &[(1.0, t)]),
            "series 1 ({job=\"b\"}) has no __name__ label",
        ),
        (
            series(
                &[("__name__", "rw"), ("job", "b")],
                &[(1.0, 8_000_000_000_000)],
            ),
            "series 1 (rw{job=\"b\"}): sample at",
        ),
    ] {
        let mixed = body(vec![
            series(&[("__name__", "rw"), ("job", "b")], &[(100.0, t)]),
            bad,
        ]);
        let (code, text) = post(&mixed, &headers);
        assert_eq!(code, 400, "{text}");
        assert!(error_of(&text).starts_with(want), "{text}");
    }
    // garbage bodies: 400 saying what was wrong
    let (code, text) = post(b"\xff\xff\xff\xff\xff\xffnot snappy", &headers);
    assert_eq!(code, 400);
    assert!(error_of(&text).contains("not snappy-compressed"), "{text}");
    let (code, text) = post(&snappy(b"\x0a\x7fshort"), &headers);
    assert_eq!(code, 400);
    assert!(
        error_of(&text).contains("not a remote write 1.0 WriteRequest"),
        "{text}"
    );
    // too large: as sent (the body limit), and once decompressed (snappy's declared length,
    // checked before decompressing)
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (code, text) = post(&noise, &headers);
    assert_eq!(code, 413, "{text}");
    let bomb = body(vec![series(
        &[("__name__", "rw"), ("job", "c")],
        &[(1.0, t); 500],
    )]);
    assert!(bomb.len() < 4096, "{} bytes", bomb.len());
    let (code, text) = post(&bomb, &headers);
    assert_eq!(code, 413, "{text}");
    assert!(error_of(&text).contains("would decompress to"), "{text}");
    // remote write 2.0: 415 saying only 1.0 is taken
    let v2 = [
        (
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
        ("Authorization", auth.as_str()),
    ];
    let (code, text) = post(&good, &v2);
    assert_eq!(code, 415, "{text}");
    assert!(
        error_of(&text).contains("accepts only Prometheus remote write 1.0"),
        "{text}"
    );

    let figure = |what: &str| {
        metric(
            &s,
            &format!("tocsin_remote_write_ignored_total{{what=\"{what}\"}}"),
        )
    };
    assert_eq!(metric(&s, "tocsin_remote_write_samples_total"), Some(3.0));
    assert_eq!(figure("stale"), Some(1.0));
    assert_eq!(figure("histogram"), Some(2.0));
    assert_eq!(figure("metadata"), Some(1.0));
    assert_eq!(figure("exemplar"), Some(0.0));

    // durable: after kill -9, exactly the accepted samples are there
    s.kill9();
    s.spawn();
    next_second();
    let v = s.run("rw", None);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "only job a was stored: {v}");
    assert_eq!(events[0]["job"], "a");
    assert_eq!(
        events[0]["df_monitor_checker_value"], "4",
        "1.5 + 2 + 0.5: {v}"
    );
}

/// Waits (at most 30 s) for [`LIMIT`] to see a `tocsin_series_limit` sample that a sender
/// scraped from `t` and wrote back; panics with `sender`'s log.
fn wait_for_scraped_limit(t: &Tocsin, job: &str, sender: &Program) {
    let instance = t.url.trim_start_matches("http://").to_string();
    let seen = eventually(30, || {
        next_second();
        let v = t.run("limit", None);
        v["events"].as_array()?.first().cloned()
    });
    let Some(e) = seen else {
        panic!(
            "no tocsin_series_limit sample arrived in 30 s\nsender log:\n{}\nserver log:\n{}",
            sender.log_text(),
            std::fs::read_to_string(t.dir.join("server.log")).unwrap_or_default()
        );
    };
    assert_eq!(e["job"], job, "{e}");
    assert_eq!(e["instance"], instance.as_str(), "{e}");
    assert_eq!(e["df_monitor_checker_value"], MAX_SERIES.to_string(), "{e}");
}

#[test]
fn prometheus_scrapes_tocsin_and_remote_writes_back_with_the_token() {
    let Some(bin) = program(&["prometheus"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = server(
        dir.path(),
        &format!("ingest_token = \"{TOKEN}\"\n[limits]\nmax_series = {MAX_SERIES}"),
    );
    let target = t.url.trim_start_matches("http://");
    // two queues to the same tocsin: one with the token, one with a wrong one
    let remote = |name: &str, token: &str| {
        format!(
            "  - name: {name}\n    url: {}/api/v1/write\n    authorization:\n      \
             credentials: {token}\n    queue_config:\n      batch_send_deadline: 1s\n      \
             min_backoff: 100ms\n      max_backoff: 1s\n      retry_on_http_429: true\n    \
             metadata_config:\n      \
             send_interval: 1s\n",
            t.url
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tocsin\n    \
         static_configs:\n      - targets: ['{target}']\nremote_write:\n{}{}",
        remote("good", TOKEN),
        remote("bad", "not-the-token")
    );
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let prom = Program::start(
        &bin,
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address={web}"),
            "--log.level=info".into(),
        ],
        &dir.path().join("prometheus.log"),
    );
    prom.wait_ready(&format!("http://{web}/-/ready"), 30);
    wait_for_scraped_limit(&t, "tocsin", &prom);
    // Prometheus also sent its metric metadata, which is counted, not stored
    let metadata = "tocsin_remote_write_ignored_total{what=\"metadata\"}";
    assert!(
        eventually(10, || metric(&t, metadata).filter(|&n| n > 0.0)).is_some(),
        "{}",
        metrics_text(&t)
    );
    // the queue with the wrong token was refused with 403, which Prometheus does not retry
    let refused = eventually(10, || {
        let log = prom.log_text();
        (log.contains("remote_name=bad") && log.contains("403 Forbidden")).then_some(log)
    });
    assert!(refused.is_some(), "{}", prom.log_text());
    assert!(prom.log_text().contains("wrong token"));
    // Prometheus logs the refusal before it counts the samples: poll
    let failed = || -> f64 {
        ureq::get(&format!("http://{web}/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.starts_with("prometheus_remote_storage_samples_failed_total{")
                    && l.contains("remote_name=\"bad\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        eventually(10, || (failed() > 0.0).then_some(())).is_some(),
        "the bad queue counted no failed samples"
    );
}

#[test]
fn vmagent_scrapes_tocsin_and_remote_writes_back_with_the_token() {
    let Some(bin) = program(&["vmagent"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = server(
        dir.path(),
        &format!("ingest_token = \"{TOKEN}\"\n[limits]\nmax_series = {MAX_SERIES}"),
    );
    let target = t.url.trim_start_matches("http://");
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tocsin-vm\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let agent = Program::start(
        &bin,
        &[
            format!("-promscrape.config={}", cfg.display()),
            format!("-remoteWrite.url={}/api/v1/write", t.url),
            format!("-remoteWrite.bearerToken={TOKEN}"),
            format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("vmagent").display()
            ),
            "-remoteWrite.flushInterval=1s".into(),
            format!("-httpListenAddr={http}"),
        ],
        &dir.path().join("vmagent.log"),
    );
    agent.wait_ready(&format!("http://{http}/health"), 30);
    wait_for_scraped_limit(&t, "tocsin-vm", &agent);
}
