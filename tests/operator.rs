//! What an operator meets first, against a real `tocsin serve`: plain logs in a file, the
//! `/metrics` basics, and the CLI's answers to typos, relative times, empty lists and closed
//! pipes.

mod common;

use common::Tocsin;
use std::process::{Command, Stdio};

#[test]
fn logs_metrics_and_cli_rough_edges() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tocsin::start(dir.path(), "");

    // The log goes to a file here: no colour codes, and "listening" once.
    let log = std::fs::read_to_string(t.dir.join("server.log")).unwrap();
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");
    assert_eq!(log.matches("listening").count(), 1, "{log}");

    let metrics = ureq::get(&format!("{}/metrics", t.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for want in [
        "# TYPE tocsin_delivery_failures_total counter",
        "tocsin_build_info{version=\"",
        "# TYPE process_cpu_seconds_total counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }

    // A misspelt status is refused before asking, naming the good ones.
    let o = t.cli(&["events", "--status", "crit"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("--status \"crit\": expected one of ok, "),
        "{err}"
    );

    // Relative times are taken; an empty answer says so instead of a bare header.
    let o = t.cli(&["events", "--since", "1h"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "no events match\n");
    let o = t.cli(&["issues"], None);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "no open issues\n");
    let o = t.cli(&["events", "--since", "yesterday"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("1h, 30m, 2d"));

    // A reader that goes away early (`| head -1`): no panic, no error message.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["events", "--json", "--server", &t.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}
