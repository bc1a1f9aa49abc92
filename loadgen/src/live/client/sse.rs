//! One SSE connection: connect, read and account for events, reconnect with `Last-Event-ID`
//! after `retry`, stop on 204, churn, hold, and optionally POST messages (SSE chat).

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::Empty;
use hyper::body::{Body as _, Incoming};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use wire::sse::{EventRef, Parser};

use super::backoff::Backoff;
use super::h2pool::{self, Pooled};
use super::lean::{self, EventStream, Read};
use super::post::Poster;
use super::request::Rendered;
use super::schedule::Schedule;
use super::{
    ConnectError, Ctx, Deadline, GroupRun, Outgoing, Stop, StopArming, elapsed_us,
    fastrand_fraction, missed_of, stamped_message, stopped, unless_stopped,
};
use crate::live::stats::Shard;
use crate::live::transport::Alpn;
use crate::scenario::template::Vars;
use crate::scenario::{HttpVersion, StampKind};

/// Reconnection delay when the stream never sent `retry:` (browsers use a few seconds; the
/// spec leaves it to the client). Jittered and backed off by [`Backoff`].
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// How one connection of the stream ended.
enum Ended {
    /// The run (or hold time) is over.
    Done,
    /// Churn: we closed it on purpose and reconnect at once.
    Churn,
    /// The server ended the stream or it broke: reconnect after `retry`, if allowed.
    Dropped,
    /// The server answered 204: stop reconnecting.
    NoContent,
}

/// The body of an open stream: the lean HTTP/1.1 reader on a connection of its own, or a
/// stream on a shared HTTP/2 connection (a task of its own drives that connection).
enum Body {
    Http1(EventStream),
    H2(Incoming),
}

/// Per-connection state that survives reconnects. In declaration order (`repr(C)`), what
/// every event touches first: at 10,000 streams each event finds this state out of the CPU's
/// caches, so the fewer cache lines it spans the cheaper an event is.
#[repr(C)]
struct Conn {
    ctx: Ctx,
    group: Arc<GroupRun>,
    shard: Shard,
    /// This connection's id from the `id_event` (SSE chat user id).
    user_id: Option<u64>,
    parser: Parser,
    track: super::Track,
    /// Messages this connection's sender tasks POSTed, over all its streams.
    posted: Arc<AtomicU64>,
    /// The sender of the current stream, if it sends: stop signal and task.
    sender: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// Path, headers and message template with placeholders replaced.
    rendered: Arc<Rendered>,
    /// Its index within its group (picks its HTTP/2 connection).
    group_conn: u64,
    /// Delays between reconnection attempts.
    backoff: Backoff,
}

/// Runs SSE connection `conn` (its index over the run) from `start_at` until the run stops.
pub(crate) async fn run(
    ctx: Ctx,
    group: Arc<GroupRun>,
    shard: Shard,
    start_at: Instant,
    vars: Vars,
) {
    sleep_until(start_at).await;
    let hold_until = group.spec.hold.map(|h| Instant::now() + h);
    let rendered = Arc::new(Rendered::for_group(&ctx, group.index, &group.spec, &vars));
    let mut conn = Conn {
        ctx,
        group,
        shard,
        user_id: None,
        parser: Parser::new(),
        track: super::Track::new(vars.conn),
        posted: Arc::default(),
        sender: None,
        rendered,
        group_conn: vars.group_conn,
        backoff: Backoff::new(vars.conn),
    };
    let mut stop = conn.ctx.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let ended = conn.connect_and_read(hold_until, &stop).await;
        conn.stop_sender().await;
        match ended {
            Ended::Done | Ended::NoContent => break,
            Ended::Churn => {
                conn.shard.count(|c| c.reconnects += 1);
                conn.track.dropped_at = Some(Instant::now());
            }
            Ended::Dropped => {
                if !conn.group.spec.reconnect {
                    break;
                }
                conn.shard.count(|c| c.reconnects += 1);
                // Reconnect latency runs from the drop, across failed attempts.
                conn.track.dropped_at.get_or_insert_with(Instant::now);
                let retry = conn
                    .parser
                    .retry_ms()
                    .map_or(DEFAULT_RETRY, Duration::from_millis);
                let wait = conn.backoff.next_delay(retry);
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = sleep(wait) => {}
                }
            }
        }
    }
    conn.finish();
}

