//! The shared vocabulary of tocsin: tag sets, statuses, the event record, ids, templates,
//! durations and times. Everything else builds on these; this folder depends on nothing else.

pub mod clock;
pub mod event;
pub mod ids;
pub mod limits;
pub mod point;
pub mod status;
pub mod tags;
pub mod template;
pub mod time;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use tags::Tags;
