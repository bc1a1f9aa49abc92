//! Serving plain HTTP with our own accept loop: each connection's first request head is read
//! here (within `--header-timeout-secs`); a `GET` of an event stream is answered without
//! hyper's HTTP/1.1 dispatcher ([`event_stream`]), everything else (POSTs, pages, metrics,
//! WebSocket upgrades, later requests on the connection) is handed to hyper with the bytes
//! already read. Every connection that ends before the server wrote a byte is counted
//! (`rt_connections_unanswered_total`), and an event stream whose client stops reading is
//! closed after `--write-stall-secs`.

mod event_stream;
mod io;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use salvo::conn::ConnCtrl;
use salvo::http::uri::Scheme;
use salvo::{Router, Service};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

use crate::listen::{self, Addrs};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use io::PlainIo;

/// Largest request head read here; a longer one is hyper's to refuse (431).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// First read buffer for a request head, bytes (grown as needed up to [`MAX_HEAD_BYTES`]).
const FIRST_HEAD_BUFFER: usize = 1024;

/// How plain connections are guarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guards {
    /// Longest a client may take to send a request head.
    pub(crate) header_timeout: Duration,
    /// Longest a write to an event stream may make no progress.
    pub(crate) write_stall: Duration,
}

/// Accepts plain HTTP connections on `listener` until `shutdown` begins; each is served in a
/// task of its own, which finishes gracefully once shutdown begins.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
    guards: Guards,
    metrics: Arc<Metrics>,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => return tracing::error!("listener has no address: {e}"),
    };
    let service = listen::service(router);
    let each = shutdown.clone();
    listen::accept_loop(listener, shutdown, move |tcp, remote| {
        let connection = Connection {
            service: Arc::clone(&service),
            addrs: Addrs { local, remote },
            shutdown: each.clone(),
            guards,
        };
        tokio::spawn(connection.serve(PlainIo::new(tcp, Arc::clone(&metrics))));
    })
    .await;
}

/// One accepted plain connection.
struct Connection {
    service: Arc<Service>,
    addrs: Addrs,
    shutdown: Shutdown,
    guards: Guards,
}

impl Connection {
    /// Reads the first request head, then serves the connection: an event stream here, the
    /// rest with hyper. Only what an event stream needs stays in the task for its life (the
    /// handler's and hyper's states are boxed while they run).
    async fn serve(self, mut io: PlainIo) {
        let remote = self.addrs.remote;
        let head = tokio::time::timeout(self.guards.header_timeout, read_head(&mut io)).await;
        let head = match head {
            Ok(Ok(Some(head))) => head,
            // Closed or failed before a head: nothing to answer.
            Ok(Ok(None) | Err(_)) => return,
            Err(_) => return tracing::debug!(%remote, "request head timed out"),
        };
        if let Some(responding) = self.respond_here(&head) {
            drop(head);
            let stall = self.guards.write_stall;
            let written = match event_stream::response_head(responding.await) {
                Ok(response) => event_stream::write_response(&mut io, response, stall).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::debug!(%remote, "event stream ended: {e}");
            }
            return;
        }
        io.unread(head);
        Box::pin(self.serve_with_hyper(io)).await;
    }

    /// salvo's answer to the request in `head`, boxed, when it is an event stream's request
    /// served here (not async itself: the request never becomes part of the task's state).
    fn respond_here(
        &self,
        head: &[u8],
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = salvo::Response> + Send + '_>>>
    {
        let request = event_stream::lean_request(head)?;
        Some(Box::pin(self.respond(request)))
    }

    /// salvo's answer to `request` (routing, hoops, the handler).
    async fn respond(&self, request: salvo::Request) -> salvo::Response {
        let handler = self.service.hyper_handler(
            self.addrs.local.into(),
            self.addrs.remote.into(),
            Scheme::HTTP,
            None,
            ConnCtrl::new(),
            None,
        );
        handler.handle(request).await
    }

    /// hyper's HTTP/1.1 server for the rest of the connection.
    async fn serve_with_hyper(mut self, io: PlainIo) {
        let result = listen::serve_http1(
            TokioIo::new(io),
            &self.service,
            self.addrs,
            Scheme::HTTP,
            self.guards.header_timeout,
            &mut self.shutdown,
        )
        .await;
        if let Err(e) = result {
            tracing::debug!(remote = %self.addrs.remote, "connection ended: {e}");
        }
    }
}

/// Reads until a whole request head is in (`\r\n\r\n`), the head is malformed, or
/// [`MAX_HEAD_BYTES`] are read: the bytes read, for [`event_stream::lean_request`] or hyper.
/// `None` when the client closed first.
async fn read_head(io: &mut PlainIo) -> std::io::Result<Option<Bytes>> {
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_HEAD_BUFFER);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().min(MAX_HEAD_BYTES - buf.len()));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; event_stream::MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
            // Complete, malformed, or too long: decided by the caller (hyper answers 400/431).
            _ => return Ok(Some(Bytes::from(buf))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpStream;

    use super::*;

    async fn pair() -> (TcpStream, PlainIo) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, PlainIo::new(server, Arc::new(Metrics::default())))
    }

    #[tokio::test]
    async fn a_head_in_pieces_is_read_whole_and_a_close_before_it_is_none() {
        let (mut client, mut io) = pair().await;
        let writer = tokio::spawn(async move {
            for piece in ["GET /sse/counter HT", "TP/1.1\r\nHost: x\r", "\n\r\n"] {
                client.write_all(piece.as_bytes()).await.expect("write");
                tokio::task::yield_now().await;
            }
            client
        });
        let head = read_head(&mut io).await.expect("read").expect("a head");
        assert_eq!(&head[..], b"GET /sse/counter HTTP/1.1\r\nHost: x\r\n\r\n");
        drop(writer.await.expect("writer"));
        let (client, mut io) = pair().await;
        drop(client);
        assert!(read_head(&mut io).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn an_endless_head_stops_at_the_limit() {
        let (mut client, mut io) = pair().await;
        let writer = tokio::spawn(async move {
            let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
            let _ = client.write_all(b"GET /sse/counter HTTP/1.1\r\n").await;
            for _ in 0..40 {
                if client.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            client
        });
        let head = read_head(&mut io).await.expect("read").expect("bytes");
        assert!(head.len() >= MAX_HEAD_BYTES && head.len() < MAX_HEAD_BYTES + 2048);
        drop(io);
        drop(writer.await.expect("writer"));
    }
}
