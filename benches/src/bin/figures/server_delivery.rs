//! The `server-delivery` workload: rt-server (the library, on a current-thread runtime in a
//! thread of its own) delivers broadcasts to SSE streams over loopback TCP, as in a fan-out
//! run. The measured region is that thread's `block_on` while the broadcasts go out, so the
//! count holds everything rt-server does per delivery in user space (the publishing `POST`
//! spread over the streams, the hub, each stream's wake-up, polls and `writev`) and none of
//! the clients' work: they read on the workload's main thread, outside the region.
//!
//! Deterministic: the next broadcast is published only once every stream has received the
//! previous one, so each delivery is one wake-up and one write, whatever the timing.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::workloads::{Measured, Scale, region, start_server};

/// Bytes of the `pad` field of every published event.
const PAD: usize = 256;

/// Runs the workload at `scale`.
pub(crate) fn run(scale: Scale) -> anyhow::Result<Measured> {
    let (streams, warmup, broadcasts) = match scale {
        Scale::Quick => (20usize, 2u64, 5u64),
        Scale::Full => (1_000, 3, 20),
    };
    let (rt, running) = start_server()?;
    let addr = running.local_addr();
    let (measure_tx, measure_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let events = broadcasts * streams as u64;
    let server = std::thread::spawn(move || -> anyhow::Result<(f64, f64)> {
        // Streams open and the warm-up broadcasts go out while this waits.
        rt.block_on(async {
            let _ = measure_rx.await;
        });
        let figures = region(&rt, events, async || {
            let _ = done_rx.await;
        });
        rt.block_on(async {
            let _ = stop_rx.await;
            running.shutdown(Duration::from_secs(5)).await;
        });
        figures
    });
    let clients = (|| {
        let mut clients = open_streams(addr, streams)?;
        let mut publisher = Publisher::connect(addr)?;
        let mut buf = vec![0u8; 16 * 1024];
        publisher.broadcast(&mut clients, warmup, &mut buf)?;
        let _ = measure_tx.send(());
        publisher.broadcast(&mut clients, broadcasts, &mut buf)?;
        anyhow::Ok(clients)
    })();
    let _ = done_tx.send(());
    let _ = stop_tx.send(());
    let figures = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))?;
    drop(clients?);
    let (bytes, allocations) = figures?;
    Ok(Measured {
        events,
        heap_bytes_per_event: Some(bytes),
        allocations_per_event: Some(allocations),
        heap_bytes_per_connection: None,
    })
}

/// Opens `n` event streams on `/sse/notifications` with blocking sockets, each read up to
/// the end of its `retry:` preamble (the stream is then idle until the next broadcast).
pub(crate) fn open_streams(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let request = format!(
        "GET /sse/notifications HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n"
    );
    let mut buf = vec![0u8; 4096];
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).context("connect to rt-server")?;
            s.write_all(request.as_bytes())?;
            let got = read_until_chunk_end(&mut s, &mut buf)?;
            if !got.windows(7).any(|w| w == b"retry: ") {
                bail!(
                    "the server did not open the stream: {}",
                    String::from_utf8_lossy(got)
                );
            }
            Ok(s)
        })
        .collect()
}

/// Reads from `s` into `buf` until what was read ends with an SSE event's blank line and its
/// chunk's CRLF (`\n\n\r\n`); returns it.
fn read_until_chunk_end<'b>(s: &mut TcpStream, buf: &'b mut [u8]) -> anyhow::Result<&'b [u8]> {
    let mut seen = 0;
    while !buf[..seen].ends_with(b"\n\n\r\n") {
        if seen == buf.len() {
            bail!("no end of event in {seen} bytes");
        }
        let n = s.read(&mut buf[seen..])?;
        if n == 0 {
            bail!(
                "the stream closed: {}",
                String::from_utf8_lossy(&buf[..seen])
            );
        }
        seen += n;
    }
    Ok(&buf[..seen])
}

/// Publishes events with `POST /sse/notifications` on one keep-alive connection.
struct Publisher {
    conn: TcpStream,
    /// The whole request, made once: nothing is allocated on this side while measuring.
    request: Vec<u8>,
}

impl Publisher {
    fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let conn = TcpStream::connect(addr).context("connect to rt-server")?;
        conn.set_nodelay(true)?;
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(PAD));
        let request = format!(
            "POST /sse/notifications HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Ok(Self { conn, request })
    }

    /// Publishes `n` events, each read by every client before the next is published.
    fn broadcast(
        &mut self,
        clients: &mut [TcpStream],
        n: u64,
        buf: &mut [u8],
    ) -> anyhow::Result<()> {
        for _ in 0..n {
            self.conn.write_all(&self.request)?;
            self.read_answer(buf)?;
            for client in clients.iter_mut() {
                let got = read_until_chunk_end(client, buf)?;
                const EVENT: &[u8] = b"event: notification";
                if !got.windows(EVENT.len()).any(|w| w == EVENT) {
                    bail!("not a notification: {}", String::from_utf8_lossy(got));
                }
            }
        }
        Ok(())
    }

    /// Reads the answer to one `POST` (head and `content-length` body); it must be `202`.
    fn read_answer(&mut self, buf: &mut [u8]) -> anyhow::Result<()> {
        let mut seen = 0;
        loop {
            let n = self.conn.read(&mut buf[seen..])?;
            if n == 0 {
                bail!("the publishing connection closed");
            }
            seen += n;
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut answer = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = answer.parse(&buf[..seen])? else {
                continue;
            };
            if answer.code != Some(202) {
                bail!(
                    "publishing answered {:?}: {}",
                    answer.code,
                    String::from_utf8_lossy(&buf[..seen])
                );
            }
            let length = answer
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .context("the answer has no content-length")?;
            if seen >= head + length {
                return Ok(());
            }
        }
    }
}
