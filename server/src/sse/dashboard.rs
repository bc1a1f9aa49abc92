//! Dashboard stream: the server's own counters as `metrics` events, once per interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior, interval};

use super::{EventSource, encode};
use crate::metrics::Metrics;

/// Emits a JSON snapshot of [`Metrics`] every interval (the first one immediately).
#[derive(Debug)]
pub(crate) struct Dashboard {
    metrics: Arc<Metrics>,
    ticker: Interval,
    limit: usize,
}

impl Dashboard {
    pub(crate) fn new(metrics: Arc<Metrics>, every: Duration, limit: usize) -> Self {
        let mut ticker = interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self {
            metrics,
            ticker,
            limit,
        }
    }
}

impl EventSource for Dashboard {
    async fn next_event(&mut self) -> Option<bytes::Bytes> {
        self.ticker.tick().await;
        let snapshot = self.metrics.snapshot_json(self.limit);
        Some(encode(Some("metrics"), None, &snapshot).into())
    }
}
