//! Unit tests of the store internals: encodings, table names, memory helpers.

use super::codec::*;
use super::disk::*;
use super::memory::*;
use super::Store;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn store_is_send_and_sync() {
    assert_send_sync::<Store>();
}

#[test]
fn block_round_trip() {
    let samples: Vec<Sample> = [(5, 1.5), (5 + 1, -2.0), (5 + 300_000_000_000, f64::MAX)]
        .iter()
        .map(|&(ts, value)| Sample { id: 1, ts, value })
        .collect();
    let data = encode_block(&samples);
    let mut out = Vec::new();
    decode_block(5, &data, |ts, v| out.push((ts, v))).unwrap();
    let want: Vec<(i64, f64)> = samples.iter().map(|s| (s.ts, s.value)).collect();
    assert_eq!(out, want);
    assert!(decode_block(5, &data[..data.len() - 1], |_, _| {}).is_err());
    assert!(decode_block(5, &[9], |_, _| {}).is_err());
    // a regular series takes one byte per time after the first two
    let regular: Vec<Sample> = (0..100)
        .map(|i| Sample {
            id: 1,
            ts: 7 + i * 300_000_000_000,
            value: 1.0,
        })
        .collect();
    let data = encode_block(&regular);
    assert!(data.len() <= 1 + 1 + 6 + 98 + 100 * 8, "{}", data.len());
    let mut out = Vec::new();
    decode_block(7, &data, |ts, _| out.push(ts)).unwrap();
    assert_eq!(out, regular.iter().map(|s| s.ts).collect::<Vec<_>>());
}

#[test]
fn blocks_of_the_first_format_are_still_read() {
    // format 1: plain varint time deltas
    let mut data = vec![BLOCK_FORMAT_DELTA];
    let mut prev = 5;
    for (ts, v) in [(5i64, 1.5f64), (6, -2.0), (300_000_000_005, 3.0)] {
        put_varint(&mut data, (ts - prev) as u64);
        data.extend_from_slice(&v.to_le_bytes());
        prev = ts;
    }
    let mut out = Vec::new();
    decode_block(5, &data, |ts, v| out.push((ts, v))).unwrap();
    assert_eq!(out, vec![(5, 1.5), (6, -2.0), (300_000_000_005, 3.0)]);
}

#[test]
fn varints_round_trip() {
    // every length, at the end of the data (the byte-wise path) and followed by more (the
    // word path)
    let mut values: Vec<u64> = (0..64).map(|b| 1u64 << b).collect();
    values.extend((1..64).map(|b| (1u64 << b) - 1));
    values.extend([0, u64::MAX, 300_000_000_000, 0x80, 0x3fff, 0x4000]);
    for v in values {
        let mut one = Vec::new();
        put_varint(&mut one, v);
        for tail in [0usize, 1, 7, 9] {
            let mut data = one.clone();
            data.extend(std::iter::repeat_n(0x55, tail));
            let mut pos = 0;
            assert_eq!(get_varint(&data, &mut pos), Some(v), "{v} + {tail}");
            assert_eq!(pos, one.len());
        }
        let mut pos = 0;
        assert_eq!(
            get_varint(&one[..one.len() - 1], &mut pos),
            None,
            "{v} truncated"
        );
    }
}

#[test]
fn log_round_trip() {
    for v in [0i64, 1, -1, i64::MAX / 2, -DAY_NS] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
    let mut data = vec![LOG_FORMAT];
    let samples = [
        (3u32, 100i64, 1.0f64),
        (1, 90, 2.0),
        (3, 100, 3.0),
        (70_000, 150, -4.5),
    ];
    let mut prev = 90;
    for (id, ts, v) in samples {
        put_varint(&mut data, u64::from(id));
        put_varint(&mut data, zigzag(ts - prev));
        data.extend_from_slice(&v.to_le_bytes());
        prev = ts;
    }
    let mut out = Vec::new();
    decode_log(90, &data, |id, ts, v| out.push((id, ts, v))).unwrap();
    assert_eq!(out, samples);
    assert!(decode_log(90, &data[..data.len() - 3], |_, _, _| {}).is_err());
    assert!(decode_log(90, &[BLOCK_FORMAT], |_, _, _| {}).is_err());
}

#[test]
fn chunk_names() {
    assert_eq!(chunk_table(19_700), "samples_19700");
    assert_eq!(chunk_table(-3), "samples_m3");
    assert_eq!(log_table(19_700), "log_19700");
    assert_eq!(day_of(-1), -1);
    assert_eq!(day_of(DAY_NS), 1);
}

