//! The publishers' own runtime: one OS thread running a current-thread tokio runtime.
//!
//! Why not the run's multi-thread runtime: a publisher woken by the timer thread is a wake from
//! outside the runtime, so tokio queues it on its global queue, first in first out, behind
//! whatever is queued there. A broadcast to 10,000 streams makes 10,000 subscriber tasks ready
//! at once, more than the workers' local queues hold, so most of them wait in that same global
//! queue, and the publisher's next send waited until the workers had read them: the scenario's
//! rate was not kept (`send_lag` p99 10-33 ms at 120,000 deliveries/s). On a thread of its own
//! a publisher waits only for the OS scheduler (p99 3-6 ms in the same runs, on two cores
//! shared with the target: `results/2026-11-22/send-runtime`). Delivery latency is counted from
//! the slots either way, so this moves no latency out of the results; it makes the load arrive
//! when the scenario says. Its sockets (the POST connection, a publishing WebSocket) are opened
//! inside its task, so they are registered with this runtime's I/O driver, on this thread.

use std::io;
use std::thread;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// Handle to the publishers' thread. Dropping it ends the thread: its runtime is dropped there
/// (cancelling any task still on it), not in the async context that drops this handle.
#[derive(Debug)]
pub(crate) struct SendRuntime {
    handle: Handle,
    /// Closed on drop, which lets the thread's `block_on` return.
    _stop: oneshot::Sender<()>,
}

impl SendRuntime {
    /// Starts the thread and its runtime (I/O and time drivers enabled).
    ///
    /// # Errors
    /// The runtime's driver could not be created or the OS refused to start a thread.
    pub(crate) fn start() -> io::Result<Self> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("loadgen-send".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Where to spawn a publisher.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn tasks_run_on_their_own_thread_while_the_spawning_runtime_is_blocked() {
        let sends = SendRuntime::start().expect("send runtime");
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = mpsc::channel();
        main.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            tasks.spawn_on(
                async move {
                    for i in 0..3 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let name = thread::current().name().map(str::to_owned);
                        tx.send((i, name)).expect("receiver");
                    }
                },
                sends.handle(),
            );
            // The spawning runtime's only thread blocks here: the task can only progress on
            // the send runtime's thread.
            for i in 0..3 {
                let (got, name) = rx.recv_timeout(Duration::from_secs(10)).expect("a send");
                assert_eq!(got, i);
                assert_eq!(name.as_deref(), Some("loadgen-send"));
            }
            tasks.join_next().await.expect("task").expect("finished");
        });
    }

    #[test]
    fn dropping_the_handle_ends_the_thread_and_cancels_what_is_left() {
        let sends = SendRuntime::start().expect("send runtime");
        let (tx, rx) = mpsc::channel::<()>();
        // A task that never finishes; it holds the sender until it is dropped.
        sends.handle().spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(sends);
        // Disconnected (not a timeout): the runtime was dropped and the task with it.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
