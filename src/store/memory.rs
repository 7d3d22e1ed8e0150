//! The in-memory side of the store: the series catalog (ids, names, tag sets, the
//! measurement/field index) and the recent samples of every series, kept sorted, above a moving
//! floor.
//!
//! The catalog is laid out for a million series at well under a KiB each: measurement and
//! field names are interned (ids into one name table); a series' tag set is its tag-set key
//! (see [`tagset_key`]), one `Arc<str>` shared by the series of that tag set and the lookup
//! map, from which `Tags` are built only when a query needs them; a tag set maps its fields to
//! series ids in a small sorted slice (most tag sets have a handful of fields), not a map of
//! its own.

use super::disk::day_of;
use super::late::{Held, Late};
use super::points::Points;
use super::query::{Tags, WindowQuery};
use super::writer::Prepared;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// How far past the wall clock the max timestamp may push the memory window.
pub(super) const FUTURE_SLACK_NS: i64 = 3_600 * 1_000_000_000;

/// How many samples ahead [`Mem::apply`] asks for a sample's series (twice as far for its
/// slot).
const APPLY_AHEAD: usize = 4;

/// Asks the CPU to bring the cache line at `p` in; a hint only (no-op off x86-64).
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault, whatever the
    // address (it may be dangling or past the end).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A hash map with a fast, per-process seeded hasher (for the writer's hot lookups).
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// In-memory catalog and recent samples.
pub(super) struct Mem {
    /// indexed by series id (0 unused); `None` for ids not in use
    pub(super) series: Vec<Option<SeriesMem>>,
    /// tag set key (see [`tagset_key`]) -> its fields' series. foldhash rather than std's
    /// SipHash: these lookups run for every sample on the writer thread, and SipHash made
    /// ingest about a third slower than the linear scan it replaced; its per-process random
    /// seed still keeps the keys unpredictable to clients.
    tagsets: FastMap<Arc<str>, Fields>,
    /// measurement and field names
    names: Names,
    /// (measurement, field) -> series ids, in creation order
    index: FastMap<(u32, u32), Vec<u32>>,
    /// ids freed by retention, reused before `next_id` (so churn does not grow `series`)
    free: Vec<u32>,
    pub(super) next_id: u32,
    /// number of series known (slots of `series` that are `Some`)
    pub(super) series_count: usize,
    /// bumped whenever series are removed: a reader that looked ids up before and read
    /// SQLite without the lock checks it to know its ids still mean the same series
    pub(super) epoch: u64,
    /// latest timestamp seen, `i64::MIN` when none
    pub(super) max_ts: i64,
    /// memory holds every stored sample with `ts >= floor`
    pub(super) floor: i64,
    /// days with data
    pub(super) days: BTreeSet<i64>,
    /// samples held in memory (late samples count once merged)
    pub(super) samples: usize,
    /// late samples not yet merged into their series: readers see memory only once
    /// [`Mem::settle`] has merged them
    late: Late,
    /// working space for merging late runs
    scratch: Vec<(i64, f64)>,
}

/// One series: its identity and its samples in memory.
pub(super) struct SeriesMem {
    /// the tag-set key: measurement and tags
    key: Arc<str>,
    pub(super) points: Points,
    measurement: u32,
    field: u32,
    /// the latest day holding a sample of the series ([`NO_DAY`] when none): once retention
    /// has dropped that day, the series is empty and is removed
    last_day: i32,
    /// recorded in the `series` table (always true for scratch stores)
    pub(super) persisted: bool,
}

/// [`SeriesMem::last_day`] of a series without samples.
const NO_DAY: i32 = i32::MIN;

/// A day number as stored in [`SeriesMem::last_day`] (clamped: storable times are days
/// -25,567 to 84,000).
fn day32(day: i64) -> i32 {
    day.clamp(i64::from(NO_DAY) + 1, i64::from(i32::MAX)) as i32
}

/// Interned names: a name's id is its index.
#[derive(Default)]
struct Names {
    ids: FastMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// The series of one tag set: (field name id, series id) sorted by field, inline for the
/// common single-field tag set.
enum Fields {
    One((u32, u32)),
    Many(Box<[(u32, u32)]>),
}

impl Fields {
    fn as_slice(&self) -> &[(u32, u32)] {
        match self {
            Fields::One(pair) => std::slice::from_ref(pair),
            Fields::Many(v) => v,
        }
    }

    fn get(&self, field: u32) -> Option<u32> {
        let v = self.as_slice();
        v.binary_search_by_key(&field, |p| p.0).ok().map(|i| v[i].1)
    }

    /// Adds (or re-points) a field.
    fn insert(&mut self, field: u32, id: u32) {
        let mut v = self.as_slice().to_vec();
        match v.binary_search_by_key(&field, |p| p.0) {
            Ok(i) => v[i].1 = id,
            Err(i) => v.insert(i, (field, id)),
        }
        *self = Fields::from_vec(v);
    }

