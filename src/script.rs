//! The Rhai engine: sandbox limits, rule expressions, check scripts, bots and host functions.
