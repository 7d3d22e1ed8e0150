//! One table per rule of docs/detection.md: a sequence of observations, the events expected per step.

use super::*;
use proptest::prelude::*;

const REF: &str = "ref";

fn d(level: Level) -> Observation {
    Observation::Data {
        level,
        recovery_holds: true,
        sub: Sub::Check,
    }
}
fn crit() -> Observation {
    d(Level::Critical)
}
fn ok() -> Observation {
    d(Level::Ok)
}
/// Clean, but the `recovery` expression does not hold.
fn ok_no_recovery() -> Observation {
    Observation::Data {
        level: Level::Ok,
        recovery_holds: false,
        sub: Sub::Check,
    }
}
use Observation::{Empty, Gap};

/// `(status, issue start, duration)` per emitted event.
type Row = Vec<(Status, Option<(i64, i64)>)>;

/// Runs `obs` at t = 60, 120, ... and returns the events of each step.
fn run(cfg: Settings, obs: &[Observation]) -> Vec<Row> {
    let mut st = ObjectState::default();
    obs.iter()
        .enumerate()
        .map(|(i, o)| {
            let t = 60 * (i as i64 + 1);
            st.step(*o, t, &cfg, REF)
                .into_iter()
                .map(|e| (e.status, e.issue.map(|i| (i.start, i.duration))))
                .collect()
        })
        .collect()
}

fn cfg(trigger: u32, recover: u32, nodata: NodataAction) -> Settings {
    Settings {
        trigger_after: trigger,
        recover_after: recover,
        nodata,
    }
}

fn none() -> Row {
    vec![]
}
fn ev(s: Status, start: i64, dur: i64) -> Row {
    vec![(s, Some((start, dur)))]
}

#[test]
fn worked_example_of_the_spec() {
    let c = cfg(2, 2, NodataAction::Nodata);
    // t1..t11; the runner turns "none" into Empty (t7: within `after`) or Gap (t8, t9).
    let obs = [
        crit(),
        crit(),
        ok(),
        crit(),
        ok(),
        ok(),
        Empty,
        Gap,
        Gap,
        crit(),
        crit(),
    ];
    let got = run(c, &obs);
    let want = vec![
        none(),
        ev(Status::Critical, 120, 0),
        none(),
        none(),
        none(),
        ev(Status::Ok, 120, 240),
        none(),
        ev(Status::Nodata, 480, 0),
        none(),
        ev(Status::NodataOk, 480, 120),
        ev(Status::Critical, 660, 0),
    ];
    assert_eq!(got, want);
}

#[test]
fn ok_carries_last_fault_as_sub_status_and_fault_id_is_first_event() {
    let c = cfg(1, 1, NodataAction::None);
    let mut st = ObjectState::default();
    let e1 = st.step(d(Level::Warning), 60, &c, REF);
    let e2 = st.step(d(Level::Critical), 120, &c, REF);
    let e3 = st.step(d(Level::Error), 180, &c, REF);
    let e4 = st.step(ok(), 240, &c, REF);
    let first = e1[0].event_id.clone();
    assert_eq!(e2[0].issue.as_ref().unwrap().fault_id, first);
    assert_eq!(e3[0].issue.as_ref().unwrap().fault_id, first);
    assert_eq!(e4[0].status, Status::Ok);
    assert_eq!(e4[0].sub_status, Some(Status::Error));
    assert_eq!(e4[0].issue.as_ref().unwrap().fault_id, first);
    assert_eq!(e4[0].issue.as_ref().unwrap().duration, 180);
    assert!(st.round.is_none());
}

#[test]
fn level_changes_within_a_round_keep_the_round() {
    let c = cfg(1, 1, NodataAction::None);
    let got = run(
        c,
        &[
            d(Level::Warning),
            d(Level::Critical),
            d(Level::Warning),
            ok(),
        ],
    );
    assert_eq!(
        got,
        vec![
            ev(Status::Warning, 60, 0),
            ev(Status::Critical, 60, 60),
            ev(Status::Warning, 60, 120),
            ev(Status::Ok, 60, 180),
        ]
    );
}

