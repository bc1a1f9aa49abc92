//! Command-line flags of the target server; every flag has an environment override.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::config::{ServerConfig, TlsIdentity};

/// Flags of `rt-server` (and of `loadgen serve`, which embeds the same server).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Use port 0 to pick a free port (it is logged).
    #[arg(long, env = "RT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Bearer token required on SSE, WebSocket and publish endpoints (also accepted as
    /// `?token=`). Unset: no auth.
    #[arg(long, env = "RT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Maximum concurrent streaming connections (SSE + WebSocket); more get 503.
    #[arg(long, env = "RT_MAX_CONNECTIONS", default_value_t = 19_000)]
    pub max_connections: usize,
    /// Maximum WebSocket message size in bytes; larger messages close the socket with 1009.
    #[arg(long, env = "RT_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,
    /// Maximum HTTP publish body in bytes; larger bodies get 413.
    #[arg(long, env = "RT_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,
    /// Seconds of silence after which an SSE stream gets a keep-alive comment.
    #[arg(long, env = "RT_KEEPALIVE_SECS", default_value = "15", value_parser = positive_seconds)]
    pub keepalive_secs: Duration,
    /// Reconnection delay in milliseconds sent to SSE clients as `retry:`.
    #[arg(long, env = "RT_RETRY_MS", default_value_t = 1000)]
    pub retry_ms: u64,
    /// Seconds between WebSocket pings; a peer silent for a whole interval is closed (4408).
    #[arg(long, env = "RT_PING_SECS", default_value = "20", value_parser = positive_seconds)]
    pub ping_secs: Duration,
    /// Events kept for Last-Event-ID replay on /sse/notifications and /sse/replay.
    #[arg(long, env = "RT_REPLAY_CAPACITY", default_value_t = 1024)]
    pub replay_capacity: usize,
    /// Per-client queue in messages; a client further behind is told it lagged.
    #[arg(long, env = "RT_CLIENT_QUEUE", default_value_t = 256)]
    pub client_queue: usize,
    /// Default tick interval of /sse/counter in milliseconds (`?interval_ms=` overrides).
    #[arg(long, env = "RT_COUNTER_INTERVAL_MS", default_value_t = 1000)]
    pub counter_interval_ms: u64,
    /// Default number of symbols of /sse/stocks (`?symbols=` overrides).
    #[arg(long, env = "RT_STOCK_SYMBOLS", default_value_t = 10)]
    pub stock_symbols: usize,
    /// Default price updates per second of /sse/stocks (`?rate=` overrides).
    #[arg(long, env = "RT_STOCK_RATE", default_value_t = 10)]
    pub stock_rate: u32,
    /// WebSocket read buffer per connection in bytes (tungstenite's default is 131072).
    #[arg(long, env = "RT_WS_READ_BUFFER", default_value_t = 4096)]
    pub ws_read_buffer: usize,
    /// Listen backlog (pending connections the kernel queues).
    #[arg(long, env = "RT_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,
    /// Share the notifications and replay streams with other instances through this Redis
    /// (redis://HOST:PORT): a publisher on any instance reaches subscribers on all, and
    /// Last-Event-ID resumes on any. Unset: this instance alone.
    #[arg(long, env = "RT_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seconds a client may take to send a request head; slower ones (slowloris) are closed
    /// and counted in rt_connections_unanswered_total.
    #[arg(long, env = "RT_HEADER_TIMEOUT_SECS", default_value = "15", value_parser = positive_seconds)]
    pub header_timeout_secs: Duration,
    /// Seconds an SSE stream's write may stay pending (the client stopped reading) before
    /// the connection is closed and its slot freed.
    #[arg(long, env = "RT_WRITE_STALL_SECS", default_value = "60", value_parser = positive_seconds)]
    pub write_stall_secs: Duration,
    /// Serve HTTPS/WSS with this PEM certificate chain (leaf first); needs --tls-key. ALPN
    /// offers h2 and http/1.1, so SSE can run over HTTP/2.
    #[arg(long, env = "RT_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "RT_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Seconds to wait for connections to finish on SIGINT/SIGTERM.
    #[arg(long, env = "RT_SHUTDOWN_GRACE_SECS", default_value = "5", value_parser = positive_seconds)]
    pub shutdown_grace_secs: Duration,
}

/// A flag value out of range.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {problem}")]
pub struct FlagError {
    /// The flag, without dashes.
    pub flag: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// clap parser of the `*-secs` flags: a positive, finite number of seconds (`0.5`, `20`).
///
/// # Errors
/// A message saying what is allowed.
pub fn positive_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("must be a positive number of seconds, got {text:?}"))
}

impl ServeArgs {
    /// The server configuration these flags describe.
    ///
    /// # Errors
    /// [`FlagError`] naming the flag that is out of range.
    pub fn to_config(&self) -> Result<ServerConfig, FlagError> {
        let config = ServerConfig {
            token: self.token.clone(),
            max_connections: self.max_connections,
            max_message_bytes: self.max_message_bytes,
            max_body_bytes: self.max_body_bytes,
            keepalive: self.keepalive_secs,
            retry: Duration::from_millis(self.retry_ms),
            ping_interval: self.ping_secs,
            replay_capacity: self.replay_capacity,
            client_queue: self.client_queue,
            counter_interval: Duration::from_millis(self.counter_interval_ms),
            stock_symbols: self.stock_symbols,
            stock_rate: self.stock_rate,
            ws_read_buffer: self.ws_read_buffer,
            backlog: self.backlog,
            header_timeout: self.header_timeout_secs,
            write_stall_timeout: self.write_stall_secs,
            tls: self.tls_identity()?,
            redis_url: self.redis_url.clone(),
        };
        config.validate().map_err(|e| FlagError {
            flag: flag_of(e.field),
            problem: e.problem.to_owned(),
        })?;
        Ok(config)
    }

    /// Reads `--tls-cert` and `--tls-key` (both or neither: clap enforces it).
    fn tls_identity(&self) -> Result<Option<TlsIdentity>, FlagError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |flag: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| FlagError {
                flag,
                problem: format!("cannot read {}: {e}", path.display()),
            })
        };
        Ok(Some(TlsIdentity {
            cert_pem: read("tls-cert", cert)?,
            key_pem: read("tls-key", key)?,
        }))
    }

    /// Grace period for connections to finish at shutdown (validated by clap: positive).
    #[must_use]
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace_secs
    }
}

fn flag_of(field: &'static str) -> &'static str {
    match field {
        "max_connections" => "max-connections",
        "max_message_bytes" => "max-message-bytes",
        "max_body_bytes" => "max-body-bytes",
        "replay_capacity" => "replay-capacity",
        "client_queue" => "client-queue",
        "counter_interval" => "counter-interval-ms",
        "stock_symbols" => "stock-symbols",
        "stock_rate" => "stock-rate",
        "ws_read_buffer" => "ws-read-buffer",
        "token" => "token",
        "redis_url" => "redis-url",
        "header_timeout" => "header-timeout-secs",
        "write_stall_timeout" => "write-stall-secs",
        other => other,
    }
}