impl Conn {
    /// One connection of the stream, until it ends or `stop` is raised (`Done`).
    async fn connect_and_read(&mut self, hold_until: Option<Instant>, stop: &Stop) -> Ended {
        self.track.attempt_at = Instant::now();
        self.track.last_message_at = None;
        self.parser.reset_stream();
        // A new stream is a new chat user: never POST as the previous stream's user.
        self.user_id = None;
        self.shard.count(|c| c.connections_attempted += 1);
        // Boxed: the connect state (TLS handshake, HTTP/2 pool, head parsing) lives only while
        // connecting; inline it would size every stream's task for its whole life.
        let Some(opened) = unless_stopped(stop, Box::pin(self.open())).await else {
            return Ended::Done;
        };
        self.track.mark_attempted(&self.ctx);
        let (body, tls_us) = match opened {
            Ok(opened) => opened,
            Err(ConnectError::Status(204)) => return Ended::NoContent,
            Err(e) => {
                tracing::debug!(group = %self.group.spec.name, "SSE connect failed: {e}");
                self.ctx
                    .note_error(&format!("{e} on {}", self.group.spec.path));
                self.shard.count(|c| e.count(c));
                self.backoff.failed();
                // EventSource fails for good on a non-200 status or wrong content type.
                return match e {
                    ConnectError::Status(_)
                    | ConnectError::Redirect { .. }
                    | ConnectError::ContentType(_) => Ended::NoContent,
                    _ => Ended::Dropped,
                };
            }
        };
        let connect_us = elapsed_us(self.track.attempt_at);
        self.ctx.record_connect(&self.shard, connect_us, tls_us);
        self.shard.count(|c| c.connections_established += 1);
        self.backoff.established();
        self.ctx.open.fetch_add(1, Ordering::Relaxed);
        let ended = self.read(body, hold_until, stop).await;
        self.stop_sender().await;
        self.ctx.open.fetch_sub(1, Ordering::Relaxed);
        if matches!(ended, Ended::Dropped) {
            self.shard.count(|c| c.streams_dropped += 1);
        }
        ended
    }

    /// Opens the stream: on a shared HTTP/2 connection (`http = "2"`, or `"auto"` on https
    /// when the server offers h2), else on a connection of its own read by the lean client.
    /// Returns the body and the TLS handshake time when this stream made one.
    async fn open(&mut self) -> Result<(Body, Option<u64>), ConnectError> {
        let spec = &self.group.spec;
        let url = &self.rendered.endpoint.url;
        let use_h2 = match spec.http {
            HttpVersion::Http1 => false,
            HttpVersion::Http2 => true,
            HttpVersion::Auto => url.secure,
        };
        if use_h2 {
            let targets = spec.targets.len();
            let slot = h2pool::slot_of(self.group_conn, targets, spec.streams_per_connection);
            let pooled = self
                .group
                .h2
                .sender(
                    &self.ctx,
                    &self.shard,
                    &self.rendered,
                    slot,
                    spec.http == HttpVersion::Http2,
                )
                .await?;
            if let Pooled::H2(mut sender, tls_us) = pooled {
                let scheme = if url.secure { "https" } else { "http" };
                let uri = format!("{scheme}://{}{}", url.host_header(), self.rendered.path);
                let req = self.request(&uri)?;
                let response = tokio::time::timeout(super::CONNECT_TIMEOUT, async {
                    sender.ready().await.map_err(|e| classify_hyper(&e))?;
                    sender
                        .send_request(req)
                        .await
                        .map_err(|e| classify_hyper(&e))
                })
                .await
                .map_err(|_| ConnectError::Timeout)??;
                let body = event_stream(response)?;
                return Ok((Body::H2(body), tls_us));
            }
        }
        let opened = self
            .ctx
            .connector
            .open(url, self.rendered.addr, self.rendered.source, Alpn::Http1)
            .await?;
        let mut request = Vec::with_capacity(256);
        lean::head::write_get(
            &mut request,
            &self.rendered.path,
            &url.host_header(),
            self.parser.last_event_id(),
            &self.rendered.headers,
        );
        let (head, stream) =
            tokio::time::timeout(super::CONNECT_TIMEOUT, lean::open(opened.stream, &request))
                .await
                .map_err(|_| ConnectError::Timeout)??;
        check_answer(head.status, &head.content_type, head.location.as_deref())?;
        Ok((Body::Http1(stream), opened.tls_us))
    }

