//! A lean HTTP/1.1 client for one SSE stream over a [`Stream`] (plain TCP or TLS): the
//! request written once, the response head parsed with httparse, the body de-chunked in place,
//! all on one reusable read buffer of [`READ_BUF`] bytes per stream, no per-event allocation.
//! It replaces a hyper client connection per stream (its dispatcher, channels and buffers).

pub(crate) mod chunked;
pub(crate) mod head;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::ConnectError;
use crate::live::transport::Stream;
use chunked::Chunked;
use head::{Framing, Head};

/// Read buffer per stream, in bytes (grown only to hold a large response head).
pub(crate) const READ_BUF: usize = 4096;

/// How the rest of the body is delimited.
#[derive(Debug)]
enum Body {
    Chunked(Chunked),
    /// Bytes left.
    Length(u64),
    Close,
}

/// An open event stream: the connection and what is left of its first read.
#[derive(Debug)]
pub(crate) struct EventStream {
    stream: Stream,
    buf: Vec<u8>,
    /// Body bytes already read with the head, at `buf[pending..filled]`.
    pending: usize,
    filled: usize,
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
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let (head, len) = loop {
        if let Some(parsed) = head::parse(&buf).map_err(|e| ConnectError::Other(e.to_string()))? {
            break parsed;
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
    };
    // Keep only the body bytes that came with the head, at the front of a READ_BUF buffer
    // (a large head grew it: give that back).
    buf.drain(..len);
    let filled = buf.len();
    if filled <= READ_BUF {
        buf.shrink_to(READ_BUF);
    }
    buf.resize(filled.max(READ_BUF), 0);
    let body = match head.framing {
        Framing::Chunked => Body::Chunked(Chunked::default()),
        Framing::Length(n) => Body::Length(n),
        Framing::Close => Body::Close,
    };
    Ok((
        head,
        EventStream {
            stream,
            buf,
            pending: 0,
            filled,
            body,
        },
    ))
}

impl EventStream {
    /// Hands the body bytes of the next read (or of the head's read, first) to `out`.
    /// Cancel-safe: the only await is the socket read, before anything is consumed.
    pub(crate) async fn read(&mut self, out: &mut (dyn FnMut(&[u8]) + Send)) -> Read {
        if self.pending < self.filled {
            let (from, to) = (self.pending, self.filled);
            self.pending = self.filled;
            return self.decode(from, to, out);
        }
        if matches!(self.body, Body::Length(0)) {
            return Read::End;
        }
        match self.stream.read(&mut self.buf).await {
            Ok(0) => match self.body {
                Body::Close => Read::End,
                _ => Read::Broken("connection closed inside the body".to_owned()),
            },
            Ok(n) => {
                self.filled = n;
                self.pending = n;
                self.decode(0, n, out)
            }
            Err(e) => Read::Broken(e.to_string()),
        }
    }

    fn decode(&mut self, from: usize, to: usize, out: &mut (dyn FnMut(&[u8]) + Send)) -> Read {
        let bytes = &self.buf[from..to];
        match &mut self.body {
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
}
