//! The in-memory side of the store: the series catalog (ids, tag sets, the measurement/field
//! index) and the recent samples of every series, kept sorted, above a moving floor.

use super::query::{Tags, WindowQuery};
use super::writer::Prepared;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

/// How far past the wall clock the max timestamp may push the memory window.
pub(super) const FUTURE_SLACK_NS: i64 = 3_600 * 1_000_000_000;

/// A hash map with a fast, per-process seeded hasher (for the writer's hot lookups).
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// In-memory catalog and recent samples.
pub(super) struct Mem {
    /// indexed by series id (0 unused)
    pub(super) series: Vec<Option<SeriesMem>>,
    /// tag set key (see [`tagset_key`]) -> field -> series id (hashed both ways, so a point
    /// with many fields costs one lookup per field). foldhash rather than std's SipHash: these
    /// lookups run for every sample on the writer thread, and SipHash made ingest about a
    /// third slower than the linear scan it replaced; its per-process random seed still keeps
    /// the keys unpredictable to clients.
    pub(super) tagsets: FastMap<String, FastMap<String, u32>>,
    /// measurement -> field -> series ids
    pub(super) index: HashMap<String, HashMap<String, Vec<u32>>>,
    pub(super) next_id: u32,
    /// number of series known (slots of `series` that are `Some`)
    pub(super) series_count: usize,
    /// latest timestamp seen, `i64::MIN` when none
    pub(super) max_ts: i64,
    /// memory holds every stored sample with `ts >= floor`
    pub(super) floor: i64,
    /// days with data
    pub(super) days: BTreeSet<i64>,
    /// samples held in memory
    pub(super) samples: usize,
}

/// One series: its identity and its samples in memory.
pub(super) struct SeriesMem {
    pub(super) measurement: String,
    pub(super) field: String,
    pub(super) tags: Tags,
    pub(super) points: Vec<(i64, f64)>,
    /// recorded in the `series` table (always true for scratch stores)
    pub(super) persisted: bool,
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
            // Late samples (concurrent writers committing out of order) are usually only a
            // few places from the end: search back from there, touching a few cache lines
            // instead of binary-searching the whole window.
            _ => {
                let n = points.len();
                let mut k = 1;
                while k < n && points[n - 1 - k].0 >= ts {
                    k *= 2;
                }
                let from = n.saturating_sub(k + 1);
                match points[from..].binary_search_by_key(&ts, |p| p.0) {
                    Ok(i) => points[from + i].1 = v,
                    Err(i) => points.insert(from + i, (ts, v)),
                }
            }
        }
    }
    points.len() - before
}

impl Mem {
    pub(super) fn new() -> Mem {
        Mem {
            series: vec![None],
            tagsets: FastMap::default(),
            index: HashMap::new(),
            next_id: 1,
            series_count: 0,
            max_ts: i64::MIN,
            floor: i64::MIN,
            days: BTreeSet::new(),
            samples: 0,
        }
    }

    pub(super) fn lookup(&self, key: &str, field: &str) -> Option<u32> {
        self.tagsets.get(key)?.get(field).copied()
    }

    /// Registers a series under a given id (at open, or when created).
    pub(super) fn add_series(&mut self, id: u32, key: String, s: SeriesMem) {
        self.tagsets
            .entry(key)
            .or_default()
            .insert(s.field.clone(), id);
        self.index
            .entry(s.measurement.clone())
            .or_default()
            .entry(s.field.clone())
            .or_default()
            .push(id);
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, || None);
        }
        if self.series[i].replace(s).is_none() {
            self.series_count += 1;
        }
        self.next_id = self.next_id.max(id + 1);
    }

    pub(super) fn series(&self, id: u32) -> &SeriesMem {
        self.series[id as usize].as_ref().expect("known series id")
    }

    pub(super) fn series_mut(&mut self, id: u32) -> &mut SeriesMem {
        self.series[id as usize].as_mut().expect("known series id")
    }

    /// Ids of the series of a measurement field that match every filter of the query.
    pub(super) fn matching(&self, q: &WindowQuery) -> Vec<u32> {
        let Some(ids) = self.index.get(&q.measurement).and_then(|m| m.get(&q.field)) else {
            return Vec::new();
        };
        ids.iter()
            .copied()
            .filter(|id| {
                let tags = &self.series(*id).tags;
                q.filters.iter().all(|f| f.matches(tags))
            })
            .collect()
    }

    /// Adds committed samples (in write order) with `ts >= floor` to memory.
    pub(super) fn apply(&mut self, p: &Prepared) {
        let floor = self.floor;
        let mut added = 0;
        for s in &p.samples {
            if s.ts < floor {
                continue;
            }
            let points = &mut self.series_mut(s.id).points;
            added += insert_sorted(points, [(s.ts, s.value)]);
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

    pub(super) fn drop_points_below(&mut self, ts: i64) {
        let mut removed = 0;
        for s in self.series.iter_mut().flatten() {
            let k = s.points.partition_point(|p| p.0 < ts);
            if k > 0 {
                s.points.drain(..k);
                removed += k;
            }
        }
        self.samples -= removed;
    }
}
