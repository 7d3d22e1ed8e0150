//! Alert policies (README "Alert policies and webhooks"): which targets an event goes to, repeat suppression
//! (`silent_timeout`), mutes, and the durable outbox the delivery worker drains.
//!
//! The planner runs as an [`EventHook`] inside the transaction that stores the event, so a
//! delivery row exists if and only if its event does. Decisions use the event's own `date`, so
//! they do not depend on when the commit happens to run. `alertmanager_api` targets also keep
//! their open alerts there ([`alertmanager`]), for the worker to re-send.

pub mod alertmanager;
pub mod payload;
pub mod silence;
pub mod worker;

use crate::args;
use crate::config::{Config, MuteWindow, Policy, TagFilter};
use crate::events::EventHook;
use crate::events::{Sql, SqlError};
use crate::model::event::{Event, Status};
use crate::model::time::Seconds;
use crate::model::Tags;

pub use crate::config::Format;

#[derive(Debug, Clone)]
struct TargetPlan {
    key: String,
    url: String,
    statuses: Vec<Status>,
    tags: Option<TagFilter>,
    format: Format,
    secret: Option<String>,
    timeout_ms: i64,
    /// `alertmanager_api`: re-send period
    resend_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct MutePlan {
    window: MuteWindow,
    monitors: Option<Vec<String>>,
    tags: Option<TagFilter>,
}

#[derive(Debug, Clone)]
struct PolicyPlan {
    id: String,
    name: String,
    silent_timeout: Option<i64>,
    expire: i64,
    targets: Vec<TargetPlan>,
    mutes: Vec<MutePlan>,
}

/// The compiled policies; the [`EventHook`] that plans deliveries.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    policies: Vec<PolicyPlan>,
}

fn tags_match(filter: &Option<TagFilter>, tags: &Tags) -> bool {
    filter.as_ref().is_none_or(|f| {
        f.iter()
            .all(|(k, vals)| tags.get(k).is_some_and(|v| vals.matches(v)))
    })
}

impl MutePlan {
    fn covers(&self, date: i64, monitor: &str, tags: &Tags) -> bool {
        if let Some(ms) = &self.monitors {
            if !ms.iter().any(|m| m == monitor) {
                return false;
            }
        }
        if !tags_match(&self.tags, tags) {
            return false;
        }
        match &self.window {
            MuteWindow::OneOff { start, end } => start.0 <= date && date < end.0,
            // Muted when the latest start at or before `date` is less than `duration` ago.
            MuteWindow::Repeating { cron, duration } => cron
                .latest_at_or_before(date)
                .is_some_and(|s| date - s < duration.get()),
        }
    }
}

impl Notifier {
    /// Plans the policies of a config (already typed and checked when it was read).
    pub fn new(cfg: &Config) -> Notifier {
        Notifier {
            policies: cfg.policies.iter().map(compile_policy).collect(),
        }
    }

    /// The `alertmanager_api` targets, for the worker's re-sends.
    pub fn alertmanager_targets(&self) -> Vec<alertmanager::AmTarget> {
        self.policies
            .iter()
            .flat_map(|p| &p.targets)
            .filter_map(|t| {
                Some(alertmanager::AmTarget {
                    key: t.key.clone(),
                    url: t.url.clone(),
                    secret: t.secret.clone(),
                    timeout_ms: t.timeout_ms,
                    resend_ms: t.resend_ms?,
                })
            })
            .collect()
    }

    /// The policy of an event: its `df_monitor_id`, else (custom events) the `default` policy.
    fn policy_for(&self, ev: &Event) -> Option<&PolicyPlan> {
        let id = ev.policy_id().unwrap_or("default");
        self.policies.iter().find(|p| p.id == id)
    }
}

fn compile_policy(p: &Policy) -> PolicyPlan {
    let targets = p
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| TargetPlan {
            key: format!(
                "{}#{}:{}",
                p.id,
                i,
                &crate::model::event::md5_hex(&t.url.0)[..8]
            ),
            url: t.post_url(),
            statuses: t.statuses.clone(),
            tags: t.tags.clone(),
            format: t.format,
            secret: t.secret.clone(),
            timeout_ms: t.timeout.get() * 1000,
            resend_ms: t.resend.map(|r| r.get() * 1000),
        })
        .collect();
    let mutes = p
        .mutes
        .iter()
        .map(|m| MutePlan {
            window: m.window.clone(),
            monitors: m.monitors.clone(),
            tags: m.tags.clone(),
        })
        .collect();
    PolicyPlan {
        id: p.id.clone(),
        name: p.display_name().to_string(),
        silent_timeout: p.silent_timeout.map(Seconds::get),
        expire: p.expire.get(),
        targets,
        mutes,
    }
}

