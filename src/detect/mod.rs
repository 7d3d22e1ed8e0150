//! The detection state machine described in docs/detection.md, per monitor and object.
//!
//! Pure: no I/O, no clock, no async. The trigger time comes in as an argument, so the live
//! scheduler, `replay` and `tocsin test` run exactly this code. A step takes the object's state
//! and one [`Observation`] and returns the events to emit as [`Emit`]s; rendering them into full
//! events is [`crate::model::event`]'s job.
//!
//! The same rounds serve every source of events: monitors step with [`ObjectState::step`],
//! custom events (whose round lives only in the issue table) rebuild their state with
//! [`ObjectState::with_round`] and step with [`ObjectState::report`], and manual recovery of
//! any open round goes through [`ObjectState::recover`].

pub mod observe;

use crate::model::event::{event_id, Status, Sub};
use serde::{Deserialize, Serialize};

/// What `[nodata] action` does for an object with a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodataAction {
    /// nothing (streaks still reset)
    #[default]
    None,
    /// one `nodata` at the start of the gap, one `nodata_ok` when data returns
    Nodata,
    /// one `nodata_as_ok` at the start of the gap when a round is open
    Ok,
    /// a `critical` event every check in the gap
    Critical,
    /// an `error` event every check in the gap
    Error,
    /// a `warning` event every check in the gap
    Warning,
    /// rules are evaluated with `Result = 0` (the runner does this; see [`Observation::Data`])
    AsZero,
}

/// Names accepted for `[nodata] action`, derived from [`NodataAction::ALL`].
pub const NODATA_ACTIONS: &[&str] = &{
    let mut out = [""; NodataAction::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = NodataAction::ALL[i].as_str();
        i += 1;
    }
    out
};

impl NodataAction {
    /// Every action, in the order error messages list them.
    pub const ALL: [NodataAction; 7] = [
        NodataAction::None,
        NodataAction::Nodata,
        NodataAction::Ok,
        NodataAction::Critical,
        NodataAction::Error,
        NodataAction::Warning,
        NodataAction::AsZero,
    ];

    /// The name in `[nodata] action` (the serde name too).
    pub const fn as_str(self) -> &'static str {
        match self {
            NodataAction::None => "none",
            NodataAction::Nodata => "nodata",
            NodataAction::Ok => "ok",
            NodataAction::Critical => "critical",
            NodataAction::Error => "error",
            NodataAction::Warning => "warning",
            NodataAction::AsZero => "as_zero",
        }
    }

    /// Parses an action name.
    pub fn parse(s: &str) -> Option<NodataAction> {
        NodataAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The outcome of evaluating the rules (or a script) for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// no rule matched
    Ok,
    /// informational, counts as clean
    Info,
    /// fault
    Warning,
    /// fault
    Error,
    /// fault
    Critical,
}

impl Level {
    /// The event status a level emits.
    pub fn status(self) -> Status {
        match self {
            Level::Ok => Status::Ok,
            Level::Info => Status::Info,
            Level::Warning => Status::Warning,
            Level::Error => Status::Error,
            Level::Critical => Status::Critical,
        }
    }

    /// Parses `ok`, `info`, `warning`, `error`, `critical`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "ok" => Level::Ok,
            "info" => Level::Info,
            "warning" => Level::Warning,
            "error" => Level::Error,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    fn is_fault(self) -> bool {
        matches!(self, Level::Warning | Level::Error | Level::Critical)
    }
}

/// What one check saw for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The rules were evaluated. `recovery_holds` is the `recovery` expression's answer (true
    /// when there is none). `sub` is [`Sub::Nodata`] for `as_zero` evaluations of a gap.
    Data {
        /// the evaluated level
        level: Level,
        /// hysteresis: whether a clean check counts toward recovery
        recovery_holds: bool,
        /// the stage that produced the evaluation
        sub: Sub,
    },
    /// The window was empty but there is no gap: nothing changes (a returning gap still ends).
    Empty,
    /// No point in `[end - nodata.after, end)` for an object seen before.
    Gap,
}

/// Per-monitor settings the machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// consecutive faulty checks before the first fault event (at least 1)
    pub trigger_after: u32,
    /// consecutive clean checks before `ok`; 0 = only manual recovery
    pub recover_after: u32,
    /// the nodata action for gaps
    pub nodata: NodataAction,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trigger_after: 1,
            recover_after: 1,
            nodata: NodataAction::None,
        }
    }
}

/// An open round (issue) of one object.
///
/// States written before schema version 1 also carried `last_status`, `last_event_id` and
/// `last_date`; nothing read them, and deserialising ignores them (the event db rewrites old
/// states without them when it opens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// `df_issue_start_time`: date of the round's first event
    pub start: i64,
    /// `df_fault_id`: id of the round's first event
    pub fault_id: String,
    /// the latest fault status in the round (becomes `df_sub_status` of `ok`)
    pub last_fault: Status,
}

