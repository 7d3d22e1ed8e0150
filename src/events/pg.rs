//! The shared backend: a small pool of PostgreSQL connections (`[state] postgres = "..."`).
//!
//! Each call takes an idle connection (or opens one) and puts it back afterwards unless it
//! broke, so when the server goes away calls fail with its error, and once it is back the
//! next call connects again: nothing needs restarting. The event db is used from blocking
//! threads, so this is the synchronous `postgres` client; loopback or a trusted network needs
//! no TLS.

use super::sql::{Pg, PgConn, Sql, SqlError};
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;

/// A connection idle longer than this is checked before it is used again (a restarted server
/// has closed it).
const VALIDATE_AFTER: Duration = Duration::from_secs(5);

/// Runs `f`, which blocks on the synchronous client, so that it may be called from anywhere:
/// on a tokio worker thread the `postgres` crate's own runtime cannot start (it panics), so
/// there the worker is handed over for the call ([`tokio::task::block_in_place`]); blocking
/// threads and threads outside tokio call `f` as is.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A pool of connections to one server.
pub struct Pool {
    config: postgres::Config,
    /// the URL without its password, for messages
    shown: String,
    idle: Mutex<Vec<(PgConn, Instant)>>,
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((cred, host)) => match cred.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Pool {
    /// A pool for `url` (`postgresql://user[:password]@host[:port]/db[?...]`); connects once
    /// to check that the server answers.
    pub fn connect(url: &str) -> Result<Pool, super::EventDbError> {
        let mut config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| super::EventDbError::Sql {
                    what: "parse [state] postgres URL (expected postgresql://user@host:port/db)",
                    source: SqlError::Postgres(e),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A server that vanishes without closing the socket must not hang checks for ever.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(15));
        config.application_name("tocsin");
        let pool = Pool {
            config,
            shown: redact(url),
            idle: Mutex::new(Vec::new()),
        };
        off_runtime(|| {
            let conn = pool.get().map_err(|source| super::EventDbError::Sql {
                what: "connect",
                source,
            })?;
            pool.put(conn);
            Ok::<(), super::EventDbError>(())
        })?;
        Ok(pool)
    }

    /// The server's URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn get(&self) -> Result<PgConn, SqlError> {
        loop {
            let Some((mut c, since)) = self.idle.lock().pop() else {
                break;
            };
            if c.client.is_closed() {
                continue;
            }
            if since.elapsed() > VALIDATE_AFTER
                && c.client.is_valid(Duration::from_secs(2)).is_err()
            {
                continue;
            }
            return Ok(c);
        }
        let client = self.config.connect(postgres::NoTls)?;
        Ok(PgConn {
            client,
            statements: Default::default(),
        })
    }

    fn put(&self, c: PgConn) {
        if c.client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push((c, Instant::now()));
        }
    }

    /// Runs `f` on a connection (autocommit).
    pub fn with_conn<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        off_runtime(|| {
            let mut c = self.get()?;
            let out = f(&mut Pg {
                client: &mut c.client,
                statements: &mut c.statements,
            });
            self.put(c);
            out
        })
    }

    /// Runs `f` in a transaction, committed when it returns `Ok`.
    pub fn with_tx<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        off_runtime(|| {
            let mut c = self.get()?;
            let out = (|| {
                let mut tx = c.client.transaction().map_err(SqlError::from)?;
                let out = f(&mut Pg {
                    client: &mut tx,
                    statements: &mut c.statements,
                })?;
                tx.commit().map_err(SqlError::from)?;
                Ok(out)
            })();
            self.put(c);
            out
        })
    }

    /// Takes the session-level advisory lock `key`, held on its own connection until the
    /// returned guard drops (a replica that dies loses it with its connection).
    pub fn advisory_lock(&self, key: i64) -> Result<AdvisoryLock<'_>, SqlError> {
        let c = off_runtime(|| {
            let mut c = self.get()?;
            Pg {
                client: &mut c.client,
                statements: &mut c.statements,
            }
            .exec("SELECT pg_advisory_lock(?1)", crate::args![key])?;
            Ok::<_, SqlError>(c)
        })?;
        Ok(AdvisoryLock {
            pool: self,
            conn: Some(c),
            key,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing a connection blocks on the client's own runtime.
        off_runtime(|| self.idle.lock().clear());
    }
}

/// A held advisory lock (see [`Pool::advisory_lock`]).
pub struct AdvisoryLock<'a> {
    pool: &'a Pool,
    conn: Option<PgConn>,
    key: i64,
}

impl Drop for AdvisoryLock<'_> {
    fn drop(&mut self) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        off_runtime(|| {
            let unlocked = Pg {
                client: &mut c.client,
                statements: &mut c.statements,
            }
            .exec("SELECT pg_advisory_unlock(?1)", crate::args![self.key]);
            // A connection whose unlock failed is dropped: closing the session frees the lock.
            if unlocked.is_ok() {
                self.pool.put(c);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact("postgresql://tocsin:s3cret@db:5432/tocsin"),
            "postgresql://tocsin:***@db:5432/tocsin"
        );
        assert_eq!(
            super::redact("postgresql://tocsin@127.0.0.1/t"),
            "postgresql://tocsin@127.0.0.1/t"
        );
    }
}
