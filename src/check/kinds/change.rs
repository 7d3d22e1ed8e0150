//! `mutation`: the window's aggregate against the same aggregate `compare` ago (by default
//! the window just before). Pure: the caller reads both values.
//!
//! Without a past value there is nothing to compare, so there is no `Result` at all (the
//! object's window counts as empty) rather than a made-up change of 0. A percentage needs a
//! past value other than 0 for the same reason.

use super::{num, Decision};
use crate::monitor::{ChangeParams, Diff, Direction};
use serde_json::json;

/// The decision for current value `cur` and past value `past`.
pub(crate) fn decide(p: &ChangeParams, cur: f64, past: Option<f64>) -> Decision {
    let change = past.and_then(|past| match p.diff {
        Diff::Value => Some(cur - past),
        // A change from 0 has no percentage.
        Diff::Percent if past != 0.0 => Some((cur - past) / past.abs() * 100.0),
        Diff::Percent => None,
    });
    let result = change.map(|c| match p.direction {
        Direction::Signed | Direction::Up => c,
        Direction::Down => -c,
        Direction::Both => c.abs(),
    });
    let held_back = result.is_some() && p.when.as_ref().is_some_and(|w| !w.expr.eval(cur));
    // Monitors without the new parameters keep their df_event_detail as it was.
    let detail = (!p.plain).then(|| {
        let mut d = json!({
            "kind": "mutation",
            "current": num(cur),
            "past": past.map_or(serde_json::Value::Null, num),
            "compare_seconds": p.compare,
            "diff": match p.diff { Diff::Value => "value", Diff::Percent => "percent" },
            "direction": match p.direction {
                Direction::Signed => "signed",
                Direction::Up => "up",
                Direction::Down => "down",
                Direction::Both => "both",
            },
            "change": change.map_or(serde_json::Value::Null, num),
        });
        if let Some(w) = &p.when {
            d["when"] = json!(w.source);
            d["when_holds"] = json!(!held_back);
        }
        d
    });
    Decision {
        result,
        held_back,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::When;
    use crate::script::NativeExpr;

    fn params(diff: Diff, direction: Direction, when: Option<&str>) -> ChangeParams {
        ChangeParams {
            compare: 604_800,
            diff,
            direction,
            when: when.map(|w| When {
                source: w.to_string(),
                expr: NativeExpr::compile(&w.replace("Current", "Result")).unwrap(),
            }),
            plain: false,
        }
    }

    #[test]
    fn result_by_diff_and_direction() {
        use Diff::*;
        use Direction::*;
        // (diff, direction, current, past, Result)
        type Case = (Diff, Direction, f64, Option<f64>, Option<f64>);
        let cases: &[Case] = &[
            (Value, Signed, 120.0, Some(100.0), Some(20.0)),
            (Value, Signed, 80.0, Some(100.0), Some(-20.0)),
            (Value, Up, 80.0, Some(100.0), Some(-20.0)),
            (Value, Down, 80.0, Some(100.0), Some(20.0)),
            (Value, Down, 120.0, Some(100.0), Some(-20.0)),
            (Value, Both, 80.0, Some(100.0), Some(20.0)),
            (Value, Both, 120.0, Some(100.0), Some(20.0)),
            (Percent, Signed, 150.0, Some(100.0), Some(50.0)),
            (Percent, Down, 25.0, Some(100.0), Some(75.0)),
            (Percent, Both, 25.0, Some(100.0), Some(75.0)),
            // a negative past: the percentage follows the change's sign, not the past's
            (Percent, Up, -5.0, Some(-10.0), Some(50.0)),
            // flat
            (Value, Both, 7.0, Some(7.0), Some(0.0)),
            (Percent, Both, 7.0, Some(7.0), Some(0.0)),
            // no past, or a percentage of nothing: no Result
            (Value, Signed, 7.0, None, None),
            (Percent, Both, 7.0, Some(0.0), None),
        ];
        for (i, (diff, dir, cur, past, want)) in cases.iter().enumerate() {
            let d = decide(&params(*diff, *dir, None), *cur, *past);
            assert_eq!(d.result, *want, "case {i}");
            assert!(!d.held_back, "case {i}");
        }
    }

    #[test]
    fn when_holds_back_quiet_series_and_explains_itself() {
        let p = params(Diff::Percent, Direction::Both, Some("Current > 100"));
        let quiet = decide(&p, 10.0, Some(2.0));
        assert_eq!(quiet.result, Some(400.0));
        assert!(quiet.held_back, "10 is not above 100");
        let busy = decide(&p, 300.0, Some(100.0));
        assert!(!busy.held_back);
        let d = busy.detail.unwrap();
        assert_eq!(d["current"], 300.0);
        assert_eq!(d["past"], 100.0);
        assert_eq!(d["change"], 200.0);
        assert_eq!(d["when_holds"], true);
        assert_eq!(d["compare_seconds"], 604_800);
        // without a past the precondition is not what stops it
        assert!(!decide(&p, 300.0, None).held_back);
    }

    #[test]
    fn plain_mutation_has_no_detail() {
        let mut p = params(Diff::Value, Direction::Signed, None);
        p.plain = true;
        let d = decide(&p, 5.0, Some(1.0));
        assert_eq!((d.result, d.detail), (Some(4.0), None));
    }
}
