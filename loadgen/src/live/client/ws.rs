//! One WebSocket connection: connect, send `on_connect` messages, send stamped messages at a
//! fixed rate (open model), account for received messages, churn and hold.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::backoff::Backoff;
use super::message_fields::Classified;
use super::request::Rendered;
use super::schedule::{Schedule, Slot};
use super::{
    ConnectError, Ctx, Deadline, GroupRun, Outgoing, Stop, elapsed_us, fastrand_fraction,
    stamped_message, stopped,
};
use crate::live::stats::Shard;
use crate::live::transport::{Alpn, Stream};
use crate::scenario::template::Vars;
use crate::scenario::{Expect, StampKind};

/// Client WebSocket settings: 1 KiB read buffer (tungstenite's default is 128 KiB; it grows to a
/// message's length when one is larger, and tungstenite zero-fills all of it before each read),
/// eager writes.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 << 20)
        .max_message_size(Some(64 << 20))
}

type Socket = WebSocketStream<Stream>;

/// Opens a WebSocket (`ws://`, or `wss://` for an https target) to the rendered path, with
/// the rendered headers; returns it and the TLS handshake time in µs, if any.
pub(crate) async fn connect(
    ctx: &Ctx,
    rendered: &Rendered,
) -> Result<(Socket, Option<u64>), ConnectError> {
    let url = &rendered.endpoint.url;
    let opened = ctx
        .connector
        .open(url, rendered.addr, rendered.source, Alpn::Http1)
        .await?;
    let host = url.host_header();
    let handshake = super::lean::upgrade::connect(
        opened.stream,
        &rendered.path,
        &host,
        &rendered.headers,
        ws_config(),
    );
    let socket = tokio::time::timeout(super::CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok((socket, opened.tls_us))
}

/// Ends a socket as RFC 6455 asks: our Close frame, then the server's Close (or its end of
/// the stream), so that the server counts a closed connection, not a vanished one. Bounded
/// by [`CLOSE_GRACE`]; messages still arriving meanwhile are not counted.
async fn close_handshake(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if socket.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
}

/// Delay after a drop before the first reconnect (`reconnect = true`), before jitter and
/// backoff ([`Backoff`]): as long as an SSE stream's default `retry`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// Longest wait for the server's half of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

enum Ended {
    /// The run (or hold time) is over.
    Done,
    /// Churn: we closed it on purpose and reconnect at once.
    Churn,
    /// The socket broke or could not be opened: reconnect with backoff, if allowed.
    Dropped,
    /// The upgrade was refused with an HTTP status: stop for good.
    Rejected,
}

struct Conn {
    ctx: Ctx,
    group: Arc<GroupRun>,
    shard: Shard,
    track: super::Track,
    /// Path, headers, on_connect and message template with placeholders replaced.
    rendered: Rendered,
    /// Its placeholder values (replies and keep-alives are rendered with them).
    vars: Vars,
    /// Delays between reconnection attempts (`reconnect = true`).
    backoff: Backoff,
}

/// Runs WebSocket connection `vars.conn` from `start_at` until the run stops.
pub(crate) async fn run(
    ctx: Ctx,
    group: Arc<GroupRun>,
    shard: Shard,
    start_at: Instant,
    vars: Vars,
) {
    sleep_until(start_at).await;
    let hold_until = group.spec.hold.map(|h| Instant::now() + h);
    let rendered = Rendered::for_group(&ctx, group.index, &group.spec, &vars);
    let mut conn = Conn {
        ctx,
        group,
        shard,
        track: super::Track::new(vars.conn),
        rendered,
        backoff: Backoff::new(vars.conn),
        vars,
    };
    let mut stop = conn.ctx.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        // The stop is handled inside: an open socket finishes the close handshake first.
        let ended = conn.connect_and_run(hold_until, &mut stop).await;
        match ended {
            Ended::Done | Ended::Rejected => break,
            Ended::Dropped if !conn.group.spec.reconnect => break,
            Ended::Dropped => {
                conn.shard.count(|c| c.reconnects += 1);
                conn.track.dropped_at.get_or_insert_with(Instant::now);
                let wait = conn.backoff.next_delay(DEFAULT_RETRY);
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = sleep(wait) => {}
                }
            }
            Ended::Churn => {
                conn.shard.count(|c| c.reconnects += 1);
                conn.track.dropped_at = Some(Instant::now());
            }
        }
    }
    conn.finish();
}

