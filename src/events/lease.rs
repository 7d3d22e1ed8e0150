//! Leases on a shared (PostgreSQL) backend: which replica evaluates which monitor, and which
//! replica talks to which `alertmanager_api` target.
//!
//! A lease is a row `(name, owner, since, expires)`; times come from the database's clock, so
//! replicas on machines with skewed clocks still agree. Every [`RENEW_EVERY`] each replica, in
//! one transaction, records its heartbeat and loaded monitors, renews the leases it holds,
//! gives up those of names it no longer has, and takes free ones (absent, or expired: their
//! owner died): at first only up to its fair share of the live replicas, and any free lease
//! once it has been free for [`GRACE_MS`], so a name only one replica knows still gets an owner.
//! A replica that dies stops renewing; its leases expire after [`TTL_MS`] and another takes
//! them over within `TTL_MS + GRACE_MS + RENEW_EVERY` (under 30 s).
//!
//! [`Leases`] is the replica's own view after the latest pass, which the scheduler and the
//! delivery worker ask. When the database is unreachable the view stays as it was: the
//! replica keeps trying its own monitors (whose commits then fail visibly) and no one else's.

use super::sql::{Sql, SqlError};
use super::EventDb;
use crate::args;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How long a lease lasts without renewal.
pub const TTL_MS: i64 = 10_000;

/// How long a free lease waits for a replica under its fair share before any replica takes it.
pub const GRACE_MS: i64 = 10_000;

/// How often a replica renews its leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Replicas silent longer than this are dropped from the table.
const FORGET_REPLICA_MS: i64 = 3_600_000;

/// One lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// the replica holding it
    pub owner: String,
    /// held by this owner since (Unix ms, the database's clock)
    pub since: i64,
    /// valid until (Unix ms)
    pub expires: i64,
}

/// Another replica, as this one last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
    /// its name
    pub id: String,
    /// its listen address
    pub listen: String,
    /// started (Unix ms)
    pub started: i64,
    /// last heartbeat (Unix ms)
    pub heartbeat: i64,
    /// its monitors: id → definition fingerprint
    pub monitors: BTreeMap<String, String>,
}

/// This replica's view of the leases (see the module notes).
#[derive(Debug)]
pub struct Leases {
    /// this replica's name
    pub me: String,
    /// this replica's listen address
    pub listen: String,
    started: i64,
    view: RwLock<View>,
}

#[derive(Debug, Default, Clone)]
struct View {
    /// every lease by name
    leases: HashMap<String, Lease>,
    /// live replicas, this one included
    replicas: Vec<Replica>,
    /// database time of the latest pass (Unix ms), if one succeeded
    at: Option<i64>,
    /// why the latest pass failed
    error: Option<String>,
}

/// What one pass changed for this replica.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// names this replica took
    pub gained: Vec<String>,
    /// names this replica no longer holds
    pub lost: Vec<String>,
}

/// The lease name of a monitor.
pub fn monitor_lease(id: &str) -> String {
    format!("monitor:{id}")
}

/// The lease name of an `alertmanager_api` target.
pub fn alertmanager_lease(key: &str) -> String {
    format!("alertmanager:{key}")
}

fn db_now(c: &mut dyn Sql) -> Result<i64, SqlError> {
    c.int(
        "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        &[],
    )
}

impl Leases {
    /// A view for replica `me` listening on `listen`, holding nothing yet.
    pub fn new(me: String, listen: String) -> Leases {
        Leases {
            me,
            listen,
            started: chrono::Utc::now().timestamp_millis(),
            view: RwLock::new(View::default()),
        }
    }

    /// Whether this replica holds lease `name` (as of the latest pass).
    pub fn holds(&self, name: &str) -> bool {
        self.view
            .read()
            .leases
            .get(name)
            .is_some_and(|l| l.owner == self.me)
    }

    /// The lease `name`, if anyone holds one.
    pub fn lease(&self, name: &str) -> Option<Lease> {
        self.view.read().leases.get(name).cloned()
    }

    /// Live replicas (this one included) as of the latest pass.
    pub fn replicas(&self) -> Vec<Replica> {
        self.view.read().replicas.clone()
    }

    /// When the latest successful pass ran (Unix ms, the database's clock).
    pub fn renewed_at(&self) -> Option<i64> {
        self.view.read().at
    }