    /// The GET request of a stream on an HTTP/2 connection: `uri` is absolute (its
    /// `:authority` carries the host).
    fn request(&self, uri: &str) -> Result<hyper::Request<Empty<Bytes>>, ConnectError> {
        let mut req = hyper::Request::get(uri)
            .header("accept", "text/event-stream")
            .header("cache-control", "no-cache");
        let last_id = self.parser.last_event_id();
        if !last_id.is_empty() {
            req = req.header("last-event-id", last_id);
        }
        let mut req = req
            .body(Empty::new())
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        super::request::apply(req.headers_mut(), &self.rendered.headers);
        Ok(req)
    }

    /// Reads the open stream until it ends, `hold` or `churn` is reached, or `stop` is raised.
    /// One poll per wake-up checks the signals (armed ones cost a load or nothing) and reads
    /// the socket once; no futures are made per event.
    async fn read(&mut self, mut body: Body, hold_until: Option<Instant>, stop: &Stop) -> Ended {
        let mut hold = Deadline::at(hold_until);
        // The hold time came and the stream reads on for messages due (see `hold_reached`).
        let mut draining = false;
        let mut churn = Deadline::at(self.group.spec.churn.map(|c| Instant::now() + c));
        let sends = self.group.spec.send.is_some();
        let mut arming = StopArming::new(stop);
        let mut waiting = stop.clone();
        let mut stop_raised = pin!(stopped(&mut waiting));
        let mut start_sending = self.ctx.start_sending.clone();
        let mut sending_started = pin!(stopped(&mut start_sending).fuse());
        loop {
            let may_start = sends
                && self.sender.is_none()
                && self.user_id.is_some()
                && !*self.ctx.stop_sending.borrow();
            // Events are fed to `self` while the read is pending, so the sender starts after.
            let step = std::future::poll_fn(|cx| {
                self.touch();
                if arming.raised(stop_raised.as_mut(), cx) {
                    return Poll::Ready(Step::End(Ended::Done));
                }
                if hold.poll_reached(cx).is_ready() {
                    if draining || self.track.hold_reached(&self.ctx, &self.group) {
                        return Poll::Ready(Step::End(Ended::Done));
                    }
                    // Messages due are on their way: read on for them, not forever.
                    draining = true;
                    hold = Deadline::at(Some(Instant::now() + super::IN_FLIGHT_GRACE));
                    if hold.poll_reached(cx).is_ready() {
                        return Poll::Ready(Step::End(Ended::Done));
                    }
                }
                if !draining && churn.poll_reached(cx).is_ready() {
                    return Poll::Ready(Step::End(Ended::Churn));
                }
                if let Poll::Ready(ok) = body.poll_next(cx, &mut |data| self.feed(data)) {
                    return Poll::Ready(if ok {
                        Step::Read
                    } else {
                        Step::End(Ended::Dropped)
                    });
                }
                if may_start && !draining && sending_started.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Step::StartSending);
                }
                Poll::Pending
            })
            .await;
            match step {
                Step::End(ended) => return ended,
                Step::Read if draining && self.track.has_all_due() => return Ended::Done,
                Step::Read => {}
                Step::StartSending => self.start_sender(),
            }
        }
    }

    /// Starts POSTing at the group's rate in a task of its own, so a slow POST never keeps
    /// the stream from being read (its delay shows as `send_lag` instead).
    fn start_sender(&mut self) {
        let Some(user_id) = self.user_id else {
            return;
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(post_at_rate(
            Arc::clone(&self.ctx),
            Arc::clone(&self.group),
            Arc::clone(&self.rendered),
            self.shard.clone(),
            user_id,
            Arc::clone(&self.posted),
            stop_rx,
        ));
        self.sender = Some((stop_tx, task));
    }

    /// Stops the current stream's sender after its in-flight POST (bounded), so the count of
    /// messages sent is final.
    async fn stop_sender(&mut self) {
        let Some((stop, mut task)) = self.sender.take() else {
            return;
        };
        let _ = stop.send(true);
        if tokio::time::timeout(super::CONNECT_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    /// Reads the state an event will need (this struct's first line, the parser, the
    /// sequence window), so that its cache misses overlap with each other instead of
    /// stalling one by one while the event is handled.
    fn touch(&self) {
        std::hint::black_box((
            Arc::as_ptr(&self.ctx),
            Arc::as_ptr(&self.group),
            self.track.dropped_at,
        ));
        self.parser.touch();
        self.track.tracker.touch();
    }

    /// Feeds bytes to the parser and accounts for every event; `false` on a broken stream.
    fn feed(&mut self, data: &[u8]) -> bool {
        // Events are borrowed from the parser's buffers while the rest of the connection's
        // state accounts for them: nothing is copied or allocated per event.
        let mut sink = EventSink {
            ctx: &self.ctx,
            group: &self.group,
            shard: &self.shard,
            track: &mut self.track,
            user_id: &mut self.user_id,
        };
        let result = self.parser.feed(data, |e: EventRef<'_>| sink.on_event(&e));
        if let Err(e) = result {
            tracing::debug!("SSE parse error: {e}");
            self.shard.count(|c| c.parse_errors += 1);
            return false;
        }
        true
    }

    /// Final accounting when the connection is done for good.
    fn finish(&mut self) {
        self.track.sent = self.posted.load(Ordering::Acquire);
        self.track.settle(&self.ctx, &self.group, &self.shard);
    }
}

/// What a connection's events are accounted to while its parser lends them out.
struct EventSink<'a> {
    ctx: &'a Ctx,
    group: &'a GroupRun,
    shard: &'a Shard,
    track: &'a mut super::Track,
    user_id: &'a mut Option<u64>,
}

impl EventSink<'_> {
    fn on_event(&mut self, e: &EventRef<'_>) {
        let (event_type, data) = (e.event_type, e.data);
        let spec = &self.group.spec;
        if event_type == "lagged" || event_type == "lost" {
            let missed = serde_json::from_str::<Value>(data).map_or(0, |v| missed_of(&v));
            self.shard.count(|c| c.server_drops += missed);
            return;
        }
        if spec.send.as_ref().is_some_and(|s| s.id_event == event_type) {
            *self.user_id = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v.get("id")?.as_u64());
            return;
        }
        if !spec.events.iter().any(|e| e == event_type) {
            return;
        }
        // Data without the frame prefix is a control message, not counted.
        let Some(data) = spec.frame.payload(data) else {
            return;
        };
        let bytes = data.len() as u64;
        match spec.stamp.kind {
            StampKind::Json => {}
            StampKind::None => {
                self.track.unstamped(self.ctx, self.shard, None, bytes);
                return;
            }
            StampKind::SseId => {
                let Ok(seq) = e.last_event_id.parse::<u64>() else {
                    self.shard.count(|c| c.parse_errors += 1);
                    return;
                };
                self.track.unstamped(self.ctx, self.shard, Some(seq), bytes);
                return;
            }
        }
        let now_us = self.ctx.clock.now_us();
        let stamp = self.group.fields.stamp_of(data).and_then(Result::ok);
        let Some(stamp) = stamp else {
            self.shard.count(|c| c.parse_errors += 1);
            return;
        };
        self.track
            .measured(self.ctx, self.shard, self.group, stamp, bytes, now_us);
    }
}

