//! SSE counter: one event per tick, stamped with the tick's *intended* time.
//!
//! Event `k` (counting from 1) carries `seq = k` and `ts = start + (k - first) * interval`,
//! where `start` is the wall-clock time of the first tick, so a server that falls behind
//! shows the delay as latency instead of hiding it (no coordinated omission). Ticks missed
//! while the stream was blocked are sent late, in a burst, with their intended stamps.
//!
//! With delay injection ([`crate::injection`]) every K-th event is held D ms before it is
//! handed to the response, and every event's write time minus its intended time is recorded
//! in the counter's truth histogram.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at, sleep_until};

use super::{EventSource, encode};
use crate::injection::{Injection, Truth};

/// Ticks at a fixed interval.
#[derive(Debug)]
pub(crate) struct Counter {
    ticker: Interval,
    interval_us: u64,
    start_us: u64,
    first_seq: u64,
    next_seq: u64,
    injection: Option<(Injection, Arc<Truth>)>,
    /// Events left before the stream ends (`?count=`); `None`: endless.
    remaining: Option<u64>,
    /// An event held by injection: due time, bytes, intended time (Unix µs). Kept here so
    /// `next_event` stays cancel-safe while it waits.
    held: Option<(Instant, Bytes, u64)>,
}

impl Counter {
    /// A counter whose first event has `seq = first_seq` (1 for a new stream, `n + 1` when
    /// resuming after `Last-Event-ID: n`) and is due one interval from now.
    pub(crate) fn new(interval: Duration, first_seq: u64) -> Self {
        let mut ticker = interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let interval_us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        Self {
            ticker,
            interval_us,
            start_us: wire::now_unix_us().saturating_add(interval_us),
            first_seq,
            next_seq: first_seq,
            injection: None,
            remaining: None,
            held: None,
        }
    }

    /// Ends the stream after `count` events.
    pub(crate) fn with_count(mut self, count: u64) -> Self {
        self.remaining = Some(count);
        self
    }

    /// Holds every K-th event as `injection` says and records the truth.
    pub(crate) fn with_injection(mut self, injection: Injection, truth: Arc<Truth>) -> Self {
        self.injection = Some((injection, truth));
        self
    }
}

impl EventSource for Counter {
    async fn next_event(&mut self) -> Option<Bytes> {
        if self.held.is_none() {
            if self.remaining == Some(0) {
                return None;
            }
            self.ticker.tick().await;
            self.remaining = self.remaining.map(|r| r - 1);
            let seq = self.next_seq;
            // Saturates: a client may resume from any id, even u64::MAX.
            self.next_seq = self.next_seq.saturating_add(1);
            let ts = self
                .start_us
                .saturating_add((seq - self.first_seq).saturating_mul(self.interval_us));
            let data = wire::StampedMessage::new(seq, ts)
                .with_field("count", seq)
                .map(|m| m.encode())
                .ok()?;
            let event: Bytes = encode(None, Some(seq), &data).into();
            let Some((injection, _)) = &self.injection else {
                return Some(event);
            };
            let hold = injection.delay_for(seq - self.first_seq + 1);
            self.held = Some((Instant::now() + hold, event, ts));
        }
        let due = self.held.as_ref().map(|(due, _, _)| *due)?;
        sleep_until(due).await;
        let (_, event, ts) = self.held.take()?;
        if let Some((_, truth)) = &self.injection {
            truth.record(wire::now_unix_us().saturating_sub(ts));
        }
        Some(event)
    }
}