#[test]
fn insert_sorted_replaces_and_orders() {
    let mut v = vec![(10, 1.0), (20, 2.0)];
    assert_eq!(
        insert_sorted(&mut v, [(15, 1.5), (20, 9.0), (30, 3.0), (5, 0.5)]),
        3
    );
    assert_eq!(
        v,
        vec![(5, 0.5), (10, 1.0), (15, 1.5), (20, 9.0), (30, 3.0)]
    );
}

proptest::proptest! {
    /// Late samples are searched for from the end: whatever the disorder, the result is the
    /// sorted, last-write-wins map of the samples.
    #[test]
    fn insert_sorted_matches_a_sorted_map(
        samples in proptest::collection::vec((0i64..200, -1e3f64..1e3), 0..300),
    ) {
        let mut v = Vec::new();
        let mut model = std::collections::BTreeMap::new();
        for &(ts, value) in &samples {
            let added = insert_sorted(&mut v, [(ts, value)]);
            proptest::prop_assert_eq!(added, usize::from(model.insert(ts, value).is_none()));
        }
        let expected: Vec<(i64, f64)> = model.into_iter().collect();
        proptest::prop_assert_eq!(v, expected);
    }
}

#[test]
fn tagset_keys_are_injective() {
    let mut a = String::new();
    let mut b = String::new();
    tagset_key::<String>(&mut a, "m", &[("a".into(), "b:c".into())]);
    tagset_key::<String>(
        &mut b,
        "m",
        &[("a".into(), "b".into()), ("c".into(), "".into())],
    );
    assert_ne!(a, b);
}

fn wide_point(fields: usize, tags: usize, time: i64) -> crate::ingest::lineproto::Point {
    use crate::ingest::lineproto::{FieldValue, Point};
    Point {
        measurement: "wide".into(),
        tags: (0..tags)
            .map(|i| (format!("t{i:05}"), "v".into()))
            .collect(),
        fields: (0..fields)
            .map(|i| (format!("f{i}"), FieldValue::Float(i as f64)))
            .collect(),
        time,
    }
}

#[test]
fn a_point_past_the_field_limit_is_refused_and_nothing_is_stored() {
    let store = Store::scratch();
    let err = store.write(&[wide_point(100_000, 1, 0)]).unwrap_err();
    assert!(
        matches!(&err, super::StoreError::InvalidPoint { index: 0, message, .. }
            if message.contains("more than 1000 fields")),
        "{err}"
    );
    assert_eq!(store.series_count(), 0);
    assert_eq!(store.sample_count(), 0);
}

#[test]
fn a_point_at_the_field_limit_is_stored() {
    let store = Store::scratch();
    let n = crate::ingest::limits::MAX_FIELDS_PER_POINT;
    assert_eq!(store.write(&[wide_point(n, 2, 5)]).unwrap(), n);
    // rewriting resolves every field through the hash index
    assert_eq!(store.write(&[wide_point(n, 2, 6)]).unwrap(), n);
    assert_eq!(store.series_count(), n);
    assert_eq!(store.sample_count(), 2 * n);
}

#[test]
fn too_many_tags_are_refused() {
    let store = Store::scratch();
    let err = store.write(&[wide_point(1, 65, 0)]).unwrap_err();
    assert!(err.to_string().contains("more than 64 tags"), "{err}");
    assert_eq!(store.write(&[wide_point(1, 64, 0)]).unwrap(), 1);
}

#[test]
fn times_outside_the_storable_range_are_refused() {
    use crate::ingest::limits::{MAX_TIME_NS, MIN_TIME_NS};
    let store = Store::scratch();
    for t in [i64::MAX, i64::MIN, MAX_TIME_NS + 1, MIN_TIME_NS - 1] {
        let err = store.write(&[wide_point(1, 0, t)]).unwrap_err();
        assert!(
            err.to_string().contains("outside the storable range"),
            "{t}: {err}"
        );
    }
    assert_eq!(store.series_count(), 0);
    for t in [MIN_TIME_NS, MAX_TIME_NS, -1, 0] {
        assert_eq!(store.write(&[wide_point(1, 0, t)]).unwrap(), 1, "{t}");
    }
}

