//! What plain HTTP and HTTPS serving share: the accept loop (each connection in a task of its
//! own, never work in the loop), hyper's HTTP/1.1 server around salvo's handler, and graceful
//! ends once shutdown begins.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
use hyper_util::rt::TokioTimer;
use salvo::Service;
use salvo::conn::ConnCtrl;
use salvo::http::uri::Scheme;
use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Shutdown;

/// Accepts connections on `listener` until `shutdown` begins and hands each to `serve`
/// (which spawns its task). Accept errors (out of file descriptors, a connection reset
/// before accept) are logged and the loop goes on after a short pause.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    mut shutdown: Shutdown,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, remote)) => serve(tcp, remote),
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Where a connection was accepted, for salvo's request (`local_addr`, `remote_addr`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
}

/// Serves `io` with hyper's HTTP/1.1 server (upgrades allowed: WebSockets) around salvo's
/// handler; a client gets `header_timeout` for each request head; finishes the response in
/// flight and closes once shutdown begins.
pub(crate) async fn serve_http1<I>(
    io: I,
    service: &Service,
    addrs: Addrs,
    scheme: Scheme,
    header_timeout: Duration,
    shutdown: &mut Shutdown,
) -> hyper::Result<()>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let handler = service.hyper_handler(
        addrs.local.into(),
        addrs.remote.into(),
        scheme,
        None,
        ConnCtrl::new(),
        None,
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, handler)
        .with_upgrades();
    until_served(conn, shutdown, |c| c.graceful_shutdown()).await
}

/// Drives `conn` to its end; once shutdown begins, asks it to finish gracefully
/// (`graceful`: GOAWAY on HTTP/2, close after the response on HTTP/1.1) and waits for that.
pub(crate) async fn until_served<C: Future>(
    conn: C,
    shutdown: &mut Shutdown,
    graceful: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => done,
        () = shutdown.wait() => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}

/// salvo's service for `router`, shared by every connection.
pub(crate) fn service(router: salvo::Router) -> Arc<Service> {
    Arc::new(Service::new(router))
}
