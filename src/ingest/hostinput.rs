//! Built-in host input: metrics of the machine tocsin runs on.
//!
//! [`HostInput::collect`] reads `/proc` and `statvfs` and returns line-protocol [`Point`]s for the
//! measurements `cpu`, `mem`, `disk`, `system` and `net`, each tagged `host`. Field names follow
//! the Guance/DataKit host inputs so shipped monitors can rely on them. CPU percentages and
//! network rates are deltas against the previous collect, so the first collect emits no `cpu`
//! points and no `*_per_sec` fields.
//!
//! Each parser takes the file text (`parse_proc_stat`, `parse_meminfo`, `parse_loadavg`,
//! `parse_uptime`, `parse_mounts`, `parse_net_dev`) so it can be tested with fixed samples. A
//! source that cannot be read or parsed is skipped with a `debug!` message; nothing here panics
//! on odd input (containers may lack files).

use std::collections::HashMap;
use std::ffi::CString;

use tracing::debug;

use crate::ingest::lineproto::{FieldValue, Point};

/// File systems that never hold user data and are skipped by the `disk` measurement.
pub const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "fusectl",
    "configfs",
    "hugetlbfs",
    "nsfs",
    "binfmt_misc",
    "rpc_pipefs",
    "efivarfs",
    "selinuxfs",
];

/// Whether `fstype` is a pseudo file system skipped by the `disk` measurement (see [`PSEUDO_FS`]).
pub fn is_pseudo_fs(fstype: &str) -> bool {
    PSEUDO_FS.contains(&fstype)
}

/// Cumulative CPU times of one `cpu` line of `/proc/stat`, in clock ticks.
///
/// `user` already contains `guest` and `nice` already contains `guest_nice` (the kernel accounts
/// guest time twice), so [`CpuTimes::total`] leaves the guest columns out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Normal processes in user mode (includes guest).
    pub user: u64,
    /// Niced processes in user mode (includes guest_nice).
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle task.
    pub idle: u64,
    /// Idle while waiting for I/O.
    pub iowait: u64,
    /// Servicing hardware interrupts.
    pub irq: u64,
    /// Servicing soft interrupts.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// Running a guest vCPU (subset of `user`).
    pub guest: u64,
    /// Running a niced guest vCPU (subset of `nice`).
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All time, without double-counting guest time.
    pub fn total(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }
}

/// CPU usage percentages (0–100) over an interval between two [`CpuTimes`] snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUsage {
    /// 100 − `idle` (DataKit's `usage_total`): all non-idle time, iowait included.
    pub total: f64,
    /// User mode (guest included).
    pub user: f64,
    /// Niced user mode.
    pub nice: f64,
    /// Kernel mode.
    pub system: f64,
    /// Idle.
    pub idle: f64,
    /// Waiting for I/O.
    pub iowait: f64,
    /// Hardware interrupts.
    pub irq: f64,
    /// Soft interrupts.
    pub softirq: f64,
    /// Stolen by the hypervisor.
    pub steal: f64,
    /// Guest vCPU (already part of `user`).
    pub guest: f64,
    /// Niced guest vCPU (already part of `nice`).
    pub guest_nice: f64,
}

/// Usage between two snapshots of the same CPU; `None` when no time passed.
///
/// Each column's delta saturates at zero (some kernels let `iowait` go backwards), and the
/// percentages are of the sum of the deltas, so they stay within 0–100.
pub fn cpu_usage(prev: &CpuTimes, cur: &CpuTimes) -> Option<CpuUsage> {
    let d = |a: u64, b: u64| b.saturating_sub(a) as f64;
    let user = d(prev.user, cur.user);
    let nice = d(prev.nice, cur.nice);
    let system = d(prev.system, cur.system);
    let idle = d(prev.idle, cur.idle);
    let iowait = d(prev.iowait, cur.iowait);
    let irq = d(prev.irq, cur.irq);
    let softirq = d(prev.softirq, cur.softirq);
    let steal = d(prev.steal, cur.steal);
    let guest = d(prev.guest, cur.guest).min(user);
    let guest_nice = d(prev.guest_nice, cur.guest_nice).min(nice);
    let total = user + nice + system + idle + iowait + irq + softirq + steal;
    if total <= 0.0 {
        return None;
    }
    let pct = |v: f64| (v / total * 100.0).clamp(0.0, 100.0);
    Some(CpuUsage {
        total: (100.0 - pct(idle)).clamp(0.0, 100.0),
        user: pct(user),
        nice: pct(nice),
        system: pct(system),
        idle: pct(idle),
        iowait: pct(iowait),
        irq: pct(irq),
        softirq: pct(softirq),
        steal: pct(steal),
        guest: pct(guest),
        guest_nice: pct(guest_nice),
    })
}

