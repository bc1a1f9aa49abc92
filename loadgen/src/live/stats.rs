//! What a run measures: five HDR latency histograms (µs) and the correctness counters.
//!
//! Connections record into one of a few [`Shard`]s (never one histogram per connection, never
//! a list of samples); the reporter swaps each shard's interval histograms out once a second
//! and merges them (DESIGN.md §3).

use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;

/// Highest trackable latency: one hour in µs (larger values are clamped to it).
pub const MAX_TRACKABLE_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The latency metrics, each an HdrHistogram in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// TCP connect start to response headers / 101 Upgrade (TLS handshake included).
    Connect,
    /// TLS handshake alone (ClientHello to a finished handshake); https/wss targets only.
    Tls,
    /// Connect start to the first measured message.
    FirstEvent,
    /// Receive time minus the message's intended-time stamp.
    Delivery,
    /// Receive time of an echo minus its intended send time.
    WsRtt,
    /// Stream drop to the first message after resuming.
    Reconnect,
    /// Actual send time minus the intended slot, for every message loadgen sends (WS
    /// messages, SSE-group POSTs, publishers): loadgen's own lateness, included in every
    /// latency that is measured from a slot.
    SendLag,
    /// Time between consecutive measured messages of one stream (stalls show); recorded for
    /// unstamped streams, where there is no delivery latency.
    Interarrival,
}

impl Metric {
    /// Every metric in output order.
    pub const ALL: [Self; 8] = [
        Self::Connect,
        Self::Tls,
        Self::FirstEvent,
        Self::Delivery,
        Self::WsRtt,
        Self::Reconnect,
        Self::SendLag,
        Self::Interarrival,
    ];

    /// Name in outputs and thresholds.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::FirstEvent => "first_event",
            Self::Delivery => "delivery",
            Self::WsRtt => "ws_rtt",
            Self::Reconnect => "reconnect",
            Self::SendLag => "send_lag",
            Self::Interarrival => "interarrival",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A new empty latency histogram (1 µs to one hour, 3 significant digits).
#[must_use]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid")
}

/// One histogram per metric.
#[derive(Debug, Clone)]
pub struct Histograms(pub [Histogram<u64>; Metric::ALL.len()]);

impl Default for Histograms {
    fn default() -> Self {
        Self(std::array::from_fn(|_| new_histogram()))
    }
}

impl Histograms {
    /// Records `us` microseconds (clamped to 1 µs ..= one hour).
    pub fn record(&mut self, metric: Metric, us: u64) {
        self.0[metric.index()].saturating_record(us.clamp(1, MAX_TRACKABLE_US));
    }

    /// Records `count` samples of `us` microseconds (clamped like [`Self::record`]).
    pub fn record_n(&mut self, metric: Metric, us: u64, count: u64) {
        self.0[metric.index()].saturating_record_n(us.clamp(1, MAX_TRACKABLE_US), count);
    }

    /// Empties every histogram, keeping its memory.
    pub fn reset(&mut self) {
        for h in &mut self.0 {
            h.reset();
        }
    }

    /// Adds every histogram of `other` into this one.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            // Same bounds on both sides, so adding cannot fail.
            let _ = mine.add(theirs);
        }
    }

    /// The histogram of one metric.
    #[must_use]
    pub fn get(&self, metric: Metric) -> &Histogram<u64> {
        &self.0[metric.index()]
    }
}

