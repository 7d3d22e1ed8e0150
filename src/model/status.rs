//! Event statuses (`df_status`) and the stage that produced an event (`df_monitor_checker_sub`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// `df_status` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// recovered by the rules
    Ok,
    /// informational; opens no issue
    Info,
    /// fault, lowest level
    Warning,
    /// fault
    Error,
    /// fault, highest level
    Critical,
    /// no data for an object that had data
    Nodata,
    /// data returned after `nodata`
    NodataOk,
    /// the gap closed the round (`[nodata] action = "ok"`)
    NodataAsOk,
    /// recovered by hand
    ManualOk,
}

/// Every status, in documentation order.
pub const ALL_STATUSES: &[Status] = &[
    Status::Ok,
    Status::Info,
    Status::Warning,
    Status::Error,
    Status::Critical,
    Status::Nodata,
    Status::NodataOk,
    Status::NodataAsOk,
    Status::ManualOk,
];

impl Status {
    /// The wire name (`"nodata_ok"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warning => "warning",
            Status::Error => "error",
            Status::Critical => "critical",
            Status::Nodata => "nodata",
            Status::NodataOk => "nodata_ok",
            Status::NodataAsOk => "nodata_as_ok",
            Status::ManualOk => "manual_ok",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        ALL_STATUSES.iter().copied().find(|st| st.as_str() == s)
    }

    /// Fault statuses open or continue a round: critical, error, warning, nodata.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Status::Critical | Status::Error | Status::Warning | Status::Nodata
        )
    }

    /// Recovery-class statuses close a round: ok, nodata_ok, nodata_as_ok, manual_ok.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            Status::Ok | Status::NodataOk | Status::NodataAsOk | Status::ManualOk
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `df_monitor_checker_sub`: the stage that produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sub {
    /// rule evaluation
    Check,
    /// nodata handling
    Nodata,
}

impl Sub {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::Check => "check",
            Sub::Nodata => "nodata",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_classify() {
        for s in ALL_STATUSES {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
        assert!(Status::Nodata.is_fault() && !Status::Info.is_fault());
        assert!(Status::ManualOk.is_recovery() && !Status::Critical.is_recovery());
    }
}
