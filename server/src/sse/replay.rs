//! Broadcast hub with a bounded replay ring: the notifications and replay scenarios.
//!
//! Every published event gets the next id (1, 2, ...). The last `capacity` events are kept.
//! A client resuming with `Last-Event-ID: n` gets exactly the events after `n` (no gap, no
//! duplicate: the ring is read and the live subscription taken under one lock, the same lock
//! publishing holds). When events after `n` already fell out of the ring, the client first
//! gets an explicit `lost` event saying how many, then everything the ring still has.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{EventSource, Initial, encode};
use crate::metrics::ScenarioMetrics;

#[derive(Debug)]
struct Stored {
    id: u64,
    event: bytes::Bytes,
    /// A `lost` notice for live subscribers (not an event of the ring): always forwarded.
    notice: bool,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Stored>>,
    next_id: u64,
}

/// A broadcast hub with replay.
#[derive(Debug)]
pub struct ReplayHub {
    event_name: Option<&'static str>,
    capacity: usize,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Stored>>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// The event id assigned.
    pub id: u64,
    /// Streams connected at publish time.
    pub subscribers: usize,
}

impl ReplayHub {
    /// A hub whose events are named `event_name` (`None`: the default `message`), keeping
    /// `capacity` events for replay and `queue` per subscriber (both > 0).
    #[must_use]
    pub fn new(event_name: Option<&'static str>, capacity: usize, queue: usize) -> Self {
        Self {
            event_name,
            capacity,
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(4096)),
                next_id: 1,
            }),
            tx: broadcast::channel(queue).0,
        }
    }

    /// Publishes `data`; `make` receives the assigned id and returns the event data.
    pub fn publish(&self, make: impl FnOnce(u64) -> String) -> Published {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let id = ring.next_id;
        let subscribers = self.store(&mut ring, id, make);
        Published { id, subscribers }
    }

    /// Takes event `id` from the backplane, where every instance gets the same ids in order:
    /// stores and broadcasts it. An id at or below the last one held is ignored (`None`). A
    /// jump past the next expected id (events the backplane lost, e.g. trimmed while this
    /// instance was cut off) first sends live subscribers a `lost` notice; returns how many
    /// were missed. The first event an empty hub gets sets where it starts.
    pub fn deliver(&self, id: u64, make: impl FnOnce(u64) -> String) -> Option<u64> {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if id < ring.next_id {
            return None;
        }
        let fresh = ring.events.is_empty() && ring.next_id == 1;
        let missed = if fresh { 0 } else { id - ring.next_id };
        if missed > 0 {
            let notice = format!(
                "{{\"missed\":{missed},\"reason\":\"backplane\",\"first_available\":{id}}}"
            );
            let _ = self.tx.send(Arc::new(Stored {
                id,
                event: encode(Some("lost"), None, &notice).into(),
                notice: true,
            }));
        }
        self.store(&mut ring, id, make);
        Some(missed)
    }

    /// Stores event `id` (the next id becomes `id + 1`) and broadcasts it; returns the
    /// subscribers it reached.
    fn store(&self, ring: &mut Ring, id: u64, make: impl FnOnce(u64) -> String) -> usize {
        ring.next_id = id + 1;
        let stored = Arc::new(Stored {
            id,
            event: encode(self.event_name, Some(id), &make(id)).into(),
            notice: false,
        });
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::clone(&stored));
        self.tx.send(stored).unwrap_or_default()
    }

    /// Streams subscribed on this instance now.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Subscribes, resuming after `last_event_id` when given. Returns the stream source and
    /// the events to send first (a `lost` notice and/or replayed events).
    pub fn subscribe(
        &self,
        last_event_id: Option<u64>,
        drop_after: Option<u64>,
        metrics: Arc<ScenarioMetrics>,
    ) -> (ReplayStream, Initial) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = self.tx.subscribe();
        let latest = ring.next_id - 1;
        let mut initial = Initial::default();
        if let Some(last) = last_event_id {
            let first = ring.events.front().map_or(ring.next_id, |e| e.id);
            if last > latest {
                let notice = format!(
                    "{{\"missed\":0,\"reason\":\"unknown_id\",\"last_event_id\":{last},\"latest\":{latest}}}"
                );
                initial.bytes.extend(encode(Some("lost"), None, &notice));
                initial.events += 1;
            } else {
                if last.saturating_add(1) < first {
                    let missed = first - last - 1;
                    metrics.dropped(missed);
                    let notice = format!(
                        "{{\"missed\":{missed},\"reason\":\"evicted\",\"last_event_id\":{last},\"first_available\":{first}}}"
                    );
                    initial.bytes.extend(encode(Some("lost"), None, &notice));
                    initial.events += 1;
                }
                // Ids missing inside the ring (events the backplane lost before this
                // instance read them) are told as they were to live subscribers.
                let mut expected = last.max(first.saturating_sub(1)) + 1;
                for stored in ring.events.iter().filter(|e| e.id > last) {
                    if stored.id > expected {
                        let missed = stored.id - expected;
                        let notice = format!(
                            "{{\"missed\":{missed},\"reason\":\"backplane\",\"first_available\":{}}}",
                            stored.id
                        );
                        initial.bytes.extend(encode(Some("lost"), None, &notice));
                        initial.events += 1;
                    }
                    expected = stored.id + 1;
                    initial.bytes.extend_from_slice(&stored.event);
                    initial.events += 1;
                }
            }
        }
        drop(ring);
        // Everything up to `latest` was either replayed or predates this subscriber.
        let stream = ReplayStream {
            rx,
            last_sent: latest,
            remaining: drop_after,
            metrics,
        };
        (stream, initial)
    }
}

