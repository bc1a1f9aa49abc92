//! HTTP/2 connections shared by a group's SSE streams (`http = "2"` / `"auto"`): stream
//! `j` of a target uses connection `j / streams_per_connection` of that target, opened by
//! the first stream that needs it and opened again by the next stream once it has closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::request::Rendered;
use super::{ConnectError, Ctx};
use crate::live::stats::Shard;
use crate::live::transport::Alpn;
use crate::scenario::TargetUrl;

/// A request sender on a shared HTTP/2 connection.
pub(crate) type H2Sender = http2::SendRequest<Empty<Bytes>>;

/// What a stream gets from the pool.
pub(crate) enum Pooled {
    /// A sender on an HTTP/2 connection, and the TLS handshake time when this stream opened
    /// the connection.
    H2(H2Sender, Option<u64>),
    /// `http = "auto"` and the server chose HTTP/1.1 by ALPN: the stream opens its own.
    Http1,
}

/// One slot: the connection, opened by whoever needs it first.
type Slot = Arc<tokio::sync::Mutex<Option<H2Sender>>>;

/// The shared HTTP/2 connections of one group.
#[derive(Debug, Default)]
pub(crate) struct H2Pool {
    slots: Mutex<HashMap<(TargetUrl, u64), Slot>>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::H2(_, tls) => write!(f, "H2(tls_us: {tls:?})"),
            Self::Http1 => f.write_str("Http1"),
        }
    }
}

impl H2Pool {
    /// The sender for a stream `rendered` describes, on connection `slot_index` of its
    /// target ([`slot_of`]), opening the connection if it is not open. `strict` (`http = "2"`): a server that
    /// does not choose `h2` by ALPN is an error; otherwise the stream falls back to HTTP/1.1.
    pub(crate) async fn sender(
        &self,
        ctx: &Ctx,
        shard: &Shard,
        rendered: &Rendered,
        slot_index: u64,
        strict: bool,
    ) -> Result<Pooled, ConnectError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (rendered.endpoint.url.clone(), slot_index);
            Arc::clone(slots.entry(key).or_default())
        };
        let mut held = slot.lock().await;
        if let Some(sender) = held.as_ref()
            && !sender.is_closed()
        {
            return Ok(Pooled::H2(sender.clone(), None));
        }
        *held = None;
        let url = &rendered.endpoint.url;
        // The connection's address: the target's addresses round-robin by slot.
        let addr = rendered.endpoint.addr_for(slot_index);
        let opened = ctx
            .connector
            .open(url, addr, rendered.source, Alpn::H2)
            .await?;
        if url.secure && !opened.stream.alpn_h2() {
            if strict {
                return Err(ConnectError::Other(format!(
                    "{url} does not offer HTTP/2 by ALPN (http = \"2\"); use http = \"auto\" to fall back to HTTP/1.1"
                )));
            }
            return Ok(Pooled::Http1);
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(opened.stream))
            .await
            .map_err(|e| ConnectError::Other(format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        shard.count(|c| c.h2_connections += 1);
        *held = Some(sender.clone());
        Ok(Pooled::H2(sender, opened.tls_us))
    }
}

/// The pool slot of stream `group_conn` among `targets` round-robin targets: streams of one
/// target fill its connections `streams_per_connection` at a time.
pub(crate) fn slot_of(group_conn: u64, targets: usize, streams_per_connection: u32) -> u64 {
    let per_target_index = group_conn / (targets.max(1) as u64);
    per_target_index / u64::from(streams_per_connection.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_fill_connections_per_target() {
        // One target, 100 per connection: streams 0..99 share slot 0, 100 opens slot 1.
        assert_eq!(slot_of(0, 1, 100), 0);
        assert_eq!(slot_of(99, 1, 100), 0);
        assert_eq!(slot_of(100, 1, 100), 1);
        // Two targets: streams alternate targets; each target's 0th..1st stream share a slot.
        let slots: Vec<u64> = (0..6).map(|k| slot_of(k, 2, 2)).collect();
        assert_eq!(slots, [0, 0, 0, 0, 1, 1]);
    }
}
