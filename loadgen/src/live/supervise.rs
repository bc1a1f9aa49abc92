//! Keeps the bundled target up for the whole run: when it dies mid-run (a crash, the OOM
//! killer, someone's `kill`), records how and when, starts it again on the same address and
//! records when it answered again. Connections come back on their own (SSE reconnects with
//! `Last-Event-ID`, WebSocket with `reconnect = true`); the verdict reports the outage, and
//! what was lost meanwhile falls in `gaps_across_reconnects`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::live::target::Target;
use crate::results::report::Outage;

/// Restarts allowed in one run: a server that keeps dying is a failed target.
const MAX_RESTARTS: u32 = 5;

/// The bundled target's pid, shared with whoever samples it; 0 while it is down.
pub(crate) type SharedPid = Arc<AtomicU32>;

/// The pid in `shared`, `None` while the target is down.
pub(crate) fn current(shared: &SharedPid) -> Option<u32> {
    Some(shared.load(Ordering::Acquire)).filter(|&p| p != 0)
}

/// A running supervisor of the bundled target.
#[derive(Debug)]
pub(crate) struct Supervisor {
    stop: watch::Sender<bool>,
    task: JoinHandle<(Target, Vec<Outage>)>,
}

impl Supervisor {
    /// Watches `target` (started at `t0`), keeping `pid` current; sets `failed` when it died
    /// and could not be brought back.
    pub(crate) fn start(
        mut target: Target,
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
                    Ok(status) => format!("the bundled server exited ({status})"),
                    Err(e) => format!("the bundled server could not be waited for ({e})"),
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
    pub(crate) async fn finish(self) -> Result<(Target, Vec<Outage>), tokio::task::JoinError> {
        let _ = self.stop.send(true);
        self.task.await
    }
}
