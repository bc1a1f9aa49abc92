//! One SSE connection: connect, read and account for events, reconnect with `Last-Event-ID`
//! after `retry`, stop on 204, churn, hold, and optionally POST messages (SSE chat).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until};
use wire::sse::{EventRef, Parser};

use super::post::Poster;
use super::{
    ConnectError, Ctx, GroupRun, elapsed_us, fastrand_fraction, missed_of, stamp_of_text,
    stamped_message, stopped, tcp_connect,
};
use crate::stats::{Metric, Shard};

/// Reconnection delay when the stream never sent `retry:` (browsers use a few seconds; the
/// spec leaves it to the client).
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

/// The hyper connection future that moves the bytes; polled next to the response body.
struct Driver {
    conn: std::pin::Pin<Box<http1::Connection<TokioIo<tokio::net::TcpStream>, Empty<Bytes>>>>,
    done: bool,
}

/// Per-connection state that survives reconnects.
struct Conn {
    ctx: Ctx,
    group: Arc<GroupRun>,
    shard: Shard,
    track: super::Track,
    parser: Parser,
    /// This connection's id from the `id_event` (SSE chat user id).
    user_id: Option<u64>,
}

/// Runs one SSE connection from `start_at` until the run stops.
pub(crate) async fn run(ctx: Ctx, group: Arc<GroupRun>, shard: Shard, start_at: Instant) {
    sleep_until(start_at).await;
    let hold_until = group.spec.hold.map(|h| Instant::now() + h);
    let mut conn = Conn {
        ctx,
        group,
        shard,
        track: super::Track::new(),
        parser: Parser::new(),
        user_id: None,
    };
    let mut poster = Poster::default();
    let mut stop = conn.ctx.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let ended = tokio::select! {
            () = stopped(&mut stop) => Ended::Done,
            ended = conn.connect_and_read(&mut poster, hold_until) => ended,
        };
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
                conn.track.dropped_at = Some(Instant::now());
                let retry = conn
                    .parser
                    .retry_ms()
                    .map_or(DEFAULT_RETRY, Duration::from_millis);
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = sleep(retry) => {}
                }
            }
        }
    }
    conn.finish();
}

impl Conn {
    async fn connect_and_read(
        &mut self,
        poster: &mut Poster,
        hold_until: Option<Instant>,
    ) -> Ended {
        self.track.attempt_at = Instant::now();
        self.parser.reset_stream();
        self.shard.count(|c| c.connections_attempted += 1);
        let opened = self.open().await;
        self.track.mark_attempted(&self.ctx);
        let (body, driver) = match opened {
            Ok(opened) => opened,
            Err(ConnectError::Status(204)) => return Ended::NoContent,
            Err(e) => {
                tracing::debug!(group = %self.group.spec.name, "SSE connect failed: {e}");
                self.ctx
                    .note_error(&format!("{e} on {}", self.group.spec.path));
                self.shard.count(|c| e.count(c));
                // EventSource fails for good on a non-200 status or wrong content type.
                return match e {
                    ConnectError::Status(_) | ConnectError::ContentType(_) => Ended::NoContent,
                    _ => Ended::Dropped,
                };
            }
        };
        let connect_us = elapsed_us(self.track.attempt_at);
        self.ctx.record(&self.shard, Metric::Connect, connect_us);
        self.shard.count(|c| c.connections_established += 1);
        self.ctx.open.fetch_add(1, Ordering::Relaxed);
        let ended = self.read(body, driver, poster, hold_until).await;
        self.ctx.open.fetch_sub(1, Ordering::Relaxed);
        if matches!(ended, Ended::Dropped) {
            self.shard.count(|c| c.streams_dropped += 1);
        }
        ended
    }