/// Correctness counters. Every field counts events over the whole run (warm-up included:
/// loss during warm-up is still loss); only latency samples are limited to the measured phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connection attempts (first connects, reconnects, churn).
    pub connections_attempted: u64,
    /// Attempts that got a 200 event stream / 101 upgrade.
    pub connections_established: u64,
    /// Attempts refused by the OS (nothing listening).
    pub failed_refused: u64,
    /// Attempts that timed out.
    pub failed_timeout: u64,
    /// Attempts or streams reset by the peer.
    pub failed_reset: u64,
    /// Attempts answered with an unexpected HTTP status.
    pub failed_status: u64,
    /// Attempts answered 200 with a content type other than `text/event-stream`.
    pub failed_content_type: u64,
    /// Failed: TLS handshake (certificate not trusted, wrong name, expired, no common
    /// protocol); the reason is in the verdict's connection errors.
    pub failed_tls: u64,
    /// Other connection failures (protocol errors, handshake failures).
    pub failed_other: u64,
    /// Streams that ended before the run did (server closed, reset).
    pub streams_dropped: u64,
    /// Reconnects after a drop or for churn.
    pub reconnects: u64,
    /// HTTP/2 connections opened to carry SSE streams (`http = "2"` / `"auto"`); each
    /// carries up to `streams_per_connection` streams.
    pub h2_connections: u64,
    /// Messages sent by clients and publishers.
    pub messages_sent: u64,
    /// Send failures (publisher HTTP errors, WS send errors).
    pub send_errors: u64,
    /// Measured messages expected (see `Expect`); 0 when nothing is expected.
    pub messages_expected: u64,
    /// Measured messages received (duplicates included).
    pub messages_received: u64,
    /// Sequence numbers never received.
    pub gaps: u64,
    /// Of the gaps, those that fell while a connection was down: seen at its first message
    /// after a reconnect, or missing at the end while it was still reconnecting.
    pub gaps_across_reconnects: u64,
    /// Messages received twice.
    pub duplicates: u64,
    /// Messages that arrived after a later one.
    pub out_of_order: u64,
    /// Messages whose stamp could not be read, or a broken stream.
    pub parse_errors: u64,
    /// Messages the server reported it dropped for us (`lagged`/`lost` notices).
    pub server_drops: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
}

impl Counters {
    /// Adds `other` field by field.
    pub fn merge(&mut self, o: &Self) {
        self.connections_attempted += o.connections_attempted;
        self.connections_established += o.connections_established;
        self.failed_refused += o.failed_refused;
        self.failed_timeout += o.failed_timeout;
        self.failed_reset += o.failed_reset;
        self.failed_status += o.failed_status;
        self.failed_content_type += o.failed_content_type;
        self.failed_tls += o.failed_tls;
        self.failed_other += o.failed_other;
        self.streams_dropped += o.streams_dropped;
        self.reconnects += o.reconnects;
        self.h2_connections += o.h2_connections;
        self.messages_sent += o.messages_sent;
        self.send_errors += o.send_errors;
        self.messages_expected += o.messages_expected;
        self.messages_received += o.messages_received;
        self.gaps += o.gaps;
        self.gaps_across_reconnects += o.gaps_across_reconnects;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.parse_errors += o.parse_errors;
        self.server_drops += o.server_drops;
        self.bytes_received += o.bytes_received;
    }

    /// Counters read back by name, as `counters.csv` holds them (derived rows such as `lost`
    /// and `errors` are recomputed, not read); a name `value` does not know reads as 0.
    #[must_use]
    pub fn from_named(value: impl Fn(&str) -> Option<u64>) -> Self {
        let v = |name: &str| value(name).unwrap_or(0);
        Self {
            connections_attempted: v("connections_attempted"),
            connections_established: v("connections_established"),
            failed_refused: v("failed_refused"),
            failed_timeout: v("failed_timeout"),
            failed_reset: v("failed_reset"),
            failed_status: v("failed_status"),
            failed_content_type: v("failed_content_type"),
            failed_tls: v("failed_tls"),
            failed_other: v("failed_other"),
            streams_dropped: v("streams_dropped"),
            reconnects: v("reconnects"),
            h2_connections: v("h2_connections"),
            messages_sent: v("messages_sent"),
            send_errors: v("send_errors"),
            messages_expected: v("messages_expected"),
            messages_received: v("messages_received"),
            gaps: v("gaps"),
            gaps_across_reconnects: v("gaps_across_reconnects"),
            duplicates: v("duplicates"),
            out_of_order: v("out_of_order"),
            parse_errors: v("parse_errors"),
            server_drops: v("server_drops"),
            bytes_received: v("bytes_received"),
        }
    }

