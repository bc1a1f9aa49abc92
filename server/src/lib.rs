//! The target server: a Salvo application implementing every realtime pattern (SSE counter,
//! chat, stock feed, notifications, Last-Event-ID replay, WS echo, chat, rooms, pub/sub, a
//! combined router with browser pages), instrumented with exact counters at `/metrics`.
//!
//! Tests and the load generator drive it through [`start`] (bind, serve in the background,
//! shut down gracefully); the `rt-server` binary parses [`cli::ServeArgs`] and calls
//! [`serve_until`].

mod app;
pub mod backplane;
pub mod cli;
pub mod config;
pub mod fuzzing;
mod http;
pub mod injection;
pub mod limits;
mod listen;
pub mod metrics;
mod plain;
pub mod process;
mod serve;
pub mod shutdown;
mod sse;
mod state;
mod tls;
mod ws;

pub use app::{App, router};

/// The broadcast hub behind the notifications and replay scenarios, public so benchmarks can
/// measure fan-out without sockets.
pub mod hub {
    pub use crate::sse::replay::{Published, ReplayHub, ReplayStream};
    pub use crate::sse::{EventSource, Initial};
}
pub use config::{ConfigError, ServerConfig, TlsIdentity};
pub use serve::{RunningServer, ServeError, bind_listener, serve_until, shutdown_signal, start};
pub use ws::CLOSE_HEARTBEAT;
