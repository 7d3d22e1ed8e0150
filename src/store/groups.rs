//! Grouped reads for checks: the series of a query grouped by its `by` tags once, then the
//! points of every group read by series id at each check, without rebuilding tag maps.
//!
//! A check runs the same query at every tick; only the time range moves. [`Store::groups`]
//! resolves the matching series and their groups (the costly part: filters, tag maps, sorting)
//! and [`Store::generation`] tells when that answer may have changed (a series was created or
//! removed), so a caller can keep the groups between checks. [`Store::read_groups`] then hands
//! each group's points to a closure: a slice of the series in memory when the group has one
//! series (no copy), a merged buffer when it has several, and reads from SQLite when the
//! range starts below the memory floor, exactly as [`Store::window`] answers.

use super::memory::prefetch;
use super::query::{Tags, WindowQuery};
use super::read::range;
use super::{Store, StoreError};
use std::collections::BTreeMap;

/// The matching series of a query grouped by its `by` tags, sorted by tags.
#[derive(Debug, Clone, Default)]
pub struct SeriesGroups {
    /// [`Store::generation`] when these groups were resolved
    pub generation: (u64, usize),
    /// one entry per distinct `by` tag set
    pub groups: Vec<SeriesGroup>,
    /// per group, its series id when it has exactly one, else 0 (no series has id 0): read
    /// from one flat array, a check need not touch each group's own vector (derived from
    /// `groups` when they are resolved, so private)
    sole: Vec<u32>,
}

/// One group: its `by` tags and its series ids.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesGroup {
    /// the `by` tags (a series lacking a `by` tag has no such key)
    pub tags: Tags,
    /// series ids, ascending
    pub series: Vec<u32>,
}

impl Store {
    /// Changes whenever a series is created or removed (creating one raises the count,
    /// removing any bumps the removal epoch), so groups resolved at one generation stay valid
    /// until it changes, even though retention frees ids for reuse (a series' tags never
    /// change).
    pub fn generation(&self) -> (u64, usize) {
        let mem = self.mem.read();
        (mem.epoch, mem.series_count)
    }

