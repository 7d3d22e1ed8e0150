//! Metric store: persistence, memory vs SQLite answers, filters, grouping, retention.

use std::path::Path;
use std::sync::Arc;

use tocsin::ingest::lineproto::{FieldValue, Point};
use tocsin::store::query::{Agg, Filter, Group, Tags, WindowQuery};
use tocsin::store::{Store, StoreError, StoreOptions};

const S: i64 = 1_000_000_000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2023-11-14T00:00:00Z
const T0: i64 = 19_675 * DAY;

fn point(
    measurement: &str,
    tags: &[(&str, &str)],
    fields: &[(&str, FieldValue)],
    time: i64,
) -> Point {
    let mut tags: Vec<(String, String)> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tags.sort();
    Point {
        measurement: measurement.to_string(),
        tags,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        time,
    }
}

fn cpu(host: &str, cpu: &str, usage: f64, time: i64) -> Point {
    point(
        "cpu",
        &[("host", host), ("cpu", cpu)],
        &[("usage", FieldValue::Float(usage))],
        time,
    )
}

fn query(
    measurement: &str,
    field: &str,
    by: &[&str],
    filters: &[(&str, &str)],
    start: i64,
    end: i64,
) -> WindowQuery {
    WindowQuery {
        measurement: measurement.to_string(),
        field: field.to_string(),
        by: by.iter().map(|s| s.to_string()).collect(),
        filters: filters
            .iter()
            .map(|(t, v)| Filter::parse(t, v).unwrap())
            .collect(),
        start_ns: start,
        end_ns: end,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn opts(window: i64) -> StoreOptions {
    StoreOptions {
        memory_window_ns: window,
        ..Default::default()
    }
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Six hours of cpu and mem data, 10 s apart, for 4 hosts with a varying tag shape, written in
/// batches with some out-of-order points, late rewrites and in-batch duplicates.
fn workload() -> Vec<Vec<Point>> {
    let hosts = ["web01", "web02", "db01", "db02"];
    let mut rng = Lcg(7);
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    for step in 0..(6 * 360) {
        let t = T0 + step * 10 * S;
        for (i, host) in hosts.iter().enumerate() {
            let v = (rng.next() % 10_000) as f64 / 100.0;
            batch.push(cpu(host, "cpu-total", v, t));
            if i % 2 == 0 {
                batch.push(cpu(host, "cpu0", v / 2.0, t));
            }
            // db02 has no `env` tag
            let mut tg = vec![("host", *host)];
            if *host != "db02" {
                tg.push(("env", if i < 2 { "prod" } else { "staging" }));
            }
            batch.push(point(
                "mem",
                &tg,
                &[
                    ("used", FieldValue::Int((rng.next() % 1000) as i64)),
                    ("state", FieldValue::Str("ok".into())),
                    ("swapping", FieldValue::Bool(step % 7 == 0)),
                ],
                t,
            ));
        }
        if step % 97 == 0 && step > 30 {
            // a late rewrite of an older point, and a duplicate within the batch
            batch.push(cpu("web01", "cpu-total", -1.0, t - 30 * 10 * S));
            batch.push(cpu("web02", "cpu-total", 1.0, t));
            batch.push(cpu("web02", "cpu-total", 2.0, t));
        }
        if batch.len() >= 500 {
            batches.push(std::mem::take(&mut batch));
        }
    }
    batches.push(batch);
    batches
}

fn write_all(store: &Store, batches: &[Vec<Point>]) {
    for b in batches {
        store.write(b).unwrap();
    }
}

/// A spread of windows, groupings and filters over the workload.
fn queries() -> Vec<WindowQuery> {
    let mut qs = Vec::new();
    let spans = [
        (T0 - HOUR, T0 + 7 * HOUR),
        (T0, T0 + 10 * MIN),
        (T0 + 2 * HOUR + 5 * S, T0 + 3 * HOUR),
        (T0 + 5 * HOUR, T0 + 6 * HOUR),
        (T0 + 5 * HOUR + 55 * MIN, T0 + 6 * HOUR + MIN),
        (T0 + 3 * HOUR, T0 + 3 * HOUR + 10 * S),
    ];
    for (start, end) in spans {
        qs.push(query("cpu", "usage", &["host"], &[], start, end));
        qs.push(query(
            "cpu",
            "usage",
            &[],
            &[("cpu", "cpu-total")],
            start,
            end,
        ));
        qs.push(query(
            "cpu",
            "usage",
            &["host", "cpu"],
            &[("host", "~^web")],
            start,
            end,
        ));
        qs.push(query("mem", "used", &["env"], &[], start, end));
        qs.push(query("mem", "swapping", &["host", "env"], &[], start, end));
        qs.push(query("mem", "state", &["host"], &[], start, end));
        qs.push(query("nope", "usage", &["host"], &[], start, end));
    }
    qs
}

fn answers(store: &Store, persisted: bool) -> Vec<Vec<Group>> {
    queries()
        .iter()
        .map(|q| {
            if persisted {
                store.window_persisted(q).unwrap()
            } else {
                store.window(q).unwrap()
            }
        })
        .collect()
}

#[test]
fn write_window_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(dir.path().join("metrics.db").exists());
    let n = store
        .write(&[
            cpu("web01", "cpu-total", 10.0, T0),
            cpu("web01", "cpu-total", 20.0, T0 + MIN),
            cpu("web02", "cpu-total", 50.0, T0 + 30 * S),
            point(
                "cpu",
                &[("host", "web01")],
                &[
                    ("usage", FieldValue::Float(1.0)),
                    ("note", FieldValue::Str("x".into())),
                    ("up", FieldValue::Bool(true)),
                    ("n", FieldValue::UInt(7)),
                ],
                T0 + 2 * MIN,
            ),
        ])
        .unwrap();
    assert_eq!(n, 6, "string fields are not samples");
    assert_eq!(store.series_count(), 5);
    assert_eq!(store.sample_count(), 6);

    let q = query("cpu", "usage", &["host"], &[], T0, T0 + 2 * MIN);
    let want = vec![
        Group {
            tags: tags(&[("host", "web01")]),
            points: vec![(T0, 10.0), (T0 + MIN, 20.0)],
        },
        Group {
            tags: tags(&[("host", "web02")]),
            points: vec![(T0 + 30 * S, 50.0)],
        },
    ];
    assert_eq!(store.window(&q).unwrap(), want);
    assert_eq!(store.window_persisted(&q).unwrap(), want);
    assert_eq!(
        store.window_agg(&q, Agg::Avg).unwrap(),
        vec![
            (tags(&[("host", "web01")]), 15.0),
            (tags(&[("host", "web02")]), 50.0)
        ]
    );
    // rate needs two points: web02 has no value and is left out
    assert_eq!(
        store.window_agg(&q, Agg::Rate).unwrap(),
        vec![(tags(&[("host", "web01")]), 10.0 / 60.0)]
    );
    // end is exclusive, start inclusive
    let q2 = query("cpu", "usage", &[], &[], T0 + MIN, T0 + 2 * MIN + 1);
    assert_eq!(
        store.window(&q2).unwrap()[0].points,
        vec![(T0 + MIN, 20.0), (T0 + 2 * MIN, 1.0)]
    );
    let up = query("cpu", "up", &[], &[], T0, T0 + HOUR);
    assert_eq!(
        store.window(&up).unwrap()[0].points,
        vec![(T0 + 2 * MIN, 1.0)]
    );
    assert!(store
        .window(&query("cpu", "note", &[], &[], T0, T0 + HOUR))
        .unwrap()
        .is_empty());

    let before: Vec<_> = [&q, &q2, &up]
        .iter()
        .map(|q| store.window(q).unwrap())
        .collect();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.series_count(), 5);
    assert_eq!(store.sample_count(), 6);
    let after: Vec<_> = [&q, &q2, &up]
        .iter()
        .map(|q| store.window(q).unwrap())
        .collect();
    assert_eq!(before, after);
    // series ids survive: new points extend the same series
    store
        .write(&[cpu("web02", "cpu-total", 60.0, T0 + 90 * S)])
        .unwrap();
    assert_eq!(store.series_count(), 5);
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        store.window(&q).unwrap()[1].points,
        vec![(T0 + 30 * S, 50.0), (T0 + 90 * S, 60.0)]
    );
}