impl Round {
    /// The issue fields of an event of this round at `t`. The duration never goes below 0
    /// (custom events may arrive with dates before the round's start).
    fn issue_at(&self, t: i64) -> IssueInfo {
        IssueInfo {
            start: self.start,
            duration: (t - self.start).max(0),
            fault_id: self.fault_id.clone(),
        }
    }
}

/// Detection state of one object. Plain data, persisted as JSON between checks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectState {
    /// consecutive faulty checks
    pub fault_streak: u32,
    /// consecutive clean checks (counted only while a round is open)
    pub clean_streak: u32,
    /// the open round, if any
    pub round: Option<Round>,
    /// the previous check found a gap for this object
    pub in_gap: bool,
    /// a `nodata` event is waiting for its `nodata_ok`
    pub nodata_open: bool,
    /// latest point time seen (Unix seconds), for `forget_after`
    pub last_seen: Option<i64>,
}

/// The issue fields an event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueInfo {
    /// `df_issue_start_time`
    pub start: i64,
    /// `df_issue_duration`
    pub duration: i64,
    /// `df_fault_id`
    pub fault_id: String,
}

/// One event the step decided to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    /// `df_status`
    pub status: Status,
    /// `df_monitor_checker_sub`
    pub sub: Sub,
    /// `df_sub_status` (for recoveries: the round's last fault status)
    pub sub_status: Option<Status>,
    /// `df_event_id`, deterministic
    pub event_id: String,
    /// round fields; `None` for `info`
    pub issue: Option<IssueInfo>,
}

impl ObjectState {
    /// The state of an object known only by its open round, e.g. rebuilt from the issue table
    /// (custom-event rounds and issues whose monitor is gone keep no state of their own).
    pub fn with_round(round: Option<Round>) -> ObjectState {
        ObjectState {
            round,
            ..Default::default()
        }
    }

    /// Whether the two states agree on everything but `last_seen` (what a check changes on
    /// every object that has data).
    pub fn same_but_last_seen(&self, other: &ObjectState) -> bool {
        self.fault_streak == other.fault_streak
            && self.clean_streak == other.clean_streak
            && self.round == other.round
            && self.in_gap == other.in_gap
            && self.nodata_open == other.nodata_open
    }

    /// Whether a round is open.
    pub fn is_open(&self) -> bool {
        self.round.is_some()
    }

    /// Whether the object may leave detection state: silent for longer than `forget_after` and
    /// no open round (open rounds are never dropped silently).
    pub fn forgettable(&self, t: i64, forget_after: i64) -> bool {
        self.round.is_none()
            && !self.nodata_open
            && self.last_seen.is_none_or(|seen| t - seen > forget_after)
    }

    /// One check at trigger time `t` for the object with event ref `event_ref`.
    pub fn step(&mut self, obs: Observation, t: i64, cfg: &Settings, event_ref: &str) -> Vec<Emit> {
        let mut out = Vec::new();
        match obs {
            Observation::Gap => self.gap(t, cfg, event_ref, &mut out),
            Observation::Empty => self.end_gap(t, event_ref, &mut out),
            Observation::Data {
                level,
                recovery_holds,
                sub,
            } => {
                if sub == Sub::Check {
                    self.end_gap(t, event_ref, &mut out);
                } else {
                    // as_zero: the gap goes on, but it is evaluated like data.
                    self.in_gap = true;
                }
                self.evaluate(level, recovery_holds, sub, t, cfg, event_ref, &mut out);
            }
        }
        out
    }

    /// A reported event (a custom event) of `status` at `t` with id `id`, chosen by the
    /// reporter: a fault opens the round (with `id` as its fault id) or continues it; a
    /// recovery closes an open round, its `sub_status` the round's last fault. Anything else
    /// (info, a recovery with no open round) is outside any round: `issue` is `None`.
    /// `sub` is always [`Sub::Check`].
    pub fn report(&mut self, status: Status, t: i64, id: String) -> Emit {
        if status.is_fault() {
            return self.fault(status, Sub::Check, t, id);
        }
        if status.is_recovery() {
            if let Some(round) = &self.round {
                let sub_status = Some(round.last_fault);
                return self.close(status, Sub::Check, sub_status, t, id);
            }
        }
        Emit {
            status,
            sub: Sub::Check,
            sub_status: None,
            event_id: id,
            issue: None,
        }
    }

    /// Manual recovery at `t`: one `manual_ok` closing the open round, streaks reset.
    /// Returns `None` when no round is open.
    pub fn recover(&mut self, t: i64, event_ref: &str) -> Option<Emit> {
        let round = self.round.as_ref()?;
        let sub_status = Some(round.last_fault);
        let id = event_id(event_ref, t, Status::ManualOk, Sub::Check);
        let emit = self.close(Status::ManualOk, Sub::Check, sub_status, t, id);
        self.fault_streak = 0;
        self.clean_streak = 0;
        // The round the pending nodata belonged to is closed: no nodata_ok will follow.
        self.nodata_open = false;
        Some(emit)
    }

