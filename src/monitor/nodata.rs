//! `[nodata]`: how long a gap must last and what it does; bots have none.

use super::errs::Errs;
use super::raw::RawNodata;
use super::{MonitorType, NodataSpec};
use crate::detect::{NodataAction, NODATA_ACTIONS};
use crate::model::time::parse_duration;
use toml::Spanned;

/// The nodata handling of a monitor of type `mtype` (`None`: gaps are not watched).
pub(super) fn parse(
    raw: Option<&Spanned<RawNodata>>,
    mtype: MonitorType,
    e: &mut Errs,
) -> Option<NodataSpec> {
    let nodata = raw.map(|n| {
        let n = n.get_ref();
        let after = match &n.after {
            Some(s) => match parse_duration(&s.get_ref().0) {
                Ok(d) if d > 0 => d,
                Ok(_) => {
                    e.bad(s, "nodata.after", "must be longer than 0s");
                    600
                }
                Err(msg) => {
                    e.bad(s, "nodata.after", &msg);
                    600
                }
            },
            None => 600,
        };
        let action = match &n.action {
            None => NodataAction::Nodata,
            Some(s) => NodataAction::parse(s.get_ref()).unwrap_or_else(|| {
                e.bad(
                    s,
                    "nodata.action",
                    &format!("expected one of {}", NODATA_ACTIONS.join(", ")),
                );
                NodataAction::None
            }),
        };
        NodataSpec { after, action }
    });
    if let (Some(n), MonitorType::BotObs) = (raw, mtype) {
        e.at(
            n.span(),
            "nodata",
            "bot_obs monitors have no [nodata]: a bot reports what it sees".into(),
        );
    }
    nodata
}
