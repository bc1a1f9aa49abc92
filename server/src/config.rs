//! Server configuration: every limit and rate, with defaults suitable for load tests.

use std::time::Duration;

/// Configuration of the target server. Construct with [`ServerConfig::default`] and adjust.
///
/// Invariants (checked by [`ServerConfig::validate`]): every duration and size is non-zero.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token required on SSE, WebSocket and publish endpoints; `None` disables auth.
    pub token: Option<String>,
    /// Maximum concurrent streaming connections (SSE streams plus WebSockets), server-wide.
    pub max_connections: usize,
    /// Maximum WebSocket message (and frame) size in bytes; larger ones close with 1009.
    pub max_message_bytes: usize,
    /// Maximum HTTP publish body size in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Interval between SSE keep-alive comments.
    pub keepalive: Duration,
    /// Reconnection delay sent to SSE clients in the `retry:` field.
    pub retry: Duration,
    /// Interval between WebSocket pings; a peer that has not answered the previous ping by
    /// the next one is closed.
    pub ping_interval: Duration,
    /// Events kept per replay ring (notifications and replay streams) for `Last-Event-ID`.
    pub replay_capacity: usize,
    /// Per-client queue length (broadcast channel capacity / WS outbound queue), in messages.
    pub client_queue: usize,
    /// Default tick interval of the SSE counter when the request names none.
    pub counter_interval: Duration,
    /// Default stock feed: number of symbols.
    pub stock_symbols: usize,
    /// Default stock feed: price updates per second per connection (all symbols together).
    pub stock_rate: u32,
    /// WebSocket read buffer per connection in bytes (tungstenite's default is 128 KiB).
    pub ws_read_buffer: usize,
    /// Listen backlog for the TCP listener.
    pub backlog: u32,
    /// Longest a client may take to send a request head; slower ones (slowloris) are
    /// closed and counted in `rt_connections_unanswered_total`.
    pub header_timeout: Duration,
    /// Longest an SSE stream's write may stay pending (a client that stopped reading): the
    /// connection is closed, its slot freed. WebSockets have their own heartbeat.
    pub write_stall_timeout: Duration,
    /// Serve TLS (ALPN `h2` and `http/1.1`) with this certificate chain and key; `None`:
    /// plain HTTP/1.1.
    pub tls: Option<TlsIdentity>,
    /// Share the notifications and replay streams with other instances through this Redis
    /// (`redis://host:port`); `None`: this instance alone.
    pub redis_url: Option<String>,
}

/// A PEM certificate chain and its PEM private key (`--tls-cert`, `--tls-key`).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token: None,
            max_connections: 19_000,
            max_message_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024,
            keepalive: Duration::from_secs(15),
            retry: Duration::from_millis(1000),
            ping_interval: Duration::from_secs(20),
            replay_capacity: 1024,
            client_queue: 256,
            counter_interval: Duration::from_millis(1000),
            stock_symbols: 10,
            stock_rate: 10,
            ws_read_buffer: 4 * 1024,
            backlog: 4096,
            header_timeout: Duration::from_secs(15),
            write_stall_timeout: Duration::from_secs(60),
            tls: None,
            redis_url: None,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid server configuration: {field} {problem}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl ServerConfig {
    /// Largest message the server may have to send on a WebSocket, in bytes: an inbound
    /// message or publish body plus the JSON envelope the server wraps around it.
    #[must_use]
    pub fn max_outbound_message(&self) -> usize {
        self.max_message_bytes.max(self.max_body_bytes) + 1024
    }

    /// Checks the invariants.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_connections", self.max_connections),
            ("max_message_bytes", self.max_message_bytes),
            ("max_body_bytes", self.max_body_bytes),
            ("replay_capacity", self.replay_capacity),
            ("client_queue", self.client_queue),
            ("stock_symbols", self.stock_symbols),
            ("ws_read_buffer", self.ws_read_buffer),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    field,
                    problem: "must be greater than 0",
                });
            }
        }
        let durations = [
            ("keepalive", self.keepalive),
            ("ping_interval", self.ping_interval),
            ("counter_interval", self.counter_interval),
            ("header_timeout", self.header_timeout),
            ("write_stall_timeout", self.write_stall_timeout),
        ];
        for (field, value) in durations {
            if value.is_zero() {
                return Err(ConfigError {
                    field,
                    problem: "must be longer than 0",
                });
            }
        }
        if self.stock_rate == 0 {
            return Err(ConfigError {
                field: "stock_rate",
                problem: "must be greater than 0",
            });
        }
        if self
            .redis_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("redis://") || u.len() <= "redis://".len())
        {
            return Err(ConfigError {
                field: "redis_url",
                problem: "must be redis://HOST:PORT",
            });
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError {
                field: "token",
                problem: "must not be empty (omit it to disable auth)",
            });
        }
        Ok(())
    }
}
