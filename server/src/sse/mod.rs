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
use std::task::Poll;
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
    /// When `keepalive` ticks next, or earlier (never later: a tick not looked at would
    /// wake the task in vain and the keep-alive would stop); before then it is not polled.
    keepalive_due: Instant,
    /// When the last event or comment was handed out.
    last_sent: Instant,
    shutdown: Shutdown,
    /// Completes when shutdown begins: made once per stream, so that waiting for the next
    /// event does not register a new waiter with the shutdown signal each time.
    shutdown_begun: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Which of `shutdown_begun` and `keepalive` hold the stream task's waker (see [`wait`]).
    armed: Armed,
    preamble: Option<Vec<u8>>,
}

/// Whether a wake-up source of a stream has the stream task's waker already. A stream is
/// polled by one task for its whole life, so a waker once registered stays the right one:
/// an armed source is not polled again on every event (each such poll cost a lock or a
/// timer-entry update per delivery), only checked (an atomic load, a clock read).
#[derive(Debug, Default, Clone, Copy)]
struct Armed {
    shutdown: bool,
    keepalive: bool,
}

/// What a stream waited for.
enum Woke {
    /// An event (or `None`: the source ended).
    Event(Option<Bytes>),
    /// The keep-alive interval ticked.
    Keepalive,
    /// Shutdown began (or the server is gone).
    Shutdown,
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
    let keepalive_due = now + settings.keepalive;
    let mut keepalive = interval_at(keepalive_due, settings.keepalive);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut waiting = settings.shutdown.clone();
    let session = Session {
        source,
        guard,
        keepalive,
        keepalive_every: settings.keepalive,
        keepalive_due,
        last_sent: now,
        shutdown: settings.shutdown.clone(),
        shutdown_begun: Box::pin(async move { waiting.wait().await }),
        armed: Armed::default(),
        preamble: Some(preamble),
    };
    // Boxed: `unfold` moves its state into each step's future and back out, and a pointer
    // moves for free (the session by value cost 3-4 copies of itself per event).
    res.stream(futures_util::stream::unfold(Box::new(session), step));
}

async fn step<S: EventSource>(
    mut s: Box<Session<S>>,
) -> Option<(Result<Bytes, Infallible>, Box<Session<S>>)> {
    if let Some(preamble) = s.preamble.take() {
        return Some((Ok(preamble.into()), s));
    }
    if s.shutdown.begun_or_gone() {
        s.guard.set_reason(if s.shutdown.is_triggered() {
            CloseReason::Shutdown
        } else {
            CloseReason::StreamEnd
        });
        return None;
    }
    let chunk = loop {
        match wait(&mut s).await {
            Woke::Shutdown => break None,
            Woke::Event(event) => break event.map(|bytes| (bytes, true)),
            // Not quiet for a whole interval yet: tick again an interval after the last send.
            Woke::Keepalive if s.last_sent.elapsed() < s.keepalive_every => {
                s.keepalive_due = s.last_sent + s.keepalive_every;
                s.keepalive.reset_at(s.keepalive_due);
            }
            Woke::Keepalive => {
                // The interval's next deadline is this one plus a period, or later when the
                // tick came late: a due time at or before it only costs a poll too many.
                s.keepalive_due += s.keepalive_every;
                break Some((Bytes::from_static(KEEPALIVE), false));
            }
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

/// Waits for the next event, the keep-alive tick or shutdown; events first (with one ready,
/// nothing else is looked at). `shutdown_begun` and `keepalive` are polled until they hold
/// the task's waker (then their wake-up comes anyway) and afterwards only checked: shutdown
/// by its flag, the keep-alive by its due time.
async fn wait<S: EventSource>(s: &mut Session<S>) -> Woke {
    let Session {
        source,
        keepalive,
        keepalive_due,
        shutdown,
        shutdown_begun,
        armed,
        ..
    } = s;
    let event = source.next_event();
    let mut event = std::pin::pin!(event);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(event) = event.as_mut().poll(cx) {
            return Poll::Ready(Woke::Event(event));
        }
        if armed.shutdown {
            if shutdown.begun_or_gone() {
                return Poll::Ready(Woke::Shutdown);
            }
        } else if shutdown_begun.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Shutdown);
        } else {
            armed.shutdown = true;
        }
        if !armed.keepalive || Instant::now() >= *keepalive_due {
            if keepalive.poll_tick(cx).is_ready() {
                // Its next deadline is set; the next poll registers it.
                armed.keepalive = false;
                return Poll::Ready(Woke::Keepalive);
            }
            armed.keepalive = true;
        }
        Poll::Pending
    })
    .await
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
