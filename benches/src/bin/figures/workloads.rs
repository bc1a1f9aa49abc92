//! The deterministic workloads: each sets up outside the measured region, then runs a fixed
//! number of events inside [`measured_region`] on a current-thread runtime (no other thread
//! works meanwhile), so callgrind's instruction count and the allocator's byte count do not
//! depend on timing.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use loadgen::live::stats::{Metric, Shard};
use loadgen::live::tracker::SeqTracker;
use serde::Serialize;
use server::hub::ReplayHub;
use server::metrics::{Metrics, Scenario};
use stats_alloc::{INSTRUMENTED_SYSTEM, Stats};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

/// The symbol callgrind collects inside (`--toggle-collect`): only instructions executed
/// while it is on the stack are counted.
pub(crate) const REGION_SYMBOL: &str = "figures_measured_region";

/// Payload bytes of every stamped message, as the standard scenarios send.
const PAYLOAD: usize = 256;

/// How much work a workload does: `full` for the committed figures, `quick` for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scale {
    /// Small counts: seconds under callgrind in a debug build.
    Quick,
    /// The counts behind the committed baseline.
    Full,
}

/// The workloads, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// The server's broadcast hub delivering to subscriber tasks (no sockets).
    Fanout,
    /// loadgen's SSE read path over loopback TCP: lean HTTP/1.1 reader, chunked decoding,
    /// the WHATWG parser, stamp decoding, sequence tracking, HDR recording.
    SseClient,
    /// loadgen's WebSocket read path over loopback TCP: its handshake, tungstenite with its settings,
    /// stamp decoding, sequence tracking, HDR recording.
    WsClient,
    /// rt-server holding SSE streams over loopback TCP (live heap per stream).
    ServerSse,
    /// rt-server delivering broadcasts to SSE streams over loopback TCP: the publishing
    /// POST, the hub, and every stream's wake-up, poll and write; its worker thread only
    /// (the clients read on another thread, outside the region).
    ServerDelivery,
}

impl Workload {
    /// Every workload, in report order.
    pub(crate) const ALL: [Self; 5] = [
        Self::Fanout,
        Self::SseClient,
        Self::WsClient,
        Self::ServerSse,
        Self::ServerDelivery,
    ];

    /// The name used in figure names and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::SseClient => "sse-client",
            Self::WsClient => "ws-client",
            Self::ServerSse => "server-sse",
            Self::ServerDelivery => "server-delivery",
        }
    }

    /// Whether it runs events inside the measured region (instructions are counted).
    pub(crate) fn counts_instructions(self) -> bool {
        !matches!(self, Self::ServerSse)
    }
}

/// What one workload measured natively (the allocator's figures); callgrind adds
/// instructions from the same run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Measured {
    /// Events (deliveries, messages) run inside the measured region.
    pub(crate) events: u64,
    /// Heap bytes allocated inside the region, per event.
    pub(crate) heap_bytes_per_event: Option<f64>,
    /// Heap allocations inside the region, per event.
    pub(crate) allocations_per_event: Option<f64>,
    /// Live heap bytes added per connection (or subscriber) once it is open and idle
    /// (`None`: another workload measures it).
    pub(crate) heap_bytes_per_connection: Option<f64>,
}

impl Measured {
    /// A client read path's figures: `events` in the region, allocation figures per event.
    fn read_path(events: u64, bytes: f64, allocations: f64, per_connection: f64) -> Self {
        Self {
            events,
            heap_bytes_per_event: Some(bytes),
            allocations_per_event: Some(allocations),
            heap_bytes_per_connection: Some(per_connection),
        }
    }
}

/// Feeds the first `warmup` of `items` (one wire write each) to `run` outside the region, then
/// the rest inside it; returns the region's allocation figures per item.
fn warm_then_region(
    rt: &Runtime,
    items: &[Vec<u8>],
    warmup: u64,
    mut run: impl AsyncFnMut(&[Vec<u8>]) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    let (head, measured) = items.split_at(usize::try_from(warmup)?);
    rt.block_on(run(head))?;
    let mut result = Ok(());
    let events = measured.len() as u64;
    let figures = region(rt, events, async || result = run(measured).await)?;
    result?;
    Ok(figures)
}

/// Runs `work` as the measured region. Never inlined: callgrind finds it by name.
#[inline(never)]
pub(crate) fn figures_measured_region(work: &mut dyn FnMut()) {
    work();
}