#[test]
fn new_series_past_the_series_limit_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = super::StoreOptions {
        max_series: 3,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.write(&[wide_point(2, 1, 10)]).unwrap(), 2);
    // two more would make four: refused whole, nothing stored, counted
    let err = store.write(&[wide_point(4, 1, 20)]).unwrap_err();
    assert!(
        matches!(
            err,
            super::StoreError::SeriesLimit {
                limit: 3,
                new: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("series limit"), "{err}");
    assert_eq!(store.series_refused(), 2);
    assert_eq!(store.series_count(), 2);
    assert!(store.admit(&[wide_point(4, 1, 20)]).is_err());
    assert_eq!(store.series_refused(), 4);
    // existing series keep flowing, and one more fits
    assert!(store.admit(&[wide_point(3, 1, 30)]).is_ok());
    assert_eq!(store.write(&[wide_point(3, 1, 30)]).unwrap(), 3);
    assert_eq!(store.series_count(), 3);
    assert_eq!(store.write(&[wide_point(2, 1, 40)]).unwrap(), 2);
    // what was refused never reached the disk either
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.series_count(), 3);
    assert_eq!(store.series_refused(), 0);
}

#[test]
fn series_tags_come_back_from_their_key() {
    use super::query::Tags;
    // parts with `:`, digits, an empty value and a length of two digits
    let tags: Vec<(String, String)> = vec![
        ("a".into(), "b:c".into()),
        ("k".into(), "".into()),
        ("ü".into(), "1234567890".repeat(2)),
    ];
    let mut key = String::new();
    tagset_key(&mut key, "m:1", &tags);
    let mut mem = Mem::new();
    let id = mem.create_series(&key, "m:1", "f", true);
    let s = mem.series(id);
    assert_eq!(s.tags(), tags.iter().cloned().collect::<Tags>());
    assert_eq!(s.tag("a"), Some("b:c"));
    assert_eq!(s.tag("k"), Some(""));
    assert_eq!(s.tag("m:1"), None, "the measurement is no tag");
    assert_eq!(s.tag("b:c"), None, "values are no keys");
    assert_eq!(mem.measurement_of(id), "m:1");
    assert_eq!(mem.field_of(id), "f");
    // the fields of one tag set
    let g = mem.create_series(&key, "m:1", "g", true);
    assert_eq!(mem.lookup(&key, "f"), Some(id));
    assert_eq!(mem.lookup(&key, "g"), Some(g));
    assert_eq!(mem.lookup(&key, "h"), None);
    mem.remove_series(&[id]);
    assert_eq!(mem.series_count, 1);
    assert_eq!(mem.lookup(&key, "f"), None);
    assert_eq!(mem.lookup(&key, "g"), Some(g));
    // a freed id is reused before a new one
    assert_eq!(mem.create_series(&key, "m:1", "h", true), id);
    assert_eq!(mem.lookup(&key, "h"), Some(id));
    mem.remove_series(&[id, g]);
    assert_eq!(mem.series_count, 0);
    assert!(mem.tagset(&key).is_none());
}

#[test]
fn a_series_slot_stays_small() {
    // the per-series part of the catalog (README: memory per series): one cache line,
    // eight bytes more than before the lazily dropped front of its samples
    assert!(std::mem::size_of::<Option<SeriesMem>>() <= 64);
}