    /// Removes a field; `false` when none is left.
    fn remove(&mut self, field: u32) -> bool {
        let mut v = self.as_slice().to_vec();
        v.retain(|p| p.0 != field);
        let left = !v.is_empty();
        *self = Fields::from_vec(v);
        left
    }

    fn from_vec(v: Vec<(u32, u32)>) -> Fields {
        match v[..] {
            [one] => Fields::One(one),
            _ => Fields::Many(v.into_boxed_slice()),
        }
    }
}

/// The series of one tag set, for the writer: field name -> series id.
pub(super) struct TagsetRef<'a> {
    names: &'a Names,
    fields: &'a Fields,
}

impl TagsetRef<'_> {
    pub(super) fn get(&self, field: &str) -> Option<u32> {
        self.fields.get(self.names.get(field)?)
    }
}

/// The parts of a tag-set key (see [`tagset_key`]): the measurement, then each tag's key and
/// value.
fn key_parts(key: &str) -> impl Iterator<Item = &str> {
    let mut rest = key;
    std::iter::from_fn(move || {
        let colon = rest.find(':')?;
        // the length's decimal digits, least significant first
        let n = rest.as_bytes()[..colon]
            .iter()
            .rev()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        let part = rest.get(colon + 1..colon + 1 + n)?;
        rest = &rest[colon + 1 + n..];
        Some(part)
    })
}

/// The (key, value) tags of a tag-set key, sorted by key.
fn key_tags(key: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut parts = key_parts(key).skip(1);
    std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
}

impl SeriesMem {
    /// The value of one tag, if the series has it.
    pub(super) fn tag(&self, key: &str) -> Option<&str> {
        key_tags(&self.key).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// All tags of the series (built on demand: series keep only their tag-set key).
    pub(super) fn tags(&self) -> Tags {
        key_tags(&self.key)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Notes a sample of `day`.
    fn saw_day(&mut self, day: i64) {
        self.last_day = self.last_day.max(day32(day));
    }
}

pub(super) fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// The memory floor for a latest timestamp `max_ts`.
pub(super) fn floor_for(max_ts: i64, window_ns: i64) -> i64 {
    if max_ts == i64::MIN {
        return i64::MIN;
    }
    max_ts
        .min(wall_clock_ns().saturating_add(FUTURE_SLACK_NS))
        .saturating_sub(window_ns)
}

/// An injective key for (measurement, tag set): each part prefixed by its byte length (decimal
/// digits, least significant first) and `:`.
pub(super) fn tagset_key<S: AsRef<str>>(buf: &mut String, measurement: &str, tags: &[(S, S)]) {
    buf.clear();
    let tags = tags.iter().flat_map(|(k, v)| [k.as_ref(), v.as_ref()]);
    for part in std::iter::once(measurement).chain(tags) {
        push_part(buf, part);
    }
}

/// Appends `part` prefixed by its byte length (decimal digits, least significant first) and
/// `:`, which keeps a sequence of parts injective.
pub(super) fn push_part(buf: &mut String, part: &str) {
    let mut n = part.len();
    loop {
        buf.push(char::from(b'0' + (n % 10) as u8));
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.push(':');
    buf.push_str(part);
}

/// Tags sorted by key with unique keys (the last value wins), borrowing when already so.
pub(super) fn normalized_tags<S: AsRef<str> + Clone>(tags: &[(S, S)]) -> Cow<'_, [(S, S)]> {
    if tags.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref()) {
        return Cow::Borrowed(tags);
    }
    let mut v = tags.to_vec();
    v.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut out: Vec<(S, S)> = Vec::with_capacity(v.len());
    for (k, val) in v {
        match out.last_mut() {
            Some(last) if last.0.as_ref() == k.as_ref() => last.1 = val,
            _ => out.push((k, val)),
        }
    }
    Cow::Owned(out)
}

/// Inserts samples into a sorted series, replacing equal timestamps (appending is the fast
/// path). Returns how many samples were added (replacements excluded).
pub(super) fn insert_sorted(
    points: &mut Vec<(i64, f64)>,
    run: impl IntoIterator<Item = (i64, f64)>,
) -> usize {
    let before = points.len();
    for (ts, v) in run {
        match points.last_mut() {
            None => points.push((ts, v)),
            Some(last) if last.0 < ts => points.push((ts, v)),
            Some(last) if last.0 == ts => last.1 = v,
            _ => match lower_bound_from_end(points, ts) {
                i if points[i].0 == ts => points[i].1 = v,
                i => points.insert(i, (ts, v)),
            },
        }
    }
    points.len() - before
}

/// The first index of `points` (sorted by time) whose time is at least `ts`. Late samples
/// (concurrent writers committing out of order) are usually only a few places from the end:
/// this searches back from there with doubling steps, touching a few cache lines instead of
/// bisecting the whole window.
pub(super) fn lower_bound_from_end(points: &[(i64, f64)], ts: i64) -> usize {
    let n = points.len();
    let mut k = 1;
    while k < n && points[n - 1 - k].0 >= ts {
        k *= 2;
    }
    let from = n.saturating_sub(k + 1);
    from + points[from..].partition_point(|p| p.0 < ts)
}

impl Mem {
    pub(super) fn new() -> Mem {
        Mem {
            series: vec![None],
            tagsets: FastMap::default(),
            names: Names::default(),
            index: FastMap::default(),
            free: Vec::new(),
            next_id: 1,
            series_count: 0,
            epoch: 0,
            max_ts: i64::MIN,
            floor: i64::MIN,
            days: BTreeSet::new(),
            samples: 0,
            late: Late::default(),
            scratch: Vec::new(),
        }
    }

