//! End-to-end tests of the event centre (issue 4) against `tocsin serve` on loopback: every
//! rule of the Huawei reporting API (seed 002) with a rejected request and proof that nothing
//! was stored, dedupe, rounds, the Alibaba, CloudEvents and Guance dialects, tokens and
//! signatures — and the official Python SDKs (`tests/sdk/*.py`) pointed at tocsin.

mod common;

use common::Tocsin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The read token of every [`Server`]: the helpers read events and issues with it (reads need
/// it, or the admin token, as soon as any token is configured).
const READ_TOKEN: &str = "reader";

/// A tocsin in a temporary directory, with JSON-answering helpers for the event centre.
struct Server {
    t: Tocsin, // dropped (killed) before the directory is removed
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let t = Tocsin::start(
            dir.path(),
            &format!("read_token = \"{READ_TOKEN}\"\n{config}\n[host_input]\nenabled = false\n"),
        );
        let url = t.url.clone();
        Server { t, url, _dir: dir }
    }

    fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
        let (code, text) = self.t.post(path, body, headers);
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, v)
    }

    fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(
            path,
            body.to_string().as_bytes(),
            &[("Content-Type", "application/json")],
        )
    }

    fn get(&self, path: &str) -> Value {
        self.t.get_token(path, Some(READ_TOKEN))
    }

    fn custom_events(&self) -> Vec<Value> {
        self.get("/api/v1/events?source=custom&limit=10000")["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn custom_count(&self) -> usize {
        self.custom_events().len()
    }

    fn issues(&self) -> Vec<Value> {
        self.get("/api/v1/issues?source=custom")["issues"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------- Huawei (seed 002)

fn hw_item() -> Value {
    json!({
        "event_name": "systemInvaded", "event_source": "financial.System", "time": now_ms(),
        "detail": {
            "content": "The financial system was invaded", "group_id": "rg15221211517051YWWkEnVd",
            "resource_id": "1234567890sjgggad", "resource_name": "ecs001", "event_state": "warning",
            "event_level": "Major", "event_user": "xiaokong", "event_type": "EVENT.CUSTOM",
            "sub_event_type": "SUB_EVENT.CUSTOM",
            "dimensions": [{"name": "instance_id", "value": "instance_xxx"}]
        }
    })
}

/// Sends `[good, bad]` (or the body `mutate` builds) and checks: 400, the body names index,
/// field and rule, and nothing was stored.
fn huawei_rejects(
    project: &str,
    mutate: impl Fn(&mut Value),
    index: Option<usize>,
    field: &str,
    rule: &str,
) {
    let s = Server::start("");
    let mut bad = hw_item();
    mutate(&mut bad);
    let body = if bad.is_array() {
        bad
    } else {
        json!([hw_item(), bad])
    };
    let (code, v) = s.post_json(&format!("/V1.0/{project}/events"), &body);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["index"], json!(index), "{v}");
    assert_eq!(v["field"], field, "{v}");
    assert!(
        v["rule"].as_str().unwrap().contains(rule),
        "rule {:?} should mention {rule:?}",
        v["rule"]
    );
    assert!(v["error_msg"].as_str().unwrap().contains(field), "{v}");
    assert_eq!(s.custom_count(), 0, "a rejected batch stores nothing");
    // and the same batch without the bad item is accepted
    let (code, v) = s.post_json(&format!("/V1.0/{}/events", "p1"), &json!([hw_item()]));
    assert_eq!(code, 201, "{v}");
    assert_eq!(s.custom_count(), 1);
}

macro_rules! huawei_rule {
    ($name:ident, $mutate:expr, $field:expr, $rule:expr) => {
        #[test]
        fn $name() {
            huawei_rejects("p1", $mutate, Some(1), $field, $rule);
        }
    };
}

#[test]
fn huawei_rule_array_length_1_to_100() {
    huawei_rejects("p1", |v| *v = json!([]), None, "body", "1 to 100");
    let many: Vec<Value> = (0..101).map(|_| hw_item()).collect();
    huawei_rejects(
        "p1",
        move |v| *v = json!(many.clone()),
        None,
        "body",
        "1 to 100",
    );
}

#[test]
fn huawei_rule_project_id_1_to_64() {
    let long = "p".repeat(65);
    huawei_rejects(&long, |_| {}, None, "project_id", "1 to 64");
}

huawei_rule!(
    huawei_rule_event_name_required,
    |v| {
        v.as_object_mut().unwrap().remove("event_name");
    },
    "event_name",
    "required"
);
huawei_rule!(
    huawei_rule_event_name_letter_first,
    |v| v["event_name"] = json!("1abc"),
    "event_name",
    "start with a letter"
);
huawei_rule!(
    huawei_rule_event_name_max_64,
    |v| v["event_name"] = json!("a".repeat(65)),
    "event_name",
    "1 to 64"
);
huawei_rule!(
    huawei_rule_event_name_charset,
    |v| v["event_name"] = json!("a-b"),
    "event_name",
    "underscores"
);
huawei_rule!(
    huawei_rule_event_source_required,
    |v| {
        v.as_object_mut().unwrap().remove("event_source");
    },
    "event_source",
    "required"
);
huawei_rule!(
    huawei_rule_event_source_service_item,
    |v| v["event_source"] = json!("financialSystem"),
    "event_source",
    "service.item"
);
huawei_rule!(
    huawei_rule_event_source_part_min_3,
    |v| v["event_source"] = json!("fi.System"),
    "event_source",
    "3 to 32"
);
huawei_rule!(
    huawei_rule_event_source_part_max_32,
    |v| v["event_source"] = json!(format!("abc.{}", "s".repeat(33))),
    "event_source",
    "3 to 32"
);
huawei_rule!(
    huawei_rule_event_source_letter_first,
    |v| v["event_source"] = json!("1abc.System"),
    "event_source",
    "starting with a letter"
);
huawei_rule!(
    huawei_rule_time_required,
    |v| {
        v.as_object_mut().unwrap().remove("time");
    },
    "time",
    "required"
);
huawei_rule!(
    huawei_rule_time_is_ms_integer,
    |v| v["time"] = json!("2025-01-01"),
    "time",
    "milliseconds"
);
huawei_rule!(
    huawei_rule_time_not_before_now_minus_1h_plus_10s,
    |v| v["time"] = json!(now_ms() - 3_600_000 + 5_000),
    "time",
    "now - 1h + 10s"
);
huawei_rule!(
    huawei_rule_time_not_after_now_plus_10min_minus_10s,
    |v| v["time"] = json!(now_ms() + 600_000 - 5_000),
    "time",
    "now + 10min - 10s"
);
huawei_rule!(
    huawei_rule_detail_required,
    |v| {
        v.as_object_mut().unwrap().remove("detail");
    },
    "detail",
    "required"
);
huawei_rule!(
    huawei_rule_content_max_4096,
    |v| v["detail"]["content"] = json!("é".repeat(4097)),
    "detail.content",
    "4096"
);
huawei_rule!(
    huawei_rule_group_id_24_chars,
    |v| v["detail"]["group_id"] = json!("rg1"),
    "detail.group_id",
    "24 characters"
);
huawei_rule!(
    huawei_rule_resource_id_max_128,
    |v| v["detail"]["resource_id"] = json!("r".repeat(129)),
    "detail.resource_id",
    "128"
);
huawei_rule!(
    huawei_rule_resource_id_charset,
    |v| v["detail"]["resource_id"] = json!("a.b"),
    "detail.resource_id",
    "colons"
);
huawei_rule!(
    huawei_rule_resource_name_max_128,
    |v| v["detail"]["resource_name"] = json!("r".repeat(129)),
    "detail.resource_name",
    "128"
);
huawei_rule!(
    huawei_rule_resource_name_charset,
    |v| v["detail"]["resource_name"] = json!("a:b"),
    "detail.resource_name",
    "periods"
);
huawei_rule!(
    huawei_rule_event_state_enum,
    |v| v["detail"]["event_state"] = json!("broken"),
    "detail.event_state",
    "normal, warning, incident"
);
huawei_rule!(
    huawei_rule_event_level_enum,
    |v| v["detail"]["event_level"] = json!("major"),
    "detail.event_level",
    "Critical, Major, Minor, Info"
);
huawei_rule!(
    huawei_rule_event_user_max_64,
    |v| v["detail"]["event_user"] = json!("u".repeat(65)),
    "detail.event_user",
    "64"
);
huawei_rule!(
    huawei_rule_event_user_charset,
    |v| v["detail"]["event_user"] = json!("a@b"),
    "detail.event_user",
    "spaces"
);
huawei_rule!(
    huawei_rule_event_type_only_custom,
    |v| v["detail"]["event_type"] = json!("EVENT.SYS"),
    "detail.event_type",
    "only EVENT.CUSTOM"
);
huawei_rule!(
    huawei_rule_sub_event_type_enum,
    |v| v["detail"]["sub_event_type"] = json!("SUB_EVENT.X"),
    "detail.sub_event_type",
    "SUB_EVENT.CUSTOM"
);
huawei_rule!(
    huawei_rule_sub_event_type_custom_for_custom,
    |v| v["detail"]["sub_event_type"] = json!("SUB_EVENT.OPS"),
    "detail.sub_event_type",
    "when event_type is EVENT.CUSTOM"
);
huawei_rule!(
    huawei_rule_dimensions_max_4,
    |v| v["detail"]["dimensions"] = json!((0..5)
        .map(|i| json!({"name": format!("d{i}"), "value": "x"}))
        .collect::<Vec<_>>()),
    "detail.dimensions",
    "at most 4"
);
huawei_rule!(
    huawei_rule_dimension_name_1_to_32,
    |v| v["detail"]["dimensions"] = json!([{"name": "n".repeat(33), "value": "x"}]),
    "detail.dimensions[0].name",
    "1 to 32"
);
huawei_rule!(
    huawei_rule_dimension_name_required,
    |v| v["detail"]["dimensions"] = json!([{"value": "x"}]),
    "detail.dimensions[0].name",
    "required"
);
huawei_rule!(
    huawei_rule_dimension_value_1_to_256,
    |v| v["detail"]["dimensions"] = json!([{"name": "n", "value": ""}]),
    "detail.dimensions[0].value",
    "1 to 256"
);

#[test]
fn huawei_answer_shape_mapping_and_dedupe() {
    let s = Server::start("");
    let item = hw_item();
    let (code, v) = s.post_json("/V1.0/proj1/events", &json!([item]));
    assert_eq!(code, 201, "{v}");
    let id = v[0]["event_id"].as_str().unwrap().to_string();
    assert_eq!(v[0]["event_name"], "systemInvaded");
    assert!(id.starts_with("event-") && id.len() == 38, "{id}");
    // the same event again: same id, nothing new
    let (code, v2) = s.post_json("/V1.0/proj1/events", &json!([item]));
    assert_eq!(code, 201);
    assert_eq!(v2[0]["event_id"], id.as_str());
    assert_eq!(s.custom_count(), 1);
    // a different identity field (event_user; project) is a different event
    let mut other = item.clone();
    other["detail"]["event_user"] = json!("someone else");
    let (_, v3) = s.post_json("/V1.0/proj1/events", &json!([other]));
    assert_ne!(v3[0]["event_id"], id.as_str());
    let (_, v4) = s.post_json("/V1.0/proj2/events", &json!([item]));
    assert_ne!(v4[0]["event_id"], id.as_str());
    assert_eq!(s.custom_count(), 3);
    // the stored event
    let ev = s.get(&format!("/api/v1/events/{id}"));
    assert_eq!(ev["df_source"], "custom");
    assert_eq!(ev["df_status"], "error", "Major → error");
    assert_eq!(ev["df_event_name"], "systemInvaded");
    assert_eq!(ev["df_event_group"], "rg15221211517051YWWkEnVd");
    assert_eq!(ev["df_project_id"], "proj1");
    assert_eq!(ev["df_title"], "systemInvaded");
    assert_eq!(ev["df_message"], "The financial system was invaded");
    assert_eq!(ev["instance_id"], "instance_xxx");
    assert_eq!(ev["date"], json!(item["time"].as_i64().unwrap() / 1000));
    let detail: Value = serde_json::from_str(ev["df_event_detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["detail"]["event_user"], "xiaokong");
    let tags: Value = serde_json::from_str(ev["df_dimension_tags"].as_str().unwrap()).unwrap();
    assert_eq!(tags["instance_id"], "instance_xxx");
    // stats count by name and group
    let st = s.get("/api/v1/events/stats?by=group&source=custom");
    assert_eq!(st["counts"]["rg15221211517051YWWkEnVd"], 3, "{st}");
    let st = s.get("/api/v1/events/stats?by=name&source=custom");
    assert_eq!(st["counts"]["systemInvaded"], 3, "{st}");
}

#[test]
fn huawei_rounds_open_and_close_and_manual_recovery() {
    let s = Server::start("");
    let ev = |level: Option<&str>, state: Option<&str>, res: &str, t: i64| {
        let mut d = json!({"resource_id": res});
        if let Some(l) = level {
            d["event_level"] = json!(l);
        }
        if let Some(st) = state {
            d["event_state"] = json!(st);
        }
        json!({"event_name": "diskFull", "event_source": "app.Storage", "time": t, "detail": d})
    };
    let t0 = now_ms() - 120_000;
    let (code, v) = s.post_json(
        "/V1.0/p1/events",
        &json!([
            ev(Some("Minor"), None, "vm-1", t0),
            ev(Some("Critical"), None, "vm-1", t0 + 60_000)
        ]),
    );
    assert_eq!(code, 201, "{v}");
    let fault_id = v[0]["event_id"].as_str().unwrap().to_string();
    let issues = s.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0]["status"], "critical");
    assert_eq!(issues[0]["issue_start"], json!(t0 / 1000));
    assert_eq!(issues[0]["fault_id"], fault_id.as_str());
    // another resource is another round
    s.post_json(
        "/V1.0/p1/events",
        &json!([ev(None, Some("incident"), "vm-2", t0)]),
    );
    assert_eq!(s.issues().len(), 2);
    // normal for vm-1 closes its round and carries start and duration
    let (_, v) = s.post_json(
        "/V1.0/p1/events",
        &json!([ev(Some("Critical"), Some("normal"), "vm-1", t0 + 90_000)]),
    );
    let ok = s.get(&format!(
        "/api/v1/events/{}",
        v[0]["event_id"].as_str().unwrap()
    ));
    assert_eq!(ok["df_status"], "ok");
    assert_eq!(ok["df_issue_start_time"], json!(t0 / 1000));
    assert_eq!(
        ok["df_issue_duration"],
        json!((t0 + 90_000) / 1000 - t0 / 1000)
    );
    assert_eq!(ok["df_fault_id"], fault_id.as_str());
    assert_eq!(ok["df_sub_status"], "critical");
    let left = s.issues();
    assert_eq!(left.len(), 1);
    // manual recovery of the custom round
    let r = left[0]["event_ref"].as_str().unwrap();
    let (code, v) = s.post_json(
        "/api/v1/issues/recover",
        &json!({"refs": [r], "user_id": "u1", "user_name": "Ann", "user_email": "a@x"}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(s.issues().is_empty());
    // info events and an ok with no open round open nothing
    s.post_json(
        "/V1.0/p1/events",
        &json!([
            ev(Some("Info"), None, "vm-3", t0),
            ev(None, Some("normal"), "vm-4", t0)
        ]),
    );
    assert!(s.issues().is_empty());
}

#[test]
fn huawei_malformed_bodies_and_types() {
    let s = Server::start("");
    let (code, v) = s.post("/V1.0/p1/events", b"{not json", &[]);
    assert_eq!((code, v["field"].as_str()), (400, Some("body")), "{v}");
    let (code, v) = s.post_json("/V1.0/p1/events", &json!({"event_name": "a"}));
    assert_eq!((code, v["field"].as_str()), (400, Some("body")), "{v}");
    let (code, v) = s.post_json("/V1.0/p1/events", &json!([1]));
    assert_eq!((code, v["index"].as_u64()), (400, Some(0)), "{v}");
    let mut bad = hw_item();
    bad["event_name"] = json!(5);
    let (code, v) = s.post_json("/V1.0/p1/events", &json!([bad]));
    assert_eq!(
        (code, v["rule"].as_str()),
        (400, Some("must be a string")),
        "{v}"
    );
    assert_eq!(s.custom_count(), 0);
}

// ---------------------------------------------------------------- Alibaba

#[test]
fn alibaba_query_form_and_json_bodies() {
    let s = Server::start("");
    // query string, ISO-like time
    let (code, v) = s.post(
        "/?Action=PutCustomEvent&EventInfo.1.EventName=deploy&EventInfo.1.Content=v1.2%20out&EventInfo.1.Time=20171013T170923.456%2B0800&EventInfo.1.GroupId=123",
        b"",
        &[],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["Code"].as_str(), v["Message"].as_str()),
        (Some("200"), Some("success"))
    );
    assert!(v["RequestId"].as_str().unwrap().len() >= 32);
    // form body, ms time, default group
    let (code, v) = s.post(
        "/?Action=PutCustomEvent",
        b"EventInfo.1.EventName=restart&EventInfo.1.Content=svc+restarted&EventInfo.1.Time=1552199984000&EventInfo.2.EventName=restart&EventInfo.2.Content=again",
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(code, 200, "{v}");
    // JSON body
    let (code, v) = s.post(
        "/?Action=PutCustomEvent",
        json!({"EventInfo": [{"EventName": "IOException", "Content": "disk", "GroupId": "9"}]})
            .to_string()
            .as_bytes(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 200, "{v}");
    let evs = s.custom_events();
    assert_eq!(evs.len(), 4);
    let by = |name: &str| {
        evs.iter()
            .filter(|e| e["df_event_name"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let d = &by("deploy")[0];
    assert_eq!(d["date"], json!(1_507_885_763));
    assert_eq!(d["df_message"], "v1.2 out");
    assert_eq!(d["df_event_group"], "123");
    assert_eq!(d["df_status"], "info");
    let r = by("restart");
    assert!(r.iter().any(|e| e["date"] == json!(1_552_199_984)));
    assert!(r.iter().all(|e| e["df_event_group"] == "0"));
    assert!(r.iter().any(|e| e["df_message"] == "svc restarted"));
    assert_eq!(by("IOException")[0]["df_event_group"], "9");
    let st = s.get("/api/v1/events/stats?by=group&source=custom");
    assert_eq!(st["counts"]["0"], 2, "{st}");
}

#[test]
fn alibaba_errors_use_alibaba_shape_and_store_nothing() {
    let s = Server::start("");
    let cases: &[(&str, &[u8], u16, &str, &str)] = &[
        ("/?Action=PutCustomEvent&EventInfo.1.EventName=a", b"", 400, "MissingParameter", "EventInfo.1.Content"),
        ("/?Action=PutCustomEvent&EventInfo.1.Content=a", b"", 400, "MissingParameter", "EventInfo.1.EventName"),
        ("/?Action=PutCustomEvent", b"", 400, "MissingParameter", "EventInfo"),
        ("/?Action=PutCustomEvent&EventInfo.1.EventName=a&EventInfo.1.Content=b&EventInfo.1.Time=yesterday", b"", 400, "InvalidParameter", "EventInfo.1.Time"),
        ("/?Action=PutCustomEvent&EventInfo.51.EventName=a&EventInfo.51.Content=b", b"", 400, "InvalidParameter", "1 to 50"),
        ("/?Action=DescribeAlerts&EventInfo.1.EventName=a&EventInfo.1.Content=b", b"", 404, "InvalidAction.NotFound", "DescribeAlerts"),
        ("/?EventInfo.1.EventName=a&EventInfo.1.Content=b", b"", 400, "MissingParameter", "Action"),
        // one good and one bad item: the whole batch is refused
        ("/?Action=PutCustomEvent&EventInfo.1.EventName=a&EventInfo.1.Content=b&EventInfo.2.EventName=c", b"", 400, "MissingParameter", "EventInfo.2.Content"),
    ];
    for (path, body, status, code, needle) in cases {
        let (st, v) = s.post(path, body, &[]);
        assert_eq!(st, *status, "{path}: {v}");
        assert_eq!(v["Code"], *code, "{path}: {v}");
        assert!(
            v["Message"].as_str().unwrap().contains(needle),
            "{path}: {v}"
        );
        assert!(v["RequestId"].is_string());
    }
    let many: Vec<Value> = (0..51)
        .map(|_| json!({"EventName": "a", "Content": "b"}))
        .collect();
    let (st, v) = s.post(
        "/?Action=PutCustomEvent",
        json!({ "EventInfo": many }).to_string().as_bytes(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(
        (st, v["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{v}"
    );
    assert_eq!(s.custom_count(), 0);
}

// ---------------------------------------------------------------- CloudEvents

fn tencent_event(id: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "cvm.cloud.tencent",
        "type": "cvm:ErrorEvent:ping_unreachable", "subject": "ins-sjdksjk",
        "time": 1615430559146u64, "region": "ap-guangzhou",
        "resource": ["qcs::eb:ap-guangzhou:uid1250000000:eventbusid/eventruleid"],
        "datacontenttype": "application/json;charset=utf-8",
        "tags": {"key1": "value1", "key2": "value2"}, "status": "1",
        "data": {"appId": "1250000011", "instanceId": "ins-sjdksjk"}
    })
}

#[test]
fn cloudevents_three_modes_dedupe_and_limits() {
    let s = Server::start("");
    // structured
    let (code, v) = s.post(
        "/v1/cloudevents",
        tencent_event("e1").to_string().as_bytes(),
        &[(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )],
    );
    assert_eq!(code, 200, "{v}");
    let id1 = v["events"][0]["event_id"].as_str().unwrap().to_string();
    // binary
    let (code, v) = s.post(
        "/v1/cloudevents",
        br#"{"k":"v"}"#,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "b1"),
            ("ce-source", "/my/app"),
            ("ce-type", "com.example.deploy"),
            ("ce-subject", "svc%20a"),
            ("ce-region", "eu-1"),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(code, 200, "{v}");
    let idb = v["events"][0]["event_id"].as_str().unwrap().to_string();
    // batch, with a resend of e1 inside
    let batch = json!([tencent_event("e2"), tencent_event("e1"),
        {"specversion": "1.0", "id": "x", "source": "s", "type": "t", "data_base64": "AAEC"}]);
    let (code, v) = s.post(
        "/v1/cloudevents",
        batch.to_string().as_bytes(),
        &[("Content-Type", "application/cloudevents-batch+json")],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["stored"], 2, "{v}");
    assert_eq!(v["events"][1]["event_id"], id1.as_str());
    assert_eq!(v["events"][1]["duplicate"], true);
    assert_eq!(s.custom_count(), 4);
    // stored fields
    let e = s.get(&format!("/api/v1/events/{id1}"));
    assert_eq!(e["df_status"], "critical", "Tencent status 1 → critical");
    assert_eq!(e["region"], "ap-guangzhou");
    assert_eq!(e["key1"], "value1");
    assert_eq!(e["subject"], "ins-sjdksjk");
    assert_eq!(e["date"], json!(1_615_430_559));
    assert_eq!(e["df_event_name"], "cvm:ErrorEvent:ping_unreachable");
    let detail: Value = serde_json::from_str(e["df_event_detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["data"]["appId"], "1250000011");
    let b = s.get(&format!("/api/v1/events/{idb}"));
    assert_eq!(
        (b["subject"].as_str(), b["region"].as_str()),
        (Some("svc a"), Some("eu-1"))
    );
    assert_eq!(b["df_status"], "info");
    let detail: Value = serde_json::from_str(b["df_event_detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["data"]["k"], "v");
    // a Tencent fault opened a round; status 0 for the same source/type/subject closes it
    assert_eq!(s.issues().len(), 1);
    let mut rec = tencent_event("e3");
    rec["status"] = json!("0");
    let (code, _) = s.post(
        "/v1/cloudevents",
        rec.to_string().as_bytes(),
        &[("Content-Type", "application/cloudevents+json")],
    );
    assert_eq!(code, 200);
    assert!(s.issues().is_empty());
    let before = s.custom_count();
    // over 64 KiB: 413 in every mode
    let mut big = tencent_event("big");
    big["data"] = json!("x".repeat(65 * 1024));
    let (code, v) = s.post(
        "/v1/cloudevents",
        big.to_string().as_bytes(),
        &[("Content-Type", "application/cloudevents+json")],
    );
    assert_eq!(code, 413, "{v}");
    let (code, _) = s.post(
        "/v1/cloudevents",
        json!([tencent_event("ok1"), big]).to_string().as_bytes(),
        &[("Content-Type", "application/cloudevents-batch+json")],
    );
    assert_eq!(code, 413);
    let (code, _) = s.post(
        "/v1/cloudevents",
        "y".repeat(65 * 1024).as_bytes(),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "b2"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ],
    );
    assert_eq!(code, 413);
    // required attributes
    for k in ["id", "source", "specversion", "type"] {
        let mut e = tencent_event("r1");
        e.as_object_mut().unwrap().remove(k);
        let (code, v) = s.post(
            "/v1/cloudevents",
            json!([tencent_event("r0"), e]).to_string().as_bytes(),
            &[("Content-Type", "application/cloudevents-batch+json")],
        );
        assert_eq!(code, 400, "{v}");
        assert_eq!(
            (v["index"].as_u64(), v["field"].as_str()),
            (Some(1), Some(k)),
            "{v}"
        );
    }
    let mut e = tencent_event("v03");
    e["specversion"] = json!("0.3");
    let (code, v) = s.post(
        "/v1/cloudevents",
        e.to_string().as_bytes(),
        &[("Content-Type", "application/cloudevents+json")],
    );
    assert_eq!(
        (code, v["field"].as_str()),
        (400, Some("specversion")),
        "{v}"
    );
    let (code, _) = s.post(
        "/v1/cloudevents",
        b"hello",
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(code, 400);
    assert_eq!(s.custom_count(), before, "refused requests store nothing");
}

// ---------------------------------------------------------------- Guance

#[test]
fn guance_create_rounds_and_errors() {
    let s = Server::start("");
    let t = now_ms() - 60_000;
    let fault = json!({"date": t, "status": "critical", "title": "CPU high", "message": "95%", "customTags": {"host": "web01"}});
    let (code, v) = s.post_json("/api/v1/events/create", &fault);
    assert_eq!(code, 200, "{v}");
    let id = v["content"]["df_event_id"].as_str().unwrap().to_string();
    let e = s.get(&format!("/api/v1/events/{id}"));
    assert_eq!(
        (e["df_status"].as_str(), e["host"].as_str()),
        (Some("critical"), Some("web01"))
    );
    assert_eq!(e["date"], json!(t / 1000));
    assert_eq!(e["df_dimension_tags"], r#"{"host":"web01"}"#);
    assert_eq!(s.issues().len(), 1);
    // resend: same id, stored once
    let (_, v) = s.post_json("/api/v1/events/create", &fault);
    assert_eq!(v["content"]["df_event_id"], id.as_str());
    assert_eq!(v["content"]["duplicate"], true);
    // ok for the same tags closes the round
    let (code, _) = s.post_json(
        "/api/v1/events/create",
        &json!({"date": t + 30_000, "status": "ok", "title": "CPU back", "customTags": {"host": "web01"}}),
    );
    assert_eq!(code, 200);
    assert!(s.issues().is_empty());
    assert_eq!(s.custom_count(), 2);
    for (body, field) in [
        (json!({"status": "critical"}), "title"),
        (json!({"title": "t", "status": "fatal"}), "status"),
        (json!({"title": "t", "date": "today"}), "date"),
        (json!({"title": "t", "customTags": ["a"]}), "customTags"),
    ] {
        let (code, v) = s.post_json("/api/v1/events/create", &body);
        assert_eq!((code, v["field"].as_str()), (400, Some(field)), "{v}");
    }
    assert_eq!(s.custom_count(), 2);
}

// ---------------------------------------------------------------- tokens and signatures

#[test]
fn ingest_token_guards_custom_endpoints_without_keys() {
    let s = Server::start("ingest_token = \"tok\"\n");
    let g = json!({"title": "t"}).to_string();
    let hw = json!([hw_item()]).to_string();
    for (path, body) in [
        ("/api/v1/events/create", g.as_str()),
        ("/V1.0/p1/events", hw.as_str()),
        (
            "/?Action=PutCustomEvent&EventInfo.1.EventName=a&EventInfo.1.Content=b",
            "",
        ),
    ] {
        let ct = ("Content-Type", "application/json");
        assert_eq!(s.post(path, body.as_bytes(), &[ct]).0, 401, "{path}");
        assert_eq!(
            s.post(
                path,
                body.as_bytes(),
                &[ct, ("Authorization", "Bearer nope")]
            )
            .0,
            403,
            "{path}"
        );
        let (code, v) = s.post(
            path,
            body.as_bytes(),
            &[ct, ("Authorization", "Bearer tok")],
        );
        assert!(code == 200 || code == 201, "{path}: {code} {v}");
    }
    let ce = tencent_event("t1").to_string();
    let ct = ("Content-Type", "application/cloudevents+json");
    assert_eq!(s.post("/v1/cloudevents", ce.as_bytes(), &[ct]).0, 401);
    assert_eq!(
        s.post(
            "/v1/cloudevents",
            ce.as_bytes(),
            &[ct, ("Authorization", "Bearer tok")]
        )
        .0,
        200
    );
    assert_eq!(s.custom_count(), 4);
}

#[test]
fn access_keys_require_signatures() {
    let s = Server::start("[[access_keys]]\nid = \"AK1\"\nsecret = \"SK1\"\n");
    let hw = json!([hw_item()]).to_string();
    let (code, v) = s.post(
        "/V1.0/p1/events",
        hw.as_bytes(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 401, "{v}");
    let (code, v) = s.post(
        "/V1.0/p1/events",
        hw.as_bytes(),
        &[(
            "Authorization",
            "SDK-HMAC-SHA256 Access=NOPE, SignedHeaders=host;x-sdk-date, Signature=00",
        )],
    );
    assert_eq!(code, 403, "{v}");
    let (code, v) = s.post(
        "/V1.0/p1/events",
        hw.as_bytes(),
        &[
            (
                "X-Sdk-Date",
                &chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
            ),
            (
                "Authorization",
                "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=00",
            ),
        ],
    );
    assert_eq!(code, 403, "{v}");
    let q = "/?Action=PutCustomEvent&EventInfo.1.EventName=a&EventInfo.1.Content=b";
    let (code, v) = s.post(q, b"", &[]);
    assert_eq!(
        (code, v["Code"].as_str()),
        (401, Some("MissingSignature")),
        "{v}"
    );
    let (code, v) = s.post(
        &format!("{q}&AccessKeyId=NOPE&Signature=x&SignatureMethod=HMAC-SHA1"),
        b"",
        &[],
    );
    assert_eq!(
        (code, v["Code"].as_str()),
        (403, Some("InvalidAccessKeyId.NotFound")),
        "{v}"
    );
    let (code, v) = s.post(
        &format!("{q}&AccessKeyId=AK1&Signature=x&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&Timestamp=2001-01-01T00:00:00Z"),
        b"",
        &[],
    );
    assert_eq!(
        (code, v["Code"].as_str()),
        (403, Some("InvalidTimeStamp.Expired")),
        "{v}"
    );
    assert_eq!(s.custom_count(), 0);
}

// ---------------------------------------------------------------- the official SDKs

/// The interpreter of the virtualenv with the cloud SDKs, or `None` (the test skips).
fn python() -> Option<PathBuf> {
    common::python::python("aliyunsdkcms, aliyunsdkcore, huaweicloudsdkces, cloudevents, requests")
}

/// Runs a script of tests/sdk with a time limit; returns (exit code, everything printed).
fn run_sdk(py: &Path, script: &str, args: &[&str]) -> (i32, String) {
    common::python::sdk_script(py, script, args, 90)
}

const KEYS: &str = "[[access_keys]]\nid = \"AKTOCSIN\"\nsecret = \"sk-right\"\n";

#[test]
fn sdk_alibaba_put_custom_event() {
    let Some(py) = python() else { return };
    let events = json!([
        {"EventName": "deploy", "Content": "v1.2 rolled out", "Time": "20171013T170923.456+0800", "GroupId": "123"},
        {"EventName": "restart", "Content": "svc restarted"}
    ])
    .to_string();
    // no keys: token-less loopback accepts whatever the SDK signs with
    let s = Server::start("");
    let (rc, out) = run_sdk(&py, "alibaba_put.py", &[&s.url, "any", "thing", &events]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("\"Code\":\"200\""), "{out}");
    let evs = s.custom_events();
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().any(|e| e["df_event_name"] == "deploy"
        && e["date"] == json!(1_507_885_763)
        && e["df_event_group"] == "123"));
    // keys: the right secret is accepted and stored, a wrong one refused with 403
    let s = Server::start(KEYS);
    let (rc, out) = run_sdk(
        &py,
        "alibaba_put.py",
        &[&s.url, "AKTOCSIN", "sk-wrong", &events],
    );
    assert_eq!(rc, 3, "{out}");
    assert!(
        out.contains("status=403") && out.contains("SignatureDoesNotMatch"),
        "{out}"
    );
    assert_eq!(s.custom_count(), 0);
    let (rc, out) = run_sdk(
        &py,
        "alibaba_put.py",
        &[&s.url, "AKOTHER", "sk-right", &events],
    );
    assert_eq!(rc, 3, "{out}");
    assert!(out.contains("status=403"), "{out}");
    let (rc, out) = run_sdk(
        &py,
        "alibaba_put.py",
        &[&s.url, "AKTOCSIN", "sk-right", &events],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(s.custom_count(), 2);
}

#[test]
fn sdk_huawei_create_events() {
    let Some(py) = python() else { return };
    let events = json!([{
        "event_name": "systemInvaded", "event_source": "financial.System",
        "detail": {"content": "invaded", "event_level": "Critical", "resource_id": "vm-1",
                    "event_type": "EVENT.CUSTOM", "sub_event_type": "SUB_EVENT.CUSTOM",
                    "dimensions": [{"name": "instance_id", "value": "i-1"}]}
    }])
    .to_string();
    let s = Server::start("");
    let (rc, out) = run_sdk(
        &py,
        "huawei_create.py",
        &[&s.url, "any", "thing", "proj1", &events],
    );
    assert_eq!(rc, 0, "{out}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    let id = answer[0]["event_id"].as_str().unwrap();
    assert_eq!(answer[0]["event_name"], "systemInvaded");
    let e = s.get(&format!("/api/v1/events/{id}"));
    assert_eq!(
        (e["df_status"].as_str(), e["df_project_id"].as_str()),
        (Some("critical"), Some("proj1"))
    );
    assert_eq!(s.issues().len(), 1, "a Critical event opens a round");
    // keys
    let s = Server::start(KEYS);
    let (rc, out) = run_sdk(
        &py,
        "huawei_create.py",
        &[&s.url, "AKTOCSIN", "sk-wrong", "proj1", &events],
    );
    assert_eq!(rc, 3, "{out}");
    assert!(out.contains("status=403"), "{out}");
    assert_eq!(s.custom_count(), 0);
    let (rc, out) = run_sdk(
        &py,
        "huawei_create.py",
        &[&s.url, "AKTOCSIN", "sk-right", "proj1", &events],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(s.custom_count(), 1);
    // validation still applies to signed requests
    let bad = json!([{"event_name": "1bad", "event_source": "financial.System", "detail": {}}])
        .to_string();
    let (rc, out) = run_sdk(
        &py,
        "huawei_create.py",
        &[&s.url, "AKTOCSIN", "sk-right", "proj1", &bad],
    );
    assert_eq!(rc, 3, "{out}");
    assert!(
        out.contains("status=400") && out.contains("event_name"),
        "{out}"
    );
    assert_eq!(s.custom_count(), 1);
}

#[test]
fn sdk_cloudevents_three_modes() {
    let Some(py) = python() else { return };
    let s = Server::start("ingest_token = \"tok\"\n");
    let evs = json!([
        {"attributes": {"type": "cvm:ErrorEvent:ping_unreachable", "source": "cvm.cloud.tencent",
                        "subject": "ins-1", "region": "ap-guangzhou", "status": "1"},
         "data": {"instanceId": "ins-1"}},
        {"attributes": {"type": "com.example.note", "source": "/app"}, "data": "hello"}
    ])
    .to_string();
    let mut total = 0;
    for (mode, n) in [("binary", 1), ("structured", 1), ("batch", 2)] {
        let (rc, out) = run_sdk(&py, "cloudevents_send.py", &[&s.url, mode, &evs, "tok"]);
        assert_eq!(rc, 0, "{mode}: {out}");
        assert!(out.contains("status=200"), "{out}");
        total += n;
        assert_eq!(s.custom_count(), total, "{mode}");
    }
    let stored = s.custom_events();
    assert!(stored.iter().all(|e| e["df_source"] == "custom"));
    assert_eq!(
        stored
            .iter()
            .filter(|e| e["region"] == "ap-guangzhou" && e["df_status"] == "critical")
            .count(),
        3
    );
    // without the token: refused, nothing stored
    let (rc, out) = run_sdk(&py, "cloudevents_send.py", &[&s.url, "structured", &evs]);
    assert_eq!(rc, 3, "{out}");
    assert!(out.contains("status=401"), "{out}");
    assert_eq!(s.custom_count(), total);
}
