//! Event streams served without hyper's HTTP/1.1 dispatcher: a plain `GET /sse/...` is handed
//! to salvo's handler as usual, and its response (an event stream, or an error) is written
//! here: the head, then the body as chunks, every event that is ready at a wake-up in one
//! `writev`. The connection closes after the response (`Connection: close`).
//!
//! Why: hyper keeps an 8 KiB read buffer and an 8 KiB head buffer for the life of every
//! HTTP/1.1 connection (no server setting shrinks them), which made an idle event stream cost
//! 14.9 KiB; here a stream holds its task, its event source and a few hundred bytes.

use std::io::{IoSlice, Write as _};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use salvo::http::Body as _;
use salvo::http::body::ReqBody;
use salvo::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use salvo::http::{HeaderName, HeaderValue, Method, ResBody};
use tokio::io::AsyncWriteExt as _;

use super::io::PlainIo;

/// Events written in one `writev` at most (each takes one slice; two more for the chunk's
/// size line and end, one for a head not yet written).
const MAX_EVENTS_PER_WRITE: usize = 32;

/// Headers of a request head read here at most; more goes to hyper (which answers 431).
pub(crate) const MAX_HEADERS: usize = 64;

/// `request` (a complete head, nothing after it) as a salvo request, when it is one served
/// here: `GET` of a path under `/sse/`, HTTP/1.1, no body, no upgrade. `None`: hyper serves it.
pub(crate) fn lean_request(head: &[u8]) -> Option<salvo::Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(head).ok()? else {
        return None;
    };
    let path = parsed.path?;
    if len != head.len()
        || parsed.method? != "GET"
        || parsed.version? != 1
        || !path.starts_with("/sse/")
    {
        return None;
    }
    let mut builder = hyper::Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(salvo::http::Version::HTTP_11);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A body or a protocol switch is hyper's to handle.
        if name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || name == salvo::http::header::UPGRADE
            || name == salvo::http::header::EXPECT
        {
            return None;
        }
        builder = builder.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let request = builder.body(ReqBody::None).ok()?;
    Some(salvo::Request::from_hyper(
        request,
        salvo::http::uri::Scheme::HTTP,
    ))
}

/// Writes a response ([`response_head`]) on `io` and closes: an event stream (a body of
/// unknown length) as chunks, anything else with its length. A write that makes no progress for `write_stall` (the
/// client stopped reading), or the client closing, ends the response early; dropping the body
/// then releases the stream's connection slot.
pub(crate) async fn write_response(
    io: &mut PlainIo,
    (head, length, mut body): Prepared,
    write_stall: Duration,
) -> std::io::Result<()> {
    if length.is_some() {
        // An answer of known length (an error, mostly): boxed, it does not size the task of
        // every stream.
        return Box::pin(async move {
            let bytes = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let mut out = head;
            out.extend_from_slice(&bytes);
            stalled(write_stall, io.write_all(&out)).await?;
            io.shutdown().await
        })
        .await;
    }
    pump(io, &mut body, head, write_stall).await
}

/// A response ready to write: its head as HTTP/1.1 text, its body's length (`None`: an event
/// stream), and the body.
pub(crate) type Prepared = (Vec<u8>, Option<u64>, ResBody);

/// The response's head as HTTP/1.1 text (its own framing headers replaced: a length, or
/// chunked for a body of unknown length, and `connection: close`), that length, and the body.
/// Not async, so the response never becomes part of a stream task's state.
pub(crate) fn response_head(response: salvo::Response) -> std::io::Result<Prepared> {
    let (parts, body) = response.into_hyper().into_parts();
    let length = salvo::http::Body::size_hint(&body).exact();
    let mut head = Vec::with_capacity(256);
    let status = parts.status;
    write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )?;
    for (name, value) in &parts.headers {
        if name == CONNECTION || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    write!(
        head,
        "date: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    )?;
    match length {
        Some(n) => write!(head, "content-length: {n}\r\nconnection: close\r\n\r\n")?,
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
    }
    Ok((head, length, body))
}

/// Writes the body of unknown length as chunks until it ends (then the last chunk and a
/// close) or the client goes away; `head` goes out with the first chunk.
async fn pump(
    io: &mut PlainIo,
    body: &mut ResBody,
    head: Vec<u8>,
    write_stall: Duration,
) -> std::io::Result<()> {
    let mut head = Some(head);
    let mut ready: Vec<Bytes> = Vec::new();
    let mut ended = false;
    while !ended {
        // One poll per wake-up: every event ready now goes in the same write.
        let found = std::future::poll_fn(|cx| {
            while ready.len() < MAX_EVENTS_PER_WRITE {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => ready.extend(frame.into_data().ok()),
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Found::Gone),
                    Poll::Ready(None) => return Poll::Ready(Found::End),
                    Poll::Pending if ready.is_empty() => {
                        return io.poll_peer_closed(cx).map(|()| Found::Gone);
                    }
                    Poll::Pending => break,
                }
            }
            Poll::Ready(Found::Events)
        })
        .await;
        match found {
            Found::Gone => return Ok(()),
            Found::End => ended = true,
            Found::Events => {}
        }
        // Most writes go out at once; only what a full socket did not take is copied and
        // waited for (with the stall limit, whose timer would otherwise cost a timer-wheel
        // entry per write), in a future of its own so that the stream's task stays small.
        let leftover = {
            let head = head.take();
            write_now(io, head.as_deref(), &ready, ended)?
        };
        if let Some(rest) = leftover {
            Box::pin(stalled(write_stall, io.write_all(&rest))).await?;
        }
        ready.clear();
        if ready.capacity() > 4 {
            // A burst does not keep its buffer for the life of the stream.
            ready = Vec::new();
        }
    }
    io.shutdown().await
}

