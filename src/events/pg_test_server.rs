//! A throwaway PostgreSQL server for tests (shared by the library's tests and the
//! integration tests, which include this file by path): `initdb` into a temporary directory,
//! `pg_ctl start` on a free loopback port with its socket in that directory and trust
//! authentication, one server per test binary and a fresh database per caller.
//!
//! When the binaries are absent (Debian's `postgresql` package installs them under
//! `/usr/lib/postgresql/<version>/bin`), [`server`] answers `None` and the caller says
//! "skipping". As root, the server runs as the `postgres` user (initdb refuses root). A small
//! watchdog stops the server and removes its directory once the test process is gone, since
//! statics are never dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running test server.
pub struct TestPg {
    bin: PathBuf,
    /// the data directory (also holds the socket)
    pub dir: PathBuf,
    /// the loopback port
    pub port: u16,
    /// (uid, gid) the server runs as, when the tests run as root
    user: Option<(u32, u32)>,
    next_db: AtomicUsize,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`, or
/// `TOCSIN_PG_BIN`.
pub fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TOCSIN_PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The uid and gid of `postgres` when running as root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: a valid C string; the result is read at once, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root and there is no postgres user to run the server as".into());
    }
    // SAFETY: non-null pointer from getpwnam.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

impl TestPg {
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c
    }

    fn start(bin: PathBuf) -> Result<TestPg, String> {
        let user = server_user()?;
        let dir =
            std::env::temp_dir().join(format!("tocsin-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let pg = TestPg {
            bin,
            dir: dir.clone(),
            port: free_port(),
            user,
            next_db: AtomicUsize::new(0),
        };
        let out = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        pg.watchdog();
        pg.pg_ctl_start()?;
        Ok(pg)
    }

    /// Stops the server and removes its directory once this process has exited.
    fn watchdog(&self) {
        let script = format!(
            // SIGQUIT is PostgreSQL's immediate shutdown (pg_ctl itself refuses to run as root).
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT $(head -n 1 \"{data}/postmaster.pid\") 2>/dev/null; sleep 1; rm -rf \"{dir}\"",
            pid = std::process::id(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        // Detached: its own session, so a test harness killing our process group keeps it.
        let mut c = Command::new("sh");
        c.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                c.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
        }
        let _ = c.spawn();
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-w", "-t", "60", "-l"])
            .arg(self.dir.join("server.log"))
            .arg("start")
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Stops the server at once (as a crash would).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts a stopped server again, on the same port.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database; its URL.
    pub fn fresh_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::SeqCst)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let res = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
                .and_then(|mut c| c.batch_execute(&format!("CREATE DATABASE {name}")));
            match res {
                Ok(()) => return self.url(&name),
                Err(e) if Instant::now() > deadline => panic!("cannot create database: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// The server of this test binary, started on first use; `None` (with the reason printed)
/// when PostgreSQL is not installed or cannot start here.
pub fn server() -> Option<&'static TestPg> {
    static SERVER: OnceLock<Option<TestPg>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = find_bin() else {
                eprintln!("skipping: PostgreSQL not found under /usr/lib/postgresql/*/bin (install Debian's postgresql)");
                return None;
            };
            match TestPg::start(bin) {
                Ok(pg) => Some(pg),
                Err(e) => {
                    eprintln!("skipping: the test PostgreSQL did not start: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// The data directory's path, for tests that look at the server's log.
pub fn log_of(pg: &TestPg) -> PathBuf {
    Path::new(&pg.dir).join("server.log")
}