#[test]
fn memory_and_sqlite_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    let batches = workload();
    // memory keeps ~1h: most queries above start before the floor and go to SQLite
    let store = Store::open(dir.path(), opts(HOUR)).unwrap();
    write_all(&store, &batches);
    let scratch = Store::scratch();
    write_all(&scratch, &batches);
    assert_eq!(scratch.memory_floor(), i64::MIN);

    let floor = store.memory_floor();
    assert!(
        floor > T0 + 4 * HOUR && floor <= T0 + 5 * HOUR,
        "floor {floor}"
    );
    assert!(store.sample_count() < scratch.sample_count());
    assert_eq!(store.series_count(), scratch.series_count());

    let reference = answers(&scratch, false);
    assert!(reference.iter().filter(|a| !a.is_empty()).count() > 20);
    assert_eq!(answers(&store, false), reference, "auto path vs scratch");
    assert_eq!(answers(&store, true), reference, "sqlite path vs scratch");
    // queries inside memory are answered from memory and agree with SQLite
    let recent = query("cpu", "usage", &["host"], &[], floor, T0 + 6 * HOUR);
    assert_eq!(
        store.window(&recent).unwrap(),
        store.window_persisted(&recent).unwrap()
    );
    assert!(!store.window(&recent).unwrap().is_empty());

    drop(store);
    let store = Store::open(dir.path(), opts(HOUR)).unwrap();
    assert_eq!(answers(&store, false), reference, "after reopen");
    assert_eq!(answers(&store, true), reference, "sqlite after reopen");

    // compacted blocks answer the same as the log
    assert!(store.compact().unwrap() > 0);
    assert_eq!(store.compact().unwrap(), 0);
    assert_eq!(answers(&store, true), reference, "sqlite after compaction");
    // rewrites after compaction (in the log) win over the compacted blocks
    let rewrites: Vec<Point> = (0..50)
        .map(|i| cpu("web01", "cpu-total", 1000.0 + i as f64, T0 + i * 7 * MIN))
        .collect();
    store.write(&rewrites).unwrap();
    scratch.write(&rewrites).unwrap();
    let reference = answers(&scratch, false);
    assert_eq!(answers(&store, false), reference, "rewrites");
    assert_eq!(answers(&store, true), reference, "rewrites, sqlite");
    drop(store);
    let store = Store::open(dir.path(), opts(HOUR)).unwrap();
    assert_eq!(answers(&store, false), reference, "rewrites after reopen");
    store.compact().unwrap();
    assert_eq!(answers(&store, true), reference, "rewrites compacted");
    // a larger memory window loads more and still agrees
    drop(store);
    let store = Store::open(dir.path(), opts(24 * HOUR)).unwrap();
    assert_eq!(store.sample_count(), scratch.sample_count());
    assert_eq!(answers(&store, false), reference);
}

