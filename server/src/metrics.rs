//! Server counters and their Prometheus text exposition.
//!
//! Every counter is an atomic owned by one [`ScenarioMetrics`]; handlers hold an
//! `Arc<ScenarioMetrics>` for their scenario. Counts are exact: `open` goes up when a stream or
//! socket is admitted and down when its [`crate::limits::ConnectionGuard`] drops.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::injection::Truth;

/// The realtime patterns the server implements, each with its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// SSE counter ticks.
    Counter,
    /// SSE chat with POST to send.
    SseChat,
    /// SSE stock price feed.
    Stocks,
    /// SSE notifications broadcast with replay.
    Notifications,
    /// SSE replay stream (Last-Event-ID resume).
    Replay,
    /// SSE stream of the server's own counters (dashboard page).
    Dashboard,
    /// WebSocket echo.
    WsEcho,
    /// WebSocket chat broadcast.
    WsChat,
    /// WebSocket rooms.
    Rooms,
    /// WebSocket pub/sub topics (and HTTP publish).
    PubSub,
}

impl Scenario {
    /// Every scenario, in exposition order.
    pub const ALL: [Self; 10] = [
        Self::Counter,
        Self::SseChat,
        Self::Stocks,
        Self::Notifications,
        Self::Replay,
        Self::Dashboard,
        Self::WsEcho,
        Self::WsChat,
        Self::Rooms,
        Self::PubSub,
    ];

    /// Label value used in `/metrics`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::SseChat => "sse_chat",
            Self::Stocks => "stocks",
            Self::Notifications => "notifications",
            Self::Replay => "replay",
            Self::Dashboard => "dashboard",
            Self::WsEcho => "ws_echo",
            Self::WsChat => "ws_chat",
            Self::Rooms => "rooms",
            Self::PubSub => "pubsub",
        }
    }

    /// Protocol label: `sse` or `ws`.
    #[must_use]
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Counter
            | Self::SseChat
            | Self::Stocks
            | Self::Notifications
            | Self::Replay
            | Self::Dashboard => "sse",
            Self::WsEcho | Self::WsChat | Self::Rooms | Self::PubSub => "ws",
        }
    }
}

/// Why a connection ended (label of `rt_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed: an SSE stream's connection ended, or a WebSocket finished the
    /// close handshake.
    Client,
    /// A WebSocket peer closed its TCP connection without a Close frame.
    Vanished,
    /// The server is shutting down.
    Shutdown,
    /// The server ended the stream by design (e.g. `drop_after` on the replay stream).
    StreamEnd,
    /// A WebSocket peer missed its pong.
    Heartbeat,
    /// A WebSocket message exceeded the size limit (close 1009).
    TooBig,
    /// A WebSocket text frame was not UTF-8 (close 1007).
    InvalidUtf8,
    /// Any other protocol violation by the peer (close 1002).
    Protocol,
    /// The peer broke a usage rule, e.g. a ping flood (close 1008).
    Policy,
    /// The client could not keep up and was dropped.
    SlowConsumer,
    /// A transport error.
    Error,
}

impl CloseReason {
    /// Every reason, in exposition order.
    pub const ALL: [Self; 11] = [
        Self::Client,
        Self::Vanished,
        Self::Shutdown,
        Self::StreamEnd,
        Self::Heartbeat,
        Self::TooBig,
        Self::InvalidUtf8,
        Self::Protocol,
        Self::Policy,
        Self::SlowConsumer,
        Self::Error,
    ];