#[test]
fn trigger_after_counts_consecutive_faults_of_any_level() {
    let c = cfg(3, 1, NodataAction::None);
    let got = run(
        c,
        &[
            d(Level::Warning),
            d(Level::Critical),
            ok(),
            d(Level::Warning),
            d(Level::Error),
            d(Level::Critical),
            d(Level::Critical),
        ],
    );
    assert_eq!(
        got,
        vec![
            none(),
            none(),
            none(),
            none(),
            none(),
            ev(Status::Critical, 360, 0),
            ev(Status::Critical, 360, 60),
        ]
    );
}

#[test]
fn clean_checks_without_a_round_emit_nothing() {
    let got = run(Settings::default(), &[ok(), ok(), Empty, ok()]);
    assert!(got.iter().all(|r| r.is_empty()));
}

#[test]
fn recover_after_zero_means_manual_recovery_only() {
    let c = cfg(1, 0, NodataAction::None);
    let mut st = ObjectState::default();
    st.step(crit(), 60, &c, REF);
    for i in 2..20 {
        assert!(st.step(ok(), 60 * i, &c, REF).is_empty());
    }
    assert!(st.is_open());
    let m = st.recover(1300, REF).expect("open round recovers");
    assert_eq!(m.status, Status::ManualOk);
    assert_eq!(
        m.issue.unwrap(),
        IssueInfo {
            start: 60,
            duration: 1240,
            fault_id: event_id(REF, 60, Status::Critical, Sub::Check)
        }
    );
    assert_eq!(m.sub_status, Some(Status::Critical));
    assert!(!st.is_open());
    assert_eq!((st.fault_streak, st.clean_streak), (0, 0));
    assert!(
        st.recover(1400, REF).is_none(),
        "no round, nothing to recover"
    );
}

#[test]
fn manual_recovery_resets_streaks_so_the_next_fault_counts_afresh() {
    let c = cfg(2, 2, NodataAction::None);
    let mut st = ObjectState::default();
    st.step(crit(), 60, &c, REF);
    st.step(crit(), 120, &c, REF);
    st.step(ok(), 180, &c, REF);
    st.recover(200, REF).unwrap();
    assert!(
        st.step(crit(), 240, &c, REF).is_empty(),
        "streak restarted at 1"
    );
    let e = st.step(crit(), 300, &c, REF);
    assert_eq!(e[0].issue.as_ref().unwrap().start, 300);
}

#[test]
fn hysteresis_clean_counts_only_when_recovery_holds() {
    let c = cfg(1, 2, NodataAction::None);
    let got = run(
        c,
        &[crit(), ok_no_recovery(), ok(), ok_no_recovery(), ok(), ok()],
    );
    assert_eq!(
        got,
        vec![
            ev(Status::Critical, 60, 0),
            none(),
            none(),
            none(),
            none(),
            ev(Status::Ok, 60, 300)
        ]
    );
}

#[test]
fn info_is_an_event_without_issue_and_counts_as_clean() {
    let c = cfg(1, 1, NodataAction::None);
    let got = run(c, &[d(Level::Info), crit(), d(Level::Info)]);
    assert_eq!(got[0], vec![(Status::Info, None)]);
    assert_eq!(got[1], ev(Status::Critical, 120, 0));
    assert_eq!(
        got[2],
        vec![(Status::Info, None), (Status::Ok, Some((120, 60)))]
    );
}

#[test]
fn nodata_and_nodata_ok_alternate() {
    let c = cfg(1, 1, NodataAction::Nodata);
    let got = run(c, &[ok(), Gap, Gap, Gap, ok(), ok(), Gap, Empty, Gap]);
    assert_eq!(
        got,
        vec![
            none(),
            ev(Status::Nodata, 120, 0),
            none(),
            none(),
            ev(Status::NodataOk, 120, 180),
            none(),
            ev(Status::Nodata, 420, 0),
            ev(Status::NodataOk, 420, 60),
            ev(Status::Nodata, 540, 0),
        ]
    );
}