/// Bytes currently allocated and not freed.
fn live(s: &Stats) -> i128 {
    s.bytes_allocated as i128 - s.bytes_deallocated as i128 + s.bytes_reallocated as i128
}

/// The allocator's counts now; an error when the binary does not count (no global allocator).
fn stats() -> anyhow::Result<Stats> {
    let s = INSTRUMENTED_SYSTEM.stats();
    if s.allocations == 0 {
        bail!(
            "the allocator counted nothing: the binary must install stats_alloc::INSTRUMENTED_SYSTEM as #[global_allocator]"
        );
    }
    Ok(s)
}

fn per(total: i128, n: u64) -> f64 {
    total as f64 / n as f64
}

/// Runs `events` events of `work` inside the measured region; returns allocation figures.
pub(crate) fn region(
    rt: &Runtime,
    events: u64,
    work: impl AsyncFnOnce(),
) -> anyhow::Result<(f64, f64)> {
    let mut work = Some(work);
    let before = stats()?;
    figures_measured_region(&mut || {
        if let Some(w) = work.take() {
            rt.block_on(w());
        }
    });
    let delta = stats()? - before;
    // Growth by `realloc` counts as allocated bytes; a shrink frees nothing new.
    let grown = delta.bytes_reallocated.max(0).unsigned_abs();
    Ok((
        per((delta.bytes_allocated + grown) as i128, events),
        per((delta.allocations + delta.reallocations) as i128, events),
    ))
}

/// rt-server with its defaults on a loopback port, started on a current-thread runtime of
/// its own (its tasks run while a thread is in that runtime's `block_on`).
pub(crate) fn start_server() -> anyhow::Result<(Runtime, server::RunningServer)> {
    let rt = current_thread()?;
    let running = rt.block_on(server::start(
        server::ServerConfig::default(),
        "127.0.0.1:0".parse()?,
    ))?;
    Ok((rt, running))
}

pub(crate) fn current_thread() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// Runs `workload` at `scale`.
pub(crate) fn run(workload: Workload, scale: Scale) -> anyhow::Result<Measured> {
    match workload {
        Workload::Fanout => fanout(scale),
        Workload::SseClient => sse_client(scale),
        Workload::WsClient => ws_client(scale),
        Workload::ServerSse => server_sse(scale),
        Workload::ServerDelivery => crate::server_delivery::run(scale),
    }
}

/// Microseconds since the Unix epoch, as the clients stamp and read.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What the clients do with one received message: stamp, sequence, latency sample.
/// A connection's own part (its sequence tracker); the histograms are shared by connections,
/// as loadgen's shards are.
struct Accounting {
    tracker: SeqTracker,
    stamp_errors: u64,
}

impl Accounting {
    fn new() -> Self {
        Self {
            tracker: SeqTracker::new(1),
            stamp_errors: 0,
        }
    }

    fn message(&mut self, shard: &Shard, text: &str) {
        self.stamp(shard, wire::Stamp::decode(text).ok());
    }

    /// Sequence and latency of a message read elsewhere (`None`: it had no valid stamp).
    fn stamp(&mut self, shard: &Shard, stamp: Option<wire::Stamp>) {
        match stamp {
            Some(stamp) => {
                self.tracker.observe(stamp.seq);
                shard.record(Metric::Delivery, now_us().saturating_sub(stamp.ts));
            }
            None => self.stamp_errors += 1,
        }
    }

    /// Checks that exactly `n` messages arrived in order with valid stamps.
    fn check(&self, n: u64) -> anyhow::Result<()> {
        if self.stamp_errors > 0 || self.tracker.received != n || self.tracker.gaps > 0 {
            bail!(
                "expected {n} stamped messages in order, got {} ({} gaps, {} bad stamps)",
                self.tracker.received,
                self.tracker.gaps,
                self.stamp_errors
            );
        }
        Ok(())
    }
}

fn stamped(seq: u64) -> String {
    benches::stamped(seq, PAYLOAD)
}

