//! tocsin: a monitor-driven detection engine and event centre.
//!
//! Data flow: line protocol ([`lineproto`]) goes into the metric [`store`]; the runner queries
//! windows ([`query`]), evaluates rules and scripts ([`script`]) per object, feeds the pure state
//! machine ([`detect`]) and renders events ([`event`]).
#![deny(missing_docs)]

pub mod hostinput;
pub mod lineproto;
pub mod query;
pub mod script;
pub mod store;
