//! A plain connection's socket: counts what it read and wrote (a connection that ends with
//! nothing written is counted as unanswered: `rt_connections_unanswered_total`), and first
//! returns the bytes already read while looking at the request head, so hyper can take over a
//! connection whose head was read here.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// Most bytes a client may send on an event stream after its request before the stream is
/// closed (an event-stream client has nothing to say; this bounds what is read and ignored).
const MAX_IGNORED_BYTES: u64 = 64 * 1024;

/// One accepted plain TCP connection.
pub(crate) struct PlainIo {
    tcp: TcpStream,
    /// Read already, not yet consumed: returned by reads before the socket's.
    prefix: Bytes,
    /// Bytes read from the socket.
    read: u64,
    /// Bytes written to the socket.
    written: u64,
    metrics: Arc<Metrics>,
}

impl PlainIo {
    pub(crate) fn new(tcp: TcpStream, metrics: Arc<Metrics>) -> Self {
        Self {
            tcp,
            prefix: Bytes::new(),
            read: 0,
            written: 0,
            metrics,
        }
    }

    /// Makes the next reads return `prefix` first.
    pub(crate) fn unread(&mut self, prefix: Bytes) {
        debug_assert!(self.prefix.is_empty(), "one prefix at a time");
        self.prefix = prefix;
    }

    /// Writes what the socket takes now without waiting (`WouldBlock`: 0 bytes).
    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self.tcp.try_write_vectored(bufs) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Ready when the peer closed its side (or the socket failed). Bytes it sends meanwhile
    /// are read and ignored, up to [`MAX_IGNORED_BYTES`]; beyond that it counts as closed.
    /// Waits through the socket's own read-readiness waker (no waiter registered per call).
    pub(crate) fn poll_peer_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 64];
        loop {
            match self.tcp.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            match self.tcp.try_read(&mut scratch) {
                Ok(0) => return Poll::Ready(()),
                Ok(n) => {
                    self.read += n as u64;
                    if self.read > MAX_IGNORED_BYTES {
                        return Poll::Ready(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}

impl AsyncRead for PlainIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl AsyncWrite for PlainIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl Drop for PlainIo {
    fn drop(&mut self) {
        if self.written == 0 {
            self.metrics.unanswered(self.read > 0);
        }
    }
}
