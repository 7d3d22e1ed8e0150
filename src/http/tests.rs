//! Route tests in process: `app(state).oneshot(request)` against scratch stores, an empty
//! monitor directory and a [`ManualClock`], so nothing waits on the wall clock or a socket.

use super::*;
use crate::check::Runner;
use crate::engine::Sources;
use crate::events::{Commit, EventDb};
use crate::metrics::Metrics;
use crate::model::event::Event;
use crate::model::ManualClock;
use crate::script::ScriptEngine;
use crate::store::Store;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

/// 2023-11-14T22:13:20Z
const NOW: i64 = 1_700_000_000;

struct Harness {
    state: AppState,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    fn with(configure: impl FnOnce(&mut AppState)) -> Harness {
        Harness::with_monitors(&[], configure)
    }

    /// With monitor files `(name, text)` in the monitor directory before the engine loads it.
    fn with_monitors(monitors: &[(&str, &str)], configure: impl FnOnce(&mut AppState)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
        for (name, text) in monitors {
            std::fs::write(dir.path().join("monitors").join(name), text).unwrap();
        }
        let store = Arc::new(Store::scratch());
        let db = Arc::new(EventDb::scratch());
        let metrics = Arc::new(Metrics::default());
        let runner = Arc::new(Runner {
            store: store.clone(),
            db: db.clone(),
            engine: Arc::new(ScriptEngine::new(Default::default())),
            policies: Default::default(),
            public_url: None,
            workers: Default::default(),
            datasources: Default::default(),
        });
        let engine = Engine::new(
            runner,
            metrics.clone(),
            Sources {
                monitors: dir.path().join("monitors"),
                scripts: dir.path().join("scripts"),
                policies: vec![],
                datasources: vec![],
            },
        );
        let ingest = Ingest::start(store, metrics, 1_000_000);
        let clock = ManualClock::at_secs(NOW);
        let mut state = AppState::new(engine, ingest, Worker::new(db), clock.clone());
        configure(&mut state);
        Harness {
            state,
            clock,
            _dir: dir,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// GET with `Authorization: Bearer <token>` (reads need the read or admin token once any
    /// token is configured).
    async fn get_as(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.send(
            Request::get(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, uri: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, Value) {
        let mut r = Request::post(uri);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn post_json(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        self.post(uri, &[JSON], &body.to_string()).await
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

// ------------------------------------------------------------------ writes

#[tokio::test]
async fn writes_accept_reject_and_name_the_bad_line() {
    let h = Harness::new();
    let (code, _) = h
        .post("/write?precision=s", &[], "cpu,host=a v=1 1700000000\n")
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    // points without a timestamp get the clock's time
    let (code, v) = h
        .post("/v1/write/metric?dry=true&echo=json", &[], "cpu v=2\n")
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v[0]["time"].as_i64(), Some(NOW * 1_000_000_000), "{v}");
    let (code, v) = h
        .post("/write", &[], "cpu v=1 1\ncpu v=2 2\ncpu v=oops 3\n")
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(v["line"], 3, "{v}");
    assert!(v["column"].as_u64().unwrap() > 0);
    assert!(v["error"].is_string());
    let (code, v) = h.post("/write?precision=year", &[], "cpu v=1\n").await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("precision"))
    );
}

#[tokio::test]
async fn write_token_is_checked_before_a_slot_is_taken() {
    let h = Harness::with(|s| s.ingest_token = Some("tok".into()));
    let line = "cpu v=1 1\n";
    let (code, v) = h.post("/write", &[], line).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(v["error"].as_str().unwrap().contains("Bearer"));
    let (code, _) = h
        .post("/write", &[("authorization", "Bearer nope")], line)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = h
        .post("/write", &[("authorization", "Bearer tok")], line)
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    // every slot taken: a request without a token is still told 401, not 429
    let held = h
        .state
        .ingest_slots
        .clone()
        .acquire_many_owned(INGEST_SLOTS as u32)
        .await
        .unwrap();
    assert_eq!(
        h.post("/write", &[], line).await.0,
        StatusCode::UNAUTHORIZED
    );
    let resp = app(h.state.clone())
        .oneshot(
            Request::post("/write")
                .header("authorization", "Bearer tok")
                .body(Body::from(line))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    drop(held);
    assert_eq!(
        h.post("/write", &[("authorization", "Bearer tok")], line)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

/// A body that sends `first` and then nothing, without ending.
fn stalled_body(
    first: &'static str,
) -> (
    Body,
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.try_send(Ok(Bytes::from_static(first.as_bytes())))
        .unwrap();
    (Body::from_stream(events::ReceiverStream(rx)), tx)
}

#[tokio::test]
async fn slow_bodies_get_408_and_free_their_slot() {
    let h = Harness::with(|s| s.body_timeout = std::time::Duration::from_millis(100));
    let (body, _keep_open) = stalled_body("cpu v=1");
    let (code, v) = h.send(Request::post("/write").body(body).unwrap()).await;
    assert_eq!(code, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert_eq!(v["error"], "request body not received within 100ms");
    assert_eq!(h.state.ingest_slots.available_permits(), INGEST_SLOTS);
    let (body, _keep_open) = stalled_body("{\"title\":");
    let req = Request::post("/api/v1/events/create")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(BODY_READ_TIMEOUT, std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let h = Harness::with(|s| s.max_body = 100);
    let (code, v) = h.post("/write", &[], &"x".repeat(1000)).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].as_str().unwrap().contains("100"), "{v}");
}

// ------------------------------------------------------------------ events and issues

fn guance(date_s: i64, status: &str, title: &str) -> Value {
    json!({"date": date_s * 1000, "status": status, "title": title, "message": "m", "customTags": {"host": "web01"}})
}

#[tokio::test]
async fn events_list_get_stats_and_paging_errors() {
    let h = Harness::new();
    for (t, st, title) in [
        (NOW - 30, "critical", "CPU high"),
        (NOW - 20, "info", "deploy"),
        (NOW - 10, "ok", "cpu back"),
    ] {
        let (code, v) = h
            .post_json("/api/v1/events/create", &guance(t, st, title))
            .await;
        assert_eq!(code, StatusCode::OK, "{v}");
    }
    let (code, v) = h.get("/api/v1/events").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["count"], 3);
    assert_eq!(v["events"][0]["df_status"], "ok", "newest first");
    let id = v["events"][2]["df_event_id"].as_str().unwrap().to_string();
    let (code, e) = h.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(
        (code, e["df_title"].as_str()),
        (StatusCode::OK, Some("CPU high"))
    );
    let (code, e) = h.get("/api/v1/events/event-nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(e["error"].is_string());
    // q ignores case; from/to bound the dates
    let (_, v) = h.get("/api/v1/events?q=CPU").await;
    assert_eq!(v["count"], 2);
    let (_, v) = h
        .get(&format!("/api/v1/events?q=cpu&from={}", NOW - 15))
        .await;
    assert_eq!(v["count"], 1);
    let (_, v) = h.get("/api/v1/events?limit=1&offset=1").await;
    assert_eq!(v["events"][0]["df_status"], "info");
    let (code, v) = h.get("/api/v1/events/stats?by=status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (v["total"].as_i64(), v["counts"]["critical"].as_i64()),
        (Some(3), Some(1))
    );
    let (code, v) = h.get("/api/v1/events/stats?by=colour").await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("by"))
    );
    for bad in [
        "offset=18446744073709551615",
        "offset=-1",
        "limit=10001",
        "from=yesterday-ish",
    ] {
        let (code, v) = h.get(&format!("/api/v1/events?{bad}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["field"].is_string(), "{bad}: {v}");
    }
    let (code, _) = h.get(&format!("/api/v1/events?offset={}", i64::MAX)).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn issues_and_manual_recovery() {
    let h = Harness::with(|s| s.admin_token = Some("adm".into()));
    let (code, _) = h
        .post_json(
            "/api/v1/events/create",
            &guance(NOW - 100, "critical", "disk full"),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    h.clock.advance_secs(50);
    let (code, v) = h.get_as("/api/v1/issues", "adm").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["count"], 1);
    assert_eq!(
        v["issues"][0]["duration"], 150,
        "duration at the app clock's now"
    );
    assert_eq!(
        h.get_as("/api/v1/issues?status=warning", "adm").await.1["count"],
        0
    );
    assert_eq!(h.get_as("/api/v1/issues?q=disk", "adm").await.1["count"], 1);
    // the same text match as the event list: ASCII case folded
    assert_eq!(
        h.get_as("/api/v1/issues?q=DISK%20Full", "adm").await.1["count"],
        1
    );
    assert_eq!(h.get_as("/api/v1/issues?q=cpu", "adm").await.1["count"], 0);
    let r = v["issues"][0]["event_ref"].as_str().unwrap().to_string();
    let who = json!({"refs": [r], "user_id": "u1", "user_name": "Ann", "user_email": "a@x"});
    let auth = ("authorization", "Bearer adm");
    let (code, _) = h.post_json("/api/v1/issues/recover", &who).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // a form post (what a web page can send cross-site) is refused
    let (code, v) = h
        .post(
            "/api/v1/issues/recover",
            &[auth, ("content-type", "application/x-www-form-urlencoded")],
            &who.to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("application/json"));
    let (code, v) = h
        .post("/api/v1/issues/recover", &[auth, JSON], r#"{"all": true}"#)
        .await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("user_id"))
    );
    let (code, v) = h
        .post("/api/v1/issues/recover", &[auth, JSON], &who.to_string())
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["recovered"], 1);
    assert_eq!(v["events"][0]["df_status"], "manual_ok");
    assert_eq!(h.get_as("/api/v1/issues", "adm").await.1["count"], 0);
}

#[tokio::test]
async fn unknown_monitor_is_404_and_lists_are_empty() {
    let h = Harness::new();
    let (code, v) = h.post("/api/v1/monitors/nope/run", &[], "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    let (code, v) = h.get("/api/v1/monitors").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["monitors"], json!([]));
    let (code, v) = h.get("/healthz").await;
    assert_eq!((code, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let resp = app(h.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&text).contains("tocsin_open_issues 0"));
}

// ------------------------------------------------------------------ custom events

#[tokio::test]
async fn guance_dialect_needs_json_and_token() {
    let h = Harness::with(|s| {
        s.ingest_token = Some("tok".into());
        s.read_token = Some("rd".into());
    });
    let auth = ("authorization", "Bearer tok");
    let body = guance(NOW, "critical", "CPU").to_string();
    assert_eq!(
        h.post("/api/v1/events/create", &[JSON], &body).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (code, _) = h
        .post(
            "/api/v1/events/create",
            &[auth, ("content-type", "text/plain")],
            &body,
        )
        .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (code, v) = h.post("/api/v1/events/create", &[auth, JSON], &body).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["content"]["duplicate"], false);
    let (_, v) = h.post("/api/v1/events/create", &[auth, JSON], &body).await;
    assert_eq!(v["content"]["duplicate"], true);
    let (code, v) = h
        .post(
            "/api/v1/events/create",
            &[auth, JSON],
            r#"{"status": "ok"}"#,
        )
        .await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("title"))
    );
    // no date: the app clock's time
    let (_, v) = h
        .post(
            "/api/v1/events/create",
            &[auth, JSON],
            r#"{"title": "no date"}"#,
        )
        .await;
    let id = v["content"]["df_event_id"].as_str().unwrap().to_string();
    assert_eq!(
        h.get_as(&format!("/api/v1/events/{id}"), "rd").await.1["date"],
        NOW
    );
}

#[tokio::test]
async fn huawei_dialect_validates_against_the_app_clock() {
    let h = Harness::new();
    let item = |t: i64| json!([{"event_name": "diskFull", "event_source": "app.disk", "time": t, "detail": {"event_level": "Critical", "resource_id": "r1"}}]);
    let (code, v) = h.post_json("/V1.0/p1/events", &item(NOW * 1000)).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v[0]["event_name"], "diskFull");
    // two hours ago by the app clock: out of the accepted window
    let (code, v) = h
        .post_json("/V1.0/p1/events", &item((NOW - 7200) * 1000))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        (v["error_code"].as_str(), v["field"].as_str()),
        (Some("CES.0014"), Some("time"))
    );
    assert_eq!(h.get("/api/v1/issues").await.1["count"], 1);
}

#[tokio::test]
async fn alibaba_dialect_answers_in_its_shape() {
    let h = Harness::with(|s| {
        s.ingest_token = Some("tok".into());
        s.read_token = Some("rd".into());
    });
    let q = "/?Action=PutCustomEvent&EventInfo.1.EventName=deploy&EventInfo.1.Content=v2";
    let (code, v) = h.post(q, &[], "").await;
    assert_eq!(
        (code, v["Code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("MissingToken"))
    );
    let auth = ("authorization", "Bearer tok");
    let (code, v) = h.post(q, &[auth], "").await;
    assert_eq!(
        (code, v["Code"].as_str()),
        (StatusCode::OK, Some("200")),
        "{v}"
    );
    assert!(v["RequestId"].is_string());
    let (code, v) = h.post("/?Action=Nope", &[auth], "").await;
    assert_eq!(
        (code, v["Code"].as_str()),
        (StatusCode::NOT_FOUND, Some("InvalidAction.NotFound"))
    );
    let (_, v) = h.get_as("/api/v1/events?source=custom", "rd").await;
    assert_eq!(v["events"][0]["df_title"], "deploy");
    assert_eq!(v["events"][0]["date"], NOW, "no Time: the app clock's time");
}

#[tokio::test]
async fn alibaba_nonces_belong_to_one_app() {
    use crate::custom::sign::{alibaba_signature, alibaba_string_to_sign, percent_encode};
    let keys = vec![crate::config::AccessKey {
        id: "AK".into(),
        secret: "SK".into(),
    }];
    let mut p = std::collections::BTreeMap::new();
    let ts = chrono::DateTime::from_timestamp(NOW, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for (k, v) in [
        ("AccessKeyId", "AK"),
        ("Action", "PutCustomEvent"),
        ("EventInfo.1.Content", "c"),
        ("EventInfo.1.EventName", "n"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "nonce-1"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", ts.as_str()),
    ] {
        p.insert(k.to_string(), v.to_string());
    }
    let sig = alibaba_signature(&alibaba_string_to_sign("GET", &p), "SK");
    p.insert("Signature".into(), sig);
    let uri = format!(
        "/?{}",
        p.iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let a = Harness::with(|s| s.access_keys = keys.clone());
    let b = Harness::with(|s| s.access_keys = keys.clone());
    assert_eq!(a.get(&uri).await.0, StatusCode::OK);
    let (code, v) = a.get(&uri).await;
    assert_eq!(
        (code, v["Code"].as_str()),
        (StatusCode::FORBIDDEN, Some("SignatureNonceUsed"))
    );
    assert_eq!(
        b.get(&uri).await.0,
        StatusCode::OK,
        "another app has its own nonce cache"
    );
}

#[tokio::test]
async fn cloudevents_dialect_modes_and_limits() {
    let h = Harness::new();
    let ev = json!({"specversion": "1.0", "id": "e1", "source": "cvm", "type": "ping_unreachable", "subject": "ins-1", "status": "1"});
    let (code, v) = h
        .post(
            "/v1/cloudevents",
            &[("content-type", "application/cloudevents+json")],
            &ev.to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        (v["accepted"].as_i64(), v["stored"].as_i64()),
        (Some(1), Some(1))
    );
    let (code, v) = h
        .post(
            "/v1/cloudevents",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "e2"),
                ("ce-source", "cvm"),
                ("ce-type", "t"),
            ],
            "plain text data",
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let big = "y".repeat(cloudevents_max() + 1);
    let (code, v) = h
        .post(
            "/v1/cloudevents",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "e3"),
                ("ce-source", "cvm"),
                ("ce-type", "t"),
            ],
            &big,
        )
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["rule"], "at most 65536 bytes");
    let mut no_id = ev.clone();
    no_id.as_object_mut().unwrap().remove("id");
    let (code, v) = h
        .post(
            "/v1/cloudevents",
            &[("content-type", "application/cloudevents+json")],
            &no_id.to_string(),
        )
        .await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );
    assert_eq!(h.get("/api/v1/issues").await.1["count"], 1);
}

fn cloudevents_max() -> usize {
    crate::custom::cloudevents::MAX_EVENT_BYTES
}

// ------------------------------------------------------------------ stream

fn stream_event(id: &str, date: i64, title: &str) -> Event {
    let mut e = Event::new();
    e.set("df_event_id", id);
    e.set("date", date);
    e.set("df_status", "critical");
    e.set("df_source", "monitor");
    e.set("df_title", title);
    e.set("df_message", "");
    e
}

/// The `id:` lines of SSE frames until `last` arrives.
async fn stream_ids_until(body: &mut Body, last: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut text = String::new();
    while !ids.iter().any(|i| i == last) {
        let frame = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)),
        )
        .await
        .expect("the stream sends the last event")
        .expect("the stream stays open")
        .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let chunk: String = text.drain(..end + 2).collect();
            ids.extend(
                chunk
                    .lines()
                    .filter_map(|l| l.strip_prefix("id:"))
                    .map(|s| s.trim().to_string()),
            );
        }
    }
    ids
}

