//! The Python side of the integration tests: the virtualenv `.ci/run` builds (with the cloud
//! SDKs and the InfluxDB clients) and bounded runs of its programs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The virtualenv's interpreter (`TOCSIN_PY`, else `target/sdk-venv/bin/python`) if it can
/// import `modules` (comma-separated); else `None` after saying why the calling test skips.
pub fn python(modules: &str) -> Option<PathBuf> {
    let py = std::env::var_os("TOCSIN_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python")
        });
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(py)
    } else {
        eprintln!(
            "skipping: {} cannot import {modules}; run .ci/run to install them (or set TOCSIN_PY)",
            py.display()
        );
        None
    }
}

/// Runs `program args` with `env`, for at most `secs`; the exit code and everything printed.
pub fn run_bounded(
    program: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
    secs: u64,
) -> (i32, String) {
    let mut c = Command::new(program);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (st.code().unwrap_or(-1), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {secs} s",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `tests/sdk/<name>` with the interpreter `py`, for at most `secs`.
pub fn sdk_script(py: &Path, name: &str, args: &[&str], secs: u64) -> (i32, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name);
    let mut all = vec![path.to_str().unwrap()];
    all.extend_from_slice(args);
    run_bounded(py, &all, &[], secs)
}