#[test]
fn late_points_below_the_floor_are_kept_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(10 * MIN)).unwrap();
    for i in 0..120 {
        store
            .write(&[cpu("a", "c", i as f64, T0 + i * MIN)])
            .unwrap();
    }
    let floor = store.memory_floor();
    assert!(floor > T0 + HOUR, "floor {floor}");
    // a late point far below the floor: stored, not kept in memory, found by old windows
    let samples = store.sample_count();
    store.write(&[cpu("a", "c", 999.0, T0 + 30 * S)]).unwrap();
    assert_eq!(store.sample_count(), samples);
    let q = query("cpu", "usage", &[], &[], T0, T0 + MIN);
    assert_eq!(
        store.window(&q).unwrap()[0].points,
        vec![(T0, 0.0), (T0 + 30 * S, 999.0)]
    );
    // a window straddling the floor reads SQLite and sees both sides
    let q = query("cpu", "usage", &[], &[], floor - MIN, floor + MIN);
    let got = store.window(&q).unwrap();
    assert_eq!(got[0].points.len(), 2);
    assert_eq!(got, store.window_persisted(&q).unwrap());
}

#[test]
fn filters_exact_and_regex() {
    let store = Store::scratch();
    store
        .write(&[
            cpu("web01", "cpu-total", 1.0, T0),
            cpu("web02", "cpu-total", 2.0, T0),
            cpu("web02", "cpu0", 3.0, T0),
            cpu("db01", "cpu-total", 4.0, T0),
            point(
                "cpu",
                &[("cpu", "cpu-total")],
                &[("usage", FieldValue::Float(5.0))],
                T0,
            ),
        ])
        .unwrap();
    let run = |filters: &[(&str, &str)]| -> Vec<(Tags, f64)> {
        let q = query("cpu", "usage", &["host", "cpu"], filters, T0, T0 + 1);
        store.window_agg(&q, Agg::Sum).unwrap()
    };
    let hc = |h: &str, c: &str, v: f64| (tags(&[("host", h), ("cpu", c)]), v);
    assert_eq!(
        run(&[("host", "web02")]),
        vec![hc("web02", "cpu-total", 2.0), hc("web02", "cpu0", 3.0)]
    );
    assert_eq!(
        run(&[("host", "web02"), ("cpu", "cpu0")]),
        vec![hc("web02", "cpu0", 3.0)]
    );
    assert_eq!(
        run(&[("host", "~^web")]),
        vec![
            hc("web01", "cpu-total", 1.0),
            hc("web02", "cpu-total", 2.0),
            hc("web02", "cpu0", 3.0),
        ]
    );
    assert_eq!(
        run(&[("host", "~01$"), ("cpu", "~total")]),
        vec![hc("db01", "cpu-total", 4.0), hc("web01", "cpu-total", 1.0),]
    );
    // a series without the tag never matches, even a match-all regex
    assert_eq!(run(&[("host", "~.*")]).len(), 4);
    assert_eq!(run(&[("host", "web")]), vec![]);
    assert_eq!(run(&[("dc", "~.*")]), vec![]);
    assert_eq!(run(&[]).len(), 5);
}