/// What one wake-up of [`Conn::read`] came to.
enum Step {
    End(Ended),
    /// A read was fed; the stream goes on.
    Read,
    /// The run starts sending and this stream's chat user is known.
    StartSending,
}

impl Body {
    /// Reads the next piece of the body and hands it to `feed` (which returns `false` for a
    /// broken stream); `false` when the stream ended, broke or `feed` refused it.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        feed: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Poll<bool> {
        match self {
            Self::Http1(stream) => {
                let mut ok = true;
                let read =
                    std::task::ready!(stream.poll_read(cx, &mut |data| ok = ok && feed(data)));
                Poll::Ready(match read {
                    Read::More => ok,
                    Read::End => false,
                    Read::Broken(why) => {
                        tracing::debug!("SSE stream broke: {why}");
                        false
                    }
                })
            }
            Self::H2(incoming) => {
                Poll::Ready(match std::task::ready!(Pin::new(incoming).poll_frame(cx)) {
                    None => false,
                    Some(Err(e)) => {
                        tracing::debug!("SSE stream broke: {e}");
                        false
                    }
                    Some(Ok(frame)) => frame.into_data().map_or(true, |data| feed(&data)),
                })
            }
        }
    }
}

/// Checks an answer as `EventSource` does, for HTTP/1.1 and HTTP/2 alike: 200 with
/// `text/event-stream`; 204 stops; a redirect is refused with where it pointed.
fn check_answer(
    status: u16,
    content_type: &str,
    location: Option<&str>,
) -> Result<(), ConnectError> {
    match status {
        200 if content_type.starts_with(wire::sse::CONTENT_TYPE) => Ok(()),
        200 => Err(ConnectError::ContentType(content_type.to_owned())),
        300..=399 => Err(ConnectError::Redirect {
            status,
            location: location.unwrap_or_default().to_owned(),
        }),
        _ => Err(ConnectError::Status(status)),
    }
}

