//! A series' samples in memory: a time-sorted vector whose oldest samples are dropped lazily.
//!
//! Eviction drops a sixteenth of the memory window from every series at once. Draining the
//! front of each vector moved the other fifteen sixteenths down every time (hundreds of MB a
//! pass with a full window of 25,000 series, under the memory lock); here dropping only moves
//! a start index, and the live samples are moved down once the dead ones are half as many,
//! so eviction costs about two moves a dropped sample.

use super::memory::{insert_sorted, lower_bound_from_end};

/// Samples `(ts, value)` sorted by time; dereferences to the live ones.
#[derive(Debug, Default)]
pub(super) struct Points {
    buf: Vec<(i64, f64)>,
    /// `buf[..start]` are dropped samples not yet moved out (u32: the series slot stays
    /// within a cache line)
    start: u32,
}

impl std::ops::Deref for Points {
    type Target = [(i64, f64)];
    fn deref(&self) -> &[(i64, f64)] {
        &self.buf[self.start as usize..]
    }
}

impl Points {
    /// Inserts samples (see [`insert_sorted`]); returns how many were added. A sample not
    /// newer than a dropped one first moves the dropped ones out (see
    /// [`Points::clear_dropped_below`]), so it cannot land among them.
    pub(super) fn insert(&mut self, run: impl IntoIterator<Item = (i64, f64)>) -> usize {
        let mut added = 0;
        for s in run {
            // Appends (the usual case) cannot reach the dropped samples; only a late sample
            // looks at the newest dropped one.
            if self.buf.last().is_some_and(|l| s.0 <= l.0) {
                self.clear_dropped_below(s.0);
            }
            added += insert_sorted(&mut self.buf, [s]);
        }
        added
    }

    /// Appends a sample newer than every sample held (dropped ones included), or replaces
    /// the newest at the same time; returns how many were added (0 or 1), or `None` (and
    /// changes nothing) when the sample is older than the newest: a late one, for
    /// [`Points::merge_run`].
    pub(super) fn push_newest(&mut self, ts: i64, value: f64) -> Option<usize> {
        match self.buf.last_mut() {
            Some(last) if last.0 == ts => {
                last.1 = value;
                Some(0)
            }
            Some(last) if last.0 > ts => None,
            _ => {
                self.buf.push((ts, value));
                Some(1)
            }
        }
    }

    /// Merges a run of samples (sorted by time, unique times, written after every sample
    /// held at their times: the run wins ties) in one pass: the samples newer than the run's
    /// first are moved once, whatever the run's length. `scratch` is working space. Returns
    /// how many were added (replacements excluded).
    pub(super) fn merge_run(&mut self, run: &[(i64, f64)], scratch: &mut Vec<(i64, f64)>) -> usize {
        let Some(&(first, _)) = run.first() else {
            return 0;
        };
        self.clear_dropped_below(first);
        let live = self.start as usize;
        let n = self.buf.len();
        let at = live + lower_bound_from_end(&self.buf[live..], first);
        scratch.clear();
        scratch.reserve(n - at + run.len());
        let (tail, mut i, mut j) = (&self.buf[at..], 0, 0);
        while i < tail.len() && j < run.len() {
            if tail[i].0 < run[j].0 {
                scratch.push(tail[i]);
                i += 1;
            } else {
                // the run's sample is the later write of an equal time
                i += usize::from(tail[i].0 == run[j].0);
                scratch.push(run[j]);
                j += 1;
            }
        }
        scratch.extend_from_slice(&tail[i..]);
        scratch.extend_from_slice(&run[j..]);
        let added = scratch.len() - (n - at);
        self.buf.truncate(at);
        self.buf.extend_from_slice(scratch);
        added
    }

    /// Moves the dropped samples out when a sample at `ts` would land among them (retention
    /// drops below a day boundary without raising the memory floor, so older writes may
    /// follow).
    fn clear_dropped_below(&mut self, ts: i64) {
        if self.start > 0 && ts <= self.buf[self.start as usize - 1].0 {
            self.compact();
        }
    }

    /// Where the newest sample is (or would go): for prefetching before an insert.
    pub(super) fn tail(&self) -> *const (i64, f64) {
        self.buf
            .as_ptr()
            .wrapping_add(self.buf.len().saturating_sub(1))
    }

    /// Drops the samples older than `ts`; returns how many.
    pub(super) fn drop_below(&mut self, ts: i64) -> usize {
        let k = self.partition_point(|p| p.0 < ts);
        if k == 0 {
            return 0;
        }
        let start = self.start as usize + k;
        // Past u32 (never in practice: four billion samples of one series), move at once.
        match u32::try_from(start) {
            Ok(s) if 2 * start < self.buf.len() - start => self.start = s,
            _ => self.compact_from(start),
        }
        k
    }

    /// Moves the live samples to the front, dropping the dead ones for good.
    fn compact(&mut self) {
        self.compact_from(self.start as usize);
    }

    fn compact_from(&mut self, start: usize) {
        self.buf.drain(..start);
        self.start = 0;
        // a series that slowed down or stopped should not keep its old capacity
        if self.buf.capacity() > 2 * self.buf.len() + 4 {
            self.buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Points;

    #[test]
    fn dropping_keeps_the_live_samples_in_order() {
        let mut p = Points::default();
        assert_eq!(p.insert((0..100).map(|t| (t, t as f64))), 100);
        let mut floor = 0;
        for step in [5, 1, 20, 3, 30, 0, 41] {
            floor += step;
            let before = p.len();
            let dropped = p.drop_below(floor);
            assert_eq!(dropped, before - p.len());
            assert_eq!(p.first().map(|s| s.0), (floor < 100).then_some(floor));
            assert_eq!(p.len(), (100 - floor).max(0) as usize);
            assert!(p.windows(2).all(|w| w[0].0 < w[1].0));
            // a late sample above the floor lands among the live ones
            if floor < 99 {
                assert_eq!(p.insert([(floor, -1.0)]), 0, "replaces");
                assert_eq!(p[0], (floor, -1.0));
            }
        }
        assert!(p.is_empty());
    }

    #[test]
    fn a_sample_older_than_a_dropped_one_is_live() {
        let mut p = Points::default();
        p.insert((0..10).map(|t| (t * 10, 0.0)));
        assert_eq!(p.drop_below(20), 2);
        assert_eq!(p.start, 2, "not moved yet");
        // retention dropped below 20 without a floor: a write at 5 is kept, and visible
        assert_eq!(p.insert([(5, 1.0)]), 1);
        assert_eq!(p.len(), 9);
        assert_eq!(p[0], (5, 1.0));
        assert_eq!(p[1].0, 20);
    }
}
