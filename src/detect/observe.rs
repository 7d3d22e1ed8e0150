//! What one check saw of one object, before any rule runs: a gap, data to evaluate (possibly
//! a gap evaluated as zero), or an empty window. Pure; the check runner feeds it the presence
//! of the object in the window and in the nodata lookback.

use crate::detect::NodataAction;
use crate::model::event::Sub;

/// Where an object's points were found in one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// the object has state from earlier checks
    pub known: bool,
    /// the check window holds points of the object
    pub in_window: bool,
    /// whether the nodata lookback `[end - after, end)` holds points of the object; `None`
    /// when the monitor has no `[nodata]` section (then there are no gaps)
    pub in_lookback: Option<bool>,
}

/// How the check treats the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// a gap: no point in the lookback for an object seen before
    Gap,
    /// evaluate the rules; `as_zero` when a gap is evaluated with Result = 0
    Evaluate {
        /// the gap is evaluated as a zero value (`[nodata] action = "as_zero"`)
        as_zero: bool,
    },
    /// nothing in the window and no gap: nothing to evaluate
    Empty,
}

impl Classified {
    /// The stage an evaluation reports as (`nodata` for a gap evaluated as zero).
    pub fn sub(self) -> Sub {
        match self {
            Classified::Evaluate { as_zero: true } | Classified::Gap => Sub::Nodata,
            _ => Sub::Check,
        }
    }
}

/// Classifies one object in one check.
pub fn classify(p: Presence, action: NodataAction) -> Classified {
    // Only an object seen before can go missing, and only a monitor with a lookback notices.
    let gap = p.known && p.in_lookback == Some(false);
    let as_zero = gap && action == NodataAction::AsZero;
    if gap && !as_zero {
        Classified::Gap
    } else if p.in_window || as_zero {
        Classified::Evaluate { as_zero }
    } else {
        Classified::Empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(known: bool, in_window: bool, in_lookback: Option<bool>) -> Presence {
        Presence {
            known,
            in_window,
            in_lookback,
        }
    }

    #[test]
    fn data_in_window_is_evaluated() {
        for lb in [None, Some(true)] {
            for known in [false, true] {
                assert_eq!(
                    classify(p(known, true, lb), NodataAction::Nodata),
                    Classified::Evaluate { as_zero: false }
                );
            }
        }
    }

    #[test]
    fn known_object_missing_from_lookback_is_a_gap() {
        assert_eq!(
            classify(p(true, false, Some(false)), NodataAction::Nodata),
            Classified::Gap
        );
        // Points in the window but none in the lookback cannot happen in the runner, but the
        // lookback decides: the object is missing where nodata looks.
        assert_eq!(
            classify(p(true, true, Some(false)), NodataAction::Critical),
            Classified::Gap
        );
        assert_eq!(Classified::Gap.sub(), Sub::Nodata);
    }

    #[test]
    fn gaps_need_a_lookback_and_a_known_object() {
        assert_eq!(
            classify(p(true, false, None), NodataAction::Nodata),
            Classified::Empty
        );
        assert_eq!(
            classify(p(false, false, Some(false)), NodataAction::Nodata),
            Classified::Empty
        );
        assert_eq!(
            classify(p(true, false, Some(true)), NodataAction::Nodata),
            Classified::Empty
        );
    }

    #[test]
    fn as_zero_evaluates_the_gap() {
        let c = classify(p(true, false, Some(false)), NodataAction::AsZero);
        assert_eq!(c, Classified::Evaluate { as_zero: true });
        assert_eq!(c.sub(), Sub::Nodata);
        assert_eq!(Classified::Evaluate { as_zero: false }.sub(), Sub::Check);
        // as_zero only applies to gaps
        assert_eq!(
            classify(p(false, false, Some(false)), NodataAction::AsZero),
            Classified::Empty
        );
    }
}
