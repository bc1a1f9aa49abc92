//! Server-Sent Events plumbing shared by every SSE scenario.
//!
//! A scenario provides an [`EventSource`]; [`respond`] turns it into a streaming response that
//! first sends the `retry:` hint, then interleaves the source's events with keep-alive comments,
//! and ends cleanly on server shutdown. The response body owns the [`ConnectionGuard`], so the
//! connection counts as open exactly as long as the body is alive: the writer
//! (`crate::plain::event_stream`, or hyper for HTTPS) drops it when the client disconnects (it
//! watches for EOF while waiting for events), not only on the next failed send.

pub(crate) mod chat;
pub(crate) mod counter;
pub(crate) mod dashboard;
pub(crate) mod replay;
pub(crate) mod stocks;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use salvo::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use salvo::prelude::*;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

use crate::limits::ConnectionGuard;
use crate::metrics::CloseReason;
use crate::shutdown::Shutdown;

/// The keep-alive comment written when a stream has been quiet for the keep-alive interval.
pub(crate) const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// Produces the events of one SSE connection.
///
/// `next_event` must be cancel-safe: it is raced against keep-alives and shutdown.
pub trait EventSource: Send + 'static {
    /// The next encoded event (one or more complete SSE events), or `None` to end the stream.
    /// Broadcast sources share one `Bytes` between all subscribers (no copy per client).
    fn next_event(&mut self) -> impl Future<Output = Option<Bytes>> + Send;
}

/// Stream-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub(crate) keepalive: Duration,
    pub(crate) retry: Duration,
    pub(crate) shutdown: Shutdown,
}

struct Session<S> {
    source: S,
    guard: ConnectionGuard,
    /// Ticks every keep-alive interval; not reset per event (a timer-wheel update each):
    /// a tick that comes less than an interval after `last_sent` is put off instead.
    keepalive: Interval,
    keepalive_every: Duration,
    /// When the last event or comment was handed out.
    last_sent: Instant,
    shutdown: Shutdown,
    /// Completes when shutdown begins: made once per stream, so that waiting for the next
    /// event does not register a new waiter with the shutdown signal each time.
    shutdown_begun: Pin<Box<dyn Future<Output = ()> + Send>>,
    preamble: Option<Vec<u8>>,
}

/// Already encoded events to send first (a chat user id, replayed history), and how many.
#[derive(Debug, Default)]
pub struct Initial {
    /// The encoded events.
    pub bytes: Vec<u8>,
    /// How many events `bytes` holds.
    pub events: u64,
}

/// Makes `res` an event stream fed by `source`; `initial` is sent right after the `retry:` hint.
pub(crate) fn respond<S: EventSource>(
    res: &mut Response,
    settings: &StreamSettings,
    guard: ConnectionGuard,
    initial: Initial,
    source: S,
) {
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(wire::sse::CONTENT_TYPE),
    );
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    let mut preamble = Vec::with_capacity(16 + initial.bytes.len());
    let retry_ms = u64::try_from(settings.retry.as_millis()).unwrap_or(u64::MAX);
    wire::sse::encode_retry(&mut preamble, retry_ms);
    preamble.push(b'\n');
    guard.metrics().sent_overhead(preamble.len());
    if initial.events > 0 {
        guard
            .metrics()
            .sent_many(initial.events, initial.bytes.len());
    }
    preamble.extend(initial.bytes);
    let now = Instant::now();
    let mut keepalive = interval_at(now + settings.keepalive, settings.keepalive);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut waiting = settings.shutdown.clone();
    let session = Session {
        source,
        guard,
        keepalive,
        keepalive_every: settings.keepalive,
        last_sent: now,
        shutdown: settings.shutdown.clone(),
        shutdown_begun: Box::pin(async move { waiting.wait().await }),
        preamble: Some(preamble),
    };
    res.stream(futures_util::stream::unfold(session, step));
}

async fn step<S: EventSource>(
    mut s: Session<S>,
) -> Option<(Result<Bytes, Infallible>, Session<S>)> {
    if let Some(preamble) = s.preamble.take() {
        return Some((Ok(preamble.into()), s));
    }
    if s.shutdown.is_triggered() {
        s.guard.set_reason(CloseReason::Shutdown);
        return None;
    }
    let chunk = loop {
        let next = tokio::select! {
            // Events first: with one ready, nothing else is polled (shutdown is checked at
            // the top of every step).
            biased;
            event = s.source.next_event() => Some(event.map(|bytes| (bytes, true))),
            () = s.shutdown_begun.as_mut() => None,
            _ = s.keepalive.tick() => Some(Some((Bytes::from_static(KEEPALIVE), false))),
        };
        match next {
            None => break None,
            // Not quiet for a whole interval yet: tick again an interval after the last send.
            Some(Some((_, false))) if s.last_sent.elapsed() < s.keepalive_every => {
                s.keepalive.reset_at(s.last_sent + s.keepalive_every);
            }
            Some(chunk) => break chunk,
        }
    };
    match chunk {
        Some((bytes, is_event)) => {
            s.last_sent = Instant::now();
            if is_event {
                s.guard.metrics().sent(bytes.len());
            } else {
                s.guard.metrics().sent_overhead(bytes.len());
            }
            Some((Ok(bytes), s))
        }
        None => {
            let reason = if s.shutdown.is_triggered() {
                CloseReason::Shutdown
            } else {
                CloseReason::StreamEnd
            };
            s.guard.set_reason(reason);
            None
        }
    }
}

/// Encodes one event; `event`/`id` come from our own code and never contain line breaks.
pub(crate) fn encode(event: Option<&str>, id: Option<u64>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 40);
    let id = id.map(|i| i.to_string());
    if wire::sse::encode_event(&mut out, event, id.as_deref(), data).is_err() {
        tracing::error!(
            ?event,
            "refused to encode an SSE event with a line break in its name"
        );
        out.clear();
    }
    out
}
