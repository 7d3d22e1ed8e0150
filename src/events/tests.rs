//! The event store's behaviour, on SQLite and (when it is installed) on a throwaway
//! PostgreSQL: every test below that is not about one backend's files runs on both.

use super::*;
use crate::events::pg_test_server;
use rusqlite::{params, Connection};

/// A fresh store of each backend: SQLite in memory, and a new database on the test server.
pub(crate) fn backends() -> Vec<(&'static str, EventDb)> {
    let mut v = vec![("sqlite", EventDb::scratch())];
    match pg_test_server::server() {
        Some(pg) => v.push(("postgres", EventDb::connect(&pg.fresh_db()).unwrap())),
        None => eprintln!("skipping the PostgreSQL half of this test"),
    }
    v
}

/// Runs `f` on a fresh store of each backend.
pub(crate) fn on_both(f: fn(&EventDb)) {
    for (name, db) in backends() {
        eprintln!("backend: {name}");
        f(&db);
    }
}

fn ev(id: &str, r: &str, status: &str, date: i64, title: &str) -> Event {
    let mut e = Event::new();
    e.set(field::EVENT_ID, id);
    e.set("date", date);
    e.set(field::STATUS, status);
    e.set(field::SOURCE, "monitor");
    e.set(field::MONITOR_CHECKER_ID, "m1");
    e.set(field::MONITOR_CHECKER_EVENT_REF, r);
    e.set(field::TITLE, title);
    e.set(field::ISSUE_START_TIME, 100);
    e.set(field::FAULT_ID, "event-first");
    e
}

fn commit(db: &EventDb, events: Vec<Event>) -> usize {
    db.commit(Commit {
        events,
        ..Default::default()
    })
    .unwrap()
    .len()
}

/// Commits from many threads at once are grouped into shared transactions, yet each caller
/// gets back exactly its own new events, and everything is stored once.
#[test]
fn concurrent_commits_are_grouped_and_answered_each_their_own() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_commits_on(EventDb::open(dir.path()).unwrap());
    if let Some(pg) = pg_test_server::server() {
        concurrent_commits_on(EventDb::connect(&pg.fresh_db()).unwrap());
    }
}

fn concurrent_commits_on(db: EventDb) {
    let db = std::sync::Arc::new(db);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = format!("e-{t}-{i}");
                    let c = Commit {
                        events: vec![ev(&id, &format!("r{t}"), "info", 100 + i, "x")],
                        kv: vec![(format!("k{t}"), i.to_string())],
                        ..Default::default()
                    };
                    let fresh = db.commit(c.clone()).unwrap();
                    assert_eq!(fresh.len(), 1);
                    assert_eq!(fresh[0].id(), id);
                    // the same commit again stores nothing
                    assert!(db.commit(c).unwrap().is_empty());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n: i64 = db
        .with_conn(|c| c.int("SELECT count(*) FROM events", &[]))
        .unwrap();
    assert_eq!(n, 200);
    for t in 0..8 {
        assert_eq!(db.get_kv(&format!("k{t}")).unwrap().as_deref(), Some("24"));
    }
}

#[test]
fn issue_table_follows_faults_and_recoveries() {
    on_both(issue_table_follows_faults_and_recoveries_on);
}

fn issue_table_follows_faults_and_recoveries_on(db: &EventDb) {
    assert_eq!(
        commit(db, vec![ev("event-first", "r1", "warning", 100, "w")]),
        1
    );
    assert_eq!(
        commit(
            db,
            vec![
                ev("e2", "r1", "critical", 160, "c"),
                ev("e3", "r2", "info", 160, "i")
            ]
        ),
        2
    );
    let issues = db.issues(None, 200).unwrap();
    assert_eq!(issues.len(), 1, "info opens no issue");
    let i = &issues[0];
    assert_eq!(
        (
            i.status.as_str(),
            i.issue_start,
            i.duration,
            i.last_event_id.as_str()
        ),
        ("critical", 100, 100, "e2")
    );
    assert_eq!(i.fault_id, "event-first");
    assert_eq!(db.issue("r1", 200).unwrap().unwrap().title, "c");
    // a duplicate id changes nothing, not even the issue row
    assert_eq!(
        commit(db, vec![ev("e2", "r1", "critical", 160, "changed")]),
        0
    );
    assert_eq!(db.issue("r1", 200).unwrap().unwrap().title, "c");
    commit(db, vec![ev("e4", "r1", "ok", 220, "ok")]);
    assert!(db.issues(None, 300).unwrap().is_empty());
}

#[test]
fn queries_stats_text_and_retention() {
    on_both(queries_stats_text_and_retention_on);
}

