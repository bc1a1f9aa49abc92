//! What the OS says about the machine: the open-files limit and a description for
//! `run.json`. Process memory and CPU come from `server::process` (the sysinfo crate).

use rustix::process::{Resource, getrlimit, setrlimit};

/// The open-files limit could not be raised far enough.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "this scenario needs about {needed} open files but the hard limit is {hard}: \
     lower the connection counts, split the load over several loadgen processes, \
     or raise the hard limit (ulimit -Hn)"
)]
pub struct FdLimitError {
    /// Descriptors the scenario needs.
    pub needed: u64,
    /// The hard limit.
    pub hard: u64,
}

/// What a run needing some descriptors does with the open-files limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdPlan {
    /// The soft limit is already the hard one.
    Keep,
    /// Raise the soft limit to the hard one (loadgen always does, for reconnects and scrapes).
    RaiseToHard,
}

/// Decides, without touching the process, whether `needed` descriptors fit under the `hard`
/// limit and whether the `soft` one must be raised.
///
/// # Errors
/// [`FdLimitError`] when `needed` is above `hard`.
pub fn plan_fd_limit(needed: u64, soft: u64, hard: u64) -> Result<FdPlan, FdLimitError> {
    if needed > hard {
        return Err(FdLimitError { needed, hard });
    }
    Ok(if soft < hard {
        FdPlan::RaiseToHard
    } else {
        FdPlan::Keep
    })
}

/// Raises the soft open-files limit to the hard limit; fails when `needed` exceeds it.
/// Returns the new soft limit.
///
/// # Errors
/// [`FdLimitError`] when `needed` is above the hard limit.
pub fn raise_fd_limit(needed: u64) -> Result<u64, FdLimitError> {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let soft = limit.current.unwrap_or(u64::MAX);
    if plan_fd_limit(needed, soft, hard)? == FdPlan::RaiseToHard {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-files soft limit to {hard}: {e}");
            return if needed > soft {
                Err(FdLimitError { needed, hard: soft })
            } else {
                Ok(soft)
            };
        }
        return Ok(hard);
    }
    Ok(soft)
}

/// A short description of the machine for `run.json`.
#[must_use]
pub fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let cpu_model = read("/proc/cpuinfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_owned())
    });
    let mem_total_kib = read("/proc/meminfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    serde_json::json!({
        "hostname": read("/proc/sys/kernel/hostname"),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu_model": cpu_model,
        "cpus": std::thread::available_parallelism().map(std::num::NonZero::get).ok(),
        "memory_bytes": mem_total_kib.map(|k| k * 1024),
        "open_files_limit": getrlimit(Resource::Nofile).current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_needs_beyond_the_hard_limit_are_refused_clearly() {
        let err = plan_fd_limit(20_001, 1_024, 20_000).expect_err("beyond the hard limit");
        assert_eq!(
            err,
            FdLimitError {
                needed: 20_001,
                hard: 20_000
            }
        );
        assert!(
            err.to_string().contains("about 20001 open files") && err.to_string().contains("20000")
        );
        assert_eq!(
            plan_fd_limit(20_000, 1_024, 20_000),
            Ok(FdPlan::RaiseToHard)
        );
        assert_eq!(plan_fd_limit(10, 20_000, 20_000), Ok(FdPlan::Keep));
    }
}
