//! Shared pieces of the criterion benches in `benches/benches/`: realistic SSE streams, a
//! multi-threaded runtime like the tools use, and loopback SSE subscribers and a publisher for
//! the bundled server.
//!
//! Benchmarks panic on setup failures (`expect`): a bench that cannot set up has nothing to
//! measure, and criterion shows the message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use server::hub::{EventSource as _, ReplayHub};
use server::metrics::ScenarioMetrics;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A two-worker runtime, as `loadgen` and the server run on this machine's two cores.
///
/// # Panics
/// When the OS refuses threads.
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A stamped message with `payload_bytes` of filler, as scenarios send.
#[must_use]
pub fn stamped(seq: u64, payload_bytes: usize) -> String {
    wire::StampedMessage::new(seq, 1_795_271_137_000_000 + seq)
        .with_field("body", "x".repeat(payload_bytes))
        .expect("`body` is not reserved")
        .encode()
}

/// `count` SSE events as the notifications scenario sends them (`event:`, `id:`, one data
/// line with a stamped message of `payload_bytes`), with LF or CRLF line endings.
#[must_use]
pub fn sse_stream(count: u64, payload_bytes: usize, crlf: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in 1..=count {
        wire::sse::encode_event(
            &mut out,
            Some("notification"),
            Some(&seq.to_string()),
            &stamped(seq, payload_bytes),
        )
        .expect("valid event");
    }
    if crlf {
        let mut with_cr = Vec::with_capacity(out.len() * 11 / 10);
        for b in out {
            if b == b'\n' {
                with_cr.push(b'\r');
            }
            with_cr.push(b);
        }
        return with_cr;
    }
    out
}

/// Counts deliveries of one broadcast to many subscribers and wakes the waiter when every
/// subscriber has it.
#[derive(Debug, Default)]
pub struct Arrivals {
    remaining: AtomicUsize,
    all_in: Notify,
}

impl Arrivals {
    /// Expects `n` deliveries from now on.
    pub fn expect(&self, n: usize) {
        self.remaining.store(n, Ordering::SeqCst);
    }

    /// One subscriber got the message.
    pub fn arrived(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_in.notify_one();
        }
    }

    /// Resolves once every expected delivery arrived.
    pub async fn wait(&self) {
        self.all_in.notified().await;
    }
}

/// Subscribes `n` tasks to `hub` (spawned on the current runtime: call it inside one), each
/// calling `arrivals.arrived()` for every event, as the notifications scenario's SSE
/// connections consume the hub (counted in `metrics`).
pub fn spawn_hub_subscribers(
    hub: &ReplayHub,
    n: usize,
    metrics: &Arc<ScenarioMetrics>,
    arrivals: &Arc<Arrivals>,
) {
    for _ in 0..n {
        let (mut stream, _) = hub.subscribe(None, None, Arc::clone(metrics));
        let arrivals = Arc::clone(arrivals);
        tokio::spawn(async move {
            while stream.next_event().await.is_some() {
                arrivals.arrived();
            }
        });
    }
}

/// Opens an SSE stream to `path` over a real TCP connection (hyper client, the `wire`
/// parser) and spawns a task that calls `arrivals.arrived()` for every `notification` event.
/// Returns once the response headers (200) arrived.
///
/// # Panics
/// When the server refuses the stream.
pub async fn subscribe(addr: SocketAddr, path: &str, arrivals: Arc<Arrivals>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let res = sender.send_request(req).await.expect("response");
    assert_eq!(res.status(), 200, "subscribe {path}");
    let mut body = res.into_body();
    tokio::spawn(async move {
        let _keep = sender;
        let mut parser = wire::sse::Parser::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let parsed = parser.feed(&data, |e| {
                if e.event_type == "notification" {
                    arrivals.arrived();
                }
            });
            if parsed.is_err() {
                return;
            }
        }
    });
}

/// A keep-alive HTTP connection that POSTs JSON bodies.
#[derive(Debug)]
pub struct Publisher {
    sender: http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Publisher {
    /// Connects to `addr`.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self { sender, addr }
    }

    /// POSTs `body` to `path` and waits for the answer.
    ///
    /// # Panics
    /// When the server does not accept it (202).
    pub async fn post(&mut self, path: &str, body: String) {
        let req = Request::post(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.sender.ready().await.expect("connection usable");
        let res = self.sender.send_request(req).await.expect("answer");
        assert_eq!(res.status(), 202, "publish {path}");
        let _ = res.into_body().collect().await;
    }
}