    fn gap(&mut self, t: i64, cfg: &Settings, event_ref: &str, out: &mut Vec<Emit>) {
        let starts = !self.in_gap;
        self.in_gap = true;
        self.fault_streak = 0;
        self.clean_streak = 0;
        match cfg.nodata {
            NodataAction::None | NodataAction::AsZero => {}
            NodataAction::Nodata => {
                if starts && !self.nodata_open {
                    self.nodata_open = true;
                    out.push(self.fault_at(Status::Nodata, Sub::Nodata, t, event_ref));
                }
            }
            NodataAction::Ok => {
                if starts && self.round.is_some() {
                    let sub_status = self.round.as_ref().map(|r| r.last_fault);
                    out.push(self.close_at(
                        Status::NodataAsOk,
                        Sub::Nodata,
                        sub_status,
                        t,
                        event_ref,
                    ));
                }
            }
            NodataAction::Critical => {
                out.push(self.fault_at(Status::Critical, Sub::Nodata, t, event_ref))
            }
            NodataAction::Error => {
                out.push(self.fault_at(Status::Error, Sub::Nodata, t, event_ref))
            }
            NodataAction::Warning => {
                out.push(self.fault_at(Status::Warning, Sub::Nodata, t, event_ref))
            }
        }
    }

    /// Data is back (no gap): ends a gap, emitting `nodata_ok` if a `nodata` is pending.
    fn end_gap(&mut self, t: i64, event_ref: &str, out: &mut Vec<Emit>) {
        if !self.in_gap {
            return;
        }
        self.in_gap = false;
        if self.nodata_open {
            self.nodata_open = false;
            if self.round.is_some() {
                out.push(self.close_at(
                    Status::NodataOk,
                    Sub::Nodata,
                    Some(Status::Nodata),
                    t,
                    event_ref,
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        level: Level,
        recovery_holds: bool,
        sub: Sub,
        t: i64,
        cfg: &Settings,
        event_ref: &str,
        out: &mut Vec<Emit>,
    ) {
        if level.is_fault() {
            self.fault_streak = self.fault_streak.saturating_add(1);
            self.clean_streak = 0;
            if self.fault_streak >= cfg.trigger_after.max(1) {
                out.push(self.fault_at(level.status(), sub, t, event_ref));
            }
            return;
        }
        if level == Level::Info {
            out.push(Emit {
                status: Status::Info,
                sub,
                sub_status: None,
                event_id: event_id(event_ref, t, Status::Info, sub),
                issue: None,
            });
        }
        self.fault_streak = 0;
        let Some(round) = &self.round else {
            self.clean_streak = 0;
            return;
        };
        if recovery_holds {
            self.clean_streak = self.clean_streak.saturating_add(1);
        } else {
            self.clean_streak = 0;
        }
        if cfg.recover_after > 0 && self.clean_streak >= cfg.recover_after {
            let sub_status = Some(round.last_fault);
            out.push(self.close_at(Status::Ok, sub, sub_status, t, event_ref));
            self.clean_streak = 0;
        }
    }

    /// A monitor's fault event, its id derived from the object's ref.
    fn fault_at(&mut self, status: Status, sub: Sub, t: i64, event_ref: &str) -> Emit {
        self.fault(status, sub, t, event_id(event_ref, t, status, sub))
    }

    /// A fault event with id `id`: opens a round or continues the open one.
    fn fault(&mut self, status: Status, sub: Sub, t: i64, id: String) -> Emit {
        let round = self.round.get_or_insert_with(|| Round {
            start: t,
            fault_id: id.clone(),
            last_fault: status,
        });
        round.last_fault = status;
        Emit {
            status,
            sub,
            sub_status: None,
            issue: Some(round.issue_at(t)),
            event_id: id,
        }
    }

    /// A monitor's recovery-class event, its id derived from the object's ref.
    fn close_at(
        &mut self,
        status: Status,
        sub: Sub,
        sub_status: Option<Status>,
        t: i64,
        event_ref: &str,
    ) -> Emit {
        let id = event_id(event_ref, t, status, sub);
        self.close(status, sub, sub_status, t, id)
    }

    /// A recovery-class event with id `id` closing the open round (the caller checked it is
    /// open).
    fn close(
        &mut self,
        status: Status,
        sub: Sub,
        sub_status: Option<Status>,
        t: i64,
        id: String,
    ) -> Emit {
        let round = self.round.take().expect("close() needs an open round");
        Emit {
            status,
            sub,
            sub_status,
            event_id: id,
            issue: Some(round.issue_at(t)),
        }
    }
}

#[cfg(test)]
mod tests;