    /// Why the latest pass failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.view.read().error.clone()
    }

    /// One pass (see the module notes): `monitors` are this replica's loaded monitors (id →
    /// fingerprint), `others` further names it wants (alertmanager targets).
    pub fn pass(
        &self,
        db: &EventDb,
        monitors: &BTreeMap<String, String>,
        others: &[String],
    ) -> Result<Changes, String> {
        let mut names: Vec<String> = monitors.keys().map(|m| monitor_lease(m)).collect();
        names.extend(others.iter().cloned());
        let res = db.with_tx(|c| self.pass_tx(c, monitors, &names));
        let mut view = self.view.write();
        match res {
            Ok(next) => {
                let held = |v: &View| -> Vec<String> {
                    let mut h: Vec<String> = v
                        .leases
                        .iter()
                        .filter(|(_, l)| l.owner == self.me)
                        .map(|(n, _)| n.clone())
                        .collect();
                    h.sort();
                    h
                };
                let (before, after) = (held(&view), held(&next));
                *view = next;
                Ok(Changes {
                    gained: after
                        .iter()
                        .filter(|n| !before.contains(n))
                        .cloned()
                        .collect(),
                    lost: before
                        .iter()
                        .filter(|n| !after.contains(n))
                        .cloned()
                        .collect(),
                })
            }
            Err(e) => {
                let e = e.to_string();
                view.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn pass_tx(
        &self,
        c: &mut dyn Sql,
        monitors: &BTreeMap<String, String>,
        names: &[String],
    ) -> Result<View, SqlError> {
        let now = db_now(c)?;
        let listed = serde_json::to_string(monitors).expect("a map serialises");
        c.exec(
            "INSERT INTO replicas(id, started, heartbeat, monitors, listen) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(id) DO UPDATE SET started = excluded.started, heartbeat = excluded.heartbeat, \
             monitors = excluded.monitors, listen = excluded.listen",
            args![&self.me, self.started, now, listed, &self.listen],
        )?;
        c.exec(
            "DELETE FROM replicas WHERE heartbeat < ?1",
            args![now - FORGET_REPLICA_MS],
        )?;
        let replicas: Vec<Replica> = c
            .rows(
                "SELECT id, listen, started, heartbeat, monitors FROM replicas WHERE heartbeat >= ?1 ORDER BY id",
                args![now - TTL_MS],
            )?
            .iter()
            .map(|r| {
                Ok(Replica {
                    id: r.text(0)?,
                    listen: r.text(1)?,
                    started: r.int(2)?,
                    heartbeat: r.int(3)?,
                    monitors: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
                })
            })
            .collect::<Result<_, SqlError>>()?;
        // Renew what this replica still wants; give back what it no longer has.
        let mine: Vec<String> = c
            .rows("SELECT name FROM leases WHERE owner = ?1", args![&self.me])?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_, _>>()?;
        for n in &mine {
            if names.contains(n) {
                c.exec(
                    "UPDATE leases SET expires = ?3 WHERE name = ?1 AND owner = ?2",
                    args![n, &self.me, now + TTL_MS],
                )?;
            } else {
                c.exec(
                    "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
                    args![n, &self.me],
                )?;
            }
        }
        let mut held = mine.iter().filter(|n| names.contains(n)).count();
        let live = replicas.len().max(1);
        let share = names.len().div_ceil(live);
        let current: HashMap<String, (String, i64)> = c
            .rows("SELECT name, owner, expires FROM leases", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, (r.text(1)?, r.int(2)?))))
            .collect::<Result<_, SqlError>>()?;
        let up_long = now - self.started > GRACE_MS;
        for n in names {
            let free_since = match current.get(n) {
                Some((owner, _)) if owner == &self.me => continue,
                Some((_, expires)) if *expires >= now => continue,
                Some((_, expires)) => Some(*expires),
                None => None,
            };
            let long_free = match free_since {
                Some(e) => now - e > GRACE_MS,
                None => up_long,
            };
            if held >= share && !long_free {
                continue;
            }
            // Taken only if still free: a replica racing for it in its own pass loses.
            let taken = c.exec(
                "INSERT INTO leases(name, owner, since, expires) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, since = excluded.since, \
                 expires = excluded.expires WHERE leases.expires < ?3",
                args![n, &self.me, now, now + TTL_MS],
            )?;
            if taken == 1 {
                held += 1;
            }
        }
        let leases = c
            .rows("SELECT name, owner, since, expires FROM leases", &[])?
            .iter()
            .map(|r| {
                Ok((
                    r.text(0)?,
                    Lease {
                        owner: r.text(1)?,
                        since: r.int(2)?,
                        expires: r.int(3)?,
                    },
                ))
            })
            .collect::<Result<_, SqlError>>()?;
        Ok(View {
            leases,
            replicas,
            at: Some(now),
            error: None,
        })
    }

    /// Gives up every lease of this replica and leaves the replica table (a clean stop), so
    /// the others take over at once.
    pub fn release(&self, db: &EventDb) {
        let res = db.with_tx(|c| {
            c.exec("DELETE FROM leases WHERE owner = ?1", args![&self.me])?;
            c.exec("DELETE FROM replicas WHERE id = ?1", args![&self.me])
        });
        if let Err(e) = res {
            tracing::warn!("leases not released: {e}");
        }
        self.view.write().leases.retain(|_, l| l.owner != self.me);
    }
}

