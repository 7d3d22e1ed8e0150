//! Composites in the live scheduler: a composite's tick waits until the monitors it reads
//! have finished their checks of that tick (or have none), so that it sees their rounds of
//! the same tick, as `replay` and `tocsin test` do by running composites last.

use super::Engine;
use crate::monitor::{Monitor, MonitorKind};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often the inputs are looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// The longest a composite waits for a slow input; then it runs with what is stored.
const MAX_WAIT: Duration = Duration::from_secs(30);

impl Engine {
    /// Waits until every input of composite `m` is done with its tick at or before `due`.
    /// Returns at once for other monitors.
    pub(super) async fn await_inputs(&self, m: &Monitor, due: i64) {
        let MonitorKind::Composite(spec) = &m.kind else {
            return;
        };
        let started = std::time::Instant::now();
        // Twice in a row: the scheduler moves an input's next run on a moment before it
        // raises its running flag.
        let mut settled_before = false;
        loop {
            let settled = spec.inputs.iter().all(|id| self.input_settled(id, due));
            if settled && settled_before {
                return;
            }
            settled_before = settled;
            if started.elapsed() > MAX_WAIT {
                tracing::warn!(monitor = %m.id, tick = due, "composite: inputs still running; evaluated with the rounds stored so far");
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether monitor `id` has no check of a tick at or before `due` still to finish.
    fn input_settled(&self, id: &str, due: i64) -> bool {
        let Some(slot) = self.slot(id) else {
            return true;
        };
        // Another replica runs it (HA on PostgreSQL): its progress is not visible here, so the
        // composite reads the rounds stored so far rather than wait for nothing.
        if !self.owns(id) {
            return true;
        }
        let Some(latest) = slot.monitor.schedule.latest_at_or_before(due) else {
            return true;
        };
        let h = slot.health.lock();
        if h.last_run.is_some_and(|l| l >= latest) {
            return true;
        }
        // Not run for that tick, and none is coming: skipped, or new since.
        !slot.running.load(Ordering::SeqCst) && h.next_run.is_none_or(|n| n > due)
    }
}
