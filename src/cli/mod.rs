//! Command-line commands that work without a server: `check`, `test`, `replay`, `write`.

pub mod client;
pub mod replay;
pub mod serve;
pub mod silence;
pub mod testing;

use crate::check::Runner;
use crate::config::Config;
use crate::events::EventDb;
use crate::ingest::lineproto::{self, Precision};
use crate::monitor::{load, LoadContext};
use crate::script::ScriptEngine;
use crate::store::{Store, StoreOptions};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads the config file when given.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| anyhow!(e)),
        None => Ok(Config::default()),
    }
}

/// `tocsin check`: validates monitors and scripts; returns the number of errors.
pub fn check(paths: &[PathBuf], scripts: Option<&Path>, config: Option<&Path>) -> Result<usize> {
    let cfg = load_config(config)?;
    let paths = if paths.is_empty() {
        vec![cfg
            .monitors
            .clone()
            .unwrap_or_else(|| PathBuf::from("monitors"))]
    } else {
        paths.to_vec()
    };
    let scripts = scripts
        .map(Path::to_path_buf)
        .or(cfg.scripts.clone())
        .unwrap_or_else(|| PathBuf::from("scripts"));
    let engine = ScriptEngine::new(Default::default());
    let policies = cfg.policy_ids();
    // Without a config there is nothing to check a monitor's datasource against.
    let datasources = cfg.datasource_ids();
    let loaded = load(
        &paths,
        &LoadContext {
            scripts_dir: &scripts,
            policies: &policies,
            engine: &engine,
            datasources: config.map(|_| datasources.as_slice()),
        },
    );
    for e in &loaded.errors {
        eprintln!("{e}");
    }
    for m in &loaded.monitors {
        println!("ok  {}  {}  ({})", m.id, m.name, m.file.display());
    }
    println!(
        "{} file(s): {} valid monitor(s), {} error(s)",
        loaded.files,
        loaded.monitors.len(),
        loaded.errors.len()
    );
    Ok(loaded.errors.len())
}

/// `tocsin test`: runs monitor unit test files; returns the number of failures.
pub fn test(files: &[PathBuf]) -> Result<usize> {
    if files.is_empty() {
        bail!("no test files given: tocsin test tests/monitors/*.toml");
    }
    let mut failures = 0;
    let mut checked = 0;
    for f in files {
        match crate::cli::testing::run_file(f) {
            Ok(r) => {
                checked += r.checked;
                if r.failures.is_empty() {
                    println!("ok    {} ({} expectation(s))", f.display(), r.checked);
                } else {
                    println!(
                        "FAIL  {} ({} of {} expectation(s) failed)",
                        f.display(),
                        r.failures.len(),
                        r.checked
                    );
                    for fail in &r.failures {
                        println!("{fail}");
                    }
                    failures += r.failures.len();
                }
            }
            Err(e) => {
                println!("ERROR {}: {e}", f.display());
                failures += 1;
            }
        }
    }
    println!("{checked} expectation(s), {failures} failure(s)");
    Ok(failures)
}

/// Options of `tocsin replay`.
pub struct ReplayArgs {
    /// monitors directory or file
    pub monitors: PathBuf,
    /// line protocol input
    pub metrics: Option<PathBuf>,
    /// first trigger time
    pub from: i64,
    /// last trigger time
    pub to: i64,
    /// scripts directory
    pub scripts: Option<PathBuf>,
    /// config file
    pub config: Option<PathBuf>,
    /// timestamp precision of the metrics file
    pub precision: Precision,
}