#[tokio::test]
async fn stream_applies_the_list_filter() {
    let h = Harness::new();
    let uri = format!("/api/v1/events/stream?q=CPU&from={}&to={}", NOW - 100, NOW);
    let resp = app(h.state.clone())
        .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let events = vec![
        stream_event("too-old", NOW - 200, "cpu high"),
        stream_event("match-lower", NOW - 50, "cpu high"),
        stream_event("other-text", NOW - 40, "disk full"),
        stream_event("too-new", NOW + 10, "CPU high"),
        stream_event("match-upper", NOW - 30, "CPU HIGH"),
    ];
    let db = h.state.engine.runner.db.clone();
    db.commit(Commit {
        events: events.clone(),
        ..Default::default()
    })
    .unwrap();
    let seen = stream_ids_until(&mut body, "match-upper").await;
    assert_eq!(seen, vec!["match-lower", "match-upper"]);
    // and the list API returns the same events for the same filter
    let (_, v) = h.get(&uri.replace("/stream", "")).await;
    let listed: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["df_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec!["match-upper", "match-lower"]);
    let (code, _) = h.get("/api/v1/events/stream?limit=x").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn heavy_reads_beyond_the_bound_wait_then_get_429() {
    let h = Harness::with(|st| st.heavy_read_wait = std::time::Duration::from_millis(50));
    // Every turn taken, as by HEAVY_READS slow lists in flight.
    let held = h
        .state
        .heavy_reads
        .clone()
        .acquire_many_owned(HEAVY_READS as u32)
        .await
        .unwrap();
    for uri in [
        "/api/v1/events?limit=10000",
        "/api/v1/events/stats?by=status",
        "/api/v1/issues",
        "/api/v1/deliveries",
    ] {
        let (code, body) = h.get(uri).await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{uri}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("heavy reads"),
            "{body}"
        );
    }
    // A single event by id is cheap: not bounded.
    let (code, _) = h.get("/api/v1/events/event-none").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    drop(held);
    let (code, body) = h.get("/api/v1/events?limit=10000").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 0);
}

