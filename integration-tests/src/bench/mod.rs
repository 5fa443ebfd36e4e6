//! The benchmark harness: hfconnect's overhead measured against the physical
//! limit (a direct HTTP call to the same fake endpoint) in one run, plus micro
//! figures for the access policy, config loading and SSE parsing. Run it with
//! `cargo run --release -p hfconnect-integration-tests --bin bench -- --help`.

pub mod access;
pub mod cores;
pub mod load;
pub mod micro;

use std::time::Duration;

/// Latencies in nanoseconds, sorted on demand.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        Duration::from_nanos(self.0[rank - 1])
    }
}

/// Microseconds with one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Signed microseconds (`a - b`).
pub fn us_diff(a: Duration, b: Duration) -> String {
    format!("{:+.1}", (a.as_secs_f64() - b.as_secs_f64()) * 1e6)
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (Linux;
/// `None` elsewhere). The kernel reports it in USER_HZ (100 per second).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of process `pid` in nanoseconds: the sum of its threads'
/// `/proc/<pid>/task/*/schedstat` (on-CPU time, not the 10 ms ticks of
/// `/proc/<pid>/stat`, which are too coarse for rounds of a fraction of a
/// second). Threads that ended are not counted; serve's threads live as long
/// as it does. Falls back to [`cpu_time`] where schedstat is missing.
pub fn cpu_time_fine(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    let mut found = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = text
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
            {
                total += ns;
                found = true;
            }
        }
    }
    if found {
        Some(Duration::from_nanos(total))
    } else {
        cpu_time(Some(pid))
    }
}

/// A `/proc/<pid>/status` size field (`VmRSS`, `VmHWM`) in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The machine, for the report: CPU model, cores, kernel.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}