/// The hub delivers `broadcasts` events to `subscribers` tasks.
fn fanout(scale: Scale) -> anyhow::Result<Measured> {
    let (subscribers, warmup, broadcasts) = match scale {
        Scale::Quick => (100usize, 2u64, 5u64),
        Scale::Full => (1_000, 3, 20),
    };
    let rt = current_thread()?;
    let hub = Arc::new(ReplayHub::new(Some("notification"), 16, 64));
    let metrics = Metrics::default().scenario(Scenario::Notifications);
    let arrivals = Arc::new(benches::Arrivals::default());
    let before = stats()?;
    rt.block_on(async { benches::spawn_hub_subscribers(&hub, subscribers, &metrics, &arrivals) });
    // The publisher's messages are made outside the region: it measures the hub alone.
    let mut bodies = (1..=warmup + broadcasts)
        .map(stamped)
        .collect::<Vec<_>>()
        .into_iter();
    let mut broadcast = async |n: u64| {
        for body in bodies
            .by_ref()
            .take(usize::try_from(n).unwrap_or(usize::MAX))
        {
            arrivals.expect(subscribers);
            hub.publish(|_| body);
            arrivals.wait().await;
        }
    };
    rt.block_on(broadcast(warmup));
    let per_subscriber = per(live(&stats()?) - live(&before), subscribers as u64);
    let events = broadcasts * subscribers as u64;
    let (bytes, allocations) = region(&rt, events, async || broadcast(broadcasts).await)?;
    Ok(Measured {
        events,
        heap_bytes_per_event: Some(bytes),
        allocations_per_event: Some(allocations),
        heap_bytes_per_connection: Some(per_subscriber),
    })
}