// ------------------------------------------------------------------ InfluxDB drop-in

/// The status and headers of a request whose body is not read (a stream, a HEAD).
async fn head_of(h: &Harness, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap) {
    let resp = app(h.state.clone()).oneshot(req).await.unwrap();
    (resp.status(), resp.headers().clone())
}

/// Installs the notifier (no policies), which creates the outbox `/api/v1/deliveries` lists.
fn with_outbox(h: &Harness) {
    let notifier = crate::notify::Notifier::new(&crate::config::Config::default());
    h.state
        .engine
        .runner
        .db
        .set_hook(Arc::new(notifier))
        .unwrap();
}

#[tokio::test]
async fn influx_probes_answer_like_influxdb() {
    let h = Harness::with(|s| s.ingest_token = Some("tok".into()));
    for method in ["GET", "HEAD"] {
        let req = Request::builder()
            .method(method)
            .uri("/ping")
            .body(Body::empty())
            .unwrap();
        let (code, headers) = head_of(&h, req).await;
        assert_eq!(code, StatusCode::NO_CONTENT, "{method} /ping, open");
        assert_eq!(headers["x-influxdb-version"], influx::INFLUXDB_VERSION);
        assert_eq!(headers["x-influxdb-build"], "OSS");
    }
    let (code, v) = h.get("/ping?verbose=true").await;
    assert_eq!((code, v), (StatusCode::OK, json!({"version": "1.8.10"})));
    let (code, v) = h.get("/health").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (&v["name"], &v["status"], &v["checks"], &v["version"]),
        (
            &json!("influxdb"),
            &json!("pass"),
            &json!([]),
            &json!("1.8.10")
        )
    );
    assert_eq!(v["message"], "ready for queries and writes");
    assert!(v["commit"].as_str().unwrap().starts_with("tocsin-"), "{v}");
}

