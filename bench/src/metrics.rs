//! Measuring: the run's clock, latency percentiles, the load generator's own
//! CPU time (getrusage) and other processes' CPU time and memory (/proc).
//!
//! Owns every number that is not a count. Linux only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The instant all timestamps in payloads are measured from.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the run's clock started (the first call).
pub fn now_us() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Percentiles of a latency sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises samples in microseconds (sorts them).
    pub fn from_us(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            f64::from(samples[index]) / 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Microseconds between two clock readings, saturated to fit a sample.
pub fn elapsed_us(from_us: u64, to_us: u64) -> u32 {
    u32::try_from(to_us.saturating_sub(from_us)).unwrap_or(u32::MAX)
}

/// This process's CPU time (user + system) in seconds.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads
    // nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Clock ticks per second of /proc/PID/stat's times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU time (user + system, all threads) of process `pid` in seconds, or
/// `None` if it is gone.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are
    // counted from the closing parenthesis. utime and stime are fields 14
    // and 15, i.e. the 12th and 13th after the state.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU time of every PostgreSQL process (postmaster, backends, background
/// workers) in seconds, by pid.
pub fn postgres_cpu_by_pid() -> Vec<(u32, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .filter_map(|pid| Some((pid, process_cpu_seconds(pid)?)))
        .collect()
}

/// Busy CPU seconds of the whole machine, all cores (user, nice, system,
/// irq, softirq and steal time of /proc/stat's first line), and the number
/// of cores.
pub fn machine_cpu_seconds() -> Option<(f64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let total: Vec<f64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| total.get(i))
        .sum();
    let cores = lines.filter(|line| line.starts_with("cpu")).count();
    Some((busy / clock_ticks(), cores.max(1)))
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn process_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()
}

/// CPU seconds of the watched processes, read at the start and end of a
/// measured phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    /// The load generator itself.
    pub load_s: f64,
    /// The XMPP server, if its pid was given.
    pub server_s: Option<f64>,
    /// pubsubd, if its pid was given.
    pub pubsubd_s: Option<f64>,
    /// Every PostgreSQL process alive at the second reading, less what it had used at
    /// the first (a process started in between counts whole; one that exits in
    /// between takes its time with it; pubsubd's pool stays open through a phase).
    pub postgres_s: Option<f64>,
    #[serde(skip)]
    postgres_pids: Vec<(u32, f64)>,
    /// The whole machine: every process, all cores.
    pub machine_s: Option<f64>,
    /// `machine_s` over the wall time between the readings times the cores:
    /// 1.0 is every core busy all the time.
    pub machine_busy: Option<f64>,
    /// Wall time between the readings (0 in a single reading).
    pub wall_s: f64,
    #[serde(skip)]
    at: Option<Instant>,
    #[serde(skip)]
    cores: usize,
}

/// The pids whose CPU and memory are reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    /// The XMPP server's main process.
    pub server: Option<u32>,
    /// pubsubd.
    pub pubsubd: Option<u32>,
}

impl Watched {
    /// Reads everyone's CPU time now.
    pub fn cpu_now(&self) -> CpuUse {
        let machine = machine_cpu_seconds();
        CpuUse {
            load_s: own_cpu_seconds(),
            server_s: self.server.and_then(process_cpu_seconds),
            pubsubd_s: self.pubsubd.and_then(process_cpu_seconds),
            postgres_s: None,
            postgres_pids: postgres_cpu_by_pid(),
            machine_s: machine.map(|(busy, _)| busy),
            machine_busy: None,
            wall_s: 0.0,
            at: Some(Instant::now()),
            cores: machine.map_or(1, |(_, cores)| cores),
        }
    }
}

impl CpuUse {
    /// What was used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuUse) -> CpuUse {
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let wall_s = match (self.at, earlier.at) {
            (Some(now), Some(then)) => now.saturating_duration_since(then).as_secs_f64(),
            _ => 0.0,
        };
        let machine_s = diff(self.machine_s, earlier.machine_s);
        CpuUse {
            load_s: self.load_s - earlier.load_s,
            server_s: diff(self.server_s, earlier.server_s),
            pubsubd_s: diff(self.pubsubd_s, earlier.pubsubd_s),
            postgres_s: (!self.postgres_pids.is_empty()).then(|| {
                self.postgres_pids
                    .iter()
                    .map(|(pid, now)| {
                        let then = earlier.postgres_pids.iter().find(|(p, _)| p == pid);
                        now - then.map_or(0.0, |(_, t)| *t)
                    })
                    .sum()
            }),
            postgres_pids: Vec::new(),
            machine_s,
            machine_busy: machine_s
                .filter(|_| wall_s > 0.0)
                .map(|busy| busy / (wall_s * self.cores as f64)),
            wall_s,
            at: self.at,
            cores: self.cores,
        }
    }
}

/// How often the memory sampler looks at the watched processes.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Peak resident memory of the watched processes over a phase, sampled.
#[derive(Debug, Default)]
pub struct RssPeaks {
    server_kib: AtomicU64,
    pubsubd_kib: AtomicU64,
}

/// Peak RSS in MiB, as reported.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PeakRss {
    /// The XMPP server.
    pub server_mib: Option<f64>,
    /// pubsubd.
    pub pubsubd_mib: Option<f64>,
}

impl RssPeaks {
    /// Starts sampling `watched` until the returned handle is aborted.
    pub fn start(watched: Watched) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let peaks = Arc::new(Self::default());
        let sampler = Arc::clone(&peaks);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RSS_SAMPLE_INTERVAL);
            loop {
                tick.tick().await;
                if let Some(kib) = watched.server.and_then(process_rss_kib) {
                    sampler.server_kib.fetch_max(kib, Ordering::Relaxed);
                }
                if let Some(kib) = watched.pubsubd.and_then(process_rss_kib) {
                    sampler.pubsubd_kib.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        (peaks, task)
    }

    /// The peaks seen so far.
    pub fn peaks(&self, watched: &Watched) -> PeakRss {
        let mib = |pid: Option<u32>, kib: &AtomicU64| {
            pid.map(|_| kib.load(Ordering::Relaxed) as f64 / 1024.0)
        };
        PeakRss {
            server_mib: mib(watched.server, &self.server_kib),
            pubsubd_mib: mib(watched.pubsubd, &self.pubsubd_kib),
        }
    }
}

/// Raises the open-file limit to its hard maximum: thousands of sessions
/// need thousands of sockets. Children (servers started by `serve-env`)
/// inherit it.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_sample() {
        let mut samples: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let l = Latency::from_us(&mut samples);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 500.0).abs() <= 1.0);
        assert!((l.p99_ms - 990.0).abs() <= 1.0);
        assert_eq!(l.max_ms, 1000.0);
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        let pid = std::process::id();
        assert!(process_cpu_seconds(pid).is_some());
        assert!(process_rss_kib(pid).unwrap_or(0) > 0);
    }
}