/// A loopback listener whose accepted ends the workload writes to with blocking writes.
fn listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Connects a tokio client to `listener` and accepts its std server end.
async fn pair(
    listener: &TcpListener,
    addr: SocketAddr,
) -> anyhow::Result<(TcpStream, StdTcpStream)> {
    let client = TcpStream::connect(addr).await.context("connect")?;
    client.set_nodelay(true)?;
    let (server, _) = listener.accept().context("accept")?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// One SSE event in one HTTP/1.1 chunk, as hyper frames the server's events.
fn sse_chunk(seq: u64) -> anyhow::Result<Vec<u8>> {
    let mut event = Vec::new();
    wire::sse::encode_event(
        &mut event,
        Some("notification"),
        Some(&seq.to_string()),
        &stamped(seq),
    )?;
    let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
    chunk.extend_from_slice(&event);
    chunk.extend_from_slice(b"\r\n");
    Ok(chunk)
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// Reads `chunks` one per wake-up: the read is pending (the task parks) before each chunk is
/// written, as at any rate where events arrive one by one.
fn sse_client(scale: Scale) -> anyhow::Result<Measured> {
    let (connections, warmup, events) = match scale {
        Scale::Quick => (10usize, 20u64, 200u64),
        Scale::Full => (100, 100, 2_000),
    };
    let rt = current_thread()?;
    let (listener, addr) = listener()?;
    let chunks = (1..=warmup + events)
        .map(sse_chunk)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shard = Shard::default();
    let before = stats()?;
    let mut streams = rt.block_on(async {
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (client, mut server) = pair(&listener, addr).await?;
            server.write_all(SSE_HEAD)?;
            let reader =
                loadgen::live::read_path::open_sse(client, "/sse/notifications", &addr.to_string())
                    .await
                    .map_err(anyhow::Error::msg)?;
            streams.push((reader, wire::sse::Parser::new(), Accounting::new(), server));
        }
        anyhow::Ok(streams)
    })?;
    let per_connection = per(live(&stats()?) - live(&before), connections as u64);
    let (reader, parser, accounting, server) = streams.first_mut().context("no connection")?;
    let run = async |chunks: &[Vec<u8>]| -> anyhow::Result<()> {
        for chunk in chunks {
            let mut broken = false;
            let mut feed = |data: &[u8]| {
                broken |= parser
                    .feed(data, |e| {
                        if e.event_type == "notification" {
                            accounting.message(&shard, e.data);
                        }
                    })
                    .is_err();
            };
            let (more, written) =
                tokio::join!(reader.read(&mut feed), async { server.write_all(chunk) });
            written?;
            if !more || broken {
                bail!("the SSE stream ended or broke");
            }
        }
        Ok(())
    };
    let (bytes, allocations) = warm_then_region(&rt, &chunks, warmup, run)?;
    accounting.check(warmup + events)?;
    Ok(Measured::read_path(
        events,
        bytes,
        allocations,
        per_connection,
    ))
}

/// One unmasked server text frame.
fn ws_frame(text: &str) -> Vec<u8> {
    let len = text.len();
    let mut frame = vec![0x81];
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short <= 125 => frame.push(short),
        (_, Ok(medium)) => {
            frame.push(126);
            frame.extend_from_slice(&medium.to_be_bytes());
        }
        _ => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// The server's side of the opening handshake, on a blocking socket: reads the request (which
/// the client wrote before this runs) and answers 101 with the accept key of its key.
fn answer_upgrade(server: &mut StdTcpStream) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut request = Vec::new();
    let mut buf = [0u8; 512];
    while !request.ends_with(b"\r\n\r\n") {
        let n = server.read(&mut buf)?;
        if n == 0 {
            bail!("the client closed during the handshake");
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-key: "))
        .context("the upgrade request has no sec-websocket-key")?;
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    write!(
        server,
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )?;
    Ok(())
}

/// A message of rt-server's `/ws/pubsub` for topic `tick` with the stamped message `seq` as
/// its data, exactly as the server encodes it (`results/bench/ws-10k.toml` reads these).
fn pubsub_message(seq: u64) -> anyhow::Result<String> {
    let data: serde_json::Value = serde_json::from_str(&stamped(seq))?;
    Ok(serde_json::json!({"type": "message", "topic": "tick", "data": data}).to_string())
}

/// Reads `events` server messages one per wake-up, as [`sse_client`] does, each classified
/// as the WebSocket client of `ws-10k` does (type `message`, stamp at `/data`).
fn ws_client(scale: Scale) -> anyhow::Result<Measured> {
    let (connections, warmup, events) = match scale {
        Scale::Quick => (10usize, 20u64, 200u64),
        Scale::Full => (100, 100, 2_000),
    };
    let rt = current_thread()?;
    let (listener, addr) = listener()?;
    let frames = (1..=warmup + events)
        .map(|seq| Ok(ws_frame(&pubsub_message(seq)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let reading = loadgen::live::read_path::WsMessages::new("/type", &["message"], "/data");
    let shard = Shard::default();
    let before = stats()?;
    let mut sockets = rt.block_on(async {
        let mut sockets = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (client, mut server) = pair(&listener, addr).await?;
            let host = addr.to_string();
            // The client writes its request and waits; the server side then answers it.
            let (ws, answered) = tokio::join!(
                loadgen::live::read_path::open_ws(client, "/ws/pubsub", &host),
                async { answer_upgrade(&mut server) }
            );
            answered?;
            let ws = ws.map_err(anyhow::Error::msg)?;
            sockets.push((ws, Accounting::new(), server));
        }
        anyhow::Ok(sockets)
    })?;
    let per_connection = per(live(&stats()?) - live(&before), connections as u64);
    let (ws, accounting, server) = sockets.first_mut().context("no connection")?;
    let run = async |frames: &[Vec<u8>]| -> anyhow::Result<()> {
        for frame in frames {
            let (message, written) = tokio::join!(ws.next(), async { server.write_all(frame) });
            written?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    accounting.stamp(&shard, reading.stamp(text.as_str()));
                }
                other => bail!("expected a text message, got {other:?}"),
            }
        }
        Ok(())
    };
    let (bytes, allocations) = warm_then_region(&rt, &frames, warmup, run)?;
    accounting.check(warmup + events)?;
    Ok(Measured::read_path(
        events,
        bytes,
        allocations,
        per_connection,
    ))
}

/// rt-server on a current-thread runtime of its own thread; this thread opens `streams` SSE
/// streams with blocking sockets (which allocate nothing) and reads each one's first bytes.
fn server_sse(scale: Scale) -> anyhow::Result<Measured> {
    let streams = match scale {
        Scale::Quick => 50usize,
        Scale::Full => 1_000,
    };
    let (rt, running) = start_server()?;
    let addr = running.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let _ = stop_rx.await;
            running.shutdown(std::time::Duration::from_secs(5)).await;
        });
    });
    let open = |n: usize| crate::server_delivery::open_streams(addr, n);
    // Warm up the server's slabs and buffers, then measure streams opened on top.
    let warm = open(streams / 10)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = stats()?;
    let opened = open(streams)?;
    // The server task of the last stream may still be returning to its wait; let it settle.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let per_stream = per(live(&stats()?) - live(&before), streams as u64);
    drop((warm, opened));
    let _ = stop_tx.send(());
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))?;
    Ok(Measured {
        events: 0,
        heap_bytes_per_event: None,
        allocations_per_event: None,
        heap_bytes_per_connection: Some(per_stream),
    })
}