#[test]
fn nodata_continues_an_open_fault_round_and_nodata_ok_closes_it() {
    let c = cfg(1, 1, NodataAction::Nodata);
    let got = run(c, &[crit(), Gap, crit()]);
    assert_eq!(
        got,
        vec![
            ev(Status::Critical, 60, 0),
            ev(Status::Nodata, 60, 60),
            vec![
                (Status::NodataOk, Some((60, 120))),
                (Status::Critical, Some((180, 0)))
            ],
        ]
    );
}

#[test]
fn nodata_events_use_the_nodata_sub() {
    let c = cfg(1, 1, NodataAction::Nodata);
    let mut st = ObjectState::default();
    let e = st.step(Gap, 60, &c, REF);
    assert_eq!(e[0].sub, Sub::Nodata);
    assert_eq!(
        e[0].event_id,
        event_id(REF, 60, Status::Nodata, Sub::Nodata)
    );
    let e = st.step(ok(), 120, &c, REF);
    assert_eq!((e[0].status, e[0].sub), (Status::NodataOk, Sub::Nodata));
}

#[test]
fn manual_recovery_during_a_gap_suppresses_nodata_ok() {
    let c = cfg(1, 1, NodataAction::Nodata);
    let mut st = ObjectState::default();
    st.step(Gap, 60, &c, REF);
    st.recover(90, REF).unwrap();
    assert!(
        st.step(Gap, 120, &c, REF).is_empty(),
        "same gap: no second nodata"
    );
    assert!(
        st.step(ok(), 180, &c, REF).is_empty(),
        "round closed by hand: no nodata_ok"
    );
    assert_eq!(st.step(Gap, 240, &c, REF)[0].status, Status::Nodata);
}

#[test]
fn gap_resets_both_streaks() {
    let c = cfg(2, 2, NodataAction::None);
    let got = run(c, &[crit(), Gap, crit(), crit(), ok(), Gap, ok(), ok()]);
    assert_eq!(
        got,
        vec![
            none(),
            none(),
            none(),
            ev(Status::Critical, 240, 0),
            none(),
            none(),
            none(),
            ev(Status::Ok, 240, 240)
        ]
    );
}

#[test]
fn nodata_action_ok_closes_an_open_round_once() {
    let c = cfg(1, 1, NodataAction::Ok);
    let got = run(c, &[crit(), Gap, Gap, ok(), Gap]);
    assert_eq!(
        got,
        vec![
            ev(Status::Critical, 60, 0),
            ev(Status::NodataAsOk, 60, 60),
            none(),
            none(),
            none()
        ]
    );
}

#[test]
fn nodata_fault_actions_emit_every_check_ignoring_trigger_after() {
    for (action, status) in [
        (NodataAction::Critical, Status::Critical),
        (NodataAction::Error, Status::Error),
        (NodataAction::Warning, Status::Warning),
    ] {
        let c = cfg(3, 1, action);
        let got = run(c, &[ok(), Gap, Gap, ok()]);
        assert_eq!(
            got,
            vec![
                none(),
                ev(status, 120, 0),
                ev(status, 120, 60),
                ev(Status::Ok, 120, 120)
            ],
            "{action:?}"
        );
    }
}

#[test]
fn nodata_as_zero_counts_streaks_as_usual() {
    let c = cfg(2, 1, NodataAction::AsZero);
    let zero_fault = Observation::Data {
        level: Level::Critical,
        recovery_holds: true,
        sub: Sub::Nodata,
    };
    let got = run(c, &[crit(), zero_fault, zero_fault]);
    assert_eq!(
        got,
        vec![
            none(),
            ev(Status::Critical, 120, 0),
            ev(Status::Critical, 120, 60)
        ]
    );
}

#[test]
fn nodata_action_none_emits_nothing() {
    let got = run(cfg(1, 1, NodataAction::None), &[crit(), Gap, Gap, ok()]);
    assert_eq!(
        got,
        vec![
            ev(Status::Critical, 60, 0),
            none(),
            none(),
            ev(Status::Ok, 60, 180)
        ]
    );
}