    /// Failed connection attempts, all causes.
    #[must_use]
    pub fn connections_failed(&self) -> u64 {
        self.failed_refused
            + self.failed_timeout
            + self.failed_reset
            + self.failed_status
            + self.failed_content_type
            + self.failed_tls
            + self.failed_other
    }

    /// Errors of any kind: failed connections, send errors, parse errors.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.connections_failed() + self.send_errors + self.parse_errors
    }

    /// Expected messages that never arrived and that the server did not report dropping.
    #[must_use]
    pub fn unexplained_loss(&self) -> u64 {
        self.lost().saturating_sub(self.server_drops)
    }

    /// Expected messages that never arrived.
    #[must_use]
    pub fn lost(&self) -> u64 {
        let unique = self.messages_received.saturating_sub(self.duplicates);
        self.messages_expected.saturating_sub(unique).max(self.gaps)
    }

    /// Every counter as (name, value), in output order (names are stable: `counters.csv`).
    #[must_use]
    pub fn rows(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("connections_attempted", self.connections_attempted),
            ("connections_established", self.connections_established),
            ("connections_failed", self.connections_failed()),
            ("failed_refused", self.failed_refused),
            ("failed_timeout", self.failed_timeout),
            ("failed_reset", self.failed_reset),
            ("failed_status", self.failed_status),
            ("failed_content_type", self.failed_content_type),
            ("failed_tls", self.failed_tls),
            ("failed_other", self.failed_other),
            ("streams_dropped", self.streams_dropped),
            ("reconnects", self.reconnects),
            ("h2_connections", self.h2_connections),
            ("messages_sent", self.messages_sent),
            ("send_errors", self.send_errors),
            ("messages_expected", self.messages_expected),
            ("messages_received", self.messages_received),
            ("lost", self.lost()),
            ("gaps", self.gaps),
            ("gaps_across_reconnects", self.gaps_across_reconnects),
            ("duplicates", self.duplicates),
            ("out_of_order", self.out_of_order),
            ("parse_errors", self.parse_errors),
            ("server_drops", self.server_drops),
            ("errors", self.errors()),
            ("bytes_received", self.bytes_received),
        ]
    }

    /// One counter by the name thresholds use.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<u64> {
        self.rows()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// What one shard accumulates between two reporter ticks.
#[derive(Debug, Default)]
pub struct ShardData {
    /// Latency samples since the last tick.
    pub interval: Histograms,
    /// Counters since the start of the run.
    pub counters: Counters,
    /// Raw samples since the last tick (`--raw-samples` only; empty otherwise).
    pub raw: Vec<crate::live::raw_samples::RawSample>,
}

/// A recording shard shared by a subset of connections.
#[derive(Debug, Clone, Default)]
pub struct Shard(Arc<Mutex<ShardData>>);

impl Shard {
    /// Runs `f` on the shard's data.
    pub fn with<R>(&self, f: impl FnOnce(&mut ShardData) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a latency sample.
    pub fn record(&self, metric: Metric, us: u64) {
        self.with(|d| d.interval.record(metric, us));
    }

    /// Updates counters.
    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.with(|d| f(&mut d.counters));
    }

    /// Swaps the interval histograms with `spare` (which should be empty): the lock is held
    /// for a swap of a few hundred bytes, never for an allocation or a merge.
    pub fn swap_interval(&self, spare: &mut Histograms) {
        self.with(|d| std::mem::swap(&mut d.interval, spare));
    }

    /// A copy of the counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.with(|d| d.counters)
    }
}

/// Takes the shards' interval histograms once per tick without allocating: each shard's
/// interval is swapped with an empty spare (the only work done under the shard's lock), then
/// merged and cleared outside any lock. Recording never waits for a merge.
#[derive(Debug)]
pub struct IntervalCollector {
    spares: Vec<Histograms>,
    merged: Histograms,
}

