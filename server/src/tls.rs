//! Serving HTTPS with our own accept loop: the TLS handshake runs in each connection's task
//! (never in the accept loop), then ALPN decides between hyper's HTTP/2 server (`h2`) and its
//! HTTP/1.1 server (`http/1.1` or no ALPN, upgrades allowed for WebSockets), both around
//! salvo's request handler.
//!
//! salvo's own HTTP/2 support is not compiled in on purpose: with it, every connection's task,
//! plain HTTP/1.1 ones included, carries HTTP/2's connection state (40.7 KB of heap per plain
//! SSE stream instead of 21.8 KB: `figures` `server-sse`). The price: plain `http://` serves
//! HTTP/1.1 only (no h2c).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use salvo::conn::ConnCtrl;
use salvo::http::uri::Scheme;
use salvo::{Router, Service};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsIdentity;
use crate::listen::{self, Addrs};
use crate::shutdown::Shutdown;

/// Longest a client may take to finish the TLS handshake before its connection is closed.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls settings of `identity` (ALPN: `h2`, then `http/1.1`), checked now so a bad
/// certificate or key is an error at start.
///
/// # Errors
/// A certificate chain or key that is not usable PEM, or a key that does not match.
pub(crate) fn server_config(identity: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = CertificateDer::pem_slice_iter(&identity.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if certs.is_empty() {
        return Err("certificate: no PEM certificate found".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(&identity.key_pem).map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections on `listener` until `shutdown` begins; each connection is served
/// in a task of its own, which finishes gracefully once shutdown begins. An HTTP/1.1 client
/// gets `header_timeout` to send each request head.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: Shutdown,
    header_timeout: Duration,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => return tracing::error!("TLS listener has no address: {e}"),
    };
    let tls = tokio_rustls::TlsAcceptor::from(config);
    let service = listen::service(router);
    let each = shutdown.clone();
    listen::accept_loop(listener, shutdown, move |tcp, remote| {
        let connection = Connection {
            tls: tls.clone(),
            service: Arc::clone(&service),
            addrs: Addrs { local, remote },
            shutdown: each.clone(),
            header_timeout,
        };
        tokio::spawn(connection.serve(tcp));
    })
    .await;
}

/// One accepted TCP connection before its handshake.
struct Connection {
    tls: tokio_rustls::TlsAcceptor,
    service: Arc<Service>,
    addrs: Addrs,
    shutdown: Shutdown,
    header_timeout: Duration,
}

impl Connection {
    async fn serve(mut self, tcp: TcpStream) {
        let remote = self.addrs.remote;
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(%remote, "TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!(%remote, "TLS handshake timed out"),
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let result = if h2 {
            let handler = self.service.hyper_handler(
                self.addrs.local.into(),
                remote.into(),
                Scheme::HTTPS,
                None,
                ConnCtrl::new(),
                None,
            );
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, handler);
            listen::until_served(conn, &mut self.shutdown, |c| c.graceful_shutdown()).await
        } else {
            listen::serve_http1(
                io,
                &self.service,
                self.addrs,
                Scheme::HTTPS,
                self.header_timeout,
                &mut self.shutdown,
            )
            .await
        };
        if let Err(e) = result {
            tracing::debug!(%remote, h2, "connection ended: {e}");
        }
    }
}
