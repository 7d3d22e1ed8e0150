//! One monitor file's text to a [`Monitor`]: identity, type, policy, schedule and window
//! here; each section in its own module; then the kind (query or bot) from the parts.

use super::errs::{field_at, Errs};
use super::load::LoadContext;
use super::query::Query;
use super::raw::RawMonitor;
use super::{parse_cron, Eval, Monitor, MonitorError, MonitorKind, MonitorType, Rules, Schedule};
use crate::detect::{NodataAction, Settings};
use crate::model::event::md5_hex;
use crate::model::time::parse_duration;
use std::path::Path;

/// Parses and validates one monitor's text.
pub fn parse_monitor(
    text: &str,
    file: &Path,
    stem: &str,
    ctx: &LoadContext,
) -> Result<Monitor, Vec<MonitorError>> {
    let mut e = Errs {
        file,
        text,
        list: Vec::new(),
    };
    let raw: RawMonitor = match toml::from_str(text) {
        Ok(r) => r,
        Err(err) => {
            let line = err.span().map(|s| e.line_of(s.start)).unwrap_or(1);
            let mut msg = err.message().to_string();
            if let Some(field) = field_at(text, line) {
                msg = format!("{field}: {msg}");
            }
            let msg = if msg.contains("unknown field") {
                format!("{msg} (see docs/monitors.md for the monitor file format)")
            } else {
                msg
            };
            return Err(vec![MonitorError {
                file: file.to_path_buf(),
                line,
                field: String::new(),
                message: msg,
            }]);
        }
    };

    let id = raw
        .id
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| stem.to_string());
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        match &raw.id {
            Some(s) => e.bad(s, "id", "expected 1-128 characters without spaces"),
            None => e.at(
                0..0,
                "id",
                format!("file stem {stem:?} is not a usable id; set id = \"...\""),
            ),
        }
    }
    let name = raw
        .name
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| id.clone());
    let mtype = match raw.mtype.as_ref() {
        None => MonitorType::Custom,
        Some(s) => MonitorType::parse(s.get_ref()).unwrap_or_else(|| {
            let names: Vec<&str> = MonitorType::ALL.iter().map(|t| t.as_str()).collect();
            e.bad(s, "type", &format!("expected one of {}", names.join(", ")));
            MonitorType::Custom
        }),
    };
    let policy = raw
        .policy
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "default".to_string());
    if let Some(p) = &raw.policy {
        if p.get_ref() != "default" && !ctx.policies.iter().any(|x| x == p.get_ref()) {
            let known: Vec<&str> = std::iter::once("default")
                .chain(ctx.policies.iter().map(String::as_str))
                .collect();
            e.bad(
                p,
                "policy",
                &format!(
                    "unknown policy; known: {} (policies come from the config file)",
                    known.join(", ")
                ),
            );
        }
    }

    // Schedule: exactly one of every, cron, manual.
    let manual = raw.manual.as_ref().is_some_and(|m| *m.get_ref());
    let set = [raw.every.is_some(), raw.cron.is_some(), manual]
        .iter()
        .filter(|x| **x)
        .count();
    let schedule = if set > 1 {
        e.at(
            0..0,
            "every",
            "set only one of every, cron or manual = true".into(),
        );
        Schedule::Manual
    } else if let Some(ev) = &raw.every {
        match parse_duration(&ev.get_ref().0) {
            Ok(n) if n > 0 => Schedule::Every(n),
            Ok(_) => {
                e.bad(ev, "every", "must be longer than 0s");
                Schedule::Manual
            }
            Err(msg) => {
                e.bad(ev, "every", &msg);
                Schedule::Manual
            }
        }
    } else if let Some(c) = &raw.cron {
        match parse_cron(c.get_ref()) {
            Ok(s) => Schedule::Cron {
                expr: c.get_ref().clone(),
                schedule: Box::new(s),
            },
            Err(msg) => {
                e.bad(c, "cron", &msg);
                Schedule::Manual
            }
        }
    } else if manual {
        Schedule::Manual
    } else {
        e.at(
            0..0,
            "every",
            "no schedule: set every = \"1m\", cron = \"*/5 * * * *\" or manual = true".into(),
        );
        Schedule::Manual
    };

    let interval = e.duration(&raw.interval, "interval", 300);
    if interval <= 0 && mtype != MonitorType::BotObs {
        if let Some(s) = &raw.interval {
            e.bad(s, "interval", "must be longer than 0s");
        }
    }
    let delay = e.duration(&raw.delay, "delay", 0);
    let forget_after = e.duration(&raw.forget_after, "forget_after", 86_400);

    // A composite without a [query] judges other monitors' rounds: its own reading of [rules].
    if mtype != MonitorType::BotObs && super::composite::wanted(&raw) {
        let parsed = super::composite::parse(&raw, &mut e);
        let template = super::template::parse(raw.template.as_ref(), &mut e);
        let Some(parsed) = parsed.filter(|_| e.list.is_empty()) else {
            return Err(e.list);
        };
        let inputs = parsed.spec.inputs.join(",");
        return Ok(Monitor {
            checker_ref: md5_hex(&format!("composite|{id}|{inputs}")),
            id,
            name,
            mtype,
            policy,
            schedule,
            interval,
            delay,
            kind: MonitorKind::Composite(parsed.spec),
            settings: Settings {
                trigger_after: parsed.trigger_after,
                recover_after: parsed.recover_after,
                nodata: NodataAction::None,
            },
            nodata: None,
            template,
            forget_after,
            file: file.to_path_buf(),
            fingerprint: md5_hex(text),
        });
    }
    // An objective reads [slo]: good and total, target and burn-rate pairs.
    if super::slo::wanted(&raw, mtype) {
        let parsed = super::slo::parse(&raw, ctx.datasources, &mut e);
        if let Some(i) = &raw.interval {
            e.bad(
                i,
                "interval",
                "an objective's windows are slo.window and [[slo.burn]]; remove it",
            );
        }
        let template = super::template::parse(raw.template.as_ref(), &mut e);
        let Some(parsed) = parsed.filter(|_| e.list.is_empty()) else {
            return Err(e.list);
        };
        return Ok(Monitor {
            checker_ref: md5_hex(&format!(
                "slo|{:?}|{}",
                parsed.spec.source, parsed.spec.window
            )),
            id,
            name,
            mtype,
            policy,
            schedule,
            interval,
            delay,
            kind: MonitorKind::Slo(parsed.spec),
            settings: Settings {
                trigger_after: parsed.trigger_after,
                recover_after: parsed.recover_after,
                nodata: NodataAction::None,
            },
            nodata: None,
            template,
            forget_after,
            file: file.to_path_buf(),
            fingerprint: md5_hex(text),
        });
    }
    if let Some(s) = &raw.slo {
        e.at(
            s.span(),
            "slo",
            "[slo] is for type = \"slo\"; set it, or remove [slo]".into(),
        );
    }
    let query = super::query::parse(raw.query.as_ref(), mtype, ctx, &mut e);
    let rules = super::rules::parse(
        raw.rules.as_ref(),
        raw.script.as_ref(),
        mtype,
        interval,
        ctx,
        &mut e,
    );
    let nodata = super::nodata::parse(raw.nodata.as_ref(), mtype, &mut e);
    let template = super::template::parse(raw.template.as_ref(), &mut e);

    // Every combination that yields no kind has recorded an error above.
    let kind = match (mtype, query, rules.script) {
        (MonitorType::BotObs, _, Some(script)) => Some(MonitorKind::Bot { script }),
        (MonitorType::BotObs, _, None) => None,
        (_, Some(query), script) => {
            let rules = Rules {
                kind: rules.kind,
                eval: match script {
                    Some(s) => Eval::Script(s),
                    None => Eval::Levels(rules.levels),
                },
                recovery: rules.recovery,
                baseline: rules.baseline,
                params: rules.params,
                outlier: rules.outlier,
            };
            Some(match query {
                Query::Store(query) => MonitorKind::Query { query, rules },
                Query::Promql(query) => MonitorKind::Promql { query, rules },
            })
        }
        (_, None, _) => None,
    };
    let Some(kind) = kind.filter(|_| e.list.is_empty()) else {
        debug_assert!(!e.list.is_empty(), "a monitor without a kind has an error");
        return Err(e.list);
    };
    let nodata_action = nodata.map(|n| n.action).unwrap_or(NodataAction::None);
    let checker_ref = md5_hex(&match &kind {
        MonitorKind::Query { query: q, .. } => format!(
            "{}|{}|{}|{}|{:?}|{}",
            q.measurement,
            q.field,
            q.agg.name(),
            q.by.join(","),
            q.where_raw,
            interval
        ),
        MonitorKind::Promql { query: q, .. } => {
            format!("promql|{}|{}|{}", q.datasource, q.promql, interval)
        }
        MonitorKind::Bot { .. } | MonitorKind::Composite(_) | MonitorKind::Slo(_) => {
            format!("bot|{id}")
        }
    });
    Ok(Monitor {
        id,
        name,
        mtype,
        policy,
        schedule,
        interval,
        delay,
        kind,
        settings: Settings {
            trigger_after: rules.trigger_after,
            recover_after: rules.recover_after,
            nodata: nodata_action,
        },
        nodata,
        template,
        forget_after,
        file: file.to_path_buf(),
        fingerprint: md5_hex(text),
        checker_ref,
    })
}