#[test]
fn empty_window_changes_nothing() {
    let c = cfg(2, 2, NodataAction::None);
    let got = run(c, &[crit(), Empty, crit(), ok(), Empty, ok()]);
    assert_eq!(
        got,
        vec![
            none(),
            none(),
            ev(Status::Critical, 180, 0),
            none(),
            none(),
            ev(Status::Ok, 180, 180)
        ]
    );
}

#[test]
fn forget_after_keeps_open_rounds() {
    let c = cfg(1, 1, NodataAction::None);
    let mut st = ObjectState {
        last_seen: Some(0),
        ..Default::default()
    };
    assert!(st.forgettable(100_000, 86_400));
    assert!(!st.forgettable(1000, 86_400));
    st.step(crit(), 60, &c, REF);
    assert!(
        !st.forgettable(1_000_000, 86_400),
        "an open round is never dropped silently"
    );
}

#[test]
fn state_round_trips_through_json() {
    let c = cfg(1, 1, NodataAction::Nodata);
    let mut st = ObjectState::default();
    st.step(crit(), 60, &c, REF);
    st.step(Gap, 120, &c, REF);
    let back: ObjectState = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
    assert_eq!(back, st);
}

fn any_obs() -> impl Strategy<Value = Observation> {
    prop_oneof![
        Just(Observation::Gap),
        Just(Observation::Empty),
        (0..5u8, any::<bool>()).prop_map(|(l, r)| Observation::Data {
            level: [
                Level::Ok,
                Level::Info,
                Level::Warning,
                Level::Error,
                Level::Critical
            ][l as usize],
            recovery_holds: r,
            sub: Sub::Check,
        }),
    ]
}

fn any_action() -> impl Strategy<Value = NodataAction> {
    prop_oneof![
        Just(NodataAction::None),
        Just(NodataAction::Nodata),
        Just(NodataAction::Ok),
        Just(NodataAction::Critical),
        Just(NodataAction::Warning),
    ]
}

proptest! {
    /// Rounds alternate open/close: a recovery-class event only closes an open round, a fault
    /// opens one or continues it; starts and durations never go backwards; nodata/nodata_ok
    /// never come twice alike in a row.
    #[test]
    fn rounds_alternate_and_durations_grow(
        obs in proptest::collection::vec(any_obs(), 1..60),
        trigger in 1u32..4, recover in 0u32..4, action in any_action(),
        manual_at in proptest::collection::vec(any::<bool>(), 60),
    ) {
        let c = cfg(trigger, recover, action);
        let mut st = ObjectState::default();
        let mut open: Option<(i64, String)> = None;
        let mut last_duration = -1;
        let mut last_nodata_kind: Option<Status> = None;
        for (i, o) in obs.iter().enumerate() {
            let t = 60 * (i as i64 + 1);
            let mut emits = st.step(*o, t, &c, REF);
            if manual_at[i] {
                emits.extend(st.recover(t + 30, REF));
            }
            for e in emits {
                if e.status == Status::Info {
                    prop_assert!(e.issue.is_none());
                    continue;
                }
                let issue = e.issue.clone().expect("round events carry issue fields");
                prop_assert!(issue.duration >= 0);
                if e.status.is_fault() {
                    match &open {
                        None => {
                            prop_assert_eq!(issue.duration, 0);
                            prop_assert_eq!(&issue.fault_id, &e.event_id);
                            open = Some((issue.start, issue.fault_id.clone()));
                            last_duration = 0;
                        }
                        Some((start, fid)) => {
                            prop_assert_eq!(issue.start, *start);
                            prop_assert_eq!(&issue.fault_id, fid);
                            prop_assert!(issue.duration >= last_duration);
                            last_duration = issue.duration;
                        }
                    }
                } else {
                    prop_assert!(e.status.is_recovery());
                    let (start, fid) = open.take().expect("recovery only closes an open round");
                    prop_assert_eq!(issue.start, start);
                    prop_assert_eq!(&issue.fault_id, &fid);
                    prop_assert!(issue.duration >= last_duration);
                    last_duration = -1;
                }
                if matches!(e.status, Status::Nodata | Status::NodataOk) {
                    prop_assert_ne!(Some(e.status), last_nodata_kind);
                    last_nodata_kind = Some(e.status);
                }
                if e.status == Status::ManualOk && last_nodata_kind == Some(Status::Nodata) {
                    // the pending nodata was closed by hand; the next of the pair is a nodata
                    last_nodata_kind = Some(Status::NodataOk);
                }
            }
            prop_assert_eq!(open.is_some(), st.is_open());
        }
    }
}

