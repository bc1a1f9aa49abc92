//! Server-wide connection limit that holds for the whole life of a stream.
//!
//! salvo's `max_concurrency` releases its permit when the handler returns, which for SSE is
//! before the stream ends; here the permit is a [`ConnectionGuard`] owned by the stream body or
//! the WebSocket task, so it is released exactly when the connection ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::metrics::{CloseReason, ScenarioMetrics};

/// Counts streaming connections against a fixed maximum.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max: usize,
    in_use: AtomicUsize,
    /// Woken whenever the count drops to zero.
    idle: Notify,
}

impl ConnectionLimiter {
    /// A limiter admitting at most `max` concurrent connections.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_use: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// Connections currently admitted.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Completes once no connection is admitted (immediately if none is).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.in_use() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The configured maximum.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// Admits one connection of `scenario`, or returns `None` when the limit is reached.
    #[must_use]
    pub fn try_admit(self: &Arc<Self>, scenario: Arc<ScenarioMetrics>) -> Option<ConnectionGuard> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        scenario.opened();
        Some(ConnectionGuard {
            limiter: Arc::clone(self),
            scenario,
            reason: CloseReason::Client,
        })
    }
}

/// One admitted connection. Dropping it releases the slot and counts the close with the
/// reason last set by [`ConnectionGuard::set_reason`] (default: the client went away).
#[derive(Debug)]
pub struct ConnectionGuard {
    limiter: Arc<ConnectionLimiter>,
    scenario: Arc<ScenarioMetrics>,
    reason: CloseReason,
}

impl ConnectionGuard {
    /// Records why the connection is ending; the last call wins.
    pub fn set_reason(&mut self, reason: CloseReason) {
        self.reason = reason;
    }

    /// The scenario counters of this connection.
    #[must_use]
    pub fn metrics(&self) -> &ScenarioMetrics {
        &self.scenario
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.scenario.closed(self.reason);
        if self.limiter.in_use.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.limiter.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Scenario};

    #[test]
    fn limit_holds_until_guards_drop() {
        let metrics = Metrics::default();
        let limiter = Arc::new(ConnectionLimiter::new(2));
        let a = limiter.try_admit(metrics.scenario(Scenario::Counter));
        let b = limiter.try_admit(metrics.scenario(Scenario::WsEcho));
        assert!(a.is_some() && b.is_some());
        assert!(
            limiter
                .try_admit(metrics.scenario(Scenario::Counter))
                .is_none()
        );
        drop(a);
        let mut c = limiter
            .try_admit(metrics.scenario(Scenario::Counter))
            .expect("slot freed");
        c.set_reason(CloseReason::Shutdown);
        drop(c);
        drop(b);
        assert_eq!(metrics.open_total(), 0);
        assert!(metrics.render(2).contains(
            "rt_connections_closed_total{scenario=\"counter\",protocol=\"sse\",reason=\"shutdown\"} 1"
        ));
    }
}
