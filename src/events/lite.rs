//! The embedded backend: one SQLite connection (`<data>/tocsin.db`, WAL, `synchronous = FULL`)
//! behind a lock, with concurrent commits grouped into one transaction and one fsync.

use super::behind::{Behind, WriteFn};
use super::sql::{Lite as LiteSql, SqlError};
use super::{Commit, EventDbError};
use crate::model::event::Event;
use parking_lot::Mutex;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;

/// A commit waiting in [`Lite::commit`]'s group, and its outcome once written.
struct Job {
    commit: Commit,
    done: Mutex<Option<Result<Vec<Event>, String>>>,
}

/// The SQLite connection and the commits queued for it.
pub(super) struct Lite {
    conn: Arc<Mutex<Connection>>,
    /// commits waiting for the connection (see [`Lite::commit`])
    queue: Mutex<Vec<Arc<Job>>>,
    /// the writer of [`Lite::temporary`]'s commits, if they are written behind
    behind: Option<Behind>,
}

fn open_err(e: rusqlite::Error) -> EventDbError {
    EventDbError::Sql {
        what: "open",
        source: e.into(),
    }
}

impl Lite {
    /// Opens (creating) `<dir>/tocsin.db`.
    pub(super) fn open(dir: &Path) -> Result<Lite, EventDbError> {
        std::fs::create_dir_all(dir).map_err(|e| EventDbError::Corrupt {
            table: "directory",
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let conn = Connection::open(dir.join("tocsin.db")).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )
        .map_err(open_err)?;
        Ok(Lite::new(conn))
    }

    /// An in-memory database.
    pub(super) fn scratch() -> Lite {
        Lite::new(Connection::open_in_memory().expect("in-memory SQLite opens"))
    }

    /// SQLite's private temporary database (an empty file name) rather than `:memory:`: an
    /// in-memory database walks its whole page cache at every commit, so a long replay's
    /// commits got slower as its events piled up. Nothing here needs to survive the process,
    /// so writes are not synced.
    ///
    /// Commits without a hook are written behind ([`super::behind`]) with `write`.
    pub(super) fn temporary(write: WriteFn) -> Lite {
        let conn = Connection::open("").expect("a temporary SQLite database opens");
        conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            .expect("a temporary database takes its pragmas");
        let conn = Arc::new(Mutex::new(conn));
        Lite {
            behind: Some(Behind::start(conn.clone(), write)),
            conn,
            queue: Mutex::new(Vec::new()),
        }
    }

    fn new(conn: Connection) -> Lite {
        Lite {
            conn: Arc::new(Mutex::new(conn)),
            queue: Mutex::new(Vec::new()),
            behind: None,
        }
    }

    /// Waits for the commits written behind, if any (see [`super::behind`]).
    fn settle(&self) -> Result<(), SqlError> {
        self.behind.as_ref().map_or(Ok(()), Behind::settle)
    }

    /// Whether commits are written behind (see [`Lite::commit_behind`]).
    pub(super) fn writes_behind(&self) -> bool {
        self.behind.is_some()
    }

    /// Writes `c` behind when `c` allows it, else now; for a store that
    /// [writes behind](Lite::writes_behind) only.
    pub(super) fn commit_behind(&self, c: Commit) -> Result<Vec<Event>, EventDbError> {
        let behind = self.behind.as_ref().expect("a store that writes behind");
        match behind.submit(c)? {
            Ok(fresh) => Ok(fresh),
            Err(c) => {
                let fresh = self.commit(c, behind.write)?;
                behind.written(&fresh);
                Ok(fresh)
            }
        }
    }

    /// Runs `f` on the connection.
    pub(super) fn with_conn<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn super::Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        self.settle()?;
        let conn = self.conn.lock();
        f(&mut LiteSql(&conn))
    }

    /// Runs `f` in a transaction.
    pub(super) fn with_tx<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn super::Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        self.settle()?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(SqlError::from)?;
        let out = f(&mut LiteSql(&tx))?;
        tx.commit().map_err(SqlError::from)?;
        Ok(out)
    }

    /// Writes `c` with `write`, grouped with the commits other threads queue meanwhile.
    pub(super) fn commit(
        &self,
        c: Commit,
        write: impl Fn(&mut dyn super::Sql, &Commit) -> Result<Vec<Event>, EventDbError>,
    ) -> Result<Vec<Event>, EventDbError> {
        self.settle().map_err(|source| EventDbError::Sql {
            what: "commit",
            source,
        })?;
        let job = Arc::new(Job {
            commit: c,
            done: Mutex::new(None),
        });
        self.queue.lock().push(job.clone());
        let mut conn = self.conn.lock();
        if let Some(done) = job.done.lock().take() {
            // An earlier holder of the connection wrote it with its group.
            return done.map_err(|message| EventDbError::Group { message });
        }
        let jobs = std::mem::take(&mut *self.queue.lock());
        let result = (|| {
            let tx = conn.transaction().map_err(SqlError::from)?;
            let mut out = Vec::with_capacity(jobs.len());
            for j in &jobs {
                out.push(write(&mut LiteSql(&tx), &j.commit)?);
            }
            tx.commit().map_err(SqlError::from)?;
            Ok::<_, EventDbError>(out)
        })();
        // Results are handed out before the connection is released: a waiting caller checks
        // for its result as soon as it holds the connection.
        let mut mine = None;
        match result {
            Ok(all) => {
                for (j, fresh) in jobs.iter().zip(all) {
                    if Arc::ptr_eq(j, &job) {
                        mine = Some(Ok(fresh));
                    } else {
                        *j.done.lock() = Some(Ok(fresh));
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                for j in jobs.iter().filter(|j| !Arc::ptr_eq(j, &job)) {
                    *j.done.lock() = Some(Err(message.clone()));
                }
                mine = Some(Err(e));
            }
        }
        drop(conn);
        mine.expect("the caller's commit is in its own group")
    }
}
