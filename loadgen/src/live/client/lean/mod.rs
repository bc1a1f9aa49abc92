//! A lean HTTP/1.1 client for one SSE stream over a [`Stream`] (plain TCP or TLS): the
//! request written once, the response head parsed with httparse, the body de-chunked in place,
//! no per-event allocation. It replaces a hyper client connection per stream (its dispatcher,
//! channels and buffers).
//!
//! Memory: an open stream holds no read buffer. Each read polls the socket into a
//! [`READ_BUF`]-byte array on the stack and hands the decoded body on before the poll
//! returns, so 10,000 idle streams do not keep 10,000 buffers (the SSE parser keeps only the
//! bytes of an event that is not complete yet).

pub(crate) mod chunked;
pub(crate) mod head;
pub(crate) mod upgrade;

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};

use super::ConnectError;
use crate::live::transport::Stream;
use chunked::Chunked;
use head::{Framing, Head};

/// Bytes read per poll (on the stack), and the initial buffer for the response head.
pub(crate) const READ_BUF: usize = 4096;

/// How the rest of the body is delimited.
#[derive(Debug)]
enum Body {
    Chunked(Chunked),
    /// Bytes left.
    Length(u64),
    Close,
}

/// An open event stream: the connection and the body bytes that came with the head.
#[derive(Debug)]
pub(crate) struct EventStream {
    stream: Stream,
    /// Body bytes read together with the head; emptied (and freed) by the first read.
    leftover: Vec<u8>,
    body: Body,
}

/// What one read of the body gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Data was handed on (possibly none: a chunk boundary); the stream goes on.
    More,
    /// The body ended cleanly (last chunk, length reached, or the server closed).
    End,
    /// The body is malformed or the connection broke.
    Broken(String),
}

/// Sends the request in `request` on `stream` and reads the response head.
///
/// # Errors
/// I/O failures as [`ConnectError`]; a head that is not HTTP/1.x as `Other`.
pub(crate) async fn open(
    mut stream: Stream,
    request: &[u8],
) -> Result<(Head, EventStream), ConnectError> {
    stream
        .write_all(request)
        .await
        .map_err(|e| ConnectError::from_io(&e))?;
    let parse = |buf: &[u8]| head::parse(buf).map_err(|e| ConnectError::Other(e.to_string()));
    let (head, leftover) = read_head(&mut stream, parse).await?;
    let body = match head.framing {
        Framing::Chunked => Body::Chunked(Chunked::default()),
        Framing::Length(n) => Body::Length(n),
        Framing::Close => Body::Close,
    };
    Ok((
        head,
        EventStream {
            stream,
            leftover,
            body,
        },
    ))
}

/// Reads from `stream` until `parse` finds a complete response head; returns what it parsed
/// and the bytes that came after the head, in a buffer of their own size (the head's buffer is
/// freed here, so nothing read for the head stays with the connection).
///
/// # Errors
/// I/O failures, the server closing first (`Reset`), or what `parse` refuses.
pub(crate) async fn read_head<T>(
    stream: &mut Stream,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ConnectError>,
) -> Result<(T, Vec<u8>), ConnectError> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        if let Some((parsed, len)) = parse(&buf)? {
            return Ok((parsed, buf.split_off(len)));
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_BUF);
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| ConnectError::from_io(&e))?;
        if n == 0 {
            return Err(ConnectError::Reset);
        }
    }
}

impl EventStream {
    /// Hands the body bytes of the next read (the bytes that came with the head, first) to
    /// `out`. Cancel-safe: a poll either reads and decodes, or reads nothing.
    pub(crate) async fn read(&mut self, out: &mut (dyn FnMut(&[u8]) + Send)) -> Read {
        std::future::poll_fn(|cx| self.poll_read(cx, out)).await
    }

    /// One read of [`EventStream::read`]: `Pending` (the task's waker kept by the socket)
    /// when nothing is there to read.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
        out: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Poll<Read> {
        if !self.leftover.is_empty() {
            let bytes = std::mem::take(&mut self.leftover);
            return Poll::Ready(decode(&mut self.body, &bytes, out));
        }
        if matches!(self.body, Body::Length(0)) {
            return Poll::Ready(Read::End);
        }
        // Not zeroed: a plain socket read writes what it fills (zeroing 4 KiB cost more than
        // the rest of an event's handling); TLS initialises what it needs.
        let mut bytes = [MaybeUninit::<u8>::uninit(); READ_BUF];
        let mut buf = ReadBuf::uninit(&mut bytes);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Read::Broken(e.to_string())),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(match self.body {
                Body::Close => Read::End,
                _ => Read::Broken("connection closed inside the body".to_owned()),
            }),
            Poll::Ready(Ok(())) => Poll::Ready(decode(&mut self.body, buf.filled(), out)),
        }
    }
}

/// Decodes `bytes` of `body` and hands the data to `out`.
fn decode(body: &mut Body, bytes: &[u8], out: &mut (dyn FnMut(&[u8]) + Send)) -> Read {
    match body {
        Body::Close => {
            out(bytes);
            Read::More
        }
        Body::Length(left) => {
            let n = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            out(&bytes[..n]);
            *left -= n as u64;
            if *left == 0 { Read::End } else { Read::More }
        }
        Body::Chunked(decoder) => match decoder.feed(bytes, out) {
            Err(e) => Read::Broken(e.to_string()),
            Ok(()) if decoder.is_done() => Read::End,
            Ok(()) => Read::More,
        },
    }
}