fn queries_stats_text_and_retention_on(db: &EventDb) {
    commit(
        db,
        vec![
            ev("a", "r", "critical", 10, "disk 100% full"),
            ev("b", "r", "critical", 20, "disk 50_ full"),
            ev("c", "r", "ok", 30, "back"),
        ],
    );
    let q = |text: &str| EventQuery {
        text: Some(text.into()),
        ..Default::default()
    };
    assert_eq!(db.events(&q("100%")).unwrap().len(), 1, "% is literal");
    assert_eq!(db.events(&q("50_")).unwrap().len(), 1, "_ is literal");
    let newest = db.events(&EventQuery::default()).unwrap();
    assert_eq!(
        newest.iter().map(|e| e.id()).collect::<Vec<_>>(),
        vec!["c", "b", "a"]
    );
    let page = db
        .events(&EventQuery {
            limit: Some(1),
            offset: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page[0].id(), "b");
    let ranged = db
        .events(&EventQuery {
            from: Some(15),
            to: Some(25),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ranged.len(), 1);
    let stats = db.stats("status", &EventQuery::default()).unwrap();
    assert_eq!(stats.get("critical"), Some(&2));
    assert_eq!(stats.get("ok"), Some(&1));
    assert!(db.stats("nonsense", &EventQuery::default()).is_err());
    assert_eq!(db.drop_events_before(25).unwrap(), 2);
    assert_eq!(db.event_count().unwrap(), 1);
}

#[test]
fn issue_finds_its_row_among_many() {
    on_both(issue_finds_its_row_among_many_on);
}

fn issue_finds_its_row_among_many_on(db: &EventDb) {
    let events = (0..2000)
        .map(|i| {
            let mut e = ev(&format!("e{i}"), &format!("r{i}"), "critical", 100 + i, "t");
            e.set("df_title", format!("title {i}"));
            e.set("df_issue_start_time", 100 + i);
            e
        })
        .collect();
    assert_eq!(commit(db, events), 2000);
    let i = db.issue("r1234", 5000).unwrap().unwrap();
    assert_eq!(
        (
            i.event_ref.as_str(),
            i.title.as_str(),
            i.issue_start,
            i.duration
        ),
        ("r1234", "title 1234", 1334, 5000 - 1334)
    );
    assert_eq!(i.last_event_id, "e1234");
    assert!(db.issue("r2000", 5000).unwrap().is_none());
    assert!(db.issue("", 5000).unwrap().is_none());
    let round = i.round().unwrap();
    assert_eq!(
        (round.start, round.fault_id.as_str(), round.last_fault),
        (1334, "event-first", Status::Critical)
    );
}

#[test]
fn an_old_database_opens_and_its_states_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let old_state = r#"{"fault_streak":1,"clean_streak":0,"round":{"start":100,"fault_id":"event-x","last_fault":"critical","last_status":"critical","last_event_id":"event-y","last_date":160},"in_gap":false,"nodata_open":false,"last_seen":150}"#;
    {
        // The version-0 layout, as an older tocsin left it.
        let conn = Connection::open(dir.path().join("tocsin.db")).unwrap();
        conn.execute_batch(schema::TABLES).unwrap();
        conn.execute(
            "INSERT INTO object_state(monitor, ref, tags, state) VALUES ('m', 'r', '{}', ?1)",
            params![old_state],
        )
        .unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 0);
    }
    let db = EventDb::open(dir.path()).unwrap();
    let states = db.load_states("m").unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        states[0].state.round,
        Some(Round {
            start: 100,
            fault_id: "event-x".into(),
            last_fault: Status::Critical,
        })
    );
    assert_eq!(states[0].state.fault_streak, 1);
    assert_eq!(states[0].state.last_seen, Some(150));
    let (version, stored) = db
        .with_conn(|c| {
            let v = c.int("PRAGMA user_version", &[])?;
            let s = c
                .row("SELECT state FROM object_state", &[])?
                .unwrap()
                .text(0)?;
            Ok((v, s))
        })
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert!(!stored.contains("last_status"), "rewritten: {stored}");
    assert!(!stored.contains("last_event_id") && !stored.contains("last_date"));
    drop(db);
    // Opening again is a no-op, and a newer database is refused.
    assert_eq!(
        EventDb::open(dir.path()).unwrap().load_states("m").unwrap(),
        states
    );
    {
        let conn = Connection::open(dir.path().join("tocsin.db")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = EventDb::open(dir.path())
        .err()
        .expect("newer schema refused");
    assert!(err.to_string().contains("schema version"), "{err}");
}

#[test]
fn state_round_trips_and_is_deleted() {
    on_both(state_round_trips_and_is_deleted_on);
}

fn state_round_trips_and_is_deleted_on(db: &EventDb) {
    let mut tags = Tags::new();
    tags.insert("host".into(), "a".into());
    let o = StoredObject {
        event_ref: "r".into(),
        tags,
        state: ObjectState {
            fault_streak: 2,
            ..Default::default()
        },
    };
    db.commit(Commit {
        upserts: vec![("m".into(), o.clone())],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(db.load_states("m").unwrap(), vec![o]);
    db.commit(Commit {
        deletes: vec![("m".into(), "r".into())],
        ..Default::default()
    })
    .unwrap();
    assert!(db.load_states("m").unwrap().is_empty());
}

/// PostgreSQL keeps its version in `tocsin_schema`: a second start is a no-op, a newer
/// version is refused.
#[test]
fn postgres_schema_is_versioned_and_a_newer_one_refused() {
    let Some(pg) = pg_test_server::server() else {
        return;
    };
    let url = pg.fresh_db();
    let db = EventDb::connect(&url).unwrap();
    commit(&db, vec![ev("e1", "r1", "critical", 100, "t")]);
    let version = db
        .with_conn(|c| c.int("SELECT version FROM tocsin_schema", &[]))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    drop(db);
    let again = EventDb::connect(&url).unwrap();
    assert_eq!(
        again.event_count().unwrap(),
        1,
        "a second start keeps the data"
    );
    again
        .with_conn(|c| {
            c.exec(
                "UPDATE tocsin_schema SET version = ?1",
                crate::args![SCHEMA_VERSION + 1],
            )
        })
        .unwrap();
    let err = EventDb::connect(&url).err().expect("newer schema refused");
    assert!(err.to_string().contains("schema version 2"), "{err}");
}

/// A fenced commit applies only at the version it read; a stale one stores nothing.
#[test]
fn fenced_commits_refuse_a_stale_version() {
    let Some(pg) = pg_test_server::server() else {
        return;
    };
    let db = EventDb::connect(&pg.fresh_db()).unwrap();
    assert_eq!(db.state_version("m1").unwrap(), 0);
    let fenced = |id: &str, v: i64| Commit {
        events: vec![ev(id, "r1", "critical", 100, "t")],
        fence: Some(("m1".into(), v)),
        ..Default::default()
    };
    assert_eq!(db.commit(fenced("e1", 0)).unwrap().len(), 1);
    assert_eq!(db.state_version("m1").unwrap(), 1);
    let err = db.commit(fenced("e2", 0)).unwrap_err();
    assert!(
        matches!(
            err,
            EventDbError::Conflict {
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(db.event("e2").unwrap().is_none(), "nothing of it stored");
    assert_eq!(db.commit(fenced("e2", 1)).unwrap().len(), 1);
}

/// Events filtered in SQL match the live predicate on both backends.
#[test]
fn filters_agree_with_the_predicate_on_both_backends() {
    on_both(super::filter::tests::sql_and_predicate_agree_on);
}

/// The replay store writes commits behind, yet answers as a synchronous store does: a
/// duplicate id is not new, reads see every commit made before them, and a commit dated
/// before the latest (written synchronously) is deduplicated by the table.
#[test]
fn written_behind_commits_answer_as_synchronous_ones() {
    let db = EventDb::scratch_events();
    /// a commit's events as (id, ref, status, date), and how many of them are new
    type Step = (
        &'static [(&'static str, &'static str, &'static str, i64)],
        usize,
    );
    let steps: [Step; 7] = [
        (&[("e1", "r1", "critical", 60), ("e2", "r2", "ok", 60)], 2),
        (&[("e1", "r1", "critical", 60)], 0),
        (&[("e3", "r1", "critical", 120)], 1),
        // older than the latest date: the events table decides
        (&[("e2", "r2", "ok", 60)], 0),
        (&[("e4", "r2", "warning", 90)], 1),
        // several dates in one commit: also synchronous
        (&[("e3", "r1", "critical", 120), ("e5", "r3", "ok", 180)], 1),
        (&[("e5", "r3", "ok", 180)], 0),
    ];
    for (k, (events, new)) in steps.iter().enumerate() {
        let events = events
            .iter()
            .map(|(id, r, status, date)| ev(id, r, status, *date, id))
            .collect();
        assert_eq!(commit(&db, events), *new, "step {k}");
    }
    let all = db.events(&EventQuery::default()).unwrap();
    let mut ids: Vec<&str> = all.iter().map(|e| e.id()).collect();
    ids.sort();
    assert_eq!(ids, ["e1", "e2", "e3", "e4", "e5"]);
    // the issue table follows the last fault of each object
    let open: Vec<String> = db
        .issues(None, 1_000)
        .unwrap()
        .into_iter()
        .map(|i| i.event_ref)
        .collect();
    assert!(open.contains(&"r1".to_string()), "{open:?}");
}
