//! The one renderer of monitor events: a detection [`Emit`] plus what the check knew becomes a
//! full [`Event`] (fields, detail, title and message from the monitor's templates).
//!
//! Field order is the order of the setters below; `tocsin replay` output depends on it.

use crate::check::rules::Evaluated;
use crate::check::PolicyNames;
use crate::detect::Emit;
use crate::model::event::{format_value, render_template, Event, ExecMode, Source, Status};
use crate::monitor::{Eval, Monitor, MonitorKind, MonitorType};
use crate::store::query::Tags;
use serde_json::{json, Map, Value};

/// What the renderer needs besides the emit: the monitor, the object and the check.
pub(crate) struct RenderCtx<'a> {
    /// the monitor
    pub(crate) m: &'a Monitor,
    /// policy names by id
    pub(crate) policies: &'a PolicyNames,
    /// base of `df_event_url`
    pub(crate) public_url: Option<&'a str>,
    /// the object's dimension tags
    pub(crate) tags: &'a Tags,
    /// the object's event ref
    pub(crate) event_ref: &'a str,
    /// trigger time
    pub(crate) t: i64,
    /// the check window `[start, end)`, seconds
    pub(crate) range: (i64, i64),
    /// how the check was started
    pub(crate) mode: ExecMode,
}

/// Renders one event.
pub(crate) fn render(cx: &RenderCtx<'_>, emit: &Emit, eval: Option<&Evaluated>) -> Event {
    let m = cx.m;
    let mut ev = Event::new();
    ev.set_id(emit.event_id.clone());
    ev.set_time(cx.t);
    if m.mtype != MonitorType::BotObs {
        ev.set_check_range(m.interval, cx.range.0, cx.range.1);
    }
    if let Some(i) = &emit.issue {
        ev.set_issue(i.start, i.duration, i.fault_id.clone());
    }
    ev.set_source(Source::Monitor);
    ev.set_status(emit.status);
    if let Some(s) = emit.sub_status {
        ev.set_sub_status(s);
    }
    if let Some(base) = cx.public_url {
        ev.set_event_url(base, &emit.event_id);
    }
    ev.set_dimension_tags(cx.tags);
    let policy_name = cx
        .policies
        .get(&m.policy)
        .cloned()
        .unwrap_or_else(|| policy_default_name(&m.policy));
    ev.set_policy(&m.policy, &policy_name);
    ev.set_checker(m.mtype.as_str(), m.checker(), emit.sub, &m.id, &m.name);
    let value = eval.and_then(|e| e.value);
    let show_value = !matches!(
        emit.status,
        Status::Nodata | Status::NodataOk | Status::NodataAsOk | Status::ManualOk
    );
    if let (true, Some(v)) = (show_value, value) {
        ev.set_value(v);
    }
    ev.set_checker_ref(&m.checker_ref);
    ev.set_event_ref(cx.event_ref);
    if m.mtype == MonitorType::BotObs {
        ev.set_ref_key(&m.id);
    }
    ev.set_exec_mode(cx.mode);
    ev.set_silent(false);
    ev.set_detail(&detail(m, eval));

    let (title, message) = title_and_message(cx, &ev, emit, eval, value);
    ev.set_title(title);
    ev.set_message(message);
    ev.copy_tags_to_top(cx.tags);
    ev
}

/// `df_event_detail`: the monitor file, its query and, for evaluations, the result, the
/// script's message and the rule that matched.
fn detail(m: &Monitor, eval: Option<&Evaluated>) -> Value {
    let mut detail = Map::new();
    detail.insert("monitor_file".into(), json!(m.file.display().to_string()));
    if let Some(q) = m.query() {
        detail.insert(
            "query".into(),
            json!({"measurement": q.measurement, "field": q.field, "agg": q.agg.name(), "by": q.by, "where": q.where_raw}),
        );
    }
    if let Some(e) = eval {
        detail.insert("result".into(), json!(e.value));
        if let Some(d) = &e.detail {
            detail.insert("detector".into(), d.clone());
        }
        if let Some(msg) = &e.message {
            detail.insert("script_message".into(), json!(msg));
        }
        // A check script or a bot matched no rule: `null`.
        let rule = match &m.kind {
            MonitorKind::Query {
                rules:
                    crate::monitor::Rules {
                        eval: Eval::Levels(levels),
                        ..
                    },
                ..
            } => levels
                .iter()
                .find(|(l, _)| *l == e.level)
                .map(|(_, r)| r.source.clone()),
            _ => None,
        };
        detail.insert("matched_rule".into(), json!(rule));
        // The kind's own explanation (composite, slo, outlier) goes last, and may say which
        // rule matched where the levels are not Rhai rules.
        for (k, v) in e.extra.iter().flatten() {
            detail.insert(k.clone(), v.clone());
        }
    }
    Value::Object(detail)
}

/// The title and message from the templates of the event's class, or the default text.
fn title_and_message(
    cx: &RenderCtx<'_>,
    ev: &Event,
    emit: &Emit,
    eval: Option<&Evaluated>,
    value: Option<f64>,
) -> (String, String) {
    let m = cx.m;
    // Templates see the tags, Result and every df_ field set so far.
    let mut vars = ev.0.clone();
    for (k, v) in cx.tags {
        vars.insert(k.clone(), json!(v));
    }
    vars.insert(
        "Result".into(),
        json!(value.map(format_value).unwrap_or_default()),
    );
    let tpl = &m.template;
    // Each class of event has its own templates; a missing one falls back to the default
    // text, never to another class's template (a nodata title has no Result to show).
    let (title_t, message_t) = match emit.status {
        Status::Nodata | Status::NodataOk | Status::NodataAsOk => {
            (tpl.nodata_title.as_ref(), tpl.nodata_message.as_ref())
        }
        Status::Ok => (tpl.recover_title.as_ref(), tpl.recover_message.as_ref()),
        // A manual recovery has no Result to show; its message is the user's.
        Status::ManualOk => (None, None),
        _ => (tpl.title.as_ref(), tpl.message.as_ref()),
    };
    let dims_text = if cx.tags.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            cx.tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let title = title_t
        .map(|t| render_template(t, &vars))
        .unwrap_or_else(|| format!("[{}] {}{}", emit.status, m.name, dims_text));
    let message = message_t
        .map(|t| render_template(t, &vars))
        .or_else(|| eval.and_then(|e| e.message.clone()))
        .unwrap_or_else(|| default_message(m, emit.status, value));
    (title, message)
}

/// The name of a policy that is not configured (`default` → `Default`).
pub fn policy_default_name(id: &str) -> String {
    if id == "default" {
        "Default".into()
    } else {
        id.to_string()
    }
}

fn default_message(m: &Monitor, status: Status, value: Option<f64>) -> String {
    let v = value.map(format_value);
    match status {
        Status::Nodata => format!("{}: no data", m.name),
        Status::NodataOk => format!("{}: data is back", m.name),
        Status::NodataAsOk => format!("{}: no data, treated as recovered", m.name),
        Status::ManualOk => format!("{}: recovered by hand", m.name),
        Status::Ok => format!("{}: recovered, Result = {}", m.name, v.unwrap_or_default()),
        _ => format!("{}: {}, Result = {}", m.name, status, v.unwrap_or_default()),
    }
}