    /// The series of a tag set, by field name.
    pub(super) fn tagset(&self, key: &str) -> Option<TagsetRef<'_>> {
        let fields = self.tagsets.get(key)?;
        Some(TagsetRef {
            names: &self.names,
            fields,
        })
    }

    pub(super) fn lookup(&self, key: &str, field: &str) -> Option<u32> {
        self.tagset(key)?.get(field)
    }

    /// Creates a series (its samples come with [`Mem::apply`]) and returns its id: a
    /// retired id if there is one, else the next.
    pub(super) fn create_series(
        &mut self,
        key: &str,
        measurement: &str,
        field: &str,
        persisted: bool,
    ) -> u32 {
        let id = self.free.pop().unwrap_or(self.next_id);
        self.add_series(id, key, measurement, field, persisted);
        id
    }

    /// Registers a series under a given id (at open, or when created).
    pub(super) fn add_series(
        &mut self,
        id: u32,
        key: &str,
        measurement: &str,
        field: &str,
        persisted: bool,
    ) {
        let measurement = self.names.intern(measurement);
        let field = self.names.intern(field);
        let key: Arc<str> = match self.tagsets.get_key_value(key) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(key),
        };
        match self.tagsets.get_mut(&*key) {
            Some(fields) => fields.insert(field, id),
            None => {
                self.tagsets
                    .insert(Arc::clone(&key), Fields::One((field, id)));
            }
        }
        self.index.entry((measurement, field)).or_default().push(id);
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, || None);
        }
        let s = SeriesMem {
            key,
            points: Points::default(),
            measurement,
            field,
            last_day: NO_DAY,
            persisted,
        };
        if self.series[i].replace(s).is_none() {
            self.series_count += 1;
        }
        self.next_id = self.next_id.max(id + 1);
    }

    /// Makes the unused ids below `next_id` (series removed before a restart) available for
    /// reuse; called once the catalog is loaded.
    pub(super) fn collect_free_ids(&mut self) {
        self.free = (1..self.next_id)
            .rev()
            .filter(|id| self.series[*id as usize].is_none())
            .collect();
    }

    pub(super) fn series(&self, id: u32) -> &SeriesMem {
        self.series[id as usize].as_ref().expect("known series id")
    }

    pub(super) fn series_mut(&mut self, id: u32) -> &mut SeriesMem {
        self.series[id as usize].as_mut().expect("known series id")
    }

    /// The measurement of a series.
    pub(super) fn measurement_of(&self, id: u32) -> &str {
        self.names.name(self.series(id).measurement)
    }

    /// The field of a series.
    pub(super) fn field_of(&self, id: u32) -> &str {
        self.names.name(self.series(id).field)
    }

    /// Ids of the series of a measurement field that match every filter of the query.
    pub(super) fn matching(&self, q: &WindowQuery) -> Vec<u32> {
        let (Some(m), Some(f)) = (self.names.get(&q.measurement), self.names.get(&q.field)) else {
            return Vec::new();
        };
        let Some(ids) = self.index.get(&(m, f)) else {
            return Vec::new();
        };
        ids.iter()
            .copied()
            .filter(|id| {
                let s = self.series(*id);
                q.filters.iter().all(|f| f.matches_value(s.tag(&f.tag)))
            })
            .collect()
    }

    /// At open, reading days newest first: notes `day` as the latest day of series `id` if
    /// none is noted yet; whether it was.
    pub(super) fn place_day(&mut self, id: u32, day: i64) -> bool {
        match self.series.get_mut(id as usize) {
            Some(Some(s)) if s.last_day == NO_DAY => {
                s.saw_day(day);
                true
            }
            _ => false,
        }
    }

    /// Adds committed samples (in write order) with `ts >= floor` to memory.
    pub(super) fn apply(&mut self, p: &Prepared) {
        let floor = self.floor;
        let mut added = 0;
        for (i, s) in p.samples.iter().enumerate() {
            // Each sample goes to another series, a cache miss or two away (its slot, then
            // the end of its samples): asking for them a few samples ahead overlaps the misses.
            if let Some(ahead) = p.samples.get(i + 2 * APPLY_AHEAD) {
                prefetch(self.series.as_ptr().wrapping_add(ahead.id as usize));
            }
            if let Some(Some(ahead)) = p
                .samples
                .get(i + APPLY_AHEAD)
                .and_then(|a| self.series.get(a.id as usize))
            {
                prefetch(ahead.points.tail());
            }
            let series = self.series[s.id as usize]
                .as_mut()
                .expect("known series id");
            series.saw_day(day_of(s.ts));
            if s.ts < floor {
                continue;
            }
            if let Some(n) = series.points.push_newest(s.ts, s.value) {
                added += n;
                continue;
            }
            match self.late.hold(s.id, s.ts, s.value) {
                Held::Waiting => {}
                Held::RunFull => {
                    let run = self.late.take(s.id);
                    added += series.points.merge_run(&run, &mut self.scratch);
                }
                Held::TooMany => self.settle(),
            }
        }
        self.samples += added;
        for r in &p.rows {
            self.max_ts = self.max_ts.max(r.max_ts);
            self.days.insert(r.day);
        }
    }

    /// Raises the floor to `max_ts - window` once it has moved by a sixteenth of the window
    /// (amortizing the eviction pass), dropping older samples from memory.
    pub(super) fn maybe_evict(&mut self, window_ns: i64) {
        let target = floor_for(self.max_ts, window_ns);
        if target > self.floor.saturating_add(window_ns / 16) {
            self.evict_below(target);
        }
    }

    pub(super) fn evict_below(&mut self, floor: i64) {
        self.floor = self.floor.max(floor);
        self.drop_points_below(floor);
    }

    /// Merges every late sample held (see [`super::late`]) into its series: memory is read
    /// only once settled.
    pub(super) fn settle(&mut self) {
        let mut added = 0;
        for (id, run) in self.late.drain() {
            if let Some(Some(series)) = self.series.get_mut(id as usize) {
                added += series.points.merge_run(&run, &mut self.scratch);
            }
        }
        self.samples += added;
        // a burst of late samples should not keep its working space
        if self.scratch.capacity() > 1 << 16 {
            self.scratch = Vec::new();
        }
    }

    /// Whether late samples wait to be merged ([`Mem::settle`]).
    pub(super) fn unsettled(&self) -> bool {
        !self.late.is_empty()
    }

    pub(super) fn drop_points_below(&mut self, ts: i64) {
        self.settle();
        let mut removed = 0;
        for s in self.series.iter_mut().flatten() {
            removed += s.points.drop_below(ts);
        }
        self.samples -= removed;
    }

    /// The series without a sample in `cutoff_day` or later: once retention has dropped the
    /// days before it, nothing of them is left.
    pub(super) fn emptied_before(&self, cutoff_day: i64) -> Vec<u32> {
        let cutoff = day32(cutoff_day);
        self.series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| {
                s.as_ref()
                    .filter(|s| s.last_day < cutoff)
                    .map(|_| id as u32)
            })
            .collect()
    }

    /// Removes series from the catalog (their samples are gone already) and frees their ids.
    pub(super) fn remove_series(&mut self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        self.settle();
        let mut gone: FastMap<(u32, u32), Vec<u32>> = FastMap::default();
        for &id in ids {
            let Some(s) = self.series.get_mut(id as usize).and_then(Option::take) else {
                continue;
            };
            self.samples -= s.points.len();
            self.series_count -= 1;
            if let Some(fields) = self.tagsets.get_mut(&*s.key) {
                if !fields.remove(s.field) {
                    self.tagsets.remove(&*s.key);
                }
            }
            gone.entry((s.measurement, s.field)).or_default().push(id);
            self.free.push(id);
        }
        for (mf, mut removed) in gone {
            removed.sort_unstable();
            if let Some(v) = self.index.get_mut(&mf) {
                v.retain(|id| removed.binary_search(id).is_err());
                if v.is_empty() {
                    self.index.remove(&mf);
                } else if v.capacity() > 2 * v.len() + 8 {
                    v.shrink_to_fit();
                }
            }
        }
        // lowest ids first, so the id space stays dense
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        if self.tagsets.capacity() > 4 * self.tagsets.len() + 64 {
            self.tagsets.shrink_to(2 * self.tagsets.len());
        }
        self.epoch += 1;
    }
}