/// The monitors on which another live replica's files differ from `mine`: `(replica, what)`.
pub fn differences(mine: &BTreeMap<String, String>, me: &str, replicas: &[Replica]) -> Vec<String> {
    let mut out = Vec::new();
    for r in replicas.iter().filter(|r| r.id != me) {
        let mut diff = Vec::new();
        for (id, fp) in mine {
            match r.monitors.get(id) {
                None => diff.push(format!("{id} only here")),
                Some(f) if f != fp => diff.push(format!("{id} defined differently")),
                _ => {}
            }
        }
        for id in r.monitors.keys().filter(|id| !mine.contains_key(*id)) {
            diff.push(format!("{id} only there"));
        }
        if !diff.is_empty() {
            out.push(format!(
                "replica {} ({}): {}",
                r.id,
                r.listen,
                diff.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn differing_monitor_files_are_named() {
        let mine = set(&[("cpu", "f1"), ("mem", "f2")]);
        let other = Replica {
            id: "b".into(),
            listen: "127.0.0.1:2".into(),
            started: 0,
            heartbeat: 0,
            monitors: set(&[("cpu", "f1"), ("mem", "changed"), ("disk", "f3")]),
        };
        let same = Replica {
            id: "c".into(),
            monitors: mine.clone(),
            ..other.clone()
        };
        assert_eq!(
            differences(&mine, "a", &[other, same]),
            vec!["replica b (127.0.0.1:2): mem defined differently, disk only there"]
        );
    }

    /// Two replicas share the monitors; when one stops renewing, the other takes its leases
    /// once they expire (here with the clock moved on by rewriting the expiry).
    #[test]
    fn leases_are_shared_and_taken_over_after_expiry() {
        let Some(pg) = crate::events::pg_test_server::server() else {
            return;
        };
        let db = EventDb::connect(&pg.fresh_db()).unwrap();
        let monitors = set(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]);
        let r1 = Leases::new("r1".into(), "x:1".into());
        let r2 = Leases::new("r2".into(), "x:2".into());
        // r1 alone: it takes everything (nobody else is live).
        let ch = r1.pass(&db, &monitors, &[]).unwrap();
        assert_eq!(ch.gained.len(), 4);
        // r2 arrives: nothing is free, so it holds nothing; r1 keeps renewing.
        assert!(r2.pass(&db, &monitors, &[]).unwrap().gained.is_empty());
        assert!(r1.pass(&db, &monitors, &[]).unwrap().gained.is_empty());
        assert!(r1.holds("monitor:a") && !r2.holds("monitor:a"));
        assert_eq!(r2.lease("monitor:a").unwrap().owner, "r1");
        assert_eq!(r2.replicas().len(), 2);
        // r1 dies: its leases expire (and its heartbeat ages), r2 takes them.
        db.with_conn(|c| {
            c.exec(
                "UPDATE leases SET expires = expires - ?1",
                args![TTL_MS + GRACE_MS + 1000],
            )?;
            c.exec(
                "UPDATE replicas SET heartbeat = heartbeat - ?1 WHERE id = 'r1'",
                args![TTL_MS + 1000],
            )
        })
        .unwrap();
        let ch = r2.pass(&db, &monitors, &[]).unwrap();
        assert_eq!(ch.gained.len(), 4, "{ch:?}");
        assert!(r2.holds("monitor:d"));
        // r1 comes back: it learns it lost them.
        let ch = r1.pass(&db, &monitors, &[]).unwrap();
        assert_eq!(ch.lost.len(), 4);
        assert!(!r1.holds("monitor:a"));
        // A clean stop hands over at once.
        r2.release(&db);
        let ch = r1.pass(&db, &monitors, &[]).unwrap();
        assert_eq!(ch.gained.len(), 4);
    }
}