impl IntervalCollector {
    /// A collector for `shards`; allocates its spares once, here.
    #[must_use]
    pub fn new(shards: &Shards) -> Self {
        Self {
            spares: (0..shards.len()).map(|_| Histograms::default()).collect(),
            merged: Histograms::default(),
        }
    }

    /// Every sample recorded since the previous call, merged over the shards (valid until
    /// the next call).
    pub fn collect(&mut self, shards: &Shards) -> &Histograms {
        self.merged.reset();
        for (shard, spare) in shards.0.iter().zip(&mut self.spares) {
            shard.swap_interval(spare);
            self.merged.merge(spare);
            spare.reset();
        }
        &self.merged
    }
}

/// A fixed set of shards; connection `i` records into shard `i % n`.
#[derive(Debug, Clone)]
pub struct Shards(Vec<Shard>);

impl Shards {
    /// `n` (> 0) shards.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self((0..n.max(1)).map(|_| Shard::default()).collect())
    }

    /// The shard for connection `i`.
    #[must_use]
    pub fn for_index(&self, i: usize) -> Shard {
        self.0[i % self.0.len()].clone()
    }

    /// Number of shards.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: there is at least one shard.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sums every shard's counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for shard in &self.0 {
            total.merge(&shard.counters());
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_samples_and_counters() {
        let shards = Shards::new(3);
        for i in 0..300u64 {
            let shard = shards.for_index(usize::try_from(i).expect("small"));
            shard.record(Metric::Delivery, i + 1);
            shard.count(|c| c.messages_received += 1);
        }
        let mut collector = IntervalCollector::new(&shards);
        let delivery = collector.collect(&shards).get(Metric::Delivery);
        assert_eq!(delivery.len(), 300);
        assert_eq!(delivery.max(), 300);
        assert_eq!(shards.counters().messages_received, 300);
        assert_eq!(
            collector.collect(&shards).get(Metric::Delivery).len(),
            0,
            "interval was taken"
        );
        shards.for_index(1).record(Metric::Delivery, 7);
        let next = collector.collect(&shards).get(Metric::Delivery);
        assert_eq!((next.len(), next.max()), (1, 7), "spares were cleared");
    }

    #[test]
    fn counters_read_back_by_name_equal_what_was_written() {
        let mut c = Counters::default();
        let rows_before = c.rows();
        // Every field a distinct value: a field read from the wrong name would show.
        c.connections_attempted = 1;
        c.connections_established = 2;
        c.failed_refused = 3;
        c.failed_timeout = 4;
        c.failed_reset = 5;
        c.failed_status = 6;
        c.failed_content_type = 7;
        c.failed_tls = 8;
        c.failed_other = 9;
        c.streams_dropped = 10;
        c.reconnects = 11;
        c.h2_connections = 12;
        c.messages_sent = 13;
        c.send_errors = 14;
        c.messages_expected = 15;
        c.messages_received = 16;
        c.gaps = 17;
        c.duplicates = 18;
        c.out_of_order = 19;
        c.parse_errors = 20;
        c.server_drops = 21;
        c.bytes_received = 22;
        let rows = c.rows();
        assert_eq!(rows.len(), rows_before.len());
        let back =
            Counters::from_named(|name| rows.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        assert_eq!(back, c);
    }

    #[test]
    fn out_of_range_samples_are_clamped_not_lost() {
        let mut h = Histograms::default();
        h.record(Metric::Connect, 0);
        h.record(Metric::Connect, u64::MAX);
        let connect = h.get(Metric::Connect);
        assert_eq!(connect.len(), 2);
        assert_eq!(connect.min(), 1);
        assert!(connect.max() >= MAX_TRACKABLE_US);
    }

    #[test]
    fn loss_counts_missing_unique_messages_and_explains_server_drops() {
        let c = Counters {
            messages_expected: 100,
            messages_received: 95,
            duplicates: 2,
            server_drops: 4,
            ..Counters::default()
        };
        assert_eq!(c.lost(), 7);
        assert_eq!(c.unexplained_loss(), 3);
        assert_eq!(c.get("lost"), Some(7));
        assert_eq!(c.get("nope"), None);
    }
}