#[test]
fn grouping_by_tags_with_missing_tags() {
    let store = Store::scratch();
    store
        .write(&[
            point(
                "disk",
                &[("host", "a"), ("dev", "sda")],
                &[("used", FieldValue::Float(1.0))],
                T0 + 2,
            ),
            point(
                "disk",
                &[("host", "a"), ("dev", "sdb")],
                &[("used", FieldValue::Float(2.0))],
                T0 + 1,
            ),
            point(
                "disk",
                &[("host", "b"), ("dev", "sda")],
                &[("used", FieldValue::Float(3.0))],
                T0,
            ),
            point(
                "disk",
                &[("dev", "sda")],
                &[("used", FieldValue::Float(4.0))],
                T0,
            ),
            point("disk", &[], &[("used", FieldValue::Float(5.0))], T0 + 1),
            point(
                "disk",
                &[("host", "a"), ("dev", "sdc")],
                &[("used", FieldValue::Float(0.5))],
                T0 + 2,
            ),
        ])
        .unwrap();
    let q = query("disk", "used", &["host"], &[], T0, T0 + S);
    let got = store.window(&q).unwrap();
    assert_eq!(
        got,
        vec![
            // no host tag: one group without the key, its series merged by time
            Group {
                tags: Tags::new(),
                points: vec![(T0, 4.0), (T0 + 1, 5.0)],
            },
            // several series merged; equal times ordered by value
            Group {
                tags: tags(&[("host", "a")]),
                points: vec![(T0 + 1, 2.0), (T0 + 2, 0.5), (T0 + 2, 1.0)],
            },
            Group {
                tags: tags(&[("host", "b")]),
                points: vec![(T0, 3.0)],
            },
        ]
    );
    // no `by`: everything in one group
    let all = store
        .window(&query("disk", "used", &[], &[], T0, T0 + S))
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tags, Tags::new());
    assert_eq!(all[0].points.len(), 6);
    // by a tag nobody has: one group without keys
    let none = store
        .window(&query("disk", "used", &["zone"], &[], T0, T0 + S))
        .unwrap();
    assert_eq!(none.len(), 1);
    // two by-tags, partially missing
    let two = store
        .window(&query("disk", "used", &["dev", "host"], &[], T0, T0 + S))
        .unwrap();
    let keys: Vec<Tags> = two.iter().map(|g| g.tags.clone()).collect();
    assert_eq!(
        keys,
        vec![
            Tags::new(),
            tags(&[("dev", "sda")]),
            tags(&[("dev", "sda"), ("host", "a")]),
            tags(&[("dev", "sda"), ("host", "b")]),
            tags(&[("dev", "sdb"), ("host", "a")]),
            tags(&[("dev", "sdc"), ("host", "a")]),
        ]
    );
    // raw series: one group per series with all tags
    let series = store
        .window_series(&query("disk", "used", &["host"], &[], T0, T0 + S))
        .unwrap();
    assert_eq!(series.len(), 6);
    assert_eq!(series[0].tags, Tags::new());
    assert_eq!(series[1].tags, tags(&[("dev", "sda")]));
    // empty and inverted windows
    assert!(store
        .window(&query("disk", "used", &[], &[], T0 + S, T0 + 2 * S))
        .unwrap()
        .is_empty());
    assert!(store
        .window(&query("disk", "used", &[], &[], T0 + S, T0))
        .unwrap()
        .is_empty());
}

fn chunk_tables(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("metrics.db")).unwrap();
    let mut st = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND (name LIKE 'samples%' OR name LIKE 'log%') ORDER BY name",
        )
        .unwrap();
    let names = st.query_map([], |r| r.get(0)).unwrap();
    names.collect::<Result<_, _>>().unwrap()
}

fn day_tables(days: &[i64]) -> Vec<String> {
    let mut v: Vec<String> = days
        .iter()
        .flat_map(|d| [format!("log_{d}"), format!("samples_{d}")])
        .collect();
    v.sort();
    v
}

