//! tocsin: a monitor-driven detection engine and event centre.
//!
//! Data flow: line protocol ([`lineproto`]) goes into the metric [`store`]; the check runner
//! ([`check`]) queries windows ([`query`]), evaluates rules and scripts ([`script`]) per object,
//! feeds the pure state machine ([`detect`]), renders events ([`event`]) and commits them with
//! the new state to the event store ([`eventdb`]). [`replay`] and [`testing`] drive the same
//! runner over a scratch store.
#![deny(missing_docs)]

pub mod api;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod custom;
pub mod detect;
pub mod event;
pub mod eventdb;
pub mod hostinput;
pub mod ingest;
pub mod lineproto;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod query;
pub mod replay;
pub mod schedule;
pub mod script;
pub mod serve;
pub mod store;
pub mod testing;
pub mod timeutil;
