//! The engine's own figures, exposed at `GET /metrics` in Prometheus text format.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-monitor counters.
#[derive(Debug, Default, Clone)]
struct MonitorFigures {
    checks: u64,
    errors: u64,
    skipped: u64,
    duration_sum: f64,
}

/// Counters shared by ingest, the scheduler and the API.
#[derive(Debug, Default)]
pub struct Metrics {
    /// points accepted by write endpoints
    pub ingest_points: AtomicU64,
    /// write requests accepted
    pub ingest_requests: AtomicU64,
    /// write requests rejected as bad input
    pub ingest_rejected: AtomicU64,
    /// write requests refused for overload (429)
    pub ingest_throttled: AtomicU64,
    /// custom events accepted
    pub custom_events: AtomicU64,
    /// what Prometheus remote write requests carried: stored samples and what was left out
    pub remote_write: RemoteWriteFigures,
    monitors: Mutex<BTreeMap<String, MonitorFigures>>,
    events: Mutex<BTreeMap<String, u64>>,
    lags: Mutex<Lags>,
    finish_lags: Mutex<Lags>,
}

/// Prometheus remote write (`POST /api/v1/write`): samples stored, and what accepted requests
/// carried that tocsin does not store, by kind (`tocsin_remote_write_ignored_total{what}`).
#[derive(Debug, Default)]
pub struct RemoteWriteFigures {
    /// samples stored
    pub samples: AtomicU64,
    /// staleness markers (the NaN Prometheus writes when a series disappears)
    pub stale: AtomicU64,
    /// other NaN samples (tocsin stores finite numbers only)
    pub nan: AtomicU64,
    /// +Inf and -Inf samples
    pub infinite: AtomicU64,
    /// native histogram samples
    pub histograms: AtomicU64,
    /// exemplars
    pub exemplars: AtomicU64,
    /// metric metadata entries
    pub metadata: AtomicU64,
}

