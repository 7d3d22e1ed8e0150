//! Write-behind for the temporary events database of `tocsin replay` and `tocsin test`: a
//! check's commit returns at once with its new events and is written to SQLite by a thread
//! of its own while the next check runs. Every read first waits until each commit handed over
//! before it is written, so a reader (a composite reading issues, a script reading events)
//! sees exactly what a synchronous store would show it.
//!
//! Which events are new is decided without SQLite: monitor event ids hash their date, so two
//! events with one id have one date, and the ids of the latest date committed are all that
//! must be remembered. A commit dated before that (or spanning several dates) is written
//! synchronously instead, where the `events` table decides.

use super::sql::{Lite as LiteSql, SqlError};
use super::{Commit, EventDbError};
use crate::model::event::Event;
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use std::collections::HashSet;
use std::sync::{mpsc, Arc};

/// Writes one commit in an open transaction, returning its new events.
pub(super) type WriteFn = fn(&mut dyn super::Sql, &Commit) -> Result<Vec<Event>, EventDbError>;

/// Commits the writer takes in one transaction at most.
const MAX_GROUP: usize = 256;

/// The writer thread and what it has done.
pub(super) struct Behind {
    /// `None` only while dropping
    sender: Option<mpsc::Sender<Commit>>,
    progress: Arc<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
    recent: Mutex<Recent>,
    /// how commits are written (also by the caller, for those given back by `submit`)
    pub(super) write: WriteFn,
}

#[derive(Default)]
struct Progress {
    counts: Mutex<Counts>,
    cond: Condvar,
}

#[derive(Default)]
struct Counts {
    sent: u64,
    written: u64,
    /// the first failed write; every later commit and read reports it
    failed: Option<String>,
}

/// Invariants: every event stored or on its way has a date at most `date`, and `ids` holds
/// the ids of all of them dated `date`.
struct Recent {
    date: i64,
    ids: HashSet<String>,
}

impl Recent {
    /// Records the events of a commit written synchronously.
    fn note(&mut self, events: &[Event]) {
        let Some(max) = events.iter().map(Event::date).max() else {
            return;
        };
        if max > self.date {
            self.date = max;
            self.ids.clear();
        }
        for ev in events.iter().filter(|e| e.date() == self.date) {
            self.ids.insert(ev.id().to_string());
        }
    }
}

impl Behind {
    /// Starts the writer on `conn` (shared with the readers, who lock it in turn).
    pub(super) fn start(conn: Arc<Mutex<Connection>>, write: WriteFn) -> Behind {
        let (sender, rx) = mpsc::channel::<Commit>();
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let thread = std::thread::Builder::new()
            .name("tocsin-events".into())
            .spawn(move || writer(&rx, &conn, &p, write))
            .expect("the events writer thread starts");
        Behind {
            sender: Some(sender),
            progress,
            thread: Some(thread),
            recent: Mutex::new(Recent {
                date: i64::MIN,
                ids: HashSet::new(),
            }),
            write,
        }
    }

    /// Hands `c` to the writer and returns its new events, or gives `c` back when its events
    /// are dated before the latest ones (or on several dates): the caller writes it
    /// synchronously, after [`Behind::settle`], and then calls [`Behind::written`].
    pub(super) fn submit(&self, c: Commit) -> Result<Result<Vec<Event>, Commit>, EventDbError> {
        let mut recent = self.recent.lock();
        let date = match c.events.first().map(Event::date) {
            Some(d) if d >= recent.date && c.events.iter().all(|e| e.date() == d) => d,
            Some(_) => return Ok(Err(c)),
            None => recent.date,
        };
        if date > recent.date {
            recent.date = date;
            recent.ids.clear();
        }
        let fresh: Vec<Event> = c
            .events
            .iter()
            .filter(|e| recent.ids.insert(e.id().to_string()))
            .cloned()
            .collect();
        let mut counts = self.progress.counts.lock();
        if let Some(message) = &counts.failed {
            return Err(EventDbError::Group {
                message: message.clone(),
            });
        }
        // The writer ends only when this is dropped, unless it panicked.
        let sent = self.sender.as_ref().is_some_and(|s| s.send(c).is_ok());
        if !sent {
            let message = "the events writer stopped".to_string();
            counts.failed = Some(message.clone());
            return Err(EventDbError::Group { message });
        }
        counts.sent += 1;
        Ok(Ok(fresh))
    }

    /// Records a commit the caller wrote synchronously (see [`Behind::submit`]).
    pub(super) fn written(&self, events: &[Event]) {
        self.recent.lock().note(events);
    }

    /// Waits until every commit handed over is written; fails when one of them failed.
    pub(super) fn settle(&self) -> Result<(), SqlError> {
        let mut counts = self.progress.counts.lock();
        while counts.written < counts.sent && counts.failed.is_none() {
            self.progress.cond.wait(&mut counts);
        }
        match &counts.failed {
            Some(message) => Err(SqlError::Other(format!(
                "a deferred write of the events database failed: {message}"
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has written what was sent.
        self.sender.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(
    rx: &mpsc::Receiver<Commit>,
    conn: &Mutex<Connection>,
    progress: &Progress,
    write: WriteFn,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter().take(MAX_GROUP - 1));
        let result = {
            let mut conn = conn.lock();
            (|| {
                let tx = conn.transaction().map_err(SqlError::from)?;
                for c in &group {
                    write(&mut LiteSql(&tx), c)?;
                }
                tx.commit().map_err(SqlError::from)?;
                Ok::<_, EventDbError>(())
            })()
        };
        let mut counts = progress.counts.lock();
        counts.written += group.len() as u64;
        if let Err(e) = result {
            tracing::error!("events database: {e}");
            counts.failed.get_or_insert(e.to_string());
        }
        progress.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;
    use crate::model::event::Event;
    use std::collections::HashSet;

    fn ev(id: &str, date: i64) -> Event {
        let mut e = Event::new();
        e.set_id(id);
        e.set_time(date);
        e
    }

    #[test]
    fn recent_keeps_the_ids_of_the_latest_date_only() {
        let mut r = Recent {
            date: i64::MIN,
            ids: HashSet::new(),
        };
        r.note(&[ev("a", 5), ev("b", 7)]);
        assert_eq!(r.date, 7);
        assert!(r.ids.contains("b") && !r.ids.contains("a"));
        r.note(&[ev("c", 6)]);
        assert_eq!((r.date, r.ids.len()), (7, 1));
        r.note(&[ev("d", 7)]);
        assert_eq!(r.ids.len(), 2);
    }
}
