//! Integration tests of the target server: real sockets on 127.0.0.1:0, real HTTP (hyper),
//! SSE (hyper + the `wire` parser) and WebSocket (tokio-tungstenite) clients.

mod backplane;
mod browser;
mod cli;
mod injection;
mod limits;
mod metrics_exact;
mod pages;
mod shutdown;
mod sse;
mod support;
mod tls;
mod ws;