#[test]
fn drop_before_removes_old_chunks_only() {
    let dir = tempfile::tempdir().unwrap();
    let day0 = T0 / DAY;
    for scratch in [false, true] {
        let store = if scratch {
            Store::scratch()
        } else {
            Store::open(dir.path(), opts(10 * DAY)).unwrap()
        };
        for d in 0..4 {
            store
                .write(&[
                    cpu("a", "c", d as f64, T0 + d * DAY),
                    cpu("a", "c", d as f64 + 0.5, T0 + d * DAY + 23 * HOUR),
                ])
                .unwrap();
        }
        let all = query("cpu", "usage", &[], &[], T0 - DAY, T0 + 5 * DAY);
        assert_eq!(store.window(&all).unwrap()[0].points.len(), 8);
        if !scratch {
            let want = day_tables(&[day0, day0 + 1, day0 + 2, day0 + 3]);
            assert_eq!(chunk_tables(dir.path()), want);
        }
        // cutoff in the middle of day 2: days 0 and 1 go, day 2 stays whole
        assert_eq!(store.drop_before(T0 + 2 * DAY + 12 * HOUR).unwrap(), 2);
        let left = vec![
            (T0 + 2 * DAY, 2.0),
            (T0 + 2 * DAY + 23 * HOUR, 2.5),
            (T0 + 3 * DAY, 3.0),
            (T0 + 3 * DAY + 23 * HOUR, 3.5),
        ];
        assert_eq!(store.window(&all).unwrap()[0].points, left);
        assert_eq!(store.sample_count(), 4);
        assert_eq!(store.drop_before(T0 + 2 * DAY + 12 * HOUR).unwrap(), 0);
        if scratch {
            continue;
        }
        assert_eq!(store.window_persisted(&all).unwrap()[0].points, left);
        assert_eq!(chunk_tables(dir.path()), day_tables(&[day0 + 2, day0 + 3]));
        // writing into a dropped day again recreates its chunk
        store.write(&[cpu("a", "c", 9.0, T0 + 10)]).unwrap();
        drop(store);
        let store = Store::open(dir.path(), opts(10 * DAY)).unwrap();
        let mut want = vec![(T0 + 10, 9.0)];
        want.extend(left.iter().copied());
        assert_eq!(store.window(&all).unwrap()[0].points, want);
        assert_eq!(store.window_persisted(&all).unwrap()[0].points, want);
        assert_eq!(store.drop_before(T0 + 3 * DAY).unwrap(), 2);
        assert_eq!(chunk_tables(dir.path()), day_tables(&[day0 + 3]));
    }
}

#[test]
fn replacing_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let q = query("cpu", "usage", &[], &[], T0, T0 + HOUR);
    for scratch in [false, true] {
        let store = if scratch {
            Store::scratch()
        } else {
            Store::open(dir.path(), StoreOptions::default()).unwrap()
        };
        store
            .write(&[cpu("a", "c", 1.0, T0), cpu("a", "c", 2.0, T0 + S)])
            .unwrap();
        // separate write replaces
        store.write(&[cpu("a", "c", 10.0, T0)]).unwrap();
        // within one batch, the last wins
        store
            .write(&[cpu("a", "c", 20.0, T0 + S), cpu("a", "c", 21.0, T0 + S)])
            .unwrap();
        // across grouped batches, the later batch wins
        let b1 = [cpu("a", "c", 30.0, T0 + 2 * S)];
        let b2 = [cpu("a", "c", 31.0, T0 + 2 * S)];
        assert_eq!(store.write_batches(&[&b1, &b2]).unwrap(), 2);
        let want = vec![(T0, 10.0), (T0 + S, 21.0), (T0 + 2 * S, 31.0)];
        assert_eq!(store.window(&q).unwrap()[0].points, want);
        assert_eq!(store.window_persisted(&q).unwrap()[0].points, want);
        assert_eq!(store.sample_count(), 3);
        if !scratch {
            drop(store);
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            assert_eq!(store.window(&q).unwrap()[0].points, want);
            assert_eq!(store.window_persisted(&q).unwrap()[0].points, want);
            assert_eq!(store.sample_count(), 3);
        }
    }
}