/// Parses the `cpu` lines of `/proc/stat` into `(tag, times)` pairs, in file order.
///
/// The aggregate line is named `cpu-total`, the others keep their name (`cpu0`, `cpu1`, …).
/// Lines with fewer than four numbers are skipped; missing later columns (old kernels) are 0.
pub fn parse_proc_stat(text: &str) -> Vec<(String, CpuTimes)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(name) = parts.next() else { continue };
        let Some(rest) = name.strip_prefix("cpu") else {
            continue;
        };
        if !rest.is_empty() && !rest.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let nums: Vec<u64> = parts.map_while(|p| p.parse().ok()).collect();
        if nums.len() < 4 {
            continue;
        }
        let at = |i: usize| nums.get(i).copied().unwrap_or(0);
        let times = CpuTimes {
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
            guest: at(8),
            guest_nice: at(9),
        };
        let tag = if rest.is_empty() {
            "cpu-total".to_string()
        } else {
            name.to_string()
        };
        out.push((tag, times));
    }
    out
}

/// Values of `/proc/meminfo` used by the `mem` measurement, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: Option<u64>,
    /// `MemFree`.
    pub free: Option<u64>,
    /// `MemAvailable` (absent before Linux 3.14).
    pub available: Option<u64>,
    /// `Buffers`.
    pub buffers: Option<u64>,
    /// `Cached`.
    pub cached: Option<u64>,
    /// `SwapTotal`.
    pub swap_total: Option<u64>,
    /// `SwapFree`.
    pub swap_free: Option<u64>,
}

/// Parses `/proc/meminfo`; values with a `kB` unit are converted to bytes.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match parts.next() {
            Some(unit) if unit.eq_ignore_ascii_case("kb") => value.saturating_mul(1024),
            _ => value,
        };
        let slot = match key.trim() {
            "MemTotal" => &mut m.total,
            "MemFree" => &mut m.free,
            "MemAvailable" => &mut m.available,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        *slot = Some(bytes);
    }
    m
}

/// Fields of the `mem` measurement; `None` without a positive `MemTotal`.
///
/// `available` falls back to free + buffers + cached on kernels without `MemAvailable`;
/// `used` = total − available; `used_percent` = used / total × 100.
pub fn mem_fields(m: &MemInfo) -> Option<Vec<(String, FieldValue)>> {
    let total = m.total.filter(|&t| t > 0)?;
    let free = m.free.unwrap_or(0);
    let buffers = m.buffers.unwrap_or(0);
    let cached = m.cached.unwrap_or(0);
    let available = m
        .available
        .unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached))
        .min(total);
    let used = total - available;
    let mut f = vec![
        ("total".to_string(), FieldValue::UInt(total)),
        ("available".to_string(), FieldValue::UInt(available)),
        ("used".to_string(), FieldValue::UInt(used)),
        ("free".to_string(), FieldValue::UInt(free)),
        ("cached".to_string(), FieldValue::UInt(cached)),
        ("buffers".to_string(), FieldValue::UInt(buffers)),
        (
            "used_percent".to_string(),
            FieldValue::Float(used as f64 / total as f64 * 100.0),
        ),
        (
            "available_percent".to_string(),
            FieldValue::Float(available as f64 / total as f64 * 100.0),
        ),
    ];
    if let Some(st) = m.swap_total {
        let sf = m.swap_free.unwrap_or(st).min(st);
        f.push(("swap_total".to_string(), FieldValue::UInt(st)));
        f.push(("swap_used".to_string(), FieldValue::UInt(st - sf)));
        f.push(("swap_free".to_string(), FieldValue::UInt(sf)));
    }
    Some(f)
}

/// Load averages from `/proc/loadavg`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub load1: f64,
    /// 5-minute load average.
    pub load5: f64,
    /// 15-minute load average.
    pub load15: f64,
}

/// Parses the first three numbers of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut it = text.split_ascii_whitespace().map(str::parse::<f64>);
    let mut next = || it.next().and_then(Result::ok).filter(|v| v.is_finite());
    Some(LoadAvg {
        load1: next()?,
        load5: next()?,
        load15: next()?,
    })
}

/// Parses the uptime in seconds (first number) of `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// One mount of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mounted device or source (`/dev/vda1`, `tmpfs`, `overlay`).
    pub device: String,
    /// Mount point, octal escapes (`\040`) decoded.
    pub path: String,
    /// File system type.
    pub fstype: String,
}

/// Decodes the `\ooo` octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mounts` into the real mounts worth reporting.
///
/// Pseudo file systems ([`is_pseudo_fs`]) are dropped. When a mount point appears more than
/// once, the last (topmost, the one `statvfs` sees) entry wins, at the position of the first.
/// tmpfs, devtmpfs and overlay are kept: monitors filter by `fstype`.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(dev), Some(path), Some(fstype)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let m = Mount {
            device: unescape_mount(dev),
            path: unescape_mount(path),
            fstype: fstype.to_string(),
        };
        match index.get(&m.path) {
            Some(&i) => out[i] = m,
            None => {
                index.insert(m.path.clone(), out.len());
                out.push(m);
            }
        }
    }
    out.retain(|m| !is_pseudo_fs(&m.fstype));
    out
}

