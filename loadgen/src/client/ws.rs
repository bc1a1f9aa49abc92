//! One WebSocket connection: connect, send `on_connect` messages, send stamped messages at a
//! fixed rate (open model), account for received messages, churn and hold.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::{
    ConnectError, Ctx, GroupRun, elapsed_us, fastrand_fraction, missed_of, read_stamp,
    stamped_message, stopped, tcp_connect,
};
use crate::scenario::Expect;
use crate::stats::{Metric, Shard};

/// Client WebSocket settings: 4 KiB read buffer (tungstenite's default is 128 KiB), eager writes.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 << 20)
        .max_message_size(Some(64 << 20))
}

type Socket = WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket to `path` on the target.
pub(crate) async fn connect(ctx: &Ctx, path: &str) -> Result<Socket, ConnectError> {
    let tcp = tcp_connect(ctx.target).await?;
    let mut request = format!("ws://{}{path}", ctx.target)
        .into_client_request()
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    if let Some(token) = &ctx.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ConnectError::Other("token is not a valid header value".to_owned()))?;
        request.headers_mut().insert("authorization", value);
    }
    let handshake = client_async_with_config(request, tcp, Some(ws_config()));
    match tokio::time::timeout(super::CONNECT_TIMEOUT, handshake).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(res))) => Err(ConnectError::Status(res.status().as_u16())),
        Ok(Err(tungstenite::Error::Io(e))) => Err(ConnectError::from_io(&e)),
        Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
    }
}

enum Ended {
    Done,
    Churn,
    Dropped,
}

struct Conn {
    ctx: Ctx,
    group: Arc<GroupRun>,
    shard: Shard,
    track: super::Track,
    id: u64,
}

/// Runs one WebSocket connection from `start_at` until the run stops.
pub(crate) async fn run(ctx: Ctx, group: Arc<GroupRun>, shard: Shard, start_at: Instant, id: u64) {
    sleep_until(start_at).await;
    let hold_until = group.spec.hold.map(|h| Instant::now() + h);
    let mut conn = Conn {
        ctx,
        group,
        shard,
        track: super::Track::new(),
        id,
    };
    let mut stop = conn.ctx.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let ended = tokio::select! {
            () = stopped(&mut stop) => Ended::Done,
            ended = conn.connect_and_run(hold_until) => ended,
        };
        match ended {
            Ended::Done | Ended::Dropped => break,
            Ended::Churn => {
                conn.shard.count(|c| c.reconnects += 1);
                conn.track.dropped_at = Some(Instant::now());
            }
        }
    }
    conn.finish();
}

impl Conn {
    async fn connect_and_run(&mut self, hold_until: Option<Instant>) -> Ended {
        self.track.attempt_at = Instant::now();
        self.shard.count(|c| c.connections_attempted += 1);
        let connected = connect(&self.ctx, &self.group.spec.path).await;
        if connected.is_err() {
            self.track.mark_attempted(&self.ctx);
        }
        let mut socket = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(group = %self.group.spec.name, "WS connect failed: {e}");
                self.ctx
                    .note_error(&format!("{e} on {}", self.group.spec.path));
                self.shard.count(|c| e.count(c));
                return Ended::Dropped;
            }
        };
        self.ctx.record(
            &self.shard,
            Metric::Connect,
            elapsed_us(self.track.attempt_at),
        );
        self.shard.count(|c| c.connections_established += 1);
        // Open (ready) only once the on_connect messages (joins, subscriptions) are out.
        for text in &self.group.spec.on_connect {
            if socket.send(Message::text(text.clone())).await.is_err() {
                self.shard.count(|c| c.send_errors += 1);
            }
        }
        self.ctx.open.fetch_add(1, Ordering::Relaxed);
        self.track.mark_attempted(&self.ctx);
        let ended = self.run_socket(&mut socket, hold_until).await;
        self.ctx.open.fetch_sub(1, Ordering::Relaxed);
        match ended {
            Ended::Dropped => self.shard.count(|c| c.streams_dropped += 1),
            Ended::Done | Ended::Churn => {
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
            }
        }
        ended
    }

    async fn run_socket(&mut self, socket: &mut Socket, hold_until: Option<Instant>) -> Ended {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let hold = sleep_until(hold_until.unwrap_or(far));
        let churn = sleep_until(self.group.spec.churn.map_or(far, |c| Instant::now() + c));
        tokio::pin!(hold, churn);
        let send = self.group.spec.send.clone();
        let period = send.as_ref().map_or(Duration::from_secs(3600), |s| {
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
                msg = socket.next() => match msg {
                    None | Some(Err(_)) => return Ended::Dropped,
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Ok(text) = std::str::from_utf8(&bytes) {
                            self.on_text(text);
                        }
                    }
                    Some(Ok(Message::Close(_))) => return Ended::Dropped,
                    Some(Ok(_)) => {}
                },
                () = stopped(&mut start_sending), if send.is_some() && !sending && !*self.ctx.stop_sending.borrow() => {
                    sending = true;
                    let offset = Duration::from_secs_f64(period.as_secs_f64() * fastrand_fraction(self.id));
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
                    if let Some(spec) = &send {
                        self.track.sent += 1;
                        let text = stamped_message(&spec.template, self.track.sent, self.ctx.clock.unix_us(slot), spec.payload_bytes);
                        self.ctx.group_sent[self.group.index].fetch_add(1, Ordering::Relaxed);
                        let ok = socket.send(Message::text(text)).await.is_ok();
                        self.shard.count(|c| {
                            c.messages_sent += 1;
                            if !ok {
                                c.send_errors += 1;
                            }
                        });
                        if !ok {
                            return Ended::Dropped;
                        }
                    }
                }
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        let spec = &self.group.spec;
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            if matches!(spec.expect, Expect::Nothing) {
                return;
            }
            self.shard.count(|c| c.parse_errors += 1);
            return;
        };
        let kind = value.get("type").and_then(Value::as_str);
        if kind == Some("lagged") {
            let missed = missed_of(&value);
            self.shard.count(|c| c.server_drops += missed);
            return;
        }
        if !spec.types.is_empty() && !kind.is_some_and(|k| spec.types.iter().any(|t| t == k)) {
            return;
        }
        let stamp = match read_stamp(&value, &spec.stamp) {
            None => return,
            Some(Err(_)) => {
                self.shard.count(|c| c.parse_errors += 1);
                return;
            }
            Some(Ok(stamp)) => stamp,
        };
        let now_us = self.ctx.clock.now_us();
        let bytes = text.len() as u64;
        self.track
            .measured(&self.ctx, &self.shard, spec, stamp, bytes, now_us);
    }

    fn finish(&mut self) {
        self.track.settle(&self.ctx, &self.group, &self.shard);
    }
}
