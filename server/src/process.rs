//! Resident memory and CPU time of a process (this one, or another by pid) through the
//! `sysinfo` crate, so the figures exist on Linux, macOS and Windows alike. The one reader of
//! both programs: the server's `/metrics` (`process_resident_memory_bytes`) and loadgen's
//! sampling of itself and of the bundled server.
//!
//! Cost (measured on the project's 2-vCPU VM with `cargo bench -p benches --bench
//! process_sampling`): one sample of one process takes 65 µs with a kept [`ProcessSampler`] and
//! 161 µs one-shot, against 44 µs for the former `/proc/<pid>/{status,stat}` parsing. Sampled
//! once a second that is under 0.01% of a core, so sysinfo replaced `/proc` everywhere; the
//! reporter keeps its samplers, the phase boundaries use the one-shot helpers.

use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// What one sample of a process says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time since the process started.
    pub cpu_time: Duration,
}

/// Samples processes; keep one to sample repeatedly without setting sysinfo up again.
#[derive(Debug)]
pub struct ProcessSampler {
    /// `None` when sysinfo does not support this platform.
    system: Option<System>,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self {
            system: System::new().ok(),
        }
    }
}

impl ProcessSampler {
    /// Memory and CPU time of `pid` (`None`: this process); `None` when that process no
    /// longer exists or the platform cannot tell.
    pub fn sample(&mut self, pid: Option<u32>) -> Option<ProcessSample> {
        let system = self.system.as_mut()?;
        let pid = match pid {
            Some(p) => Pid::from_u32(p),
            None => sysinfo::get_current_pid().ok()?,
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let process = system.process(pid)?;
        Some(ProcessSample {
            rss_bytes: process.memory(),
            cpu_time: Duration::from_millis(process.accumulated_cpu_time()),
        })
    }
}

/// Resident set size of `pid` (`None`: this process) in bytes.
#[must_use]
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    ProcessSampler::default().sample(pid).map(|s| s.rss_bytes)
}

/// User plus system CPU time of `pid` (`None`: this process).
#[must_use]
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    ProcessSampler::default().sample(pid).map(|s| s.cpu_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measurable_and_a_missing_one_is_none() {
        let mut sampler = ProcessSampler::default();
        let me = sampler.sample(None).expect("this process");
        assert!(me.rss_bytes > 1024 * 1024, "{me:?}");
        // Burn a little CPU: the accumulated time does not go backwards.
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let later = sampler.sample(None).expect("this process");
        assert!(later.cpu_time >= me.cpu_time);
        assert!(sampler.sample(Some(u32::MAX)).is_none(), "no such process");
        assert_eq!(rss_bytes(Some(u32::MAX)), None);
    }
}