/// The parts of `struct statvfs` the `disk` measurement needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Fragment size (`f_frsize`, or `f_bsize` when 0), the unit of the block counts.
    pub block_size: u64,
    /// Size in blocks (`f_blocks`).
    pub blocks: u64,
    /// Free blocks (`f_bfree`).
    pub blocks_free: u64,
    /// Free blocks for unprivileged users (`f_bavail`).
    pub blocks_avail: u64,
    /// Inodes (`f_files`).
    pub files: u64,
    /// Free inodes (`f_ffree`).
    pub files_free: u64,
}

/// Calls `statvfs(2)` on `path`.
pub fn statvfs(path: &str) -> std::io::Result<FsStats> {
    let c =
        CString::new(path).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` is a properly sized out-parameter
    // that statvfs fills in completely on success.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsStats {
        block_size: if frsize > 0 {
            frsize
        } else {
            st.f_bsize as u64
        },
        blocks: st.f_blocks as u64,
        blocks_free: st.f_bfree as u64,
        blocks_avail: st.f_bavail as u64,
        files: st.f_files as u64,
        files_free: st.f_ffree as u64,
    })
}

/// Fields of the `disk` measurement; `None` for a file system of size 0.
///
/// As `df`: `free` is the space available to unprivileged users (`f_bavail`), `used` is
/// total − `f_bfree`, and `used_percent` = used / (used + free) × 100, so the root reserve
/// counts as neither.
pub fn disk_fields(s: &FsStats) -> Option<Vec<(String, FieldValue)>> {
    if s.blocks == 0 {
        return None;
    }
    let bs = s.block_size.max(1);
    let total = s.blocks.saturating_mul(bs);
    let free = s.blocks_avail.min(s.blocks).saturating_mul(bs);
    let used = s.blocks.saturating_sub(s.blocks_free).saturating_mul(bs);
    let denom = used as f64 + free as f64;
    let used_percent = if denom > 0.0 {
        used as f64 / denom * 100.0
    } else {
        0.0
    };
    Some(vec![
        ("total".to_string(), FieldValue::UInt(total)),
        ("free".to_string(), FieldValue::UInt(free)),
        ("used".to_string(), FieldValue::UInt(used)),
        ("used_percent".to_string(), FieldValue::Float(used_percent)),
        ("inodes_total".to_string(), FieldValue::UInt(s.files)),
        ("inodes_free".to_string(), FieldValue::UInt(s.files_free)),
        (
            "inodes_used".to_string(),
            FieldValue::UInt(s.files.saturating_sub(s.files_free)),
        ),
    ])
}

/// Counters of one interface from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDevStats {
    /// Interface name.
    pub interface: String,
    /// Received bytes.
    pub bytes_recv: u64,
    /// Received packets.
    pub packets_recv: u64,
    /// Receive errors.
    pub err_in: u64,
    /// Dropped received packets.
    pub drop_in: u64,
    /// Sent bytes.
    pub bytes_sent: u64,
    /// Sent packets.
    pub packets_sent: u64,
    /// Send errors.
    pub err_out: u64,
    /// Dropped sent packets.
    pub drop_out: u64,
}

/// Parses `/proc/net/dev` (all interfaces, `lo` included; the two header lines are skipped).
pub fn parse_net_dev(text: &str) -> Vec<NetDevStats> {
    let mut out = Vec::new();
    for line in text.lines() {
        // Interface names cannot contain ':'; large counters may follow it without a space.
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains('|') {
            continue;
        }
        let nums: Vec<u64> = rest
            .split_ascii_whitespace()
            .map_while(|p| p.parse().ok())
            .collect();
        if nums.len() < 12 {
            continue;
        }
        out.push(NetDevStats {
            interface: name.to_string(),
            bytes_recv: nums[0],
            packets_recv: nums[1],
            err_in: nums[2],
            drop_in: nums[3],
            bytes_sent: nums[8],
            packets_sent: nums[9],
            err_out: nums[10],
            drop_out: nums[11],
        });
    }
    out
}

/// Raw inputs of one collect, so the whole pipeline can be tested with fixed texts.
#[derive(Debug, Default)]
struct Sources {
    stat: Option<String>,
    meminfo: Option<String>,
    loadavg: Option<String>,
    uptime: Option<String>,
    net_dev: Option<String>,
    mounts: Option<String>,
    n_cpus: Option<u64>,
}

fn read(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            debug!(path, error = %e, "host input: cannot read source, skipped");
            None
        }
    }
}

fn online_cpus() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

/// This machine's host name (the `host` tag of the built-in input).
pub fn default_hostname() -> String {
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return h.to_string();
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let h = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if !h.is_empty() {
            return h;
        }
    }
    debug!("host input: no hostname available, using \"localhost\"");
    "localhost".to_string()
}

/// Collector of this machine's metrics, keeping the previous `/proc` counters for rates.
#[derive(Debug, Clone)]
pub struct HostInput {
    hostname: String,
    prev_cpu: HashMap<String, CpuTimes>,
    /// Time of the previous `/proc/net/dev` read and its counters per interface.
    prev_net: Option<(i64, HashMap<String, NetDevStats>)>,
}

impl HostInput {
    /// A collector tagging its points `host = hostname`; `None` reads the machine's hostname
    /// (`/proc/sys/kernel/hostname`, else `gethostname`, trimmed; `localhost` as a last resort).
    pub fn new(hostname: Option<String>) -> HostInput {
        let hostname = hostname
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(default_hostname);
        HostInput {
            hostname,
            prev_cpu: HashMap::new(),
            prev_net: None,
        }
    }

    /// The value of the `host` tag.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Reads the host's metrics; all points are stamped `now_ns` and tagged `host`.
    ///
    /// Emits `cpu` (from the second call on), `mem`, `disk`, `system` and `net`; unreadable
    /// sources are skipped.
    pub fn collect(&mut self, now_ns: i64) -> Vec<Point> {
        let src = Sources {
            stat: read("/proc/stat"),
            meminfo: read("/proc/meminfo"),
            loadavg: read("/proc/loadavg"),
            uptime: read("/proc/uptime"),
            net_dev: read("/proc/net/dev"),
            mounts: read("/proc/self/mounts"),
            n_cpus: online_cpus(),
        };
        self.collect_from(now_ns, &src, |path| match statvfs(path) {
            Ok(s) => Some(s),
            Err(e) => {
                debug!(path, error = %e, "host input: statvfs failed, mount skipped");
                None
            }
        })
    }

    fn point(
        &self,
        measurement: &str,
        extra_tags: &[(&str, &str)],
        fields: Vec<(String, FieldValue)>,
        now_ns: i64,
    ) -> Point {
        let mut tags: Vec<(String, String)> = extra_tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tags.push(("host".to_string(), self.hostname.clone()));
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Point {
            measurement: measurement.to_string(),
            tags,
            fields,
            time: now_ns,
        }
    }

    fn collect_from(
        &mut self,
        now_ns: i64,
        src: &Sources,
        stat_fs: impl Fn(&str) -> Option<FsStats>,
    ) -> Vec<Point> {
        let mut points = Vec::new();
        // cpu
        let mut per_core = 0u64;
        if let Some(text) = &src.stat {
            let cpus = parse_proc_stat(text);
            if cpus.is_empty() {
                debug!("host input: no cpu lines in /proc/stat");
            }
            let mut next = HashMap::with_capacity(cpus.len());
            for (name, cur) in cpus {
                if name != "cpu-total" {
                    per_core += 1;
                }
                if let Some(u) = self.prev_cpu.get(&name).and_then(|p| cpu_usage(p, &cur)) {
                    let fields = [
                        ("usage_total", u.total),
                        ("usage_user", u.user),
                        ("usage_system", u.system),
                        ("usage_idle", u.idle),
                        ("usage_iowait", u.iowait),
                        ("usage_steal", u.steal),
                        ("usage_nice", u.nice),
                        ("usage_irq", u.irq),
                        ("usage_softirq", u.softirq),
                        ("usage_guest", u.guest),
                        ("usage_guest_nice", u.guest_nice),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), FieldValue::Float(v)))
                    .collect();
                    points.push(self.point("cpu", &[("cpu", &name)], fields, now_ns));
                }
                next.insert(name, cur);
            }
            self.prev_cpu = next;
        }

        // mem
        if let Some(text) = &src.meminfo {
            match mem_fields(&parse_meminfo(text)) {
                Some(fields) => points.push(self.point("mem", &[], fields, now_ns)),
                None => debug!("host input: no MemTotal in /proc/meminfo"),
            }
        }

        // disk
        if let Some(text) = &src.mounts {
            for m in parse_mounts(text) {
                let Some(stats) = stat_fs(&m.path) else {
                    continue;
                };
                let Some(fields) = disk_fields(&stats) else {
                    continue;
                };
                let tags = [
                    ("path", m.path.as_str()),
                    ("device", m.device.as_str()),
                    ("fstype", m.fstype.as_str()),
                ];
                points.push(self.point("disk", &tags, fields, now_ns));
            }
        }

        // system
        let mut fields = Vec::new();
        let n_cpus = src.n_cpus.or((per_core > 0).then_some(per_core));
        let load = src.loadavg.as_deref().and_then(|t| {
            let l = parse_loadavg(t);
            if l.is_none() {
                debug!("host input: cannot parse /proc/loadavg");
            }
            l
        });
        if let Some(l) = load {
            fields.push(("load1".to_string(), FieldValue::Float(l.load1)));
            fields.push(("load5".to_string(), FieldValue::Float(l.load5)));
            fields.push(("load15".to_string(), FieldValue::Float(l.load15)));
        }
        if let Some(n) = n_cpus {
            fields.push(("n_cpus".to_string(), FieldValue::UInt(n)));
            if let Some(l) = load {
                let n = n as f64;
                fields.push(("load1_per_core".to_string(), FieldValue::Float(l.load1 / n)));
                fields.push(("load5_per_core".to_string(), FieldValue::Float(l.load5 / n)));
                fields.push((
                    "load15_per_core".to_string(),
                    FieldValue::Float(l.load15 / n),
                ));
            }
        }
        if let Some(up) = src.uptime.as_deref().and_then(parse_uptime) {
            fields.push(("uptime".to_string(), FieldValue::UInt(up as u64)));
        }
        if !fields.is_empty() {
            points.push(self.point("system", &[], fields, now_ns));
        }

        // net
        if let Some(text) = &src.net_dev {
            let prev = self.prev_net.take();
            let dt_secs = prev
                .as_ref()
                .map(|(t, _)| (now_ns as f64 - *t as f64) / 1e9)
                .filter(|d| *d > 0.0);
            let mut next = HashMap::new();
            for n in parse_net_dev(text) {
                if n.interface == "lo" {
                    continue;
                }
                let mut fields: Vec<(String, FieldValue)> = [
                    ("bytes_recv", n.bytes_recv),
                    ("bytes_sent", n.bytes_sent),
                    ("packets_recv", n.packets_recv),
                    ("packets_sent", n.packets_sent),
                    ("err_in", n.err_in),
                    ("err_out", n.err_out),
                    ("drop_in", n.drop_in),
                    ("drop_out", n.drop_out),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), FieldValue::UInt(v)))
                .collect();
                let p = prev.as_ref().and_then(|(_, m)| m.get(&n.interface));
                if let (Some(dt), Some(p)) = (dt_secs, p) {
                    // A counter that went backwards was reset: no rate this time.
                    if n.bytes_recv >= p.bytes_recv {
                        let r = (n.bytes_recv - p.bytes_recv) as f64 / dt;
                        fields.push(("bytes_recv_per_sec".to_string(), FieldValue::Float(r)));
                    }
                    if n.bytes_sent >= p.bytes_sent {
                        let r = (n.bytes_sent - p.bytes_sent) as f64 / dt;
                        fields.push(("bytes_sent_per_sec".to_string(), FieldValue::Float(r)));
                    }
                }
                points.push(self.point("net", &[("interface", &n.interface)], fields, now_ns));
                next.insert(n.interface.clone(), n);
            }
            self.prev_net = Some((now_ns, next));
        }

        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // /proc/stat of a 2-core VM on Linux 6.5, two snapshots. Deltas of cpu-total: user 300 (of
    // which guest 100), system 100, idle 500, iowait 50, softirq 25, steal 25 → 1000 ticks.
    const STAT_A: &str = "\
cpu  10000 200 3000 80000 500 0 100 50 0 0
cpu0 5000 100 1500 40000 250 0 50 25 0 0
cpu1 5000 100 1500 40000 250 0 50 25 0 0
intr 1849345 0 9 0 0 0 0 0 0 0 0 0 0 156 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 3528920
btime 1716800000
processes 20451
procs_running 2
procs_blocked 0
softirq 1234567 12 345678 4 56789 12345 0 678 456789 0 234567
";
    const STAT_B: &str = "\
cpu  10300 200 3100 80500 550 0 125 75 100 0
cpu0 5150 100 1550 40250 275 0 50 50 50 0
cpu1 5150 100 1550 40250 275 0 75 25 50 0
intr 1850345 0 9 0 0 0 0 0 0 0 0 0 0 156 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 3530920
btime 1716800000
processes 20460
procs_running 1
procs_blocked 0
softirq 1235567 12 346678 4 56789 12345 0 678 456789 0 234567
";

    const MEMINFO: &str = "\
MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:   12000000 kB
Buffers:          500000 kB
Cached:          9000000 kB
SwapCached:         1024 kB
Active:          6543210 kB
Inactive:        5432100 kB
Active(anon):    2345678 kB
Inactive(anon):   123456 kB
Active(file):    4197532 kB
Inactive(file):  5308644 kB
Unevictable:       65432 kB
Mlocked:           32768 kB
SwapTotal:       2097152 kB
SwapFree:        1048576 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:               512 kB
Writeback:             0 kB
AnonPages:       2400000 kB
Mapped:           800000 kB
Shmem:            300000 kB
KReclaimable:     400000 kB
Slab:             600000 kB
SReclaimable:     400000 kB
SUnreclaim:       200000 kB
KernelStack:       16384 kB
PageTables:        40000 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    10097152 kB
Committed_AS:    9000000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       70000 kB
VmallocChunk:          0 kB
Percpu:             8000 kB
HardwareCorrupted:     0 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:      500000 kB
DirectMap2M:    15000000 kB
DirectMap1G:     2097152 kB
";

    // /proc/self/mounts of an Ubuntu 22.04 desktop (Linux 6.5) running Docker.
    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=8012345k,nr_inodes=2003086,mode=755,inode64 0 0
devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=1609876k,mode=755,inode64 0 0
/dev/nvme0n1p2 / ext4 rw,relatime,errors=remount-ro 0 0
securityfs /sys/kernel/security securityfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0
tmpfs /run/lock tmpfs rw,nosuid,nodev,noexec,relatime,size=5120k,inode64 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
pstore /sys/fs/pstore pstore rw,nosuid,nodev,noexec,relatime 0 0
efivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid,nodev,noexec,relatime 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
systemd-1 /proc/sys/fs/binfmt_misc autofs rw,relatime,fd=29,pgrp=1,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=17345 0 0
hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
mqueue /dev/mqueue mqueue rw,nosuid,nodev,noexec,relatime 0 0
debugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec,relatime 0 0
tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0
fusectl /sys/fs/fuse/connections fusectl rw,nosuid,nodev,noexec,relatime 0 0
configfs /sys/kernel/config configfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077,codepage=437,iocharset=iso8859-1,shortname=mixed,errors=remount-ro 0 0
binfmt_misc /proc/sys/fs/binfmt_misc binfmt_misc rw,nosuid,nodev,noexec,relatime 0 0
sunrpc /run/rpc_pipefs rpc_pipefs rw,relatime 0 0
overlay /var/lib/docker/overlay2/3f2a/merged overlay rw,relatime,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/3f2a/diff,workdir=/var/lib/docker/overlay2/3f2a/work 0 0
nsfs /run/docker/netns/8d1c5e0a2b3f nsfs rw 0 0
/dev/sdb1 /media/ana/My\\040Disk ext4 rw,nosuid,nodev,relatime 0 0
/dev/sdc1 /mnt/data xfs rw,relatime 0 0
/dev/sdd1 /mnt/data ext4 rw,relatime 0 0
";

    const NET_A: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  987654    1234    0    0    0     0          0         0   987654    1234    0    0    0     0       0          0
enp3s0: 1000000    5000    1    2    0     0          0        10   400000    3000    3    4    0     0       0          0
docker0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";
    const NET_B: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999    1300    0    0    0     0          0         0   999999    1300    0    0    0     0       0          0
enp3s0: 3000000    6000    1    2    0     0          0        10   500000    3500    3    4    0     0       0          0
docker0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";

    fn field(p: &Point, name: &str) -> Option<f64> {
        p.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_f64())
    }

    fn tag<'a>(p: &'a Point, name: &str) -> Option<&'a str> {
        p.tags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn proc_stat_parses_cpu_lines_only() {
        let cpus = parse_proc_stat(STAT_A);
        let names: Vec<&str> = cpus.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cpu-total", "cpu0", "cpu1"]);
        assert_eq!(cpus[0].1.user, 10000);
        assert_eq!(cpus[0].1.steal, 50);
        // guest columns are left out of the total
        let b = parse_proc_stat(STAT_B);
        assert_eq!(b[0].1.guest, 100);
        assert_eq!(b[0].1.total(), 10300 + 200 + 3100 + 80500 + 550 + 125 + 75);
        // old kernels with 7 columns
        let old = parse_proc_stat("cpu 1 2 3 4 5 6 7\n");
        assert_eq!(old[0].1.softirq, 7);
        assert_eq!(old[0].1.steal, 0);
        assert!(parse_proc_stat("cpu 1 2\ncpufreq 1 2 3 4\n").is_empty());
    }

    #[test]
    fn cpu_percentages_by_hand() {
        let a = parse_proc_stat(STAT_A);
        let b = parse_proc_stat(STAT_B);
        let t = cpu_usage(&a[0].1, &b[0].1).unwrap();
        // 1000 ticks: user 300 (guest not added again), system 100, idle 500, iowait 50,
        // softirq 25, steal 25.
        assert!(close(t.user, 30.0));
        assert!(close(t.system, 10.0));
        assert!(close(t.idle, 50.0));
        assert!(close(t.iowait, 5.0));
        assert!(close(t.softirq, 2.5));
        assert!(close(t.steal, 2.5));
        assert!(close(t.guest, 10.0));
        assert!(close(t.total, 50.0));
        // cpu0: 500 ticks: user 150, system 50, idle 250, iowait 25, steal 25.
        let c0 = cpu_usage(&a[1].1, &b[1].1).unwrap();
        assert!(close(c0.user, 30.0));
        assert!(close(c0.idle, 50.0));
        assert!(close(c0.steal, 5.0));
        assert!(close(c0.softirq, 0.0));
        assert!(close(c0.total, 50.0));
        // cpu1: softirq 25 instead of steal.
        let c1 = cpu_usage(&a[2].1, &b[2].1).unwrap();
        assert!(close(c1.steal, 0.0));
        assert!(close(c1.softirq, 5.0));
        // no time passed
        assert!(cpu_usage(&a[0].1, &a[0].1).is_none());
        // iowait going backwards does not produce negative or >100 values
        let mut back = b[0].1;
        back.iowait = 0;
        let u = cpu_usage(&a[0].1, &back).unwrap();
        assert!(u.iowait == 0.0 && (0.0..=100.0).contains(&u.total));
    }

    #[test]
    fn meminfo_percent() {
        let m = parse_meminfo(MEMINFO);
        assert_eq!(m.total, Some(16_000_000 * 1024));
        assert_eq!(m.available, Some(12_000_000 * 1024));
        let f = mem_fields(&m).unwrap();
        let p = Point {
            measurement: "mem".into(),
            tags: vec![],
            fields: f,
            time: 0,
        };
        assert!(close(field(&p, "used_percent").unwrap(), 25.0));
        assert!(close(field(&p, "available_percent").unwrap(), 75.0));
        assert_eq!(field(&p, "used"), Some((4_000_000u64 * 1024) as f64));
        assert_eq!(field(&p, "free"), Some((2_000_000u64 * 1024) as f64));
        assert_eq!(field(&p, "cached"), Some((9_000_000u64 * 1024) as f64));
        assert_eq!(field(&p, "buffers"), Some((500_000u64 * 1024) as f64));
        assert_eq!(field(&p, "swap_total"), Some((2_097_152u64 * 1024) as f64));
        assert_eq!(field(&p, "swap_used"), Some((1_048_576u64 * 1024) as f64));
        // no MemAvailable (Linux < 3.14): free + buffers + cached
        let old =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n");
        let f = mem_fields(&old).unwrap();
        assert_eq!(
            f[1],
            ("available".to_string(), FieldValue::UInt(400 * 1024))
        );
        assert_eq!(f[6], ("used_percent".to_string(), FieldValue::Float(60.0)));
        assert!(mem_fields(&parse_meminfo("")).is_none());
    }

    #[test]
    fn loadavg_and_uptime() {
        let l = parse_loadavg("0.52 0.58 0.59 2/1234 56789\n").unwrap();
        assert_eq!((l.load1, l.load5, l.load15), (0.52, 0.58, 0.59));
        assert!(parse_loadavg("0.52 x\n").is_none());
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350735.47));
        assert_eq!(parse_uptime(""), None);
    }

    #[test]
    fn mounts_skip_pseudo_fs_and_duplicates() {
        let m = parse_mounts(MOUNTS);
        let paths: Vec<&str> = m.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev",
                "/run",
                "/",
                "/dev/shm",
                "/run/lock",
                "/boot/efi",
                "/var/lib/docker/overlay2/3f2a/merged",
                "/media/ana/My Disk",
                "/mnt/data",
            ]
        );
        for mount in &m {
            assert!(!is_pseudo_fs(&mount.fstype), "{mount:?}");
        }
        let root = m.iter().find(|m| m.path == "/").unwrap();
        assert_eq!(root.device, "/dev/nvme0n1p2");
        assert_eq!(root.fstype, "ext4");
        // the topmost of two mounts on one point wins
        let data = m.iter().find(|m| m.path == "/mnt/data").unwrap();
        assert_eq!(
            (data.device.as_str(), data.fstype.as_str()),
            ("/dev/sdd1", "ext4")
        );
        // binfmt_misc over an autofs trigger: both pseudo, gone
        assert!(!paths.contains(&"/proc/sys/fs/binfmt_misc"));
        // a pseudo fs mounted over a real one hides it
        let over = parse_mounts("/dev/sda1 /x ext4 rw 0 0\nproc /x proc rw 0 0\n");
        assert!(over.is_empty());
    }

    #[test]
    fn disk_fields_like_df() {
        let s = FsStats {
            block_size: 4096,
            blocks: 1000,
            blocks_free: 300,
            blocks_avail: 250,
            files: 500,
            files_free: 400,
        };
        let p = Point {
            measurement: "disk".into(),
            tags: vec![],
            fields: disk_fields(&s).unwrap(),
            time: 0,
        };
        assert_eq!(field(&p, "total"), Some(4_096_000.0));
        assert_eq!(field(&p, "used"), Some(700.0 * 4096.0));
        assert_eq!(field(&p, "free"), Some(250.0 * 4096.0));
        assert!(close(
            field(&p, "used_percent").unwrap(),
            700.0 / 950.0 * 100.0
        ));
        assert_eq!(field(&p, "inodes_used"), Some(100.0));
        assert!(disk_fields(&FsStats::default()).is_none());
    }

    #[test]
    fn net_dev_counters() {
        let n = parse_net_dev(NET_A);
        assert_eq!(n.len(), 3);
        let e = &n[1];
        assert_eq!(e.interface, "enp3s0");
        assert_eq!(
            (e.bytes_recv, e.packets_recv, e.err_in, e.drop_in),
            (1_000_000, 5000, 1, 2)
        );
        assert_eq!(
            (e.bytes_sent, e.packets_sent, e.err_out, e.drop_out),
            (400_000, 3000, 3, 4)
        );
        // counter glued to the colon
        let g = parse_net_dev("eth0:12345678901 5 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n");
        assert_eq!(g[0].bytes_recv, 12_345_678_901);
        assert_eq!(g[0].bytes_sent, 7);
    }

    fn sources(stat: &str, net: &str) -> Sources {
        Sources {
            stat: Some(stat.into()),
            meminfo: Some(MEMINFO.into()),
            loadavg: Some("3.00 2.00 1.00 2/1234 56789\n".into()),
            uptime: Some("350735.47 234388.90\n".into()),
            net_dev: Some(net.into()),
            mounts: Some(MOUNTS.into()),
            n_cpus: Some(2),
        }
    }

    fn fake_fs(path: &str) -> Option<FsStats> {
        match path {
            "/" => Some(FsStats {
                block_size: 4096,
                blocks: 1000,
                blocks_free: 300,
                blocks_avail: 250,
                files: 500,
                files_free: 400,
            }),
            // size 0 (like some tmpfs in sandboxes) and unreadable mounts are skipped
            "/run/lock" => Some(FsStats::default()),
            _ => None,
        }
    }

    #[test]
    fn pipeline_with_fixed_sources() {
        let mut h = HostInput::new(Some(" web01\n".into()));
        assert_eq!(h.hostname(), "web01");
        let t0 = 1_700_000_000_000_000_000i64;
        let first = h.collect_from(t0, &sources(STAT_A, NET_A), fake_fs);
        assert!(first.iter().all(|p| p.time == t0));
        assert!(first.iter().all(|p| tag(p, "host") == Some("web01")));
        assert!(!first.iter().any(|p| p.measurement == "cpu"));
        let net: Vec<&Point> = first.iter().filter(|p| p.measurement == "net").collect();
        assert_eq!(net.len(), 2, "lo skipped");
        assert!(field(net[0], "bytes_recv_per_sec").is_none());

        let t1 = t0 + 2_000_000_000;
        let second = h.collect_from(t1, &sources(STAT_B, NET_B), fake_fs);
        for p in &second {
            assert_eq!(p.time, t1);
            assert_eq!(tag(p, "host"), Some("web01"));
            let mut sorted = p.tags.clone();
            sorted.sort();
            assert_eq!(p.tags, sorted, "tags sorted by key");
        }
        let cpu: Vec<&Point> = second.iter().filter(|p| p.measurement == "cpu").collect();
        assert_eq!(cpu.len(), 3);
        let total = cpu
            .iter()
            .find(|p| tag(p, "cpu") == Some("cpu-total"))
            .unwrap();
        assert!(close(field(total, "usage_total").unwrap(), 50.0));
        assert!(close(field(total, "usage_user").unwrap(), 30.0));
        let c1 = cpu.iter().find(|p| tag(p, "cpu") == Some("cpu1")).unwrap();
        assert!(close(field(c1, "usage_steal").unwrap(), 0.0));

        let enp = second
            .iter()
            .find(|p| p.measurement == "net" && tag(p, "interface") == Some("enp3s0"))
            .unwrap();
        assert_eq!(field(enp, "bytes_recv"), Some(3_000_000.0));
        // 2 000 000 bytes in 2 s, 100 000 bytes in 2 s
        assert_eq!(field(enp, "bytes_recv_per_sec"), Some(1_000_000.0));
        assert_eq!(field(enp, "bytes_sent_per_sec"), Some(50_000.0));

        let sys = second.iter().find(|p| p.measurement == "system").unwrap();
        assert_eq!(field(sys, "n_cpus"), Some(2.0));
        assert_eq!(field(sys, "load1_per_core"), Some(1.5));
        assert_eq!(field(sys, "uptime"), Some(350735.0));

        let disks: Vec<&Point> = second.iter().filter(|p| p.measurement == "disk").collect();
        assert_eq!(disks.len(), 1);
        assert_eq!(tag(disks[0], "path"), Some("/"));
        assert_eq!(tag(disks[0], "device"), Some("/dev/nvme0n1p2"));
        assert_eq!(tag(disks[0], "fstype"), Some("ext4"));

        // a missing source is skipped, the others still come
        let mut partial = sources(STAT_B, NET_B);
        partial.meminfo = None;
        partial.stat = None;
        let third = h.collect_from(t1 + 1, &partial, fake_fs);
        assert!(!third.iter().any(|p| p.measurement == "mem"));
        assert!(third.iter().any(|p| p.measurement == "system"));
    }

    #[test]
    fn collect_on_this_machine() {
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i64
        };
        let mut h = HostInput::new(None);
        assert!(!h.hostname().is_empty());
        let first = h.collect(now());
        assert!(!first.is_empty());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let t = now();
        let points = h.collect(t);
        for p in &points {
            assert_eq!(p.time, t);
            assert_eq!(tag(p, "host"), Some(h.hostname()), "{p:?}");
        }
        let total = points
            .iter()
            .find(|p| p.measurement == "cpu" && tag(p, "cpu") == Some("cpu-total"))
            .expect("cpu-total on the second collect");
        let u = field(total, "usage_total").unwrap();
        assert!((0.0..=100.0).contains(&u), "usage_total {u}");
        let mem = points.iter().find(|p| p.measurement == "mem").unwrap();
        let up = field(mem, "used_percent").unwrap();
        assert!((0.0..=100.0).contains(&up), "used_percent {up}");
        let sys = points.iter().find(|p| p.measurement == "system").unwrap();
        assert!(field(sys, "load1").unwrap() >= 0.0);
        assert!(field(sys, "n_cpus").unwrap() >= 1.0);
        assert!(
            points.iter().any(|p| p.measurement == "disk"
                && tag(p, "path") == Some("/")
                && field(p, "total").unwrap_or(0.0) > 0.0),
            "root disk point"
        );
    }
}