/// Current wall-clock time in milliseconds (delivery timing is about real time, not event time).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl EventHook for Notifier {
    fn init(&self, conn: &mut dyn Sql) -> Result<(), SqlError> {
        let keys: Vec<String> = self
            .alertmanager_targets()
            .into_iter()
            .map(|t| t.key)
            .collect();
        alertmanager::prune(conn, &keys)
    }

    fn on_event(&self, tx: &mut dyn Sql, ev: &mut Event) -> Result<(), SqlError> {
        // A runtime silence marks the event whether or not a policy would send it.
        let silenced = silence::covering(tx, ev)?.is_some();
        if silenced {
            ev.set_silent(true);
        }
        let Some(policy) = self.policy_for(ev) else {
            return Ok(());
        };
        let Some(status) = ev.status() else {
            return Ok(());
        };
        let date = ev.date();
        let tags: Tags = ev
            .dimension_tags()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let monitor = ev.checker_id().unwrap_or("").to_string();
        let muted = silenced || policy.mutes.iter().any(|m| m.covers(date, &monitor, &tags));
        if muted {
            ev.set_silent(true);
        }
        let r = ev.event_ref().to_string();
        for t in &policy.targets {
            if !tags_match(&t.tags, &tags) {
                continue;
            }
            let last: Option<(String, i64, bool)> = if r.is_empty() {
                None
            } else {
                tx.row(
                    "SELECT status, sent_at, muted FROM notify_sent WHERE target = ?1 AND ref = ?2",
                    args![&t.key, &r],
                )?
                .map(|row| Ok::<_, SqlError>((row.text(0)?, row.int(1)?, row.int(2)? != 0)))
                .transpose()?
            };
            if status.is_recovery() && !r.is_empty() {
                // Recoveries go to the targets that got (or, muted, would have got) the fault,
                // whatever their status filter or silent_timeout say.
                let Some((last_status, ..)) = &last else {
                    continue;
                };
                tx.exec(
                    "DELETE FROM notify_sent WHERE target = ?1 AND ref = ?2",
                    args![&t.key, &r],
                )?;
                // Rendered even when muted: for alertmanager_api it also closes the round.
                let body = render(tx, policy, t, ev, Some(last_status))?;
                if !muted {
                    enqueue(tx, policy, t, ev, body)?;
                }
                continue;
            }
            if !t.statuses.contains(&status) {
                continue;
            }
            if !r.is_empty() && status.is_fault() {
                if muted {
                    // Remember the fault so its recovery is sent later; never send it
                    // retroactively.
                    remember_sent(tx, &t.key, &r, status.as_str(), date, true)?;
                    continue;
                }
                if let (Some(window), Some((st, at, was_muted))) = (policy.silent_timeout, &last) {
                    if !was_muted && st == status.as_str() && date - at < window {
                        continue;
                    }
                }
                remember_sent(tx, &t.key, &r, status.as_str(), date, false)?;
            } else if muted {
                continue;
            }
            let body = render(tx, policy, t, ev, None)?;
            enqueue(tx, policy, t, ev, body)?;
        }
        Ok(())
    }
}

/// The outbox body of an event for a target; `None` when there is nothing to send.
fn render(
    tx: &mut dyn Sql,
    policy: &PolicyPlan,
    t: &TargetPlan,
    ev: &Event,
    last_sent: Option<&str>,
) -> Result<Option<String>, SqlError> {
    match (t.format, t.resend_ms) {
        (Format::AlertmanagerApi, Some(resend)) => alertmanager::plan(
            tx,
            &t.key,
            resend * alertmanager::LEAD_RESENDS,
            ev,
            last_sent,
        ),
        (f, _) => Ok(payload::render(f, ev, &policy.id, &policy.name)),
    }
}

/// What was last sent (or, muted, would have been sent) to a target for a round.
fn remember_sent(
    tx: &mut dyn Sql,
    target: &str,
    r: &str,
    status: &str,
    date: i64,
    muted: bool,
) -> Result<(), SqlError> {
    tx.exec(
        "INSERT INTO notify_sent(target, ref, status, sent_at, muted) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(target, ref) DO UPDATE SET status = excluded.status, sent_at = excluded.sent_at, \
         muted = excluded.muted",
        args![target, r, status, date, muted],
    )?;
    Ok(())
}

fn enqueue(
    tx: &mut dyn Sql,
    policy: &PolicyPlan,
    t: &TargetPlan,
    ev: &Event,
    body: Option<String>,
) -> Result<(), SqlError> {
    let Some(body) = body else {
        return Ok(());
    };
    let now = now_ms();
    tx.exec(
        "INSERT INTO outbox(event_id, target, policy, url, format, secret, timeout_ms, body, status, \
         attempts, next_at, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 0, ?9, ?9, ?10) \
         ON CONFLICT DO NOTHING",
        args![
            ev.id(),
            &t.key,
            &policy.id,
            &t.url,
            t.format.as_str(),
            &t.secret,
            t.timeout_ms,
            body,
            now,
            now + policy.expire * 1000
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
