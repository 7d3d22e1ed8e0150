//! The `tocsin` binary: parses the command line and hands over to the library.

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tocsin::lineproto::Precision;
use tocsin::timeutil::parse_time;

#[derive(Parser)]
#[command(name = "tocsin", version, about = "Monitor-driven detection engine and event centre")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate monitors and their scripts; exit 1 on any error.
    Check {
        /// monitor directories or files (default: ./monitors)
        paths: Vec<PathBuf>,
        /// scripts directory (default: ./scripts)
        #[arg(long)]
        scripts: Option<PathBuf>,
        /// config file (for policies)
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run monitor unit tests; exit 1 on any failure.
    Test {
        /// test files (TOML)
        files: Vec<PathBuf>,
    },
    /// Evaluate monitors at every scheduled time in [from, to] over the given metrics only.
    Replay {
        /// monitors directory or file
        #[arg(long)]
        monitors: PathBuf,
        /// line protocol file
        #[arg(long)]
        metrics: PathBuf,
        /// first trigger time (RFC 3339 or Unix seconds)
        #[arg(long)]
        from: String,
        /// last trigger time (RFC 3339 or Unix seconds)
        #[arg(long)]
        to: String,
        /// scripts directory (default: ./scripts)
        #[arg(long)]
        scripts: Option<PathBuf>,
        /// config file
        #[arg(long)]
        config: Option<PathBuf>,
        /// timestamp precision of the metrics file: n, u, ms, s, m, h (default n)
        #[arg(long, default_value = "n")]
        precision: String,
    },
    /// Load line protocol into the store (offline: stop the server first).
    Write {
        /// line protocol file
        file: PathBuf,
        /// data directory
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// timestamp precision: n, u, ms, s, m, h (default n)
        #[arg(long, default_value = "n")]
        precision: String,
    },
}

fn precision(p: &str) -> Result<Precision> {
    Precision::parse(p).ok_or_else(|| anyhow!("--precision {p:?}: expected n, u, ms, s, m or h"))
}

fn time_arg(flag: &str, v: &str) -> Result<i64> {
    parse_time(v).map_err(|e| anyhow!("{flag}: {e}"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Check { paths, scripts, config } => {
            let errors = tocsin::cli::check(&paths, scripts.as_deref(), config.as_deref())?;
            Ok(if errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Test { files } => {
            let failures = tocsin::cli::test(&files)?;
            Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Replay { monitors, metrics, from, to, scripts, config, precision: p } => {
            let args = tocsin::cli::ReplayArgs {
                monitors,
                metrics,
                from: time_arg("--from", &from)?,
                to: time_arg("--to", &to)?,
                scripts,
                config,
                precision: precision(&p)?,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            tocsin::cli::replay(&args, &mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Write { file, data, precision: p } => {
            let n = tocsin::cli::write(&file, &data, precision(&p)?)?;
            println!("stored {n} sample(s) in {}", data.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
