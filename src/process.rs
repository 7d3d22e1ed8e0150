//! The standard `process_*` metrics of this process (as Prometheus client libraries export
//! them), read from `/proc/self` at scrape time, and `tocsin_build_info`. Where `/proc` is
//! absent (not Linux) only the build info is written.

use std::fmt::Write;

/// Clock ticks per second for `/proc/self/stat` CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as f64
    } else {
        4096.0
    }
}

/// What `/proc/self/stat` says, in the units the metrics use.
#[derive(Debug, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    threads: f64,
    /// seconds after boot
    start_after_boot: f64,
}

/// Parses `/proc/self/stat` (fields after the parenthesised command name, which may itself
/// contain spaces and parentheses).
fn parse_stat(text: &str, ticks: f64, page: f64) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is rest[0]; utime is field 14, stime 15, num_threads 20,
    // starttime 22, vsize 23, rss 24.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<f64>().ok();
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        threads: num(20)?,
        start_after_boot: num(22)? / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page,
    })
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// Appends the process metrics and `tocsin_build_info` to `out`.
pub fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP tocsin_build_info The running tocsin's version (always 1).\n\
         # TYPE tocsin_build_info gauge\ntocsin_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let ticks = ticks_per_second();
    if let Some(s) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat(&t, ticks, page_size()))
    {
        gauge(
            out,
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
            "counter",
            s.cpu_seconds,
        );
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            s.resident_bytes,
        );
        gauge(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            s.virtual_bytes,
        );
        gauge(
            out,
            "process_threads",
            "Threads of the process.",
            "gauge",
            s.threads,
        );
        if let Some(boot) = boot_time() {
            gauge(
                out,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                "gauge",
                boot + s.start_after_boot,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Open file descriptors.",
            "gauge",
            fds.count() as f64,
        );
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        gauge(
            out,
            "process_max_fds",
            "Most file descriptors the process may open.",
            "gauge",
            limit.rlim_cur as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_spaces() {
        let text = "4242 (tocsin (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 \
                    7 0 5000 104857600 2560 18446744073709551615";
        let s = parse_stat(text, 100.0, 4096.0).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_seconds: 4.0,
                virtual_bytes: 104_857_600.0,
                resident_bytes: 2560.0 * 4096.0,
                threads: 7.0,
                start_after_boot: 50.0,
            }
        );
        assert_eq!(parse_stat("garbage", 100.0, 4096.0), None);
    }

    #[test]
    fn render_reads_this_process() {
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("tocsin_build_info{version=\""), "{out}");
        if std::path::Path::new("/proc/self/stat").exists() {
            let rss: f64 = out
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .unwrap()
                .parse()
                .unwrap();
            assert!(rss > 1e6, "{out}");
            assert!(out.contains("# TYPE process_cpu_seconds_total counter"));
        }
    }
}
