//! `tocsin replay`: evaluate monitors at every scheduled time of a range over given metrics,
//! in a scratch store, with the same runner as `serve`.

use crate::check::{ExecMode, MonitorState, Runner};
use crate::model::event::field;
use crate::model::event::Event;
use crate::monitor::Monitor;
use std::collections::HashMap;

/// Every `(trigger time, monitor index)` of the range, in run order (see [`order`]).
pub fn schedule(monitors: &[Monitor], from: i64, to: i64) -> Vec<(i64, usize)> {
    let mut ticks: Vec<(i64, usize)> = monitors
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.schedule.ticks(from, to).into_iter().map(move |t| (t, i)))
        .collect();
    order(monitors, &mut ticks);
    ticks
}

/// Sorts ticks into run order: by time, then composites after the monitors they read
/// ([`crate::monitor::ranks`]), then by monitor id.
pub fn order(monitors: &[Monitor], ticks: &mut [(i64, usize)]) {
    // Loading refuses cycles, so every monitor has a rank.
    let ranks = crate::monitor::ranks(monitors).unwrap_or_default();
    let rank = |i: usize| ranks.get(&monitors[i].id).copied().unwrap_or(0);
    ticks.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| rank(a.1).cmp(&rank(b.1)))
            .then_with(|| monitors[a.1].id.cmp(&monitors[b.1].id))
    });
}

/// Runs every tick in order and hands the events to `emit` sorted by date, monitor id, event
/// ref (emission order within one object's check), as soon as no later tick can add one
/// before them: a check's events are dated at its tick, so the events of a time are complete
/// when the ticks move past it. Memory thus holds one tick's events, not the whole replay's.
/// Per-check problems go to `warn`.
pub fn run(
    runner: &Runner,
    monitors: &[Monitor],
    ticks: &[(i64, usize)],
    mut progress: impl FnMut(usize),
    mut warn: impl FnMut(String),
    mut emit: impl FnMut(Event),
) {
    let mut states: HashMap<usize, MonitorState> = HashMap::new();
    let mut pending: Vec<Event> = Vec::new();
    let mut previous = i64::MIN;
    for (done, (t, i)) in ticks.iter().enumerate() {
        if *t > previous {
            flush(&mut pending, Some(*t), &mut emit);
            previous = *t;
        }
        let m = &monitors[*i];
        let st = states.entry(*i).or_default();
        match runner.run(m, st, *t, ExecMode::Crontab) {
            Ok(rep) => {
                for e in rep.errors {
                    warn(format!(
                        "{} at {}: {e}",
                        m.id,
                        crate::model::time::format_time(*t)
                    ));
                }
                pending.extend(rep.events);
            }
            Err(e) => warn(format!(
                "{} at {}: {e}",
                m.id,
                crate::model::time::format_time(*t)
            )),
        }
        progress(done + 1);
    }
    flush(&mut pending, None, &mut emit);
}

/// Emits, sorted, the pending events dated before `before` (all of them for `None`).
fn flush(pending: &mut Vec<Event>, before: Option<i64>, emit: &mut impl FnMut(Event)) {
    sort_events(pending);
    let cut = match before {
        Some(t) => pending.partition_point(|e| e.date() < t),
        None => pending.len(),
    };
    for e in pending.drain(..cut) {
        emit(e);
    }
}

/// Sorts events by date, then monitor id, then event ref; stable for ties.
pub fn sort_events(events: &mut [Event]) {
    events.sort_by(|a, b| {
        a.date()
            .cmp(&b.date())
            .then_with(|| {
                a.str(field::MONITOR_CHECKER_ID)
                    .cmp(&b.str(field::MONITOR_CHECKER_ID))
            })
            .then_with(|| a.event_ref().cmp(b.event_ref()))
    });
}