/// A compaction of more series than one batch of blocks, in several passes (tests compact
/// a thousand samples a pass): every series ends in one block,
/// the log is emptied, and reads answer as memory does.
#[test]
fn compaction_in_batches_keeps_every_sample_once() {
    use crate::ingest::lineproto::{FieldValue, Point};
    let t0 = 19_675 * DAY_NS;
    let dir = tempfile::tempdir().unwrap();
    let opts = super::StoreOptions {
        memory_window_ns: 10 * DAY_NS,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let series = 2 * super::compact::COMPACT_BATCH + 300;
    for round in 0..3 {
        let batch: Vec<Point> = (0..series)
            .map(|s| Point {
                measurement: "m".into(),
                tags: vec![("host".into(), format!("h{s}"))],
                fields: vec![("v".into(), FieldValue::Float((s * 10 + round) as f64))],
                time: t0 + round as i64 * 1_000_000_000,
            })
            .collect();
        store.write(&batch).unwrap();
    }
    assert_eq!(store.compact().unwrap(), 3 * series);
    let disk = store.disk.as_ref().unwrap();
    let day = day_of(t0);
    let conn = disk.reader.lock();
    let count = |sql: String| -> i64 { conn.query_row(&sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(format!("SELECT COUNT(*) FROM {}", chunk_table(day))),
        series as i64
    );
    assert_eq!(count(format!("SELECT COUNT(*) FROM {}", log_table(day))), 0);
    drop(conn);
    let ids: Vec<u32> = (1..=series as u32).collect();
    let all = Store::read_disk_with(disk, &ids, i64::MIN, i64::MAX, i64::MAX).unwrap();
    let mem = store.settled();
    for (id, points) in ids.iter().zip(&all) {
        assert_eq!(points.len(), 3, "series {id}");
        assert_eq!(&mem.series(*id).points[..], &points[..]);
    }
}

#[test]
fn cold_reads_scan_and_seek_alike() {
    use crate::ingest::lineproto::{FieldValue, Point};
    use crate::store::query::WindowQuery;
    const HOUR: i64 = 3_600 * 1_000_000_000;
    let t0 = 19_675 * DAY_NS;
    let point = |s: usize, v: f64, time: i64| Point {
        measurement: "m".into(),
        tags: vec![("host".into(), format!("h{s}"))],
        fields: vec![("v".into(), FieldValue::Float(v))],
        time,
    };
    let dir = tempfile::tempdir().unwrap();
    // memory keeps everything, to compare with
    let opts = super::StoreOptions {
        memory_window_ns: 10 * DAY_NS,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    for h in 0..72 {
        let mut batch: Vec<Point> = (0..40)
            .map(|s| point(s, (h * 40 + s) as f64, t0 + h as i64 * HOUR + s as i64))
            .collect();
        if h % 10 == 9 {
            // late rewrites and new late points, before and after compaction
            batch.extend(
                (0..40)
                    .step_by(3)
                    .map(|s| point(s, -1.0, t0 + 3 * HOUR + s as i64)),
            );
            batch.extend(
                (0..40)
                    .step_by(7)
                    .map(|s| point(s, -2.0, t0 + 5 * HOUR + 17)),
            );
        }
        store.write(&batch).unwrap();
        if h == 40 {
            store.compact().unwrap();
        }
    }
    let q = |start: i64, end: i64| WindowQuery {
        measurement: "m".into(),
        field: "v".into(),
        by: vec![],
        filters: vec![],
        start_ns: start,
        end_ns: end,
    };
    let ids = store.mem.read().matching(&q(0, 1));
    assert_eq!(ids.len(), 40);
    let disk = store.disk.as_ref().unwrap();
    for (start, end) in [
        (t0 - DAY_NS, t0 + 4 * DAY_NS),
        (t0 + 3 * HOUR, t0 + 30 * HOUR + 5),
        (t0 + 5 * HOUR + 17, t0 + 5 * HOUR + 18),
        (t0 + 50 * HOUR, t0 + 71 * HOUR),
    ] {
        for some in [&ids[..], &ids[3..5]] {
            let seek = Store::read_disk_with(disk, some, start, end, 0).unwrap();
            let scan = Store::read_disk_with(disk, some, start, end, i64::MAX).unwrap();
            assert_eq!(seek, scan, "{start}..{end}, {} series", some.len());
            if start < t0 {
                assert!(seek.iter().all(|p| !p.is_empty()));
            }
            assert!(seek.iter().all(|p| p.windows(2).all(|w| w[0].0 < w[1].0)));
        }
    }
    // and memory answers the same as both
    let mem = store.settled();
    let all = Store::read_disk_with(disk, &ids, i64::MIN, i64::MAX, i64::MAX).unwrap();
    for (id, points) in ids.iter().zip(&all) {
        assert_eq!(&mem.series(*id).points[..], &points[..]);
    }
}

/// One write of `(host, ts, value)` samples of `m.v`, as points.
fn host_points(samples: &[(u8, i64, f64)]) -> Vec<crate::ingest::lineproto::Point> {
    use crate::ingest::lineproto::{FieldValue, Point};
    samples
        .iter()
        .map(|&(host, ts, value)| Point {
            measurement: "m".into(),
            tags: vec![("host".into(), format!("h{host}"))],
            fields: vec![("v".into(), FieldValue::Float(value))],
            time: ts,
        })
        .collect()
}

/// Every `m.v` sample from `start` on, by host, as the store answers it.
fn by_host(store: &Store, start: i64) -> std::collections::BTreeMap<String, Vec<(i64, f64)>> {
    let q = super::query::WindowQuery {
        measurement: "m".into(),
        field: "v".into(),
        by: vec!["host".into()],
        filters: Vec::new(),
        start_ns: start,
        end_ns: i64::MAX,
    };
    store
        .window(&q)
        .unwrap()
        .into_iter()
        .map(|g| (g.tags["host"].clone(), g.points))
        .collect()
}

/// The same from a model of every write (the last write of a host and time wins).
fn model_by_host(
    model: &std::collections::BTreeMap<(u8, i64), f64>,
    start: i64,
) -> std::collections::BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(i64, f64)>> = Default::default();
    for (&(host, ts), &v) in model.range((0, start)..) {
        if ts >= start {
            out.entry(format!("h{host}")).or_default().push((ts, v));
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

proptest::proptest! {
    /// Writes far out of order (late samples held aside and merged in runs) read back, at any
    /// moment, as the sorted, last-write-wins map of everything written.
    #[test]
    fn late_writes_read_back_in_order(
        writes in proptest::collection::vec(
            (proptest::collection::vec((0u8..3, 0i64..400, -1e3f64..1e3), 1..20), 0u8..4),
            1..60,
        ),
    ) {
        let store = Store::scratch();
        let mut model = std::collections::BTreeMap::new();
        for (batch, read) in &writes {
            store.write(&host_points(batch)).unwrap();
            for &(host, ts, v) in batch {
                model.insert((host, ts), v);
            }
            if *read == 0 {
                proptest::prop_assert_eq!(by_host(&store, 0), model_by_host(&model, 0));
                proptest::prop_assert_eq!(store.sample_count(), model.len());
            }
        }
        proptest::prop_assert_eq!(by_host(&store, 0), model_by_host(&model, 0));
        proptest::prop_assert_eq!(store.sample_count(), model.len());
    }
}

#[test]
fn late_writes_survive_eviction_and_reads_from_disk() {
    // a small memory window, so eviction runs while late samples are held
    let dir = tempfile::tempdir().unwrap();
    let opts = super::StoreOptions {
        memory_window_ns: 2_000,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for step in 0..120i64 {
        // two writers on timelines drifting apart: one on time, one up to 150 behind
        let batch: Vec<(u8, i64, f64)> = (0..3u8)
            .flat_map(|host| {
                let on_time = step * 40 + host as i64;
                let behind = on_time - 10 - next(150) as i64;
                let further = behind - 1 - next(100) as i64;
                [
                    (host, on_time, step as f64),
                    (host, behind.max(0), -step as f64),
                    (host, further.max(0), 0.5 * step as f64),
                ]
            })
            .collect();
        store.write(&host_points(&batch)).unwrap();
        for &(host, ts, v) in &batch {
            model.insert((host, ts), v);
        }
        // reads now and then (they merge what is held); in between, eviction (every few
        // steps) merges what is held before it drops samples
        if step % 45 == 44 {
            let floor = store.memory_floor().max(0);
            assert_eq!(
                by_host(&store, floor),
                model_by_host(&model, floor),
                "step {step}"
            );
        }
    }
    assert!(store.memory_floor() > 0, "the window moved");
    // memory from its floor, and the disk for everything
    let floor = store.memory_floor();
    assert_eq!(by_host(&store, floor), model_by_host(&model, floor));
    assert_eq!(by_host(&store, 0), model_by_host(&model, 0));
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(by_host(&store, 0), model_by_host(&model, 0));
}

#[test]
fn a_full_late_run_is_merged_by_the_write_that_fills_it() {
    // one series written newest first: every write after the first is late
    let store = Store::scratch();
    let newest = 1_000;
    let mut model = std::collections::BTreeMap::new();
    let full = super::late::RUN_LEN as i64;
    for k in 0..=full {
        let ts = newest - k;
        store.write(&host_points(&[(0, ts, k as f64)])).unwrap();
        model.insert((0u8, ts), k as f64);
        // held until the run is full (nothing reads in between), then merged by that write
        let held = k > 0 && k < full;
        assert_eq!(store.mem.read().unsettled(), held, "after {} late", k);
    }
    store
        .write(&host_points(&[(0, newest - full - 1, -1.0)]))
        .unwrap();
    model.insert((0, newest - full - 1), -1.0);
    assert!(store.mem.read().unsettled(), "a new run starts");
    assert_eq!(by_host(&store, 0), model_by_host(&model, 0));
    assert_eq!(store.sample_count(), model.len());
}