#[test]
fn scratch_store_behaves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let batches = workload();
    let file = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let scratch = Store::scratch();
    let mut total = (0, 0);
    for b in &batches {
        total.0 += file.write(b).unwrap();
        total.1 += scratch.write(b).unwrap();
    }
    assert_eq!(total.0, total.1);
    assert_eq!(file.series_count(), scratch.series_count());
    assert_eq!(answers(&file, false), answers(&scratch, false));
    for agg in tocsin::store::query::AGG_NAMES {
        let agg: Agg = agg.parse().unwrap();
        for q in queries() {
            assert_eq!(
                file.window_agg(&q, agg).unwrap(),
                scratch.window_agg(&q, agg).unwrap()
            );
        }
    }
}

#[test]
fn unsorted_and_duplicate_tags_are_normalized() {
    let store = Store::scratch();
    let mut p = cpu("a", "c", 1.0, T0);
    p.tags = vec![
        ("z".into(), "1".into()),
        ("host".into(), "x".into()),
        ("z".into(), "2".into()),
    ];
    store
        .write(&[
            p,
            point(
                "cpu",
                &[("host", "x"), ("z", "2")],
                &[("usage", FieldValue::Float(2.0))],
                T0 + 1,
            ),
        ])
        .unwrap();
    assert_eq!(store.series_count(), 1);
    let g = store
        .window_series(&query("cpu", "usage", &[], &[], T0, T0 + S))
        .unwrap();
    assert_eq!(g[0].tags, tags(&[("host", "x"), ("z", "2")]));
    assert_eq!(g[0].points.len(), 2);
}

#[test]
fn concurrent_writers_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let host = format!("h{w}");
                let mut n = 0;
                for i in 0..50 {
                    let batch: Vec<Point> = (0..20)
                        .map(|j| cpu(&host, "c", j as f64, T0 + (i * 20 + j) * S))
                        .collect();
                    n += store.write(&batch).unwrap();
                }
                n
            })
        })
        .collect();
    let written: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(written, 4 * 50 * 20);
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let q = query("cpu", "usage", &["host"], &[], T0, T0 + DAY);
    let groups = store.window_persisted(&q).unwrap();
    assert_eq!(groups.len(), 4);
    assert!(groups.iter().all(|g| g.points.len() == 1000));
    assert_eq!(store.window(&q).unwrap(), groups);
}

