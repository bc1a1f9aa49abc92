//! Shutdown signal shared by every stream and socket.
//!
//! The accept loops stop on it, hyper-served connections finish their response in flight and
//! close, and each SSE stream or WebSocket watches it and ends (SSE) or sends Close 1001 (WS).

use tokio::sync::watch;

/// Trigger side: call [`ShutdownTrigger::trigger`] once to begin shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Listener side, cheap to clone into every connection.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its listener.
#[must_use]
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Tells every listener to shut down. Idempotent.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A new listener.
    #[must_use]
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether shutdown has begun.
    #[must_use]
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Whether shutdown has begun or the trigger is gone: one atomic load, no lock (for a
    /// check on every event). Valid for a listener that never waits itself ([`Self::wait`]
    /// marks the value seen): its clones all start from the channel's first value.
    #[must_use]
    pub fn begun_or_gone(&self) -> bool {
        self.0.has_changed().unwrap_or(true)
    }

    /// Completes once shutdown has begun (immediately if it already has). Also completes
    /// when the trigger is dropped, which means the server is gone.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
