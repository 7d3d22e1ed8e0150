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