/// The writer remembers the series of each point shape (tags and field names) it has seen:
/// a field that was a string in that shape and is a number now still gets its series, and a
/// shape seen again after a reopen maps to the same series.
#[test]
fn a_known_shape_with_a_field_turned_numeric_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let p = |status: FieldValue, t: i64| {
        point(
            "svc",
            &[("host", "a")],
            &[("up", FieldValue::Int(1)), ("status", status)],
            t,
        )
    };
    // twice, so the second write goes through the remembered shape
    for t in [T0, T0 + S] {
        store.write(&[p(FieldValue::Str("ok".into()), t)]).unwrap();
    }
    store
        .write(&[p(FieldValue::Float(2.0), T0 + 2 * S)])
        .unwrap();
    store
        .write(&[p(FieldValue::Float(3.0), T0 + 3 * S)])
        .unwrap();
    let status = query("svc", "status", &[], &[], T0, T0 + DAY);
    let up = query("svc", "up", &[], &[], T0, T0 + DAY);
    let expect_status = vec![(T0 + 2 * S, 2.0), (T0 + 3 * S, 3.0)];
    assert_eq!(store.window(&status).unwrap()[0].points, expect_status);
    assert_eq!(store.window(&up).unwrap()[0].points.len(), 4);
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store
        .write(&[p(FieldValue::Float(4.0), T0 + 4 * S)])
        .unwrap();
    assert_eq!(store.series_count(), 2);
    let groups = store.window_persisted(&status).unwrap();
    assert_eq!(groups[0].points.len(), 3);
    assert_eq!(store.window(&up).unwrap()[0].points.len(), 5);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    match Store::open(dir.path(), StoreOptions::default()) {
        Err(e @ StoreError::Locked { .. }) => {
            assert!(e.to_string().contains("in use by another process"), "{e}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second open succeeded"),
    }
    drop(store);
    Store::open(dir.path(), StoreOptions::default()).unwrap();
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file, StoreOptions::default()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("not-a-dir"), "{msg}");
    // a database from a newer version is refused
    let sub = dir.path().join("newer");
    drop(Store::open(&sub, StoreOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(sub.join("metrics.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let msg = Store::open(&sub, StoreOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("schema version 99") && msg.contains("metrics.db"),
        "{msg}"
    );
}

#[test]
fn closed_days_are_compacted_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for i in 0..10 {
        store
            .write(&[cpu("a", "c", i as f64, T0 + i * HOUR)])
            .unwrap();
    }
    let rows = |table: String| -> i64 {
        let conn = rusqlite::Connection::open(dir.path().join("metrics.db")).unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let day = T0 / DAY;
    assert_eq!(rows(format!("log_{day}")), 10);
    assert_eq!(rows(format!("samples_{day}")), 0);
    // one hour past the end of the day, the day's log becomes one block per series
    store
        .write(&[cpu("a", "c", 99.0, T0 + DAY + HOUR)])
        .unwrap();
    // (in the background: the write does not wait for it)
    store.wait_for_compaction();
    assert_eq!(rows(format!("log_{day}")), 0);
    assert_eq!(rows(format!("samples_{day}")), 1);
    assert_eq!(rows(format!("log_{}", day + 1)), 1);
    let q = query("cpu", "usage", &[], &[], T0, T0 + 2 * DAY);
    let got = store.window_persisted(&q).unwrap();
    assert_eq!(got[0].points.len(), 11);
    assert_eq!(got, store.window(&q).unwrap());
}

#[test]
fn acknowledged_writes_are_in_the_files_without_a_clean_close() {
    // What kill -9 leaves: the database and WAL files as they are while the store is open.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for i in 0..20 {
        store.write(&[cpu("a", "c", i as f64, T0 + i * S)]).unwrap();
    }
    let crashed = tempfile::tempdir().unwrap();
    for name in ["metrics.db", "metrics.db-wal"] {
        std::fs::copy(dir.path().join(name), crashed.path().join(name)).unwrap();
    }
    let reopened = Store::open(crashed.path(), StoreOptions::default()).unwrap();
    let q = query("cpu", "usage", &[], &[], T0, T0 + HOUR);
    assert_eq!(reopened.window(&q).unwrap()[0].points.len(), 20);
    assert_eq!(reopened.window(&q).unwrap(), store.window(&q).unwrap());
}

#[test]
fn retention_removes_the_series_it_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let all = |field: &str| query("cpu", field, &[], &[], T0 - DAY, T0 + 10 * DAY);
    let hosts = |store: &Store, field: &str| -> Vec<(String, usize)> {
        store
            .window_series(&all(field))
            .unwrap()
            .into_iter()
            .map(|g| (g.tags["host"].clone(), g.points.len()))
            .collect()
    };
    let usage_idle = |host: &str, usage: Option<f64>, idle: Option<f64>, time: i64| {
        let mut fields = Vec::new();
        if let Some(v) = usage {
            fields.push(("usage", FieldValue::Float(v)));
        }
        if let Some(v) = idle {
            fields.push(("idle", FieldValue::Float(v)));
        }
        point("cpu", &[("host", host)], &fields, time)
    };
    for scratch in [false, true] {
        let opts = StoreOptions {
            memory_window_ns: 10 * DAY,
            max_series: 5,
            ..Default::default()
        };
        let store = if scratch {
            Store::scratch()
        } else {
            Store::open(dir.path(), opts).unwrap()
        };
        store
            .write(&[
                // "old" ends on day 1, "live" on day 3
                usage_idle("old", Some(1.0), None, T0),
                usage_idle("old", Some(2.0), None, T0 + DAY),
                usage_idle("live", Some(3.0), None, T0),
                usage_idle("live", Some(4.0), None, T0 + 3 * DAY),
                // one tag set, two fields: usage ends on day 0, idle on day 3
                usage_idle("mix", Some(5.0), Some(6.0), T0),
                usage_idle("mix", None, Some(7.0), T0 + 3 * DAY),
            ])
            .unwrap();
        assert_eq!(store.series_count(), 4);
        assert_eq!(store.drop_before(T0 + 2 * DAY).unwrap(), 2);
        assert_eq!(store.series_count(), 2, "old.usage and mix.usage are empty");
        assert_eq!(hosts(&store, "usage"), vec![("live".into(), 1)]);
        assert_eq!(hosts(&store, "idle"), vec![("mix".into(), 1)]);
        // the freed room counts: three new series fit under the limit of 5, a fourth not
        store
            .write(&[
                usage_idle("old", Some(8.0), None, T0 + 4 * DAY + HOUR),
                usage_idle("n1", Some(9.0), Some(10.0), T0 + 4 * DAY + HOUR),
            ])
            .unwrap();
        assert_eq!(store.series_count(), 5);
        if !scratch {
            // (a scratch store has the default limit)
            let err = store
                .write(&[usage_idle("n2", Some(1.0), None, T0 + 4 * DAY)])
                .unwrap_err();
            assert!(matches!(err, StoreError::SeriesLimit { .. }), "{err}");
        }
        // a written-again series starts anew, and reused ids carry nothing of their past
        let want = vec![("live".into(), 1), ("n1".into(), 1), ("old".into(), 1)];
        assert_eq!(hosts(&store, "usage"), want);
        assert_eq!(
            hosts(&store, "idle"),
            vec![("mix".into(), 1), ("n1".into(), 1)]
        );
        let by_host = query("cpu", "usage", &["host"], &[], T0 - DAY, T0 + 10 * DAY);
        assert_eq!(
            store.window(&by_host).unwrap(),
            store.window_persisted(&by_host).unwrap()
        );
        if scratch {
            continue;
        }
        // a restart does not bring the removed series back
        drop(store);
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.series_count(), 5);
        assert_eq!(hosts(&store, "usage"), want);
        // after a restart the last day of each series is known again (day 3 compacted into
        // blocks, day 4 still in the log)
        assert_eq!(store.drop_before(T0 + 4 * DAY).unwrap(), 1);
        assert_eq!(store.series_count(), 3, "live.usage and mix.idle are empty");
        assert_eq!(
            hosts(&store, "usage"),
            vec![("n1".into(), 1), ("old".into(), 1)]
        );
        assert_eq!(hosts(&store, "idle"), vec![("n1".into(), 1)]);
        drop(store);
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.series_count(), 3);
        assert_eq!(
            store.window(&by_host).unwrap(),
            store.window_persisted(&by_host).unwrap()
        );
    }
}

