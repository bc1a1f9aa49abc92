//! Binding and running the server, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::config::{ConfigError, ServerConfig};
use crate::metrics::Metrics;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key cannot be used.
    #[error("cannot serve TLS: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Binds a listener with `SO_REUSEADDR`, `TCP_NODELAY` (inherited by accepted sockets on
/// Linux) and the given listen backlog.
///
/// # Errors
/// The OS error when the address cannot be bound.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A server running in the background of the current tokio runtime.
#[derive(Debug)]
pub struct RunningServer {
    app: App,
    local_addr: SocketAddr,
    /// The accept loop (`crate::plain` or `crate::tls`): it stops when the app's shutdown
    /// begins; each connection then finishes on its own.
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The bound address (useful after binding port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters.
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        self.app.metrics()
    }

    /// The application (for tests that need its configuration or hubs).
    #[must_use]
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Graceful shutdown: SSE streams end, WebSockets get Close 1001, new connections are
    /// refused, other connections close after the response in flight, then waits up to
    /// `grace` for every stream and socket to finish.
    pub async fn shutdown(self, grace: Duration) {
        self.app.begin_shutdown();
        let all_closed = async {
            if let Err(e) = self.task.await {
                tracing::error!("server task failed: {e}");
            }
            self.app.limiter().wait_idle().await;
        };
        if tokio::time::timeout(grace, all_closed).await.is_err() {
            let open = self.app.limiter().in_use();
            tracing::warn!(open, "grace period over; dropping remaining connections");
        }
    }
}

/// Binds `addr` and serves `config` in a background task; returns once the listener is bound,
/// so connections can be made at once.
///
/// # Errors
/// [`ServeError`] for a bad configuration or an address that cannot be bound.
pub async fn start(config: ServerConfig, addr: SocketAddr) -> Result<RunningServer, ServeError> {
    let backlog = config.backlog;
    let app = App::new(config)?;
    app.start_backplane();
    let bind_err = |source| ServeError::Bind { addr, source };
    let listener = bind_listener(addr, backlog).map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let router = app.router();
    let header_timeout = app.config().header_timeout;
    let task = match &app.config().tls {
        None => {
            let guards = crate::plain::Guards {
                header_timeout,
                write_stall: app.config().write_stall_timeout,
            };
            let serving =
                crate::plain::serve(listener, router, app.shutdown(), guards, app.metrics());
            tokio::spawn(serving)
        }
        Some(identity) => {
            let tls = crate::tls::server_config(identity).map_err(ServeError::Tls)?;
            let serving = crate::tls::serve(listener, tls, router, app.shutdown(), header_timeout);
            tokio::spawn(serving)
        }
    };
    let scheme = if app.config().tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(scheme, %local_addr, "target server listening");
    Ok(RunningServer {
        app,
        local_addr,
        task,
    })
}

/// Serves until `stop` completes (e.g. SIGINT/SIGTERM), then shuts down gracefully.
///
/// # Errors
/// As [`start`].
pub async fn serve_until(
    config: ServerConfig,
    addr: SocketAddr,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), ServeError> {
    let server = start(config, addr).await?;
    stop.await;
    tracing::info!("shutting down");
    server.shutdown(grace).await;
    Ok(())
}

/// Completes on SIGINT or SIGTERM (SIGINT only on non-Unix platforms).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsIdentity;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay() {
        let listener = bind_listener(([127, 0, 0, 1], 0).into(), 4096).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        assert!(
            accepted.nodelay().expect("nodelay"),
            "TCP_NODELAY not inherited"
        );
    }

    #[tokio::test]
    async fn start_refuses_a_certificate_or_key_that_is_not_pem() {
        let config = ServerConfig {
            tls: Some(TlsIdentity {
                cert_pem: b"not a certificate".to_vec(),
                key_pem: b"not a key".to_vec(),
            }),
            ..ServerConfig::default()
        };
        let err = start(config, ([127, 0, 0, 1], 0).into())
            .await
            .expect_err("garbage PEM must not serve");
        assert!(matches!(err, ServeError::Tls(_)), "{err}");
        assert!(err.to_string().starts_with("cannot serve TLS"), "{err}");
    }

    #[tokio::test]
    async fn start_refuses_a_bad_config_and_a_taken_address() {
        let bad = ServerConfig {
            max_connections: 0,
            ..ServerConfig::default()
        };
        let err = start(bad, ([127, 0, 0, 1], 0).into())
            .await
            .expect_err("invalid");
        assert!(err.to_string().contains("max_connections"), "{err}");
        let first = start(ServerConfig::default(), ([127, 0, 0, 1], 0).into())
            .await
            .expect("first");
        let taken = first.local_addr();
        // SO_REUSEADDR does not allow two listeners on one port.
        let err = start(ServerConfig::default(), taken)
            .await
            .expect_err("taken");
        assert!(err.to_string().contains(&taken.to_string()), "{err}");
        first.shutdown(Duration::from_secs(1)).await;
    }
}
