//! Keeps the bundled target up for the whole run (each instance, and a spawned Redis): when
//! one dies mid-run (a crash, the OOM killer, someone's `kill`), records how and when, starts
//! it again on the same address and records when it answered again. Connections come back on their own (SSE reconnects with
//! `Last-Event-ID`, WebSocket with `reconnect = true`); the verdict reports the outage, and
//! what was lost meanwhile falls in `gaps_across_reconnects`.

use std::future::Future;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::live::redis_child::SpawnedRedis;
use crate::live::target::{Target, TargetError};
use crate::results::report::Outage;

/// Restarts allowed in one run: a server that keeps dying is a failed target.
const MAX_RESTARTS: u32 = 5;

/// The bundled target's pid, shared with whoever samples it; 0 while it is down.
pub(crate) type SharedPid = Arc<AtomicU32>;

/// The pid in `shared`, `None` while the target is down.
pub(crate) fn current(shared: &SharedPid) -> Option<u32> {
    Some(shared.load(Ordering::Acquire)).filter(|&p| p != 0)
}

/// A child process the run keeps up: the bundled server (an instance of it) or the Redis
/// its instances share.
pub(crate) trait Supervised: Send + 'static {
    /// Completes when it exits.
    fn exited(&mut self) -> impl Future<Output = std::io::Result<ExitStatus>> + Send;
    /// Starts it again where it was and waits until it serves.
    fn restart(&mut self) -> impl Future<Output = Result<(), TargetError>> + Send;
    /// Its pid while it runs.
    fn pid(&self) -> Option<u32>;
}

impl Supervised for Target {
    fn exited(&mut self) -> impl Future<Output = std::io::Result<ExitStatus>> + Send {
        Target::exited(self)
    }
    fn restart(&mut self) -> impl Future<Output = Result<(), TargetError>> + Send {
        Target::restart(self)
    }
    fn pid(&self) -> Option<u32> {
        Target::pid(self)
    }
}

impl Supervised for SpawnedRedis {
    fn exited(&mut self) -> impl Future<Output = std::io::Result<ExitStatus>> + Send {
        SpawnedRedis::exited(self)
    }
    fn restart(&mut self) -> impl Future<Output = Result<(), TargetError>> + Send {
        SpawnedRedis::restart(self)
    }
    fn pid(&self) -> Option<u32> {
        SpawnedRedis::pid(self)
    }
}

/// A running supervisor of one child.
#[derive(Debug)]
pub(crate) struct Supervisor<T> {
    stop: watch::Sender<bool>,
    task: JoinHandle<(T, Vec<Outage>)>,
}

impl<T: Supervised> Supervisor<T> {
    /// Watches `target` (started at `t0`; `what` names it in outages, e.g. "the bundled
    /// server"), keeping `pid` current; sets `failed` when it died and could not be brought
    /// back.
    pub(crate) fn start(
        mut target: T,
        what: String,
        t0: Instant,
        pid: SharedPid,
        failed: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut outages = Vec::new();
            for restarts in 0.. {
                let status = tokio::select! {
                    status = target.exited() => status,
                    _ = stopped.wait_for(|s| *s) => break,
                };
                let from_s = t0.elapsed().as_secs_f64();
                pid.store(0, Ordering::Release);
                let how = match status {
                    Ok(status) => format!("{what} exited ({status})"),
                    Err(e) => format!("{what} could not be waited for ({e})"),
                };
                let restarted = if restarts < MAX_RESTARTS {
                    tracing::warn!("{how}; starting it again on the same address");
                    target.restart().await.map_err(|e| e.to_string())
                } else {
                    Err(format!("it died {} times", MAX_RESTARTS + 1))
                };
                let to_s = t0.elapsed().as_secs_f64();
                match restarted {
                    Ok(()) => {
                        pid.store(target.pid().unwrap_or(0), Ordering::Release);
                        let cause = format!("{how} and was started again on the same address");
                        outages.push(Outage {
                            from_s,
                            to_s,
                            cause,
                        });
                    }
                    Err(why) => {
                        let cause = format!("{how} and could not be started again: {why}");
                        *failed.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(cause.clone());
                        outages.push(Outage {
                            from_s,
                            to_s,
                            cause,
                        });
                        break;
                    }
                }
            }
            (target, outages)
        });
        Self { stop, task }
    }

    /// Stops watching (before the target is stopped on purpose); returns the target and the
    /// outages it had.
    pub(crate) async fn finish(self) -> Result<(T, Vec<Outage>), tokio::task::JoinError> {
        let _ = self.stop.send(true);
        self.task.await
    }
}
