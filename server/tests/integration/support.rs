//! Real clients and helpers shared by the integration tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use server::{RunningServer, ServerConfig};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wire::sse::{Event, Parser};

/// Upper bound on any single wait in these tests; reaching it fails the test (never a
/// timing assertion: it only turns a hang into a clear failure).
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a server on 127.0.0.1:0.
pub(crate) async fn start(config: ServerConfig) -> RunningServer {
    server::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("server starts")
}

/// A small config for tests: fast keep-alives and pings are set per test where needed.
pub(crate) fn config() -> ServerConfig {
    ServerConfig::default()
}

/// An HTTP response with its body read to the end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: String,
}

/// Sends one request on a fresh connection; returns the response with an unread body.
pub(crate) async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> hyper::Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("response within deadline")
        .expect("response")
}

/// Sends a request and reads the whole body.
pub(crate) async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let res = send(addr, method, path, headers, body).await;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = timeout(DEADLINE, res.into_body().collect())
        .await
        .expect("body within deadline")
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> Answer {
    call(addr, Method::GET, path, &[], Bytes::new()).await
}

pub(crate) async fn post(addr: SocketAddr, path: &str, body: &str) -> Answer {
    call(addr, Method::POST, path, &[], Bytes::from(body.to_owned())).await
}

/// An SSE client: hyper for HTTP, the `wire` parser for the stream.
pub(crate) struct SseClient {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    body: Incoming,
    pub(crate) parser: Parser,
    queue: VecDeque<Event>,
}

impl SseClient {
    pub(crate) async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![("accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let res = send(addr, Method::GET, path, &all, Bytes::new()).await;
        Self {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.into_body(),
            parser: Parser::new(),
            queue: VecDeque::new(),
        }
    }

    /// Opens and checks for a 200 event stream.
    pub(crate) async fn connect(addr: SocketAddr, path: &str) -> Self {
        let client = Self::open(addr, path, &[]).await;
        assert_eq!(client.status, StatusCode::OK, "GET {path}");
        assert_eq!(
            client
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("")),
            Some("text/event-stream"),
            "GET {path}"
        );
        client
    }

    /// Reads one more chunk; `false` at the end of the stream.
    async fn read_chunk(&mut self) -> bool {
        loop {
            let frame = timeout(DEADLINE, self.body.frame())
                .await
                .expect("SSE data within deadline");
            match frame {
                None => return false,
                Some(Err(e)) => panic!("SSE stream failed: {e}"),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let queue = &mut self.queue;
                        self.parser
                            .feed(&data, |e| queue.push_back(e.into()))
                            .expect("valid SSE");
                        return true;
                    }
                }
            }
        }
    }

    /// The next event; panics if the stream ends or nothing arrives within the deadline.
    pub(crate) async fn next(&mut self) -> Event {
        self.try_next()
            .await
            .expect("stream ended before the next event")
    }

    /// The next event, or `None` when the stream ended cleanly.
    pub(crate) async fn try_next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if !self.read_chunk().await {
                return None;
            }
        }
    }

    /// Comments (keep-alives) seen so far.
    pub(crate) fn comments(&self) -> u64 {
        self.parser.comments()
    }

    /// Reads until at least `n` comments (keep-alives) have been seen.
    pub(crate) async fn wait_comments(&mut self, n: u64) {
        while self.parser.comments() < n {
            assert!(self.read_chunk().await, "stream ended before {n} comments");
        }
    }

    /// Reads to the end of the stream; returns the events that were still pending/arrived.
    pub(crate) async fn drain_to_end(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.try_next().await {
            events.push(e);
        }
        events
    }
}

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket with a small read buffer (as the loadgen will).
pub(crate) async fn ws(addr: SocketAddr, path: &str) -> Ws {
    try_ws(addr, path).await.expect("WebSocket handshake")
}

pub(crate) async fn try_ws(
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let url = format!("ws://{addr}{path}");
    timeout(
        DEADLINE,
        tokio_tungstenite::connect_async_with_config(url, Some(config), true),
    )
    .await
    .expect("handshake within deadline")
    .map(|(ws, _)| ws)
}

/// The next text message, skipping pings/pongs.
pub(crate) async fn ws_text(ws: &mut Ws) -> String {
    loop {
        let msg = timeout(DEADLINE, ws.next())
            .await
            .expect("WS message within deadline")
            .expect("socket open")
            .expect("valid frame");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next JSON message.
pub(crate) async fn ws_json(ws: &mut Ws) -> serde_json::Value {
    json(&ws_text(ws).await)
}

pub(crate) async fn ws_send(ws: &mut Ws, value: serde_json::Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// Reads until the server's Close frame; returns its code.
pub(crate) async fn ws_close_code(ws: &mut Ws) -> u16 {
    loop {
        let msg = timeout(DEADLINE, ws.next())
            .await
            .expect("close within deadline");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket failed before a Close frame: {e}"),
            None => panic!("socket ended without a Close frame"),
        }
    }
}

/// One sample of `/metrics`, e.g. `rt_connections_open{scenario="counter",protocol="sse"}`.
pub(crate) async fn metric(addr: SocketAddr, series: &str) -> u64 {
    let text = get(addr, "/metrics").await.body;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

/// Polls `/metrics` until `series` equals `want`; fails after the deadline with the last value.
pub(crate) async fn wait_metric(addr: SocketAddr, series: &str, want: u64) {
    let start = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        poll.tick().await;
        let got = metric(addr, series).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{series} stayed at {got}, expected {want}"
        );
    }
}

pub(crate) fn open_series(scenario: &str, protocol: &str) -> String {
    format!("rt_connections_open{{scenario=\"{scenario}\",protocol=\"{protocol}\"}}")
}

pub(crate) fn closed_series(scenario: &str, protocol: &str, reason: &str) -> String {
    format!(
        "rt_connections_closed_total{{scenario=\"{scenario}\",protocol=\"{protocol}\",reason=\"{reason}\"}}"
    )
}

/// An SSE subscriber of `/sse/notifications` on `addr` with a 4 KiB receive buffer that does
/// not read (until the test does), once the server counts its stream as open.
pub(crate) async fn non_reading_subscriber(addr: SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /sse/notifications HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("request");
    wait_metric(addr, "rt_connections_open_total", 1).await;
    stream
}
