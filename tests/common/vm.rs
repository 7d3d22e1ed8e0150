//! A VictoriaMetrics (Debian's `victoria-metrics`) on a free loopback port, for the tests of
//! data-source monitors: started into a directory, fed Prometheus text lines.

use super::{eventually, free_port, program, Program};
use std::path::Path;

/// A running VictoriaMetrics; stopped when dropped.
pub struct Vm {
    _proc: Program,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl Vm {
    /// Starts one keeping its data in `dir/vm`; `None` (having said "skipping") when the
    /// program is not installed.
    pub fn start(dir: &Path) -> Option<Vm> {
        let Some(bin) = program(&["victoria-metrics", "victoria-metrics-prod"]) else {
            eprintln!("skipping: no victoria-metrics");
            return None;
        };
        let port = free_port();
        let args = vec![
            format!("-storageDataPath={}", dir.join("vm").display()),
            "-retentionPeriod=100y".into(),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=ERROR".into(),
        ];
        let proc = Program::start(&bin, &args, &dir.join("vm.log"));
        let url = format!("http://127.0.0.1:{port}");
        proc.wait_ready(&format!("{url}/health"), 20);
        Some(Vm { _proc: proc, url })
    }

    /// Imports Prometheus text lines (`name{labels} value ms`) and waits until `series`
    /// series matching `matcher` are searchable.
    pub fn import(&self, lines: &[String], matcher: &str, series: usize) {
        ureq::post(&format!("{}/api/v1/import/prometheus", self.url))
            .send_string(&(lines.join("\n") + "\n"))
            .unwrap();
        ureq::get(&format!("{}/internal/force_flush", self.url))
            .call()
            .unwrap();
        // The export lists every stored series (one JSON line each) whatever its time.
        let ok = eventually(20, || {
            let text = ureq::get(&format!("{}/api/v1/export", self.url))
                .query("match[]", matcher)
                .call()
                .ok()?
                .into_string()
                .ok()?;
            (text.lines().count() >= series).then_some(())
        });
        assert!(ok.is_some(), "VictoriaMetrics did not index the import");
    }
}