#[tokio::test]
async fn query_answers_writers_behind_the_ingest_token() {
    let h = Harness::with(|s| s.ingest_token = Some("tok".into()));
    let (code, v) = h.get("/query?q=SHOW%20DATABASES").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{v}");
    let (code, _) = h.get("/query?q=SHOW%20DATABASES&u=x&p=nope").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // the v1 clients: q in the query string, the token as the password
    let (code, v) = h
        .get("/query?q=SHOW%20DATABASES&db=glances&u=x&p=tok")
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        v["results"][0]["series"][0]["values"],
        json!([["tocsin"], ["glances"]])
    );
    // Telegraf: a form body
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "telegraf:tok")
    );
    let (code, v) = h
        .post(
            "/query",
            &[
                ("authorization", basic.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "q=CREATE+DATABASE+%22telegraf%22%3B+SHOW+DATABASES",
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0], json!({"statement_id": 0}));
    assert_eq!(v["results"][1]["statement_id"], 1);
    let auth = ("authorization", "Token tok");
    let (code, v) = h
        .post("/query?q=SELECT%20*%20FROM%20cpu", &[auth], "")
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("SELECT * FROM cpu") && e.contains("only accepts writes"),
        "{e}"
    );
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "InfluxDB's error shape: {v}"
    );
    let (code, v) = h.post("/query", &[auth], "").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "missing required parameter \"q\"");
}

