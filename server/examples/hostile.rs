//! Hostile clients against a running rt-server, for the figures in `results/` (the behaviour
//! itself is tested in `tests/integration/limits.rs`). Samples the server's RSS from `/proc`
//! every 50 ms and prints before, peak and after, with the server's close and drop counters.
//!
//! ```sh
//! rt-server --listen 127.0.0.1:8090 &
//! cargo run --release -p rt-server --example hostile -- 127.0.0.1:8090 <server pid> <attack> <n>
//! ```
//! Attacks: `nonreading` (n SSE streams that never read while 2,000 events of 1 KiB are
//! published at 200/s, one healthy reader counting what it gets), `huge-frame`, `continuation`,
//! `ping-flood` (n WebSockets each doing it), `over-limit` (n streams beyond the limit),
//! `slowloris` (n request heads trickled a line a second), `huge-post` (n POSTs announcing
//! 1 GiB, written until the server stops taking them).
//! Loopback and the project's own test hosts only.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// The server's resident set, KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// `/metrics` lines about closes, drops and rejections that are not zero.
async fn counters(addr: SocketAddr) -> Vec<String> {
    let text = request(addr, "GET", "/metrics", "")
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            (l.starts_with("rt_connections_closed_total")
                || l.starts_with("rt_messages_dropped_total")
                || l.starts_with("rt_messages_lagged_total")
                || l.starts_with("rt_connections_rejected_total")
                || l.starts_with("rt_connections_unanswered_total"))
                && !l.ends_with(" 0")
        })
        .map(str::to_owned)
        .collect()
}

async fn ws(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp).await?;
    Ok(ws)
}

/// Reads until the server's Close; its code (0: none before the end).
async fn close_code(ws: &mut Ws) -> u16 {
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(frame) = m {
                return frame.map_or(1005, |f| f.code.into());
            }
        }
        0
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(0)
}

async fn ws_attack(addr: SocketAddr, attack: &str) -> anyhow::Result<u16> {
    let mut socket = ws(addr, "/ws/echo").await?;
    match attack {
        "huge-frame" => {
            let mut header = vec![0x82, 0xFF];
            header.extend_from_slice(&(1u64 << 40).to_be_bytes());
            header.extend_from_slice(&[1, 2, 3, 4]);
            socket.get_mut().write_all(&header).await?;
        }
        "continuation" => {
            let first = Frame::message(vec![b'a'; 1024], OpCode::Data(Data::Text), false);
            socket.send(Message::Frame(first)).await?;
            for _ in 0..100_000 {
                let more = Frame::message(vec![b'a'; 1024], OpCode::Data(Data::Continue), false);
                if socket.send(Message::Frame(more)).await.is_err() {
                    break;
                }
            }
        }
        _ => {
            for _ in 0..100_000 {
                let ping = Message::Ping(bytes::Bytes::from_static(&[7u8; 125]));
                if socket.send(ping).await.is_err() {
                    break;
                }
            }
        }
    }
    Ok(close_code(&mut socket).await)
}

/// n SSE streams that send their request and never read; one healthy reader; 2,000 events of
/// 1 KiB published. Returns what the healthy reader got.
async fn nonreading(addr: SocketAddr, n: usize) -> anyhow::Result<String> {
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /sse/notifications HTTP/1.1\r\nHost: t\r\n\r\n")
            .await?;
        idle.push(s);
    }
    let mut healthy = TcpStream::connect(addr).await?;
    healthy
        .write_all(b"GET /sse/notifications HTTP/1.1\r\nHost: t\r\n\r\n")
        .await?;
    let events = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&events);
    let reader = tokio::spawn(async move {
        // Everything read, to count events (`id:` lines) and lag notices at the end.
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(Ok(k)) =
            tokio::time::timeout(Duration::from_secs(5), healthy.read(&mut buf)).await
        {
            if k == 0 {
                break;
            }
            all.extend_from_slice(&buf[..k]);
        }
        let text = String::from_utf8_lossy(&all);
        counted.fetch_add(text.matches("\nid:").count() as u64, Ordering::Relaxed);
        text.matches("event: lagged").count()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pad = "x".repeat(1000);
    // 200 events a second for 10 s: 2 MB per stream, far more than socket buffers hold.
    let mut every = tokio::time::interval(Duration::from_millis(5));
    for seq in 1..=2000 {
        every.tick().await;
        let body = format!("{{\"seq\":{seq},\"ts\":1,\"pad\":\"{pad}\"}}");
        request(addr, "POST", "/sse/notifications", &body).await?;
    }
    let lag_notices = reader.await.unwrap_or(0);
    drop(idle);
    Ok(format!(
        "healthy reader: {} of 2000 events, {lag_notices} lag notices",
        events.load(Ordering::Relaxed)
    ))
}

/// n connections that start a request head and add a header line a second, never ending it;
/// returns how long the server let them trickle.
async fn slowloris(addr: SocketAddr, n: usize) -> anyhow::Result<String> {
    let mut slow = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /sse/counter HTTP/1.1\r\nHost: t\r\n")
            .await?;
        slow.push(Some(s));
    }
    let started = Instant::now();
    let mut last_cut = Duration::ZERO;
    for i in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for slot in &mut slow {
            if let Some(s) = slot
                && s.write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
            {
                *slot = None;
                last_cut = started.elapsed();
            }
        }
        if slow.iter().all(Option::is_none) {
            break;
        }
    }
    let left = slow.iter().filter(|s| s.is_some()).count();
    Ok(format!(
        "all but {left} cut, the last after {:.1} s",
        last_cut.as_secs_f64()
    ))
}