impl RemoteWriteFigures {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP tocsin_remote_write_samples_total Samples stored from Prometheus remote \
             write.\n# TYPE tocsin_remote_write_samples_total counter\n\
             tocsin_remote_write_samples_total {}",
            self.samples.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tocsin_remote_write_ignored_total What accepted remote write requests \
             carried that is not stored, by kind.\n\
             # TYPE tocsin_remote_write_ignored_total counter"
        );
        for (what, n) in [
            ("stale", &self.stale),
            ("nan", &self.nan),
            ("infinite", &self.infinite),
            ("histogram", &self.histograms),
            ("exemplar", &self.exemplars),
            ("metadata", &self.metadata),
        ] {
            let _ = writeln!(
                out,
                "tocsin_remote_write_ignored_total{{what=\"{what}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// How late scheduled checks started (or finished): the latest [`LAG_WINDOW`] lags for the
/// quantiles, and the sum and count of all.
#[derive(Debug, Default)]
struct Lags {
    recent: std::collections::VecDeque<f64>,
    sum: f64,
    count: u64,
}

/// How many of the latest scheduling lags the quantiles of `/metrics` cover.
pub const LAG_WINDOW: usize = 10_000;

/// The `q` quantile (0..=1) of `values` (nearest rank), 0 when empty.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

impl Lags {
    fn record(&mut self, seconds: f64) {
        if self.recent.len() == LAG_WINDOW {
            self.recent.pop_front();
        }
        let s = seconds.max(0.0);
        self.recent.push_back(s);
        self.sum += s;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let mut recent: Vec<f64> = self.recent.iter().copied().collect();
        let _ = writeln!(
            out,
            "# HELP {name} {help} (quantiles over the latest {LAG_WINDOW}).\n# TYPE {name} summary"
        );
        for q in [0.5, 0.9, 0.99] {
            let v = quantile(&mut recent, q);
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

impl Metrics {
    /// Counts one finished check.
    pub fn check_done(&self, monitor: &str, seconds: f64, failed: bool) {
        let mut m = self.monitors.lock();
        let f = m.entry(monitor.to_string()).or_default();
        f.checks += 1;
        f.duration_sum += seconds;
        if failed {
            f.errors += 1;
        }
    }

    /// Records how late (seconds after its tick) a scheduled check started.
    pub fn schedule_lag(&self, seconds: f64) {
        self.lags.lock().record(seconds);
    }

    /// Records how long after its tick a scheduled check finished: how stale its events are
    /// when they are stored.
    pub fn check_finished(&self, seconds: f64) {
        self.finish_lags.lock().record(seconds);
    }

    /// Counts a tick skipped because the previous check was still running.
    pub fn tick_skipped(&self, monitor: &str) {
        self.monitors
            .lock()
            .entry(monitor.to_string())
            .or_default()
            .skipped += 1;
    }

    /// Counts stored events by status.
    pub fn events_stored<'a>(&self, statuses: impl IntoIterator<Item = &'a str>) {
        let mut e = self.events.lock();
        for s in statuses {
            *e.entry(s.to_string()).or_default() += 1;
        }
    }

    /// Skipped ticks of a monitor so far.
    pub fn skipped(&self, monitor: &str) -> u64 {
        self.monitors.lock().get(monitor).map_or(0, |f| f.skipped)
    }

    /// Renders the exposition text; `gauges` are `(name, help, value)` read at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "tocsin_ingest_points_total",
            "Points accepted by the write endpoints.",
            self.ingest_points.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tocsin_ingest_requests_total",
            "Write requests accepted.",
            self.ingest_requests.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tocsin_ingest_rejected_total",
            "Write requests rejected as bad input.",
            self.ingest_rejected.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tocsin_ingest_throttled_total",
            "Write requests refused with 429.",
            self.ingest_throttled.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tocsin_custom_events_total",
            "Custom events accepted.",
            self.custom_events.load(Ordering::Relaxed),
        );
        self.remote_write.render(&mut out);
        let mons = self.monitors.lock().clone();
        let labelled = |out: &mut String,
                        name: &str,
                        help: &str,
                        kind: &str,
                        f: &dyn Fn(&MonitorFigures) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (id, m) in &mons {
                let _ = writeln!(out, "{name}{{monitor=\"{}\"}} {}", escape(id), f(m));
            }
        };
        labelled(
            &mut out,
            "tocsin_checks_total",
            "Checks run.",
            "counter",
            &|m| m.checks.to_string(),
        );
        labelled(
            &mut out,
            "tocsin_check_errors_total",
            "Checks with a query or script error.",
            "counter",
            &|m| m.errors.to_string(),
        );
        labelled(
            &mut out,
            "tocsin_skipped_ticks_total",
            "Ticks skipped because the previous check overran.",
            "counter",
            &|m| m.skipped.to_string(),
        );
        let _ = writeln!(out, "# HELP tocsin_check_duration_seconds Time spent in checks.\n# TYPE tocsin_check_duration_seconds summary");
        for (id, m) in &mons {
            let _ = writeln!(
                out,
                "tocsin_check_duration_seconds_sum{{monitor=\"{}\"}} {}",
                escape(id),
                m.duration_sum
            );
            let _ = writeln!(
                out,
                "tocsin_check_duration_seconds_count{{monitor=\"{}\"}} {}",
                escape(id),
                m.checks
            );
        }
        self.lags.lock().render(
            &mut out,
            "tocsin_schedule_lag_seconds",
            "How late scheduled checks started after their tick",
        );
        self.finish_lags.lock().render(
            &mut out,
            "tocsin_check_finish_lag_seconds",
            "How long after their tick scheduled checks finished",
        );
        let _ = writeln!(out, "# HELP tocsin_events_total Events stored, by status.\n# TYPE tocsin_events_total counter");
        for (s, n) in self.events.lock().iter() {
            let _ = writeln!(out, "tocsin_events_total{{status=\"{}\"}} {n}", escape(s));
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// The store's series limit and what it refused, read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimitFigures {
    /// the configured most series (`[limits] max_series`)
    pub limit: usize,
    /// new series refused since start
    pub refused: u64,
}

impl SeriesLimitFigures {
    /// Appends `tocsin_series_refused_total` (counter) and `tocsin_series_limit` (gauge).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP tocsin_series_refused_total New series refused because the store held \
             max_series series.\n# TYPE tocsin_series_refused_total counter\n\
             tocsin_series_refused_total {}",
            self.refused
        );
        let _ = writeln!(
            out,
            "# HELP tocsin_series_limit Most series the metric store accepts ([limits] \
             max_series).\n# TYPE tocsin_series_limit gauge\ntocsin_series_limit {}",
            self.limit
        );
    }
}

/// Escapes a label value for the text exposition format.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labels() {
        let m = Metrics::default();
        m.ingest_points.fetch_add(5, Ordering::Relaxed);
        m.check_done("cpu", 0.5, false);
        m.check_done("cpu", 0.25, true);
        m.tick_skipped("cpu");
        m.events_stored(["critical", "critical", "ok"]);
        let text = m.render(&[("tocsin_open_issues", "Open issues.", 3.0)]);
        assert!(text.contains("tocsin_ingest_points_total 5"));
        assert!(text.contains("tocsin_checks_total{monitor=\"cpu\"} 2"));
        assert!(text.contains("tocsin_check_errors_total{monitor=\"cpu\"} 1"));
        assert!(text.contains("tocsin_skipped_ticks_total{monitor=\"cpu\"} 1"));
        assert!(text.contains("tocsin_check_duration_seconds_sum{monitor=\"cpu\"} 0.75"));
        assert!(text.contains("tocsin_events_total{status=\"critical\"} 2"));
        assert!(text.contains("tocsin_open_issues 3"));
    }

    #[test]
    fn renders_remote_write_figures() {
        let m = Metrics::default();
        m.remote_write.samples.fetch_add(7, Ordering::Relaxed);
        m.remote_write.stale.fetch_add(2, Ordering::Relaxed);
        let text = m.render(&[]);
        assert!(
            text.contains("\ntocsin_remote_write_samples_total 7\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE tocsin_remote_write_ignored_total counter\n"));
        assert!(text.contains("\ntocsin_remote_write_ignored_total{what=\"stale\"} 2\n"));
        assert!(text.contains("\ntocsin_remote_write_ignored_total{what=\"histogram\"} 0\n"));
    }

    #[test]
    fn renders_schedule_lag_quantiles() {
        let m = Metrics::default();
        for i in 1..=100 {
            m.schedule_lag(i as f64 / 1000.0);
        }
        m.schedule_lag(-1.0); // a clock step back counts as on time
        let text = m.render(&[]);
        assert!(
            text.contains("tocsin_schedule_lag_seconds{quantile=\"0.5\"} 0.05\n"),
            "{text}"
        );
        assert!(
            text.contains("tocsin_schedule_lag_seconds{quantile=\"0.99\"} 0.099\n"),
            "{text}"
        );
        assert!(
            text.contains("tocsin_schedule_lag_seconds_count 101\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE tocsin_schedule_lag_seconds summary"));
        // the finish lag is a summary of its own
        m.check_finished(0.25);
        let text = m.render(&[]);
        assert!(
            text.contains("tocsin_check_finish_lag_seconds{quantile=\"0.5\"} 0.25\n"),
            "{text}"
        );
        assert!(
            text.contains("tocsin_check_finish_lag_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tocsin_schedule_lag_seconds_count 101\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_series_limit() {
        let mut text = String::new();
        SeriesLimitFigures {
            limit: 3,
            refused: 2,
        }
        .render(&mut text);
        assert!(text.contains("# TYPE tocsin_series_refused_total counter\n"));
        assert!(text.contains("\ntocsin_series_refused_total 2\n"));
        assert!(text.contains("\ntocsin_series_limit 3\n"));
    }
}