#[test]
fn reported_events_open_continue_and_close_a_round_with_the_callers_ids() {
    let mut st = ObjectState::default();
    let a = st.report(Status::Warning, 100, "event-a".into());
    assert_eq!(a.event_id, "event-a");
    assert_eq!(
        a.issue,
        Some(IssueInfo {
            start: 100,
            duration: 0,
            fault_id: "event-a".into()
        })
    );
    let b = st.report(Status::Critical, 160, "event-b".into());
    assert_eq!(
        (
            b.event_id.as_str(),
            b.issue.as_ref().map(|i| (i.start, i.duration))
        ),
        ("event-b", Some((100, 60)))
    );
    assert_eq!(b.issue.unwrap().fault_id, "event-a");
    // info inside the round: outside it, the round stays open
    let i = st.report(Status::Info, 200, "event-i".into());
    assert_eq!((i.issue, i.sub_status), (None, None));
    assert!(st.is_open());
    let c = st.report(Status::Ok, 400, "event-c".into());
    assert_eq!(c.sub_status, Some(Status::Critical));
    assert_eq!(
        c.issue,
        Some(IssueInfo {
            start: 100,
            duration: 300,
            fault_id: "event-a".into()
        })
    );
    assert!(!st.is_open());
    // ok with no round open: a plain event
    let d = st.report(Status::Ok, 500, "event-d".into());
    assert_eq!((d.status, d.issue, d.sub_status), (Status::Ok, None, None));
}

#[test]
fn a_reported_event_dated_before_its_round_has_duration_zero() {
    let mut st = ObjectState::with_round(Some(Round {
        start: 100,
        fault_id: "event-a".into(),
        last_fault: Status::Error,
    }));
    let e = st.report(Status::Warning, 40, "event-early".into());
    assert_eq!(e.issue.map(|i| (i.start, i.duration)), Some((100, 0)));
}

#[test]
fn a_round_rebuilt_from_its_issue_recovers_by_hand() {
    let mut st = ObjectState::with_round(Some(Round {
        start: 100,
        fault_id: "event-first".into(),
        last_fault: Status::Nodata,
    }));
    let e = st.recover(250, REF).expect("the round is open");
    assert_eq!(e.status, Status::ManualOk);
    assert_eq!(e.sub_status, Some(Status::Nodata));
    assert_eq!(e.event_id, event_id(REF, 250, Status::ManualOk, Sub::Check));
    assert_eq!(
        e.issue,
        Some(IssueInfo {
            start: 100,
            duration: 150,
            fault_id: "event-first".into()
        })
    );
    assert!(st.recover(260, REF).is_none(), "closed once");
}

#[test]
fn old_states_with_write_only_round_fields_still_load() {
    let old = r#"{"fault_streak":0,"clean_streak":0,"round":{"start":5,"fault_id":"f","last_fault":"warning","last_status":"warning","last_event_id":"f","last_date":5},"in_gap":false,"nodata_open":false,"last_seen":null}"#;
    let st: ObjectState = serde_json::from_str(old).unwrap();
    assert_eq!(
        st.round,
        Some(Round {
            start: 5,
            fault_id: "f".into(),
            last_fault: Status::Warning
        })
    );
    let again = serde_json::to_string(&st).unwrap();
    assert!(!again.contains("last_status"), "{again}");
}