    async fn open(&mut self) -> Result<(Incoming, Driver), ConnectError> {
        let tcp = tcp_connect(self.ctx.target).await?;
        let (mut sender, conn) = http1::Builder::new()
            .read_buf_exact_size(Some(4096))
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let mut req = hyper::Request::get(self.group.spec.path.as_str())
            .header("host", self.ctx.host())
            .header("accept", "text/event-stream")
            .header("cache-control", "no-cache");
        let last_id = self.parser.last_event_id();
        if !last_id.is_empty() {
            req = req.header("last-event-id", last_id);
        }
        if let Some(token) = &self.ctx.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let mut driver = Driver {
            conn: Box::pin(conn),
            done: false,
        };
        let response = tokio::time::timeout(super::CONNECT_TIMEOUT, async {
            let send = sender.send_request(req);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    res = &mut send => break res.map_err(|e| classify_hyper(&e)),
                    // A server may answer and close at once: the connection can finish before
                    // the response is handed over, so keep waiting for it.
                    _ = &mut driver.conn, if !driver.done => driver.done = true,
                }
            }
        })
        .await
        .map_err(|_| ConnectError::Timeout)??;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ConnectError::Status(status));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with(wire::sse::CONTENT_TYPE) {
            return Err(ConnectError::ContentType(content_type));
        }
        Ok((response.into_body(), driver))
    }

    async fn read(
        &mut self,
        mut body: Incoming,
        mut driver: Driver,
        poster: &mut Poster,
        hold_until: Option<Instant>,
    ) -> Ended {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let hold = sleep_until(hold_until.unwrap_or(far));
        let churn = sleep_until(self.group.spec.churn.map_or(far, |c| Instant::now() + c));
        tokio::pin!(hold, churn);
        let send = self.group.spec.send.clone();
        let period = send.as_ref().map_or(far - Instant::now(), |s| {
            Duration::from_secs_f64(1.0 / s.rate)
        });
        let mut start_sending = self.ctx.start_sending.clone();
        let mut stop_sending = self.ctx.stop_sending.clone();
        let mut sending = false;
        let mut ticker = interval_at(far, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut next_slot = far;
        loop {
            tokio::select! {
                () = &mut hold => return Ended::Done,
                () = &mut churn => return Ended::Churn,
                frame = body.frame() => match frame {
                    None => return Ended::Dropped,
                    Some(Err(e)) => {
                        tracing::debug!("SSE stream broke: {e}");
                        return Ended::Dropped;
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data()
                            && !self.feed(&data)
                        {
                            return Ended::Dropped;
                        }
                    }
                },
                _ = &mut driver.conn, if !driver.done => driver.done = true,
                () = stopped(&mut start_sending), if send.is_some() && !sending && self.user_id.is_some() => {
                    sending = true;
                    let offset = Duration::from_secs_f64(period.as_secs_f64() * fastrand_fraction(self.user_id.unwrap_or(0)));
                    next_slot = Instant::now() + offset;
                    ticker = interval_at(next_slot, period);
                    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
                },
                () = stopped(&mut stop_sending), if sending => {
                    sending = false;
                    ticker = interval_at(far, period);
                },
                _ = ticker.tick(), if sending => {
                    let slot = next_slot;
                    next_slot += period;
                    if let (Some(spec), Some(id)) = (&send, self.user_id) {
                        self.track.sent += 1;
                        let text = stamped_message(&spec.template, self.track.sent, self.ctx.clock.unix_us(slot), spec.payload_bytes);
                        let path = spec.path.as_deref().unwrap_or("/").replace("{id}", &id.to_string());
                        self.ctx.group_sent[self.group.index].fetch_add(1, Ordering::Relaxed);
                        let ok = matches!(poster.post(&self.ctx, &path, text).await, Ok((s, _)) if (200..300).contains(&s));
                        self.shard.count(|c| {
                            c.messages_sent += 1;
                            if !ok {
                                c.send_errors += 1;
                            }
                        });
                    }
                }
            }
        }
    }

    /// Feeds bytes to the parser and accounts for every event; `false` on a broken stream.
    fn feed(&mut self, data: &[u8]) -> bool {
        // The parser is moved out while it calls back into `self`; events are borrowed from
        // its buffers, so nothing is allocated per event.
        let mut parser = std::mem::take(&mut self.parser);
        let result = parser.feed(data, |e: EventRef<'_>| self.on_event(e.event_type, e.data));
        self.parser = parser;
        if let Err(e) = result {
            tracing::debug!("SSE parse error: {e}");
            self.shard.count(|c| c.parse_errors += 1);
            return false;
        }
        true
    }

    fn on_event(&mut self, event_type: &str, data: &str) {
        let spec = &self.group.spec;
        if event_type == "lagged" || event_type == "lost" {
            let missed = serde_json::from_str::<Value>(data).map_or(0, |v| missed_of(&v));
            self.shard.count(|c| c.server_drops += missed);
            return;
        }
        if spec.send.as_ref().is_some_and(|s| s.id_event == event_type) {
            self.user_id = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v.get("id")?.as_u64());
            return;
        }
        if !spec.events.iter().any(|e| e == event_type) {
            return;
        }
        let now_us = self.ctx.clock.now_us();
        let stamp = stamp_of_text(data, &spec.stamp).and_then(Result::ok);
        let Some(stamp) = stamp else {
            self.shard.count(|c| c.parse_errors += 1);
            return;
        };
        let bytes = data.len() as u64;
        self.track
            .measured(&self.ctx, &self.shard, spec, stamp, bytes, now_us);
    }

    /// Final accounting when the connection is done for good.
    fn finish(&mut self) {
        self.track.settle(&self.ctx, &self.group, &self.shard);
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
