//! How the scheduler runs the checks it found due: computing checks go into one queue per
//! scheduler pass, drained by as many blocking threads as there are compute slots; checks of a
//! data source and composites get a task each.
//!
//! Why a queue: a thousand checks due at the same second used to get a task, a semaphore wait
//! and a blocking-pool hand-off each. A check of a few objects takes tens of microseconds, the
//! hand-offs (futex wake-ups, thread switches) about as much again, and they happen one after
//! the other, so the last check of a tick started later than the work alone explained. A
//! drained queue pays one hand-off per worker instead of one per check.

use super::{CountGuard, Engine, FlagGuard, Slot};
use crate::check::ExecMode;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

/// A due check, with the guards the scheduler raised for it (released when it is done).
pub(super) struct Due {
    pub slot: Arc<Slot>,
    pub tick: i64,
    pub running: FlagGuard,
    pub in_flight: CountGuard,
}

impl Engine {
    /// Starts a pass's due checks: those that compute on this machine (store queries, rules,
    /// scripts) in one queue, in due order, for at most one worker per compute slot; data
    /// source checks (mostly waiting on the network) and composites (waiting on their inputs)
    /// on their own tasks, so neither holds up the queue.
    pub(super) fn dispatch(self: &Arc<Self>, due: Vec<Due>) {
        let mut queue = VecDeque::new();
        for d in due {
            let m = &d.slot.monitor;
            if m.promql().is_some() {
                self.spawn_alone(d, false);
            } else if matches!(m.kind, crate::monitor::MonitorKind::Composite(_)) {
                self.spawn_alone(d, true);
            } else {
                queue.push_back(d);
            }
        }
        if queue.is_empty() {
            return;
        }
        let workers = queue.len().min(self.compute_slot_count);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers {
            let (me, queue) = (self.clone(), queue.clone());
            tokio::spawn(async move {
                // Workers of an earlier pass still draining keep their slots: this pass's
                // checks wait for them, so the cores are never oversubscribed.
                let permit = me.compute_slots.clone().acquire_owned().await.ok();
                let _ = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    loop {
                        let next = queue.lock().pop_front();
                        let Some(d) = next else { break };
                        me.run_due(d);
                    }
                })
                .await;
            });
        }
    }

    /// One check on a task of its own; `compute` takes a compute slot once its inputs ran.
    fn spawn_alone(self: &Arc<Self>, d: Due, compute: bool) {
        let me = self.clone();
        tokio::spawn(async move {
            // A composite runs after the monitors it reads (their tick first).
            me.await_inputs(&d.slot.monitor, d.tick).await;
            let permit = match compute {
                true => me.compute_slots.clone().acquire_owned().await.ok(),
                false => None,
            };
            let _ = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                me.run_due(d);
            })
            .await;
        });
    }

    fn run_due(&self, d: Due) {
        let Due {
            slot,
            tick,
            running,
            in_flight,
        } = d;
        self.metrics
            .schedule_lag(super::now_secs_f64() - tick as f64);
        let _ = self.run_blocking(&slot, tick, ExecMode::Crontab);
        self.metrics
            .check_finished(super::now_secs_f64() - tick as f64);
        drop((running, in_flight));
    }
}