/// One subscriber's live events.
#[derive(Debug)]
pub struct ReplayStream {
    rx: broadcast::Receiver<Arc<Stored>>,
    /// Highest id already sent (replayed or live); live events at or below it are skipped.
    last_sent: u64,
    /// Live events left before the server ends the stream on purpose (`drop_after`).
    remaining: Option<u64>,
    metrics: Arc<ScenarioMetrics>,
}

impl EventSource for ReplayStream {
    async fn next_event(&mut self) -> Option<bytes::Bytes> {
        if self.remaining == Some(0) {
            return None;
        }
        loop {
            match self.rx.recv().await {
                Ok(stored) if stored.notice => return Some(stored.event.clone()),
                Ok(stored) if stored.id <= self.last_sent => {}
                Ok(stored) => {
                    self.last_sent = stored.id;
                    if let Some(left) = &mut self.remaining {
                        *left -= 1;
                    }
                    return Some(stored.event.clone());
                }
                Err(RecvError::Lagged(n)) => {
                    self.metrics.lagged(n);
                    return Some(
                        encode(Some("lagged"), None, &format!("{{\"missed\":{n}}}")).into(),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Scenario};

    fn ids(bytes: &[u8]) -> Vec<String> {
        let mut parser = wire::sse::Parser::new();
        let mut out = Vec::new();
        parser
            .feed(bytes, |e| {
                out.push(format!("{}:{}", e.event_type, e.last_event_id));
            })
            .expect("valid");
        out
    }

    #[test]
    fn backplane_deliveries_keep_their_ids_skip_repeats_and_report_jumps() {
        let metrics = Metrics::default().scenario(Scenario::Replay);
        let hub = ReplayHub::new(None, 8, 16);
        let (mut live, _) = hub.subscribe(None, None, Arc::clone(&metrics));
        // A fresh hub starts where the backplane is: no notice for ids before it.
        assert_eq!(hub.deliver(40, |id| format!("{{\"seq\":{id}}}")), Some(0));
        assert_eq!(hub.deliver(41, |id| format!("{{\"seq\":{id}}}")), Some(0));
        assert_eq!(
            hub.deliver(41, |_| unreachable!()),
            None,
            "a repeat is ignored"
        );
        assert_eq!(hub.deliver(45, |id| format!("{{\"seq\":{id}}}")), Some(3));
        let mut got = Vec::new();
        for _ in 0..4 {
            let bytes = tokio_test_block(live.next_event()).expect("event");
            got.extend(ids(&bytes));
        }
        assert_eq!(got, ["message:40", "message:41", "lost:", "message:45"]);
        // Resuming after 41 on this instance: the ring never held 42..=44, so the resumer is
        // told of them before 45, as the live subscriber was.
        let (_, initial) = hub.subscribe(Some(41), None, Arc::clone(&metrics));
        assert_eq!(ids(&initial.bytes), ["lost:", "message:45"]);
        let (_, initial) = hub.subscribe(Some(39), None, metrics);
        assert_eq!(
            ids(&initial.bytes),
            ["message:40", "message:41", "lost:41", "message:45"],
            "ids before the ring's first are not a hole"
        );
    }

    /// Polls `f` once on a fresh current-thread runtime.
    fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn resume_is_exact_or_reports_the_loss() {
        let metrics = Metrics::default().scenario(Scenario::Replay);
        let hub = ReplayHub::new(None, 4, 16);
        for _ in 0..6 {
            hub.publish(|id| format!("{{\"seq\":{id}}}"));
        }
        // Ring holds 3..=6.
        let (_, initial) = hub.subscribe(Some(4), None, Arc::clone(&metrics));
        assert_eq!(ids(&initial.bytes), ["message:5", "message:6"]);
        assert_eq!(initial.events, 2);
        let (_, initial) = hub.subscribe(Some(6), None, Arc::clone(&metrics));
        assert!(initial.bytes.is_empty());
        let (_, initial) = hub.subscribe(Some(1), None, Arc::clone(&metrics));
        assert_eq!(
            ids(&initial.bytes),
            ["lost:", "message:3", "message:4", "message:5", "message:6"]
        );
        assert_eq!(initial.events, 5);
        assert!(String::from_utf8_lossy(&initial.bytes).contains("\"missed\":1"));
        let (_, initial) = hub.subscribe(Some(99), None, metrics);
        assert_eq!(ids(&initial.bytes), ["lost:"]);
    }
}
