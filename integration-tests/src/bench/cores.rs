//! Where the serve path runs: `hfconnect serve` on a core of its own, the
//! load generator and the fake endpoint on the others. On a two-core machine
//! the three otherwise take turns on both cores, and a request waiting for a
//! core shows as serve's latency (the tail grew by milliseconds), which says
//! more about the scheduler than about serve. Linux only; elsewhere the
//! serve path shares the cores like the others.

/// The cores of the serve layout.
#[derive(Debug, Clone)]
pub struct Split {
    /// The load generator and the in-process fake endpoint.
    pub bench: Vec<usize>,
    /// `hfconnect serve`.
    pub serve: Vec<usize>,
}

fn list(v: &[usize]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Split {
    /// The last allowed core for serve, the rest for the bench; `None` with
    /// fewer than two cores, off Linux, or where threads may not be pinned
    /// (some containers), checked on a scratch thread.
    pub fn new() -> Option<Split> {
        let mut all = allowed();
        if all.len() < 2 {
            return None;
        }
        let serve = vec![all.pop()?];
        let probe = all.clone();
        let may_pin = std::thread::spawn(move || pin_current_thread(&probe).is_ok())
            .join()
            .unwrap_or(false);
        may_pin.then_some(Split { bench: all, serve })
    }

    /// For the report.
    pub fn describe(&self) -> String {
        format!(
            "the load generator and the fake endpoint on core {}, `serve` on core {}",
            list(&self.bench),
            list(&self.serve)
        )
    }
}

#[cfg(target_os = "linux")]
mod os {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;

    pub fn allowed() -> Vec<usize> {
        match sched_getaffinity(Pid::from_raw(0)) {
            Ok(set) => (0..CpuSet::count())
                .filter(|c| set.is_set(*c).unwrap_or(false))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Confine thread `tid` (0: the calling one) to `cores`.
    pub fn pin(tid: i32, cores: &[usize]) -> Result<(), String> {
        let mut set = CpuSet::new();
        for c in cores {
            set.set(*c).map_err(|e| format!("core {c}: {e}"))?;
        }
        sched_setaffinity(Pid::from_raw(tid), &set)
            .map_err(|e| format!("cannot pin thread {tid} to cores {cores:?}: {e}"))
    }
}

/// The cores this thread may run on (empty off Linux).
pub fn allowed() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    return os::allowed();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// Confine the calling thread, and the threads it starts from now on, to `cores`.
pub fn pin_current_thread(cores: &[usize]) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    return os::pin(0, cores);
    #[cfg(not(target_os = "linux"))]
    Err(format!("pinning to cores {cores:?} needs Linux"))
}

/// Confine every thread of process `pid` to `cores`; threads it starts later
/// inherit it from the thread that starts them.
pub fn pin_process(pid: u32, cores: &[usize]) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| format!("cannot list the threads of {pid}: {e}"))?;
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
                os::pin(tid, cores)?;
            }
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    Err(format!("pinning {pid} to cores {cores:?} needs Linux"))
}