    /// Label value used in `/metrics`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Vanished => "vanished",
            Self::Shutdown => "shutdown",
            Self::StreamEnd => "stream_end",
            Self::Heartbeat => "heartbeat",
            Self::TooBig => "too_big",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::Protocol => "protocol",
            Self::Policy => "policy",
            Self::SlowConsumer => "slow_consumer",
            Self::Error => "error",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Why a request was refused (label of `rt_connections_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The server-wide connection limit was reached (503).
    Limit,
    /// Missing or wrong bearer token (401).
    Auth,
    /// Malformed request: bad query, bad body, bad `Last-Event-ID` (400/413).
    BadRequest,
}

impl RejectReason {
    const ALL: [Self; 3] = [Self::Limit, Self::Auth, Self::BadRequest];

    fn name(self) -> &'static str {
        match self {
            Self::Limit => "limit",
            Self::Auth => "auth",
            Self::BadRequest => "bad_request",
        }
    }
}

/// Counters of one scenario.
#[derive(Debug)]
pub struct ScenarioMetrics {
    scenario: Scenario,
    open: AtomicU64,
    accepted: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    lagged: AtomicU64,
    dropped: AtomicU64,
}

impl ScenarioMetrics {
    fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            closed: Default::default(),
            messages_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The scenario these counters belong to.
    #[must_use]
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    pub(crate) fn opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Relaxed);
        self.open.fetch_sub(1, Relaxed);
    }

    /// Counts one message of `bytes` bytes sent to a client.
    pub fn sent(&self, bytes: usize) {
        self.messages_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts `n` messages of `bytes` bytes in total sent to a client.
    pub fn sent_many(&self, n: u64, bytes: usize) {
        self.messages_sent.fetch_add(n, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts bytes sent that are not a message (keep-alives, retry hints).
    pub fn sent_overhead(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts one message of `bytes` bytes received from a client (WS frame or HTTP publish).
    pub fn received(&self, bytes: usize) {
        self.messages_received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts `n` messages a slow client missed and was told about.
    pub fn lagged(&self, n: u64) {
        self.lagged.fetch_add(n, Relaxed);
    }

    /// Counts `n` messages dropped for a slow client (queue full).
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }

    /// Currently open connections.
    #[must_use]
    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }
}

/// Scenarios that support delay injection (and so record a truth histogram).
pub const TRUTH_SCENARIOS: [Scenario; 2] = [Scenario::Counter, Scenario::WsEcho];

/// Quantiles of `rt_truth_us` in `/metrics` (1 is the maximum).
pub const TRUTH_QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// All server counters.
#[derive(Debug)]
pub struct Metrics {
    scenarios: Vec<Arc<ScenarioMetrics>>,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    /// TCP connections that ended unanswered: `[sent nothing, sent part of a request head]`.
    unanswered: [AtomicU64; 2],
    /// One per [`TRUTH_SCENARIOS`] entry.
    truth: [Arc<Truth>; TRUTH_SCENARIOS.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            scenarios: Scenario::ALL
                .iter()
                .map(|s| Arc::new(ScenarioMetrics::new(*s)))
                .collect(),
            rejected: Default::default(),
            unanswered: Default::default(),
            truth: Default::default(),
        }
    }
}

impl Metrics {
    /// Counters of one scenario.
    #[must_use]
    pub fn scenario(&self, scenario: Scenario) -> Arc<ScenarioMetrics> {
        let i = Scenario::ALL
            .iter()
            .position(|s| *s == scenario)
            .unwrap_or(0);
        Arc::clone(&self.scenarios[i])
    }

    /// The truth histogram of a delay-injection scenario (counter, WS echo).
    #[must_use]
    pub fn truth(&self, scenario: Scenario) -> Option<Arc<Truth>> {
        TRUTH_SCENARIOS
            .iter()
            .position(|s| *s == scenario)
            .map(|i| Arc::clone(&self.truth[i]))
    }

    /// Counts a refused request.
    pub fn rejected(&self, reason: RejectReason) {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.rejected[i].fetch_add(1, Relaxed);
    }

    /// Counts a TCP connection that ended before the server wrote a byte on it; `read`:
    /// whether the client had sent anything (a request head it never finished: slowloris,
    /// cut by the header timeout) or nothing at all.
    pub fn unanswered(&self, read: bool) {
        self.unanswered[usize::from(read)].fetch_add(1, Relaxed);
    }

    /// Open connections over all scenarios.
    #[must_use]
    pub fn open_total(&self) -> u64 {
        self.scenarios.iter().map(|s| s.open()).sum()
    }

    /// A JSON snapshot for the dashboard: totals, RSS and per-scenario counters.
    #[must_use]
    pub fn snapshot_json(&self, limit: usize) -> String {
        let scenarios: Vec<serde_json::Value> = self
            .scenarios
            .iter()
            .map(|m| {
                serde_json::json!({
                    "scenario": m.scenario.name(),
                    "protocol": m.scenario.protocol(),
                    "open": m.open(),
                    "accepted": m.accepted.load(Relaxed),
                    "messages_sent": m.messages_sent.load(Relaxed),
                    "messages_received": m.messages_received.load(Relaxed),
                    "lagged": m.lagged.load(Relaxed),
                    "dropped": m.dropped.load(Relaxed),
                })
            })
            .collect();
        let rejected: serde_json::Map<String, serde_json::Value> = RejectReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name().to_owned(), self.rejected[i].load(Relaxed).into()))
            .collect();
        serde_json::json!({
            "ts": wire::now_unix_us(),
            "open_total": self.open_total(),
            "limit": limit,
            "rss_bytes": crate::process::rss_bytes(None),
            "rejected": rejected,
            "scenarios": scenarios,
        })
        .to_string()
    }

    /// `rt_truth_us`: what the server did on delay-injection connections, as a summary
    /// (quantiles only once there are samples).
    fn render_truth(&self, out: &mut String) {
        let name = "rt_truth_us";
        let _ = writeln!(
            out,
            "# HELP {name} Delay-injection connections: counter write time minus intended time, WS echo write minus receipt (microseconds).\n# TYPE {name} summary"
        );
        for (scenario, truth) in TRUTH_SCENARIOS.iter().zip(&self.truth) {
            let h = truth.snapshot();
            let labels = format!(
                "scenario=\"{}\",protocol=\"{}\"",
                scenario.name(),
                scenario.protocol()
            );
            if !h.is_empty() {
                for q in TRUTH_QUANTILES {
                    let v = if q >= 1.0 {
                        h.max()
                    } else {
                        h.value_at_quantile(q)
                    };
                    let _ = writeln!(out, "{name}{{{labels},quantile=\"{q}\"}} {v}");
                }
            }
            let sum = h.mean() * h.len() as f64;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum:.0}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
        }
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn render(&self, limit: usize) -> String {
        let mut out = String::with_capacity(8 * 1024);
        type Get = fn(&ScenarioMetrics) -> u64;
        let per_scenario: [(&str, &str, &str, Get); 8] = [
            (
                "rt_connections_open",
                "gauge",
                "Open streaming connections.",
                |m| m.open(),
            ),
            (
                "rt_connections_accepted_total",
                "counter",
                "Connections admitted.",
                |m| m.accepted.load(Relaxed),
            ),
            (
                "rt_messages_sent_total",
                "counter",
                "Messages sent to clients.",
                |m| m.messages_sent.load(Relaxed),
            ),
            (
                "rt_bytes_sent_total",
                "counter",
                "Bytes sent to clients, including keep-alives.",
                |m| m.bytes_sent.load(Relaxed),
            ),
            (
                "rt_messages_received_total",
                "counter",
                "Messages received (WS frames, HTTP publishes).",
                |m| m.messages_received.load(Relaxed),
            ),
            (
                "rt_bytes_received_total",
                "counter",
                "Payload bytes received.",
                |m| m.bytes_received.load(Relaxed),
            ),
            (
                "rt_messages_lagged_total",
                "counter",
                "Messages slow clients missed and were told about.",
                |m| m.lagged.load(Relaxed),
            ),
            (
                "rt_messages_dropped_total",
                "counter",
                "Messages a client could not get: queue full, or evicted from the replay ring.",
                |m| m.dropped.load(Relaxed),
            ),
        ];
        for (name, kind, help, get) in per_scenario {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for m in &self.scenarios {
                let (s, p) = (m.scenario.name(), m.scenario.protocol());
                let _ = writeln!(
                    out,
                    "{name}{{scenario=\"{s}\",protocol=\"{p}\"}} {}",
                    get(m)
                );
            }
        }
        let name = "rt_connections_closed_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections closed, by reason.\n# TYPE {name} counter"
        );
        for m in &self.scenarios {
            let (s, p) = (m.scenario.name(), m.scenario.protocol());
            for reason in CloseReason::ALL {
                let (r, v) = (reason.name(), m.closed[reason.index()].load(Relaxed));
                let _ = writeln!(
                    out,
                    "{name}{{scenario=\"{s}\",protocol=\"{p}\",reason=\"{r}\"}} {v}"
                );
            }
        }
        let name = "rt_connections_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests refused, by reason.\n# TYPE {name} counter"
        );
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            let v = self.rejected[i].load(Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {v}", reason.name());
        }
        let name = "rt_connections_unanswered_total";
        let _ = writeln!(
            out,
            "# HELP {name} TCP connections that ended before the server wrote a byte: sent=\"partial\" sent part of a request head and never finished it (slowloris; the header timeout cuts them), sent=\"nothing\" sent nothing.\n# TYPE {name} counter"
        );
        for (i, sent) in ["nothing", "partial"].iter().enumerate() {
            let v = self.unanswered[i].load(Relaxed);
            let _ = writeln!(out, "{name}{{sent=\"{sent}\"}} {v}");
        }
        self.render_truth(&mut out);
        let _ = writeln!(
            out,
            "# HELP rt_connections_limit Server-wide limit of streaming connections.\n\
             # TYPE rt_connections_limit gauge\nrt_connections_limit {limit}"
        );
        let _ = writeln!(
            out,
            "# HELP rt_connections_open_total Open streaming connections, all scenarios.\n\
             # TYPE rt_connections_open_total gauge\nrt_connections_open_total {}",
            self.open_total()
        );
        if let Some(rss) = crate::process::rss_bytes(None) {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident set size in bytes.\n\
                 # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_close_are_exact_and_rendered_per_label() {
        let metrics = Metrics::default();
        let counter = metrics.scenario(Scenario::Counter);
        counter.opened();
        counter.opened();
        counter.closed(CloseReason::Client);
        metrics.rejected(RejectReason::Auth);
        let text = metrics.render(10);
        assert!(text.contains("rt_connections_open{scenario=\"counter\",protocol=\"sse\"} 1\n"));
        assert!(
            text.contains(
                "rt_connections_accepted_total{scenario=\"counter\",protocol=\"sse\"} 2\n"
            )
        );
        assert!(text.contains(
            "rt_connections_closed_total{scenario=\"counter\",protocol=\"sse\",reason=\"client\"} 1\n"
        ));
        assert!(text.contains("rt_connections_rejected_total{reason=\"auth\"} 1\n"));
        assert!(text.contains("rt_connections_open{scenario=\"rooms\",protocol=\"ws\"} 0\n"));
        assert!(text.contains("rt_connections_limit 10\n"));
        assert_eq!(metrics.open_total(), 1);
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let text = Metrics::default().render(1);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<u64>().is_ok(), "{line}");
            assert!(
                series.starts_with("rt_") || series.starts_with("process_"),
                "{line}"
            );
        }
    }
}