/// The body of an HTTP/2 answer that passes [`check_answer`].
fn event_stream(response: hyper::Response<Incoming>) -> Result<Incoming, ConnectError> {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    check_answer(
        response.status().as_u16(),
        header("content-type").unwrap_or(""),
        header("location"),
    )?;
    Ok(response.into_body())
}

/// POSTs stamped messages as chat user `user_id` at the group's rate until the run stops
/// sending or `stop` is raised (the stream ended).
async fn post_at_rate(
    ctx: Ctx,
    group: Arc<GroupRun>,
    rendered: Arc<Rendered>,
    shard: Shard,
    user_id: u64,
    posted: Arc<AtomicU64>,
    mut stop: Stop,
) {
    let Some(spec) = &group.spec.send else {
        return;
    };
    let path = rendered
        .send_path
        .as_deref()
        .unwrap_or("/")
        .replace("{id}", &user_id.to_string());
    let mut poster = Poster::from(rendered.as_ref());
    let mut stop_sending = ctx.stop_sending.clone();
    let stopped_either = async {
        tokio::select! {
            () = stopped(&mut stop) => {}
            () = stopped(&mut stop_sending) => {}
        }
    };
    tokio::pin!(stopped_either);
    let mut schedule = Schedule::at_rate(&ctx.timer, spec.rate, fastrand_fraction(user_id));
    while let Some(slot) = schedule.next_until(stopped_either.as_mut()).await {
        let seq = posted.fetch_add(1, Ordering::AcqRel) + 1;
        let ts = ctx.clock.unix_us(slot.at);
        let out = Outgoing::of(&group.spec.stamp, &group.spec.frame);
        let text = stamped_message(&rendered.template, out, seq, ts, spec.payload_bytes);
        ctx.group_sent[group.index].fetch_add(1, Ordering::Relaxed);
        ctx.record_send(&shard, slot);
        let ok = matches!(
            poster.post(&ctx, &path, text, &rendered.headers).await,
            Ok((s, _)) if (200..300).contains(&s)
        );
        shard.count(|c| {
            c.messages_sent += 1;
            if !ok {
                c.send_errors += 1;
            }
        });
    }
}

fn classify_hyper(e: &hyper::Error) -> ConnectError {
    use std::error::Error as _;
    if let Some(io) = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        return ConnectError::from_io(io);
    }
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        return ConnectError::Reset;
    }
    ConnectError::Other(e.to_string())
}
