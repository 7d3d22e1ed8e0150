//! tocsin: a monitor-driven detection engine and event centre.
//!
//! Data flow: line protocol ([`ingest`]) goes into the metric [`store`]; the check runner
//! ([`check`]) queries windows, evaluates rules and scripts ([`script`]) per object, feeds the
//! pure state machine ([`detect`]), renders events ([`model`]) and commits them with the new
//! state to the event store ([`events`]). The live [`engine`] schedules checks; `replay` and
//! `test` ([`cli`]) drive the same runner over a scratch store.
#![deny(missing_docs)]

pub mod check;
pub mod cli;
pub mod config;
pub mod custom;
pub mod datasource;
pub mod detect;
pub mod engine;
pub mod events;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod notify;
pub mod process;
pub mod script;
pub mod store;