/// `tocsin replay`: prints events as JSON lines to `out`.
pub fn replay(a: &ReplayArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if a.from > a.to {
        bail!("--from ({}) is after --to ({})", a.from, a.to);
    }
    let cfg = load_config(a.config.as_deref())?;
    let scripts = a
        .scripts
        .clone()
        .or(cfg.scripts.clone())
        .unwrap_or_else(|| PathBuf::from("scripts"));
    let engine = Arc::new(ScriptEngine::new(Default::default()));
    let policies = cfg.policy_ids();
    let datasources = cfg.datasource_ids();
    let loaded = load(
        std::slice::from_ref(&a.monitors),
        &LoadContext {
            scripts_dir: &scripts,
            policies: &policies,
            engine: &engine,
            datasources: Some(&datasources),
        },
    );
    if !loaded.errors.is_empty() {
        for e in &loaded.errors {
            eprintln!("{e}");
        }
        bail!(
            "{} monitor error(s); fix them (tocsin check) before replaying",
            loaded.errors.len()
        );
    }
    let store = Arc::new(Store::scratch());
    match &a.metrics {
        Some(path) => {
            let bytes = map_file(path)?;
            crate::ingest::file::load(&store, &bytes, a.precision, 0).map_err(|e| match e {
                crate::ingest::file::LoadError::Parse(e) => anyhow!("{}: {e}", path.display()),
                e => anyhow!("{e}"),
            })?;
        }
        None => {
            let needs: Vec<&str> = loaded
                .monitors
                .iter()
                .filter(|m| m.reads_store())
                .map(|m| m.id.as_str())
                .collect();
            if !needs.is_empty() {
                bail!(
                    "--metrics is needed: {} read(s) the embedded store, not a datasource",
                    needs.join(", ")
                );
            }
        }
    }
    let runner = Runner {
        store,
        db: Arc::new(EventDb::scratch_events()),
        engine,
        policies: cfg.policy_names().into(),
        public_url: cfg.public_url.clone(),
        workers: Default::default(),
        // Datasource monitors read range queries in chunks (vmalert's -replay).
        datasources: Arc::new(crate::datasource::Datasources::for_replay(
            &cfg.datasources,
            a.to,
        )),
    };
    let ticks = crate::cli::replay::schedule(&loaded.monitors, a.from, a.to);
    let bar = if std::io::stderr().is_terminal() && ticks.len() > 200 {
        let b = indicatif::ProgressBar::new(ticks.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} checks ({eta} left)",
            )
            .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    // Events are serialized and written on a thread of their own, beside the checks; a
    // write error stops it, and the replay reports it at the end.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<crate::model::event::Event>>(64);
    let written = std::thread::scope(|s| {
        let writer = s.spawn(move || -> std::io::Result<()> {
            for batch in rx {
                for e in batch {
                    serde_json::to_writer(&mut *out, &e).map_err(std::io::Error::from)?;
                    out.write_all(b"\n")?;
                }
            }
            Ok(())
        });
        let mut batch = Vec::new();
        crate::cli::replay::run(
            &runner,
            &loaded.monitors,
            &ticks,
            |n| {
                if let Some(b) = &bar {
                    b.set_position(n as u64);
                }
            },
            |w| {
                if let Some(b) = &bar {
                    b.suspend(|| eprintln!("warning: {w}"));
                } else {
                    eprintln!("warning: {w}");
                }
            },
            |e| {
                batch.push(e);
                if batch.len() >= 256 {
                    // A send fails only once the writer stopped on an error, reported below.
                    let _ = tx.send(std::mem::take(&mut batch));
                }
            },
        );
        let _ = tx.send(batch);
        drop(tx);
        writer.join().expect("the event writer does not panic")
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    written?;
    Ok(())
}

/// A metrics file's bytes: mapped when it is a regular file (no copy, and the kernel's page
/// cache is all the memory it takes), read otherwise (a pipe, `/dev/stdin`).
enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

fn map_file(path: &Path) -> Result<FileBytes> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    // SAFETY: the map is read-only and lives for this replay; a file changed underneath it
    // while it runs may give garbage points (as reading it halfway through a rewrite would),
    // and parsing never trusts the bytes.
    if regular {
        if let Ok(m) = unsafe { memmap2::Mmap::map(&file) } {
            return Ok(FileBytes::Mapped(m));
        }
    }
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut v)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(FileBytes::Read(v))
}

/// `tocsin write`: loads line protocol into the store offline; returns samples stored.
pub fn write(file: &Path, data: &Path, precision: Precision) -> Result<usize> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let points =
        lineproto::parse(&bytes, precision, now).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let store = Store::open(data, StoreOptions::default()).map_err(|e| anyhow!("{e}"))?;
    let n = store.write(&points).map_err(|e| anyhow!("{e}"))?;
    Ok(n)
}
