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