/// Writes `head` (if any), `events` as one chunk and, when `ended`, the last chunk, in one
/// `writev` without waiting; returns what the socket did not take.
fn write_now(
    io: &mut PlainIo,
    head: Option<&[u8]>,
    events: &[Bytes],
    ended: bool,
) -> std::io::Result<Option<Vec<u8>>> {
    let size: usize = events.iter().map(Bytes::len).sum();
    let mut size_line = [0u8; 20];
    let size_line = chunk_size_line(&mut size_line, size);
    // Filled in order, without an iterator chain: this runs once per delivery. The caller
    // hands over at most MAX_EVENTS_PER_WRITE events, so every part has a slot.
    let mut slices = [IoSlice::new(&[]); MAX_EVENTS_PER_WRITE + 4];
    let mut n = 0;
    if let Some(head) = head {
        put(&mut slices, &mut n, head);
    }
    if size > 0 {
        put(&mut slices, &mut n, size_line);
        for event in events {
            put(&mut slices, &mut n, event);
        }
        put(&mut slices, &mut n, b"\r\n");
    }
    if ended {
        put(&mut slices, &mut n, b"0\r\n\r\n");
    }
    let mut rest = &mut slices[..n];
    let taken = io.try_write_vectored(rest)?;
    IoSlice::advance_slices(&mut rest, taken);
    if rest.is_empty() {
        return Ok(None);
    }
    Ok(Some(rest.iter().flat_map(|s| s.iter().copied()).collect()))
}

/// Puts a non-empty `part` into the next free slot of `slices`.
fn put<'s>(slices: &mut [IoSlice<'s>], n: &mut usize, part: &'s [u8]) {
    if !part.is_empty() {
        slices[*n] = IoSlice::new(part);
        *n += 1;
    }
}

/// What a wake-up of an event stream found.
enum Found {
    /// Events to write.
    Events,
    /// The body ended (after the events found with it, if any).
    End,
    /// The client went away, or the body failed.
    Gone,
}

/// `<size in hex>\r\n` in `buf` (written from the end; `core::fmt` cost a few hundred
/// instructions per event).
fn chunk_size_line(buf: &mut [u8; 20], size: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len() - 2;
    buf[at..].copy_from_slice(b"\r\n");
    let mut rest = size;
    loop {
        at -= 1;
        buf[at] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    &buf[at..]
}

/// `write` unless it takes longer than `limit` (the client stopped reading).
async fn stalled(
    limit: Duration,
    write: impl Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    tokio::time::timeout(limit, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write stalled"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_gets_of_event_streams_are_served_here() {
        let lean = |head: &str| lean_request(head.as_bytes()).is_some();
        assert!(lean(
            "GET /sse/notifications HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 5\r\n\r\n"
        ));
        for head in [
            "POST /sse/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
            "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET /sse/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /sse/counter HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET /sse/counter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /sse/counter HTTP/1.1\r\nHost: x\r\n",
            // A second, pipelined request: hyper keeps the order.
            "GET /sse/counter HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(!lean(head), "{head:?}");
        }
        let req =
            lean_request(b"GET /sse/counter?interval_ms=5 HTTP/1.1\r\nLast-Event-ID: 7\r\n\r\n")
                .expect("lean");
        assert_eq!(req.uri().query(), Some("interval_ms=5"));
        assert_eq!(
            req.headers()
                .get("last-event-id")
                .map(HeaderValue::as_bytes),
            Some(&b"7"[..])
        );
    }

    #[test]
    fn chunk_sizes_are_hex_lines() {
        let mut buf = [0u8; 20];
        assert_eq!(chunk_size_line(&mut buf, 0), b"0\r\n");
        assert_eq!(chunk_size_line(&mut buf, 9), b"9\r\n");
        assert_eq!(chunk_size_line(&mut buf, 255), b"ff\r\n");
        assert_eq!(chunk_size_line(&mut buf, 0x1a2b), b"1a2b\r\n");
        assert_eq!(
            chunk_size_line(&mut buf, usize::MAX),
            b"ffffffffffffffff\r\n"
        );
    }
}
