//! The per-evaluation frame: which host, deadline and bot-report buffer belong to the
//! evaluation running on this thread.
//!
//! Rhai host functions are plain closures registered once on the shared engine, so they cannot
//! capture the host of one evaluation. Instead each evaluation pushes a [`Frame`] on a
//! thread-local stack (nested when a host re-enters the engine) and host functions reach the
//! innermost one. [`FrameGuard`] pops it again, also on unwind.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use super::{BotReport, ScriptHost};

/// One running evaluation on this thread.
struct Frame {
    /// The host of this evaluation, lifetime erased; valid while the frame is on the stack.
    host: *const (dyn ScriptHost + 'static),
    deadline: Instant,
    /// largest result a host function may hand back (items; 0 = no cap)
    max_items: usize,
    name: Arc<str>,
    /// `Some` for bots: collected reports.
    reports: Option<Vec<BotReport>>,
}

thread_local! {
    /// Stack of the evaluations running on this thread (nested when a host re-enters).
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Pops the frame it pushed, also when unwinding.
pub(super) struct FrameGuard;

impl FrameGuard {
    pub(super) fn push(
        host: &dyn ScriptHost,
        deadline: Instant,
        max_items: usize,
        name: Arc<str>,
        bot: bool,
    ) -> FrameGuard {
        // SAFETY: only the lifetime bound of the trait object is erased. The pointer is
        // dereferenced only by `with_host` while this frame is on the stack, i.e. during the
        // evaluation that borrowed `host`; the guard pops the frame before that borrow ends
        // (on return and on unwind), and frames are strictly LIFO per thread.
        let host: *const (dyn ScriptHost + 'static) = unsafe {
            std::mem::transmute::<*const (dyn ScriptHost + '_), *const (dyn ScriptHost + 'static)>(
                host,
            )
        };
        FRAMES.with(|f| {
            f.borrow_mut().push(Frame {
                host,
                deadline,
                max_items,
                name,
                reports: bot.then(Vec::new),
            })
        });
        FrameGuard
    }

    pub(super) fn take_reports(&self) -> Vec<BotReport> {
        FRAMES.with(|f| {
            f.borrow_mut()
                .last_mut()
                .and_then(|fr| fr.reports.take())
                .unwrap_or_default()
        })
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            f.borrow_mut().pop();
        });
    }
}

/// Run `f` with the host of the innermost evaluation on this thread.
pub(super) fn with_host<R>(f: impl FnOnce(&dyn ScriptHost) -> R) -> Option<R> {
    // Copy the pointer out so no RefCell borrow is held while the host runs (it may re-enter).
    let ptr = FRAMES.with(|fr| fr.borrow().last().map(|frame| frame.host))?;
    // SAFETY: see `FrameGuard::push`; the frame (and thus the borrow) outlives this call.
    Some(f(unsafe { &*ptr }))
}

/// The name of the innermost evaluation on this thread (for log lines).
pub(super) fn current_name() -> Option<Arc<str>> {
    FRAMES.with(|fr| fr.borrow().last().map(|frame| frame.name.clone()))
}

/// The deadline of the innermost evaluation on this thread.
pub(super) fn current_deadline() -> Option<Instant> {
    FRAMES.with(|fr| fr.borrow().last().map(|frame| frame.deadline))
}

/// What the host call of the innermost evaluation on this thread may still spend: the
/// evaluation's deadline and the largest result it can take. `None` outside an evaluation.
pub fn current_budget() -> Option<Budget> {
    FRAMES.with(|fr| {
        fr.borrow().last().map(|frame| Budget {
            deadline: frame.deadline,
            max_items: frame.max_items,
        })
    })
}

/// The limits a host function checks while it builds its answer, so an oversized query fails
/// before it has allocated the whole result, not after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// the evaluation's wall-clock deadline
    pub deadline: Instant,
    /// most items (series, groups, points of one series) one answer may hold; 0 = no cap
    pub max_items: usize,
}

impl Budget {
    /// Fails when `items` exceed the cap or the deadline has passed; `what` names the call
    /// and the kind of item for the message.
    pub fn check(&self, what: &str, items: usize) -> Result<(), String> {
        if self.max_items > 0 && items > self.max_items {
            return Err(format!(
                "{what}: {items} items, more than the {} a script may handle; narrow the measurement, field or where filter",
                self.max_items
            ));
        }
        if Instant::now() > self.deadline {
            return Err(format!("{what}: the script's time limit ran out"));
        }
        Ok(())
    }
}

/// Record a bot report on the innermost evaluation, at most `max_reports` per run (0 = no cap).
pub(super) fn push_report(report: BotReport, max_reports: usize) -> Result<(), String> {
    FRAMES.with(|fr| {
        let mut frames = fr.borrow_mut();
        match frames.last_mut().and_then(|f| f.reports.as_mut()) {
            None => Err(
                "report() is only available in bots (type = \"bot_obs\"); a check \
                 script returns its status instead"
                    .to_string(),
            ),
            Some(r) if max_reports > 0 && r.len() >= max_reports => Err(format!(
                "report() called more than {max_reports} times in one run"
            )),
            Some(r) => {
                r.push(report);
                Ok(())
            }
        }
    })
}
