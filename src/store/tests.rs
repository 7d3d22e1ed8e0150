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

#[test]
fn tagset_keys_are_injective() {
    let mut a = String::new();
    let mut b = String::new();
    tagset_key(&mut a, "m", &[("a".into(), "b:c".into())]);
    tagset_key(
        &mut b,
        "m",
        &[("a".into(), "b".into()), ("c".into(), "".into())],
    );
    assert_ne!(a, b);
}