#[test]
fn retention_while_writing_keeps_the_catalog_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), opts(10 * DAY)).unwrap());
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..150i64 {
                    // new series each batch, over 6 days, plus a steady one
                    let t = T0 + i * 58 * MIN;
                    let mut batch: Vec<Point> = (0..5)
                        .map(|j| cpu(&format!("w{w}-{i}"), &format!("c{j}"), j as f64, t))
                        .collect();
                    batch.push(cpu(&format!("steady{w}"), "c", i as f64, t));
                    store.write(&batch).unwrap();
                }
            })
        })
        .collect();
    for d in 1..6 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.drop_before(T0 + d * DAY).unwrap();
    }
    for w in writers {
        w.join().unwrap();
    }
    store.drop_before(T0 + 5 * DAY).unwrap();
    let all = query(
        "cpu",
        "usage",
        &["host", "cpu"],
        &[],
        T0 - DAY,
        T0 + 10 * DAY,
    );
    // every series left has a sample, and memory and SQLite agree
    let series = store.window_series(&all).unwrap();
    assert_eq!(series.len(), store.series_count());
    let answer = store.window(&all).unwrap();
    assert_eq!(answer, store.window_persisted(&all).unwrap());
    drop(store);
    let store = Store::open(dir.path(), opts(10 * DAY)).unwrap();
    assert_eq!(store.series_count(), series.len());
    assert_eq!(store.window(&all).unwrap(), answer);
    assert_eq!(store.window_persisted(&all).unwrap(), answer);
}

#[test]
fn a_store_of_schema_version_1_with_format_1_blocks_opens_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(HOUR)).unwrap();
    let values = [(T0, 1.5), (T0 + MIN, -2.0), (T0 + 3 * MIN, 1e300)];
    for (t, v) in values {
        store.write(&[cpu("a", "c", v, t)]).unwrap();
    }
    // past the end of the day and its grace hour: day 0 becomes one block
    store
        .write(&[cpu("a", "c", 9.0, T0 + DAY + 2 * HOUR)])
        .unwrap();
    let q = query("cpu", "usage", &[], &[], T0, T0 + 2 * DAY);
    let want = store.window_persisted(&q).unwrap();
    assert_eq!(want[0].points.len(), 4);
    drop(store);
    // what a version-1 store holds: the same block with plain varint time deltas
    let mut block = vec![1u8];
    let mut prev = T0;
    for (t, v) in values {
        let mut d = (t - prev) as u64;
        while d >= 0x80 {
            block.push((d as u8) | 0x80);
            d >>= 7;
        }
        block.push(d as u8);
        block.extend_from_slice(&f64::to_le_bytes(v));
        prev = t;
    }
    let conn = rusqlite::Connection::open(dir.path().join("metrics.db")).unwrap();
    let day = T0 / DAY;
    let changed = conn
        .execute(&format!("UPDATE samples_{day} SET data = ?1"), [&block])
        .unwrap();
    assert_eq!(changed, 1);
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let store = Store::open(dir.path(), opts(HOUR)).unwrap();
    assert_eq!(store.window_persisted(&q).unwrap(), want);
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("metrics.db")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}