#[tokio::test]
async fn every_write_endpoint_takes_every_influxdb_auth_form() {
    let h = Harness::with(|s| s.ingest_token = Some("tok".into()));
    let basic = |up: &str| {
        format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, up)
        )
    };
    let good: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("authorization", "Bearer tok".into())], ""),
        (vec![("authorization", "Token tok".into())], ""),
        (vec![("authorization", basic("anyone:tok"))], ""),
        (vec![], "u=anyone&p=tok"),
    ];
    for path in ["/write", "/api/v2/write", "/v1/write/metric"] {
        for (headers, query) in &good {
            let uri = format!("{path}?precision=s&{query}");
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (code, v) = h.post(&uri, &hs, "cpu v=1 1700000000\n").await;
            assert!(code.is_success(), "{uri} {headers:?}: {code} {v}");
        }
        let (code, v) = h.post(path, &[], "cpu v=1\n").await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            v["error"].as_str().unwrap().contains("u=<any>&p=<token>"),
            "{v}"
        );
        for (k, val) in [
            ("authorization", "Token nope".to_string()),
            ("authorization", basic("tok:nope")),
        ] {
            let (code, v) = h.post(path, &[(k, val.as_str())], "cpu v=1\n").await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{path} {val}: {v}");
        }
        let (code, _) = h
            .post(&format!("{path}?u=tok&p=nope"), &[], "cpu v=1\n")
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn reads_need_the_read_or_admin_token_once_tokens_are_set() {
    let h = Harness::with(|s| {
        s.ingest_token = Some("in".into());
        s.admin_token = Some("ad".into());
        s.read_token = Some("rd".into());
    });
    with_outbox(&h);
    let reads = [
        "/api/v1/events",
        "/api/v1/events/stats",
        "/api/v1/events/event-none",
        "/api/v1/issues",
        "/api/v1/monitors",
        "/api/v1/deliveries",
        "/api/v1/events/stream",
    ];
    let status = |uri: &str, token: Option<&str>| {
        let mut r = Request::get(uri);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        head_of(&h, r.body(Body::empty()).unwrap())
    };
    for uri in reads {
        assert_eq!(status(uri, None).await.0, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            status(uri, Some("in")).await.0,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
        assert_eq!(
            status(uri, Some("wrong")).await.0,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
        let want = if uri.ends_with("event-none") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status(uri, Some("rd")).await.0, want, "{uri}");
        assert_eq!(status(uri, Some("ad")).await.0, want, "{uri}");
    }
    let (_, v) = h.get("/api/v1/events").await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("read_token or the admin_token"),
        "{v}"
    );
    // probes, liveness and the Prometheus scrape stay open
    for uri in ["/healthz", "/ping", "/health", "/metrics"] {
        assert!(status(uri, None).await.0.is_success(), "{uri}");
    }
    // the read token is no admin token
    let (code, _) = h
        .post(
            "/api/v1/monitors/reload",
            &[("authorization", "Bearer rd")],
            "",
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn reads_stay_open_without_any_token() {
    let h = Harness::new();
    with_outbox(&h);
    for uri in [
        "/api/v1/events",
        "/api/v1/issues",
        "/api/v1/monitors",
        "/api/v1/deliveries",
    ] {
        assert_eq!(h.get(uri).await.0, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let h = Harness::new();
    let (code, v) = h.get("/api/v1/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"error": "no route for GET /api/v1/nope: the endpoints are listed in docs/api.md"})
    );
    let (code, v) = h.post("/healthz", &[], "").await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        v,
        json!({"error": "POST is not allowed on /healthz: it takes GET, HEAD", "allow": ["GET", "HEAD"]})
    );
    let (code, headers) = head_of(&h, Request::get("/write").body(Body::empty()).unwrap()).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    let (_, v) = h.get("/write").await;
    assert_eq!(v["error"], "GET is not allowed on /write: it takes POST");
    assert_eq!(v["allow"], json!(["POST"]));
}

#[tokio::test]
async fn unknown_status_filters_are_400_naming_the_value() {
    let h = Harness::new();
    for uri in [
        "/api/v1/events?status=bogus",
        "/api/v1/events/stats?by=source&status=bogus",
        "/api/v1/events/stream?status=bogus",
        "/api/v1/issues?status=bogus",
    ] {
        let (code, v) = h.get(uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["field"], "status", "{uri}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("\"bogus\"") && e.contains("critical") && e.contains("manual_ok"),
            "{e}"
        );
    }
    assert_eq!(
        h.get("/api/v1/events?status=nodata_ok").await.0,
        StatusCode::OK
    );
}

// ------------------------------------------------------------------ console

async fn raw_get(h: &Harness, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app(h.state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into(),
    )
}

#[tokio::test]
async fn console_page_and_assets_carry_a_strict_policy() {
    let h = Harness::with(|s| s.ingest_token = Some("tok".into()));
    let (code, headers, body) = raw_get(&h, "/").await;
    assert_eq!(code, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe"),
        "no unsafe-inline or unsafe-eval: {csp}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(body.contains(r#"<script type="module" src="/console/js/app.js">"#));
    assert!(!body.contains("<script>"), "no inline script in the page");
    for asset in [
        "/console/js/app.js",
        "/console/js/events.js",
        "/console/style.css",
    ] {
        let (code, headers, body) = raw_get(&h, asset).await;
        assert_eq!(code, StatusCode::OK, "{asset}");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(!body.is_empty());
        assert!(
            !body.contains("innerHTML"),
            "{asset} builds the page with text nodes"
        );
    }
    let (_, headers, _) = raw_get(&h, "/console/js/app.js").await;
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let (code, v) = h.get("/console/js/nope.js").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("nope.js"));
    // GET / with an Action is still Alibaba's RPC endpoint (here: no token, its own answer).
    let (code, v) = h
        .get("/?Action=PutCustomEvent&EventInfo.1.EventName=x")
        .await;
    assert_eq!(
        (code, v["Code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("MissingToken"))
    );
}

const CPU_MONITOR: &str = r#"
id = "cpu"
name = "Host CPU"
manual = true
interval = "5m"
delay = "10s"
[query]
measurement = "cpu"
field = "usage"
agg = "avg"
by = ["host"]
where = { dc = "eu" }
[rules]
critical = "Result > 90"
warning = "Result >= 80 && Result <= 90"
info = "Result > 50"
"#;

#[tokio::test]
async fn a_monitor_shows_its_definition_thresholds_and_an_objects_points() {
    let h = Harness::with_monitors(&[("cpu.toml", CPU_MONITOR)], |_| {});
    let lines: String = (0..10)
        .flat_map(|i| {
            let t = (NOW - 600 + i * 60) * 1_000_000_000;
            [
                format!("cpu,host=web01,dc=eu usage={} {t}\n", 90 + i),
                format!("cpu,host=web02,dc=eu usage=10 {t}\n"),
                format!("cpu,host=web01,dc=us usage=1 {t}\n"),
            ]
        })
        .collect();
    let (code, v) = h.post("/write", &[], &lines).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{v}");

    let (code, m) = h.get("/api/v1/monitors/cpu").await;
    assert_eq!(code, StatusCode::OK, "{m}");
    assert_eq!(m["name"], "Host CPU");
    assert_eq!(m["kind"], "threshold");
    assert_eq!(
        (m["interval"].as_i64(), m["delay"].as_i64()),
        (Some(300), Some(10))
    );
    assert_eq!(m["query"]["where"], json!({"dc": "eu"}));
    assert_eq!(m["rules"]["critical"], "Result > 90");
    // Only plain comparisons are drawable: the warning rule is a range.
    assert_eq!(
        m["thresholds"],
        json!([{"status": "critical", "op": ">", "value": 90.0},
               {"status": "info", "op": ">", "value": 50.0}])
    );
    assert!(m["definition"]
        .as_str()
        .unwrap()
        .contains("measurement = \"cpu\""));

    let uri = format!(
        "/api/v1/monitors/cpu/points?tags=%7B%22host%22%3A%22web01%22%7D&from={}&to={}",
        NOW - 300,
        NOW
    );
    let (code, p) = h.get(&uri).await;
    assert_eq!(code, StatusCode::OK, "{p}");
    assert_eq!(p["source"], "store");
    // web01 in dc=eu only (the monitor's where), from NOW-300 on: minutes 5..9.
    let pts: Vec<(i64, f64)> = serde_json::from_value(p["points"].clone()).unwrap();
    assert_eq!(
        pts,
        (5..10)
            .map(|i| (NOW - 600 + i * 60, 90.0 + i as f64))
            .collect::<Vec<_>>()
    );
    let (code, v) = h
        .get(&format!(
            "/api/v1/monitors/cpu/points?tags=x&from={NOW}&to={NOW}"
        ))
        .await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("tags"))
    );
    let (code, v) = h
        .get(&format!(
            "/api/v1/monitors/cpu/points?from={NOW}&to={}",
            NOW - 1
        ))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("before"), "{v}");
    let (code, _) = h.get("/api/v1/monitors/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let (_, list) = h.get("/api/v1/monitors").await;
    assert_eq!(list["monitors"][0]["open_issues"], 0, "{list}");
}

#[tokio::test]
async fn events_filter_by_dimension_tags() {
    let h = Harness::new();
    let mut evs = Vec::new();
    for (i, host) in ["web01", "web02", "web01"].iter().enumerate() {
        let mut e = stream_event(&format!("e{i}"), NOW - 10 + i as i64, "t");
        e.set(
            "df_dimension_tags",
            format!(r#"{{"host":"{host}","dc":"eu"}}"#),
        );
        evs.push(e);
    }
    h.state
        .engine
        .runner
        .db
        .commit(Commit {
            events: evs,
            ..Default::default()
        })
        .unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["df_event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = h.get("/api/v1/events?tag=host:web01").await;
    assert_eq!(ids(&v), ["e2", "e0"]);
    let (_, v) = h.get("/api/v1/events?tag=host:web02,dc:eu").await;
    assert_eq!(ids(&v), ["e1"]);
    let (_, v) = h.get("/api/v1/events?tag=dc:us").await;
    assert!(ids(&v).is_empty());
    let (code, v) = h.get("/api/v1/events?tag=host").await;
    assert_eq!(
        (code, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("tag"))
    );
}