/// n POSTs announcing a 1 GiB body and sending it as fast as the server takes it; returns
/// the statuses and how much of the bodies the server let through before answering.
async fn huge_post(addr: SocketAddr, n: usize) -> anyhow::Result<String> {
    let mut statuses = std::collections::BTreeMap::<String, u32>::new();
    let mut sent_total = 0u64;
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"POST /publish/t HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n")
            .await?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        while sent < 1 << 30 {
            match tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                _ => break,
            }
        }
        sent_total += sent;
        let mut head = [0u8; 12];
        let status = match s.read_exact(&mut head).await {
            Ok(_) => String::from_utf8_lossy(&head[9..12]).into_owned(),
            Err(_) => "no answer".to_owned(),
        };
        *statuses.entry(status).or_default() += 1;
    }
    Ok(format!(
        "statuses: {statuses:?}, {:.1} MiB of body written per request before the server stopped taking it",
        sent_total as f64 / n as f64 / 1_048_576.0
    ))
}

async fn over_limit(addr: SocketAddr, n: usize) -> anyhow::Result<String> {
    let mut statuses = std::collections::BTreeMap::<String, u32>::new();
    // Held open: the admitted ones keep their slots.
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /sse/notifications HTTP/1.1\r\nHost: t\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        *statuses
            .entry(String::from_utf8_lossy(&head[9..12]).into_owned())
            .or_default() += 1;
        held.push(s);
    }
    Ok(format!("statuses: {statuses:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pid, attack, n] = args.as_slice() else {
        bail!("usage: hostile <addr> <server pid> <attack> <n>");
    };
    let addr: SocketAddr = addr.parse().context("address")?;
    if !addr.ip().is_loopback() {
        bail!("hostile runs against loopback only");
    }
    let pid: u32 = pid.parse().context("pid")?;
    let n: usize = n.parse().context("n")?;
    let before = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let outcome = match attack.as_str() {
        "nonreading" => nonreading(addr, n).await?,
        "over-limit" => over_limit(addr, n).await?,
        "slowloris" => slowloris(addr, n).await?,
        "huge-post" => huge_post(addr, n).await?,
        "huge-frame" | "continuation" | "ping-flood" => {
            let attacks: Vec<_> = (0..n)
                .map(|_| {
                    let attack = attack.clone();
                    tokio::spawn(async move { ws_attack(addr, &attack).await })
                })
                .collect();
            let mut codes = std::collections::BTreeMap::<u16, u32>::new();
            for a in attacks {
                *codes.entry(a.await?.unwrap_or(0)).or_default() += 1;
            }
            format!("close codes: {codes:?}")
        }
        other => bail!("unknown attack {other}"),
    };
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "attack {attack} x{n} in {:.1} s: {outcome}",
        took.as_secs_f64()
    )?;
    writeln!(
        out,
        "server RSS: before {before} KiB, peak {} KiB, 2 s after {} KiB",
        peak.load(Ordering::Relaxed),
        rss_kib(pid)
    )?;
    for line in counters(addr).await {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}