    /// The series matching `q` (measurement, field, filters; the time range aside), grouped by
    /// `q.by`, groups sorted by tags as [`Store::window`] sorts them.
    pub fn groups(&self, q: &WindowQuery) -> SeriesGroups {
        let mem = self.mem.read();
        let mut by: BTreeMap<Tags, Vec<u32>> = BTreeMap::new();
        for id in mem.matching(q) {
            let tags = mem.series(id).tags();
            let key: Tags =
                q.by.iter()
                    .filter_map(|k| tags.get_key_value(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            by.entry(key).or_default().push(id);
        }
        let groups: Vec<SeriesGroup> = by
            .into_iter()
            .map(|(tags, mut series)| {
                series.sort_unstable();
                SeriesGroup { tags, series }
            })
            .collect();
        SeriesGroups {
            generation: (mem.epoch, mem.series_count),
            sole: groups
                .iter()
                .map(|g| match g.series[..] {
                    [id] => id,
                    _ => 0,
                })
                .collect(),
            groups,
        }
    }

    /// Calls `f(i, points)` for every group `i` of `groups` with at least one point in
    /// `[start_ns, end_ns)`, in order; `points` are sorted by time (several series of a group
    /// merged, sorted by time then value), the same points [`Store::window`] gives the group.
    ///
    /// Returns `false`, having called `f` for nothing, when series were removed since the
    /// groups were resolved (their ids may mean other series now): resolve them again.
    ///
    /// `hints` remembers where each single-series group's range started: checks move forward
    /// in time, so the next search starts there instead of bisecting the whole series (a
    /// wrong hint, e.g. after eviction, only costs the bisection).
    pub fn read_groups(
        &self,
        groups: &SeriesGroups,
        start_ns: i64,
        end_ns: i64,
        hints: &mut Vec<usize>,
        mut f: impl FnMut(usize, &[(i64, f64)]),
    ) -> Result<bool, StoreError> {
        let epoch = groups.generation.0;
        let sole = &groups.sole;
        let groups = &groups.groups;
        hints.resize(groups.len(), 0);
        let mem = self.settled();
        if mem.epoch != epoch {
            return Ok(false);
        }
        if start_ns >= end_ns {
            return Ok(true);
        }
        let mut merged: Vec<(i64, f64)> = Vec::new();
        let disk = match &self.disk {
            Some(disk) if start_ns < mem.floor => disk,
            _ => {
                for (i, g) in groups.iter().enumerate() {
                    // Each group's points are a cache miss or two away (behind its series'
                    // slot); asking for them a few groups ahead overlaps those misses.
                    if let Some(&id) = sole.get(i + 2 * PREFETCH_AHEAD) {
                        prefetch(mem.series.as_ptr().wrapping_add(id as usize));
                    }
                    if let Some(&id) = sole.get(i + PREFETCH_AHEAD).filter(|id| **id != 0) {
                        let points = &mem.series(id).points;
                        let at = hints[i + PREFETCH_AHEAD].min(points.len().saturating_sub(1));
                        prefetch(points.as_ptr().wrapping_add(at));
                    }
                    if sole[i] != 0 {
                        let points = &mem.series(sole[i]).points;
                        let lo = lower_bound_from(points, start_ns, hints[i]);
                        hints[i] = lo;
                        let hi = lower_bound_from(points, end_ns, lo);
                        let pts = &points[lo..hi];
                        if !pts.is_empty() {
                            f(i, pts);
                        }
                        continue;
                    }
                    merged.clear();
                    for id in &g.series {
                        merged.extend_from_slice(range(&mem.series(*id).points, start_ns, end_ns));
                    }
                    emit_merged(i, &mut merged, &mut f);
                }
                return Ok(true);
            }
        };
        drop(mem);
        let ids: Vec<u32> = groups
            .iter()
            .flat_map(|g| g.series.iter().copied())
            .collect();
        let points = self.read_disk(disk, &ids, start_ns, end_ns)?;
        // Retention may have removed some of these series meanwhile (and freed their ids).
        if self.mem.read().epoch != epoch {
            return Ok(false);
        }
        let mut next = points.into_iter();
        for (i, g) in groups.iter().enumerate() {
            merged.clear();
            for _ in &g.series {
                merged.extend(next.next().unwrap_or_default());
            }
            emit_merged(i, &mut merged, &mut f);
        }
        Ok(true)
    }
}

/// How many groups ahead [`Store::read_groups`] asks for a group's points (and twice as far
/// for its series' slot).
const PREFETCH_AHEAD: usize = 4;

/// Sorts a group's merged points as [`Store::window`] does and hands them on when non-empty.
fn emit_merged(i: usize, merged: &mut [(i64, f64)], f: &mut impl FnMut(usize, &[(i64, f64)])) {
    if merged.is_empty() {
        return;
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    f(i, merged);
}

/// The first index of `points` (sorted by time) whose time is at least `t`, searched forward
/// from `hint` with doubling steps when every point before `hint` is older than `t`, else by
/// bisection.
fn lower_bound_from(points: &[(i64, f64)], t: i64, hint: usize) -> usize {
    let n = points.len();
    let h = hint.min(n);
    if h > 0 && points[h - 1].0 >= t {
        return points.partition_point(|p| p.0 < t);
    }
    // Every index below `lo` holds a time before `t`.
    let (mut lo, mut hi, mut step) = (h, h, 1);
    while hi < n && points[hi].0 < t {
        lo = hi + 1;
        hi = lo + step;
        step *= 2;
    }
    let hi = hi.min(n);
    lo + points[lo..hi].partition_point(|p| p.0 < t)
}

#[cfg(test)]
mod tests {
    use super::lower_bound_from;

    #[test]
    fn hinted_search_finds_what_bisection_finds() {
        let points: Vec<(i64, f64)> = (0..200).map(|i| (i * 10, 0.0)).collect();
        for t in [-5, 0, 1, 10, 15, 995, 1990, 1991, 5000] {
            let want = points.partition_point(|p| p.0 < t);
            for hint in [0, 1, 7, 99, 100, 101, 150, 199, 200, 500] {
                assert_eq!(
                    lower_bound_from(&points, t, hint),
                    want,
                    "t {t} hint {hint}"
                );
            }
        }
        assert_eq!(lower_bound_from(&[], 5, 3), 0);
    }
}
