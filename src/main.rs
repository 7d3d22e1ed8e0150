//! The `tocsin` binary: parses the command line and hands over to the library.

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tocsin::ingest::lineproto::Precision;
use tocsin::model::time::parse_time_or_ago;

/// mimalloc rather than glibc's malloc: ingest and checks allocate many small, short-lived
/// values, often freed on another thread than the one that made them (parsed points cross to
/// the writer), where glibc's arenas spent a third of a replay in malloc and free.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Monitor-driven detection engine and event centre"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine: scheduler, HTTP API, built-in host input.
    Serve {
        /// config file (TOML)
        #[arg(long)]
        config: Option<PathBuf>,
        /// data directory (default ./data)
        #[arg(long)]
        data: Option<PathBuf>,
        /// listen address (default 127.0.0.1:9530)
        #[arg(long)]
        listen: Option<String>,
        /// monitors directory (default ./monitors)
        #[arg(long)]
        monitors: Option<PathBuf>,
        /// scripts directory (default ./scripts)
        #[arg(long)]
        scripts: Option<PathBuf>,
    },
    /// Trigger one monitor now on the running server (df_exec_mode = "async").
    Run {
        /// monitor id
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Query events on the running server (sends TOCSIN_READ_TOKEN, else TOCSIN_ADMIN_TOKEN).
    Events {
        /// status (critical, ok, nodata, ...)
        #[arg(long)]
        status: Option<String>,
        /// monitor id
        #[arg(long)]
        monitor: Option<String>,
        /// source (monitor, custom, ...)
        #[arg(long)]
        source: Option<String>,
        /// only events at or after this time (RFC 3339 or Unix seconds)
        #[arg(long)]
        since: Option<String>,
        /// at most this many (default 50)
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List unrecovered issues on the running server (sends TOCSIN_READ_TOKEN, else
    /// TOCSIN_ADMIN_TOKEN).
    Issues {
        /// only this monitor
        #[arg(long)]
        monitor: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Recover issues by hand on the running server (one manual_ok per open round).
    Recover {
        /// event refs (df_monitor_checker_event_ref)
        refs: Vec<String>,
        /// every issue of this monitor
        #[arg(long)]
        monitor: Option<String>,
        /// every open issue
        #[arg(long)]
        all: bool,
        /// df_user_id
        #[arg(long)]
        user_id: String,
        /// df_user_name
        #[arg(long)]
        user_name: String,
        /// df_user_email
        #[arg(long)]
        user_email: String,
        /// message of the manual_ok event
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
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
        /// line protocol file for monitors over the embedded store (not needed when every
        /// monitor reads a `[[datasources]]` entry)
        #[arg(long)]
        metrics: Option<PathBuf>,
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
    /// Silence objects at run time: add, list, expire (like `amtool silence`).
    Silence {
        #[command(subcommand)]
        cmd: SilenceCmd,
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

/// Options shared by commands that talk to a running server.
#[derive(Subcommand)]
enum SilenceCmd {
    /// Add a silence (admin token): e.g. `--match monitor=host-cpu --match host=web01 --duration 1h`
    Add {
        /// `key=value`: `monitor`, `status` or a dimension tag; all must match (repeat it)
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// how long, e.g. 1h, 30m (or give --end)
        #[arg(long)]
        duration: Option<String>,
        /// start: RFC 3339, Unix seconds or a time ago such as 10m (default now)
        #[arg(long)]
        start: Option<String>,
        /// end instead of --duration
        #[arg(long)]
        end: Option<String>,
        /// who adds it
        #[arg(long)]
        created_by: String,
        /// why
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List active and pending silences (`--all`: expired ones too)
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// End a silence now (admin token)
    Expire {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// server URL
    #[arg(long, default_value = "http://127.0.0.1:9530")]
    server: String,
    /// print JSON instead of a table
    #[arg(long)]
    json: bool,
}

fn precision(p: &str) -> Result<Precision> {
    Precision::parse(p).ok_or_else(|| anyhow!("--precision {p:?}: expected n, u, ms, s, m or h"))
}

fn time_arg(flag: &str, v: &str) -> Result<i64> {
    parse_time_or_ago(v, chrono::Utc::now().timestamp()).map_err(|e| anyhow!("{flag}: {e}"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Serve {
            config,
            data,
            listen,
            monitors,
            scripts,
        } => {
            // Every due check starts at its tick on a blocking thread of its own (a large check
            // splits its objects over the runner's worker pool, which bounds the CPU it takes):
            // room for a thousand monitors due at once, not tokio's default 512, and kept
            // between one-minute ticks so a tick wakes threads instead of starting them.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(2048)
                .thread_keep_alive(std::time::Duration::from_secs(150))
                .build()?;
            rt.block_on(tocsin::cli::serve::serve(tocsin::cli::serve::ServeArgs {
                config,
                data,
                listen,
                monitors,
                scripts,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { id, server } => {
            tocsin::cli::client::run(
                &tocsin::cli::client::Client::new(&server.server),
                &id,
                server.json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events {
            status,
            monitor,
            source,
            since,
            limit,
            server,
        } => {
            let a = tocsin::cli::client::EventsArgs {
                status,
                monitor,
                source,
                since,
                limit,
            };
            tocsin::cli::client::events(
                &tocsin::cli::client::Client::new(&server.server),
                &a,
                server.json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Issues { monitor, server } => {
            tocsin::cli::client::issues(
                &tocsin::cli::client::Client::new(&server.server),
                monitor.as_deref(),
                server.json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Recover {
            refs,
            monitor,
            all,
            user_id,
            user_name,
            user_email,
            message,
            server,
        } => {
            let a = tocsin::cli::client::RecoverArgs {
                refs,
                monitor,
                all,
                user_id,
                user_name,
                user_email,
                message,
            };
            tocsin::cli::client::recover(
                &tocsin::cli::client::Client::new(&server.server),
                &a,
                server.json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Silence { cmd } => {
            use tocsin::cli::client::Client;
            use tocsin::cli::silence;
            match cmd {
                SilenceCmd::Add {
                    matchers,
                    duration,
                    start,
                    end,
                    created_by,
                    comment,
                    server,
                } => silence::add(
                    &Client::new(&server.server),
                    &silence::AddArgs {
                        matchers,
                        duration,
                        start,
                        end,
                        created_by,
                        comment,
                    },
                    server.json,
                )?,
                SilenceCmd::List { all, server } => {
                    silence::list(&Client::new(&server.server), all, server.json)?
                }
                SilenceCmd::Expire { id, server } => {
                    silence::expire(&Client::new(&server.server), &id, server.json)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            paths,
            scripts,
            config,
        } => {
            let errors = tocsin::cli::check(&paths, scripts.as_deref(), config.as_deref())?;
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Test { files } => {
            let failures = tocsin::cli::test(&files)?;
            Ok(if failures == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Replay {
            monitors,
            metrics,
            from,
            to,
            scripts,
            config,
            precision: p,
        } => {
            let args = tocsin::cli::ReplayArgs {
                monitors,
                metrics,
                from: time_arg("--from", &from)?,
                to: time_arg("--to", &to)?,
                scripts,
                config,
                precision: precision(&p)?,
            };
            // not locked: the events are written from a thread of their own
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            tocsin::cli::replay(&args, &mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Write {
            file,
            data,
            precision: p,
        } => {
            let n = tocsin::cli::write(&file, &data, precision(&p)?)?;
            println!("stored {n} sample(s) in {}", data.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tocsin replay ... | head` closes the pipe early; that is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

fn main() -> ExitCode {
    let serving = std::env::args().nth(1).as_deref() == Some("serve");
    if !serving {
        // `tocsin events | head -1`: a closed pipe ends a one-shot command quietly, as it
        // does for other Unix tools, instead of a panic in the middle of a print.
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // serve logs its work; one-shot commands only warn
                (if serving { "info" } else { "warn" }).into()
            }),
        )
        // Colours only for a person at a terminal, not in files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
