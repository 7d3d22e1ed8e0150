//! Replays and live checks of data-source monitors, for the tests that compare them: both
//! print events as `tocsin replay` does, so equal strings mean byte-identical events.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// `tocsin replay` over `[from, to]` (Unix seconds): stdout; fails the test if it fails.
pub fn replay_ok(config: &Path, monitors: &Path, from: i64, to: i64) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--monitors")
        .arg(monitors)
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether [`live_lines`] accepts per-object evaluation errors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ObjectErrors {
    /// a check that reports one fails the test
    Refuse,
    /// they are left out of the lines
    Allow,
}

/// The monitors' ticks in `[from, to]` run one by one as live checks do (a scratch event
/// store, the data sources of `config`), printed as `tocsin replay` prints events.
pub fn live_lines(
    config: &Path,
    monitors: &Path,
    from: i64,
    to: i64,
    errors: ObjectErrors,
) -> String {
    use tocsin::check::{ExecMode, MonitorState, Runner};
    let cfg = tocsin::config::Config::load(config).unwrap();
    let engine = Arc::new(tocsin::script::ScriptEngine::new(Default::default()));
    let ids = cfg.datasource_ids();
    let loaded = tocsin::monitor::load(
        &[monitors.to_path_buf()],
        &tocsin::monitor::LoadContext {
            scripts_dir: Path::new("scripts"),
            policies: &[],
            engine: &engine,
            datasources: Some(&ids),
        },
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let runner = Runner {
        store: Arc::new(tocsin::store::Store::scratch()),
        db: Arc::new(tocsin::events::EventDb::scratch_events()),
        engine,
        policies: cfg.policy_names().into(),
        public_url: cfg.public_url.clone(),
        workers: Default::default(),
        datasources: Arc::new(tocsin::datasource::Datasources::new(&cfg.datasources)),
    };
    let mut events = Vec::new();
    let mut states: Vec<MonitorState> = vec![MonitorState::default(); loaded.monitors.len()];
    for (t, i) in tocsin::cli::replay::schedule(&loaded.monitors, from, to) {
        let rep = runner
            .run(&loaded.monitors[i], &mut states[i], t, ExecMode::Crontab)
            .unwrap();
        if errors == ObjectErrors::Refuse {
            assert!(rep.errors.is_empty(), "{:?}", rep.errors);
        }
        events.extend(rep.events);
    }
    tocsin::cli::replay::sort_events(&mut events);
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}