impl Conn {
    async fn connect_and_run(&mut self, hold_until: Option<Instant>, stop: &mut Stop) -> Ended {
        self.track.attempt_at = Instant::now();
        self.track.last_message_at = None;
        self.shard.count(|c| c.connections_attempted += 1);
        // Boxed: the handshake's state (TLS, HTTP) is large and lives only while connecting;
        // inline it would size every connection's task for its whole life.
        let connected = tokio::select! {
            () = stopped(stop) => return Ended::Done,
            connected = Box::pin(connect(&self.ctx, &self.rendered)) => connected,
        };
        if connected.is_err() {
            self.track.mark_attempted(&self.ctx);
        }
        let (mut socket, tls_us) = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(group = %self.group.spec.name, "WS connect failed: {e}");
                self.ctx
                    .note_error(&format!("{e} on {}", self.group.spec.path));
                self.shard.count(|c| e.count(c));
                self.backoff.failed();
                return match e {
                    ConnectError::Status(_) | ConnectError::Redirect { .. } => Ended::Rejected,
                    _ => Ended::Dropped,
                };
            }
        };
        self.backoff.established();
        self.ctx
            .record_connect(&self.shard, elapsed_us(self.track.attempt_at), tls_us);
        self.shard.count(|c| c.connections_established += 1);
        // Open (ready) only once the on_connect messages (joins, subscriptions) are out.
        for text in &self.rendered.on_connect {
            if socket.send(Message::text(text.clone())).await.is_err() {
                self.shard.count(|c| c.send_errors += 1);
            }
        }
        self.ctx.open.fetch_add(1, Ordering::Relaxed);
        self.track.mark_attempted(&self.ctx);
        let ended = self.run_socket(&mut socket, hold_until, stop).await;
        self.ctx.open.fetch_sub(1, Ordering::Relaxed);
        match ended {
            Ended::Dropped | Ended::Rejected => self.shard.count(|c| c.streams_dropped += 1),
            Ended::Done | Ended::Churn => close_handshake(&mut socket).await,
        }
        ended
    }

    async fn run_socket(
        &mut self,
        socket: &mut Socket,
        hold_until: Option<Instant>,
        stop: &mut Stop,
    ) -> Ended {
        let mut hold = Deadline::at(hold_until);
        // The hold time came and the socket reads on for messages due (see `hold_reached`).
        let mut draining = false;
        let mut churn = Deadline::at(self.group.spec.churn.map(|c| Instant::now() + c));
        let rate = self.group.spec.send.as_ref().map(|s| s.rate);
        let mut keepalive = self.group.spec.keepalive.as_ref().map(|k| {
            let mut every = tokio::time::interval_at(Instant::now() + k.every, k.every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (
                every,
                crate::scenario::template::render(&k.message, &self.vars).into_owned(),
            )
        });
        let mut start_sending = self.ctx.start_sending.clone();
        let mut stop_sending = self.ctx.stop_sending.clone();
        let mut schedule: Option<Schedule> = None;
        loop {
            tokio::select! {
                () = stopped(stop) => return Ended::Done,
                () = hold.reached() => {
                    if draining || self.track.hold_reached(&self.ctx, &self.group) {
                        return Ended::Done;
                    }
                    // Messages due are on their way: read on for them, not forever, and
                    // send nothing more (an echo's due count is what was sent by now).
                    draining = true;
                    schedule = None;
                    hold = Deadline::at(Some(Instant::now() + super::IN_FLIGHT_GRACE));
                },
                () = churn.reached(), if !draining => return Ended::Churn,
                msg = socket.next() => {
                    match msg {
                        None | Some(Err(_)) => return Ended::Dropped,
                        Some(Ok(Message::Text(text))) => {
                            if let Some(answer) = self.reply_to(text.as_str()) {
                                if socket.send(Message::text(answer)).await.is_err() {
                                    return Ended::Dropped;
                                }
                            } else {
                                self.on_text(text.as_str());
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            if let Ok(text) = std::str::from_utf8(&bytes) {
                                self.on_text(text);
                            }
                        }
                        Some(Ok(Message::Close(_))) => return Ended::Dropped,
                        Some(Ok(_)) => {}
                    }
                    if draining && self.track.has_all_due() {
                        return Ended::Done;
                    }
                },
                _ = tick(&mut keepalive) => {
                    if let Some((_, text)) = &keepalive
                        && socket.send(Message::text(text.clone())).await.is_err()
                    {
                        return Ended::Dropped;
                    }
                },
                () = stopped(&mut start_sending), if rate.is_some() && schedule.is_none() && !draining && !*self.ctx.stop_sending.borrow() => {
                    // Spread the connections' slots over the period (by connection index).
                    let fraction = fastrand_fraction(self.track.conn + 1);
                    schedule = rate.map(|r| Schedule::at_rate(&self.ctx.timer, r, fraction));
                },
                () = stopped(&mut stop_sending), if schedule.is_some() => schedule = None,
                slot = next_slot(&mut schedule) => {
                    if !self.send(socket, slot).await {
                        return Ended::Dropped;
                    }
                }
            }
        }
    }

    /// Sends the stamped message of `slot`; `false` when the socket is broken.
    async fn send(&mut self, socket: &mut Socket, slot: Slot) -> bool {
        let Some(spec) = &self.group.spec.send else {
            return true;
        };
        // The connection's own sequence runs on across churn reconnects (echo accounting).
        self.track.sent += 1;
        let seq = self.track.sent;
        let ts = self.ctx.clock.unix_us(slot.at);
        let out = Outgoing::of(&self.group.spec.stamp, &self.group.spec.frame);
        let text = stamped_message(&self.rendered.template, out, seq, ts, spec.payload_bytes);
        self.ctx.group_sent[self.group.index].fetch_add(1, Ordering::Relaxed);
        self.ctx.record_send(&self.shard, slot);
        let ok = socket.send(Message::text(text)).await.is_ok();
        self.shard.count(|c| {
            c.messages_sent += 1;
            if !ok {
                c.send_errors += 1;
            }
        });
        ok
    }

    /// The verbatim answer to a heartbeat frame (`replies`), rendered for this connection.
    fn reply_to(&self, text: &str) -> Option<String> {
        self.group
            .spec
            .replies
            .iter()
            .find(|(when, _)| when == text)
            .map(|(_, answer)| crate::scenario::template::render(answer, &self.vars).into_owned())
    }

    fn on_text(&mut self, text: &str) {
        let spec = &self.group.spec;
        // Control frames (no data prefix: Engine.IO's open, pings, acks) are not messages.
        let Some(text) = spec.frame.payload(text) else {
            return;
        };
        let unstamped = spec.stamp.kind == StampKind::None;
        let bytes = text.len() as u64;
        match self.group.fields.classify(text, &spec.types) {
            // Not JSON: an unstamped socket counts it unless `types` filters (it has no type).
            Classified::NotJson if unstamped && spec.types.is_empty() => {
                self.track.unstamped(&self.ctx, &self.shard, None, bytes);
            }
            Classified::NotJson if unstamped || matches!(spec.expect, Expect::Nothing) => {}
            Classified::NotJson | Classified::Kept(Some(Err(_))) if !unstamped => {
                self.shard.count(|c| c.parse_errors += 1);
            }
            Classified::Lagged(missed) => self.shard.count(|c| c.server_drops += missed),
            Classified::Kept(_) if unstamped => {
                self.track.unstamped(&self.ctx, &self.shard, None, bytes);
            }
            Classified::Kept(Some(Ok(stamp))) => {
                let now_us = self.ctx.clock.now_us();
                self.track
                    .measured(&self.ctx, &self.shard, &self.group, stamp, bytes, now_us);
            }
            Classified::NotJson | Classified::Filtered | Classified::Kept(_) => {}
        }
    }

    fn finish(&mut self) {
        self.track.settle(&self.ctx, &self.group, &self.shard);
    }
}

/// The next keep-alive tick; never completes without a keep-alive.
async fn tick(keepalive: &mut Option<(tokio::time::Interval, String)>) {
    match keepalive {
        Some((every, _)) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The next slot of `schedule`; never completes while there is none.
async fn next_slot(schedule: &mut Option<Schedule>) -> Slot {
    match schedule {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
