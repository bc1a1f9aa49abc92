//! The clients' read paths on a plain TCP connection, public for the deterministic figures in
//! `benches/` (instructions and heap bytes per event, heap bytes per connection): the same
//! lean HTTP/1.1 reader and WebSocket settings the SSE and WebSocket clients run on, without a
//! scenario around them.

use futures_util::StreamExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use super::client::lean::{self, EventStream, Read};
use super::client::message_fields::{Classified, MessageFields};
use super::transport::Stream;
use crate::scenario::StampSpec;

/// One SSE stream read by the lean client.
#[derive(Debug)]
pub struct SseReader(EventStream);

/// Sends `GET path` (with `Host: host`, as the SSE client does) on `tcp` and reads the
/// response head.
///
/// # Errors
/// The connection failed, the head is not HTTP/1.x, or the status is not 200.
pub async fn open_sse(tcp: TcpStream, path: &str, host: &str) -> Result<SseReader, String> {
    let mut request = Vec::with_capacity(256);
    lean::head::write_get(&mut request, path, host, "", &hyper::HeaderMap::new());
    let (head, stream) = lean::open(Stream::Plain(tcp), &request)
        .await
        .map_err(|e| e.to_string())?;
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    Ok(SseReader(stream))
}

impl SseReader {
    /// Hands the body bytes of the next read to `out`; `false` once the body ended or broke.
    pub async fn read(&mut self, out: &mut (dyn FnMut(&[u8]) + Send)) -> bool {
        self.0.read(out).await == Read::More
    }
}

/// One WebSocket as the WebSocket client opens it (its handshake, its settings).
#[derive(Debug)]
pub struct WsReader(WebSocketStream<Stream>);

/// Performs the WebSocket client's opening handshake for `path` on `tcp` (`Host: host`).
///
/// # Errors
/// The connection failed or the answer is not a valid upgrade.
pub async fn open_ws(tcp: TcpStream, path: &str, host: &str) -> Result<WsReader, String> {
    let socket = lean::upgrade::connect(
        Stream::Plain(tcp),
        path,
        host,
        &hyper::HeaderMap::new(),
        super::client::ws::ws_config(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(WsReader(socket))
}

impl WsReader {
    /// The next message, as the WebSocket client reads it.
    pub async fn next(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        self.0.next().await
    }
}

/// How the WebSocket client reads each message of a group: one pass for its type, a `lagged`
/// notice and its stamp (`MessageFields`), as `client::ws` does.
#[derive(Debug)]
pub struct WsMessages {
    fields: MessageFields,
    types: Vec<String>,
}

impl WsMessages {
    /// A group that keeps messages whose type (at `type_pointer`) is one of `types` (all when
    /// empty) and reads the standard stamp (`seq`, `ts` in µs) in the object at
    /// `stamp_pointer`.
    #[must_use]
    pub fn new(type_pointer: &str, types: &[&str], stamp_pointer: &str) -> Self {
        let stamp = StampSpec {
            fields: wire::StampFields::default(),
            pointer: stamp_pointer.to_owned(),
            kind: crate::scenario::StampKind::Json,
        };
        Self {
            fields: MessageFields::new(type_pointer, &stamp),
            types: types.iter().map(|&t| t.to_owned()).collect(),
        }
    }

    /// The stamp the client would measure `text` by; `None` for anything it would not
    /// measure (filtered, a notice, no or a bad stamp, not JSON).
    #[must_use]
    pub fn stamp(&self, text: &str) -> Option<wire::Stamp> {
        match self.fields.classify(text, &self.types) {
            Classified::Kept(Some(Ok(stamp))) => Some(stamp),
            _ => None,
        }
    }
}
