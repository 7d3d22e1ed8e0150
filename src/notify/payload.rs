//! Payload shapes for webhook targets: the flat event, Alertmanager webhook v4, DingTalk. The
//! `alertmanager_api` format depends on what the target was sent before (its rounds), so the
//! planner renders it with [`super::alertmanager::plan`] instead.

use super::Format;
use crate::model::event::{field, Event, Status};
use serde_json::{json, Map, Value};

/// Unix seconds as RFC 3339 UTC (`2024-05-01T00:00:00Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Renders the request body for one event; `None` for `alertmanager_api`, which needs the
/// target's round state.
pub fn render(format: Format, ev: &Event, policy_id: &str, policy_name: &str) -> Option<String> {
    Some(match format {
        Format::Json => serde_json::to_string(ev).expect("event serialises"),
        Format::Alertmanager => alertmanager(ev, policy_id).to_string(),
        Format::Dingtalk => dingtalk(ev, policy_name).to_string(),
        Format::AlertmanagerApi => return None,
    })
}

/// Alertmanager webhook v4: one alert per event; recoveries are `resolved`.
pub fn alertmanager(ev: &Event, receiver: &str) -> Value {
    let status = ev.status().unwrap_or(Status::Info);
    let resolved = status.is_recovery();
    let mut labels = Map::new();
    let name = ev
        .checker_name()
        .or(ev.event_name())
        .or(ev.title())
        .unwrap_or("tocsin");
    labels.insert("alertname".into(), json!(name));
    if let Some(m) = ev.checker_id() {
        labels.insert("monitor".into(), json!(m));
    }
    // severity is the fault level; for a recovery, the level it recovers from
    let severity = if resolved {
        ev.sub_status().unwrap_or("ok").to_string()
    } else {
        status.as_str().to_string()
    };
    labels.insert("severity".into(), json!(severity));
    labels.insert(field::SOURCE.into(), json!(ev.source().unwrap_or("")));
    if let Some(tags) = ev
        .dimension_tags()
        .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok())
    {
        for (k, v) in tags {
            labels.entry(k).or_insert(v);
        }
    }
    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(ev.title().unwrap_or("")));
    annotations.insert("description".into(), json!(ev.message().unwrap_or("")));
    annotations.insert(field::STATUS.into(), json!(status.as_str()));
    annotations.insert(field::EVENT_ID.into(), json!(ev.id()));
    let starts = ev.issue_start().unwrap_or(ev.date());
    let fingerprint = {
        let r = ev.event_ref();
        let base = if r.is_empty() { ev.id() } else { r };
        crate::model::event::md5_hex(base)[..16].to_string()
    };
    let alert = json!({
        "status": if resolved { "resolved" } else { "firing" },
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(starts),
        "endsAt": if resolved { rfc3339(ev.date()) } else { "0001-01-01T00:00:00Z".to_string() },
        "generatorURL": ev.event_url().unwrap_or(""),
        "fingerprint": fingerprint,
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
        "truncatedAlerts": 0,
        "status": if resolved { "resolved" } else { "firing" },
        "receiver": receiver,
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [alert],
    })
}

/// A DingTalk robot markdown message.
pub fn dingtalk(ev: &Event, policy_name: &str) -> Value {
    let status = ev.status().map(|s| s.as_str()).unwrap_or("info");
    let title = ev.title().unwrap_or("tocsin event");
    let mut text = format!(
        "### [{}] {}\n\n{}\n\n- status: **{}**\n- time: {}\n",
        status.to_uppercase(),
        title,
        ev.message().unwrap_or(""),
        status,
        rfc3339(ev.date())
    );
    if let Some(m) = ev.checker_name() {
        text.push_str(&format!("- monitor: {m}\n"));
    }
    if let Some(d) = ev.dimension_tags().filter(|d| *d != "{}") {
        text.push_str(&format!("- object: `{d}`\n"));
    }
    if let Some(s) = ev.issue_start() {
        text.push_str(&format!(
            "- issue since: {} ({} s)\n",
            rfc3339(s),
            ev.issue_duration().unwrap_or(0)
        ));
    }
    text.push_str(&format!("- policy: {policy_name}\n- event: {}\n", ev.id()));
    if let Some(u) = ev.event_url() {
        text.push_str(&format!("\n[details]({u})\n"));
    }
    json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
}
