//! The `tocsin serve` process harness shared by the integration tests: a real binary on a
//! free loopback port with its own data, monitors and scripts directories.
#![allow(dead_code)] // each test crate uses a different part of it

pub mod hook;
pub mod python;
pub mod replay;
pub mod vm;
pub mod webdriver;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Waits for a fresh wall-clock second. Monitor event ids are deterministic per (ref, second,
/// status), so a second check within the same second stores (and returns) nothing new.
pub fn next_second() {
    let sec = now();
    while now() == sec {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A manual monitor that counts the `durable` points of the last hour: tests read how many
/// points were stored through it ([`Tocsin::count_points`]).
pub const COUNTER: &str = r#"
id = "count"
manual = true
interval = "1h"
[query]
measurement = "durable"
field = "v"
agg = "count"
[rules]
info = "Result >= 0"
"#;

/// A running `tocsin serve`; killed when dropped.
pub struct Tocsin {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// holds `tocsin.toml`, `data/`, `monitors/`, `scripts/`, `server.log`
    pub dir: PathBuf,
}

impl Tocsin {
    /// Writes `dir/tocsin.toml` (a free loopback `listen`, then `config`), creates `monitors/`
    /// and `scripts/` in `dir`, and starts the server.
    pub fn start(dir: &Path, config: &str) -> Tocsin {
        std::fs::create_dir_all(dir.join("monitors")).unwrap();
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("tocsin.toml"),
            format!("listen = \"127.0.0.1:{port}\"\n{config}\n"),
        )
        .unwrap();
        let mut t = Tocsin {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        t.spawn();
        t
    }

    /// Starts (or restarts) the process and waits until `/healthz` answers.
    pub fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["serve", "--config"])
            .arg(self.dir.join("tocsin.toml"))
            .arg("--data")
            .arg(self.dir.join("data"))
            .arg("--monitors")
            .arg(self.dir.join("monitors"))
            .arg("--scripts")
            .arg(self.dir.join("scripts"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ureq::get(&format!("{}/healthz", self.url)).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        panic!("server did not come up on {}:\n{log}", self.url);
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().unwrap();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// POST with headers; the status and the body text (errors included).
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
        let mut r = ureq::post(&format!("{}{path}", self.url)).timeout(Duration::from_secs(20));
        for (k, v) in headers {
            r = r.set(k, v);
        }
        match r.send_bytes(body) {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// POST with an optional bearer token.
    pub fn post_token(&self, path: &str, body: &[u8], token: Option<&str>) -> (u16, String) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.post(path, body, &headers)
    }

    /// GET a JSON answer.
    pub fn get(&self, path: &str) -> Value {
        match ureq::get(&format!("{}{path}", self.url))
            .timeout(Duration::from_secs(20))
            .call()
        {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(code, r)) => {
                panic!("GET {path}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// Runs a monitor now through the API; the JSON answer.
    pub fn run(&self, id: &str, token: Option<&str>) -> Value {
        let (code, body) = self.post_token(&format!("/api/v1/monitors/{id}/run"), b"", token);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Runs [`COUNTER`] (installed as `monitors/count.toml`) in a fresh second: the number of
    /// `durable` points it saw.
    pub fn count_points(&self, token: Option<&str>) -> f64 {
        next_second();
        let v = self.run("count", token);
        v["events"][0]["df_monitor_checker_value"]
            .as_str()
            .map(|x| x.parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Runs an admin command of the CLI against this server.
    pub fn cli(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
        c.args(args).arg("--server").arg(&self.url);
        match token {
            Some(t) => c.env("TOCSIN_ADMIN_TOKEN", t),
            None => c.env_remove("TOCSIN_ADMIN_TOKEN"),
        };
        c.output().unwrap()
    }
}

impl Drop for Tocsin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The path of the first of `names` found on `PATH` (e.g. `["prometheus-alertmanager",
/// "alertmanager"]`), or `None` after printing why the calling test skips.
pub fn program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for n in names {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    eprintln!(
        "skipping: none of {names:?} is on PATH (.ci/run installs them from Debian packages)"
    );
    None
}

/// A helper program (Prometheus, Alertmanager, VictoriaMetrics...) started for a test; killed
/// when dropped, its stderr kept in a log file for the failure message.
pub struct Program {
    child: Option<Child>,
    /// where its stdout and stderr go
    pub log: PathBuf,
}

impl Program {
    /// Starts `bin` with `args`, logging to `log`.
    pub fn start(bin: &Path, args: &[String], log: &Path) -> Program {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Program {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Polls `url` until it answers 2xx, for at most `secs` seconds; panics with the log.
    pub fn wait_ready(&self, url: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if ureq::get(url)
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{url} did not come up:\n{}", self.log_text());
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9 and wait (an outage).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Tocsin {
    /// GET with an optional bearer token: the status and the body text (errors included).
    pub fn get_status(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut r = ureq::get(&format!("{}{path}", self.url)).timeout(Duration::from_secs(20));
        if let Some(t) = token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        match r.call() {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// GET a JSON answer with an optional bearer token (reads need the read or admin token
    /// once any token is configured); panics unless 200.
    pub fn get_token(&self, path: &str, token: Option<&str>) -> Value {
        let (code, body) = self.get_status(path, token);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Runs a CLI command against this server with the given environment (e.g.
    /// `TOCSIN_READ_TOKEN`); every `TOCSIN_*_TOKEN` not given is removed.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
        c.args(args).arg("--server").arg(&self.url);
        c.env_remove("TOCSIN_ADMIN_TOKEN")
            .env_remove("TOCSIN_READ_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}
