//! Late samples, held aside and merged into their series in runs.
//!
//! A sample older than its series' newest one must go into the middle of the series' sorted
//! vector, moving every newer sample up by one. When writers commit out of order by more than
//! a few places (two clients writing the same series on timelines that drift apart by tens of
//! samples), those moves dominated ingest: a third of the server's CPU in a 60 s run, all of
//! it under the memory lock. Here such a sample goes into a small sorted run of its series
//! instead, and the run is merged in one pass once it is full (moving the newer samples once
//! for the whole run instead of once a sample), or before anything reads or evicts memory
//! (see [`Mem::settle`](super::memory::Mem::settle)). A held sample was written after every
//! sample of its series in memory at its time, so at equal times the run wins, as the later
//! write always does.

use super::memory::FastMap;

/// Samples a series' run holds before it is merged (the moves of the newer samples are then
/// shared by this many late samples).
pub(super) const RUN_LEN: usize = 64;

/// Late samples held over all series before they are all merged, bounding the memory this
/// takes (16 bytes a sample) whatever the number of series. (Tests hold a few hundred, so
/// they reach it.)
const HELD_MAX: usize = if cfg!(test) { 256 } else { 1 << 20 };

/// The late samples of every series, each series' run sorted by time with unique times.
#[derive(Default)]
pub(super) struct Late {
    runs: FastMap<u32, Vec<(i64, f64)>>,
    /// samples held over all runs
    held: usize,
}

/// What [`Late::hold`] asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// nothing: the sample waits in its run
    Waiting,
    /// this series' run is full: merge it ([`Late::take`])
    RunFull,
    /// too many samples are held in all: merge every run ([`Late::drain`])
    TooMany,
}

impl Late {
    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Holds a late sample of series `id`, replacing a held one at the same time.
    pub(super) fn hold(&mut self, id: u32, ts: i64, value: f64) -> Held {
        let run = self.runs.entry(id).or_default();
        // Runs are short and mostly receive increasing times: search from the end.
        let at = run.iter().rposition(|s| s.0 <= ts).map_or(0, |i| i + 1);
        if at > 0 && run[at - 1].0 == ts {
            run[at - 1].1 = value;
            return Held::Waiting;
        }
        run.insert(at, (ts, value));
        self.held += 1;
        if run.len() >= RUN_LEN {
            Held::RunFull
        } else if self.held > HELD_MAX {
            Held::TooMany
        } else {
            Held::Waiting
        }
    }

    /// Takes the run of series `id` (empty when it holds none).
    pub(super) fn take(&mut self, id: u32) -> Vec<(i64, f64)> {
        let run = self.runs.remove(&id).unwrap_or_default();
        self.held -= run.len();
        run
    }

    /// Takes every run.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (u32, Vec<(i64, f64)>)> + '_ {
        self.held = 0;
        self.runs.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, Late, HELD_MAX, RUN_LEN};

    #[test]
    fn a_run_stays_sorted_and_the_last_write_of_a_time_wins() {
        let mut late = Late::default();
        for (ts, v) in [(30, 1.0), (10, 2.0), (20, 3.0), (10, 4.0), (40, 5.0)] {
            assert_eq!(late.hold(7, ts, v), Held::Waiting);
        }
        assert!(!late.is_empty());
        assert_eq!(late.held, 4);
        assert_eq!(
            late.take(7),
            vec![(10, 4.0), (20, 3.0), (30, 1.0), (40, 5.0)]
        );
        assert!(late.is_empty());
        assert_eq!(late.held, 0);
        assert!(late.take(7).is_empty());
    }

    #[test]
    fn a_full_run_asks_to_be_merged() {
        let mut late = Late::default();
        for ts in 1..RUN_LEN as i64 {
            assert_eq!(late.hold(1, ts, 0.0), Held::Waiting);
        }
        // a replacement does not grow the run
        assert_eq!(late.hold(1, 1, 1.0), Held::Waiting);
        assert_eq!(late.hold(1, 0, 0.0), Held::RunFull);
        assert_eq!(late.hold(2, 0, 0.0), Held::Waiting);
        let runs: Vec<_> = late.drain().collect();
        assert_eq!(runs.len(), 2);
        assert_eq!(late.held, 0);
    }

    #[test]
    fn too_many_held_in_all_asks_for_every_run() {
        let mut late = Late::default();
        let mut asked = None;
        // runs one short of full, over as many series as it takes
        'series: for id in 0.. {
            for ts in 1..RUN_LEN as i64 {
                if late.hold(id, ts, 0.0) == Held::TooMany {
                    asked = Some(late.held);
                    break 'series;
                }
            }
        }
        assert_eq!(asked, Some(HELD_MAX + 1));
        assert_eq!(
            late.drain().map(|(_, run)| run.len()).sum::<usize>(),
            HELD_MAX + 1
        );
        assert!(late.is_empty());
    }
}
