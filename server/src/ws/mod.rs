//! WebSocket plumbing shared by every WS scenario: one session loop per connection.
//!
//! The loop races, in priority order: server shutdown (send Close 1001), the peer's frames,
//! messages queued for this client by a hub, and the heartbeat. Every inbound frame (a pong
//! above all) proves the peer alive; a peer that sent nothing between two pings is closed
//! with 4408. Oversized messages close with 1009, invalid UTF-8 with 1007, other protocol
//! violations with 1002; the server itself is unaffected.

pub(crate) mod chat;
pub(crate) mod echo;
pub(crate) mod groups;
pub(crate) mod pubsub;
pub(crate) mod rooms;

use std::sync::Arc;
use std::time::Duration;

use salvo::websocket::{Message, WebSocket};
use serde_json::{Map, Value};
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::tungstenite;

use crate::limits::ConnectionGuard;
use crate::metrics::CloseReason;
use crate::shutdown::Shutdown;
use groups::Outbox;

/// Close code sent to a peer that missed its pong (application range, modelled on HTTP 408).
pub const CLOSE_HEARTBEAT: u16 = 4408;
/// How long to wait for the peer's Close reply after we sent ours.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Behaviour of one WS scenario for one connection.
pub(crate) trait WsScenario: Send + 'static {
    /// Handles a text message; returns messages to send back to this client.
    fn on_text(&mut self, text: &str) -> Vec<Message>;
    /// How long to hold the replies to the message just handled (delay injection); none by
    /// default. The session holds them, so this connection's later messages wait too.
    fn hold(&mut self) -> Duration {
        Duration::ZERO
    }
    /// Called once the replies to a message are written: `took` is receipt to last write.
    fn replied(&mut self, _took: Duration) {}
    /// Handles a binary message; by default binary messages are refused with an error reply.
    fn on_binary(&mut self, _data: &[u8]) -> Vec<Message> {
        vec![error_reply(
            "binary messages are not supported here; send JSON text",
        )]
    }
}

/// Session-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub(crate) ping_interval: Duration,
    pub(crate) shutdown: Shutdown,
}

/// Runs one connection to the end. `greeting` is sent first; `outbox` carries hub messages.
pub(crate) async fn run_session<S: WsScenario>(
    mut ws: WebSocket,
    mut guard: ConnectionGuard,
    settings: SessionSettings,
    mut scenario: S,
    mut outbox: Option<Outbox>,
    greeting: Vec<Message>,
) {
    let mut shutdown = settings.shutdown;
    let period = settings.ping_interval;
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard_since_ping = true;
    let mut pings = PingBudget::default();
    let mut reason = CloseReason::Client;
    let mut close: Option<(u16, &'static str)> = None;
    for msg in greeting {
        if !send(&mut ws, &guard, msg).await {
            return;
        }
    }
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => {
                reason = CloseReason::Shutdown;
                close = Some((1001, "server shutting down"));
                break;
            }
            frame = ws.recv() => {
                heard_since_ping = true;
                match frame {
                    None => break,
                    Some(Err(err)) => {
                        (reason, close) = classify(&err);
                        break;
                    }
                    Some(Ok(msg)) if msg.is_close() => {
                        // Send the Close reply tungstenite queued (bounded): the peer's close
                        // handshake completes before the connection goes.
                        let _ = timeout(CLOSE_GRACE, futures_util::SinkExt::close(&mut ws)).await;
                        break;
                    }
                    Some(Ok(msg)) if msg.is_ping() && !pings.allow(Instant::now()) => {
                        reason = CloseReason::Policy;
                        close = Some((1008, "ping flood"));
                        break;
                    }
                    Some(Ok(msg)) if msg.is_ping() || msg.is_pong() => {}
                    Some(Ok(msg)) => {
                        let received_at = Instant::now();
                        guard.metrics().received(msg.as_bytes().len());
                        let replies = if msg.is_text() {
                            scenario.on_text(msg.as_str().unwrap_or_default())
                        } else {
                            scenario.on_binary(msg.as_bytes())
                        };
                        let hold = scenario.hold();
                        if !hold.is_zero() {
                            tokio::time::sleep(hold).await;
                        }
                        for reply in replies {
                            if !send(&mut ws, &guard, reply).await {
                                guard.set_reason(CloseReason::Error);
                                return;
                            }
                        }
                        scenario.replied(received_at.elapsed());
                    }
                }
            }
            queued = next_queued(&mut outbox) => {
                let Some(text) = queued else { break };
                let missed = outbox.as_ref().map_or(0, Outbox::take_missed);
                if missed > 0 {
                    guard.metrics().lagged(missed);
                    let notice = Message::text(format!("{{\"type\":\"lagged\",\"missed\":{missed}}}"));
                    if !send(&mut ws, &guard, notice).await {
                        guard.set_reason(CloseReason::Error);
                        return;
                    }
                }
                if !send(&mut ws, &guard, Message::text(text.to_string())).await {
                    guard.set_reason(CloseReason::SlowConsumer);
                    return;
                }
            }
            _ = heartbeat.tick() => {
                if !heard_since_ping {
                    reason = CloseReason::Heartbeat;
                    close = Some((CLOSE_HEARTBEAT, "missed pong"));
                    break;
                }
                heard_since_ping = false;
                if ws.send(Message::ping(Vec::new())).await.is_err() {
                    reason = CloseReason::Error;
                    break;
                }
            }
        }
    }
    guard.set_reason(reason);
    if let Some((code, text)) = close
        && ws.send(Message::close_with(code, text)).await.is_ok()
    {
        // Wait (bounded) for the peer's Close reply so it reads our Close before the
        // TCP connection goes away.
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = ws.recv().await {}
        })
        .await;
    }
}

/// Pings a peer may send per second; each is answered with a pong, so a flood of them is a
/// flood of writes the peer may never read. A browser sends none; a client keeping a
/// connection alive sends one every few seconds.
pub(crate) const MAX_PINGS_PER_SECOND: u32 = 50;

/// Counts a peer's pings per one-second window.
#[derive(Debug, Default)]
struct PingBudget {
    window_start: Option<Instant>,
    in_window: u32,
}

impl PingBudget {
    /// Counts a ping at `now`; `false` once the window holds more than
    /// [`MAX_PINGS_PER_SECOND`].
    fn allow(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                self.in_window += 1;
            }
            _ => {
                self.window_start = Some(now);
                self.in_window = 1;
            }
        }
        self.in_window <= MAX_PINGS_PER_SECOND
    }
}

async fn next_queued(outbox: &mut Option<Outbox>) -> Option<Arc<str>> {
    match outbox {
        Some(outbox) => outbox.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn send(ws: &mut WebSocket, guard: &ConnectionGuard, msg: Message) -> bool {
    let len = msg.as_bytes().len();
    match ws.send(msg).await {
        Ok(()) => {
            guard.metrics().sent(len);
            true
        }
        Err(_) => false,
    }
}

/// Maps a read error to a close reason and the Close frame to send, if any.
fn classify(err: &salvo::Error) -> (CloseReason, Option<(u16, &'static str)>) {
    use tungstenite::Error as E;
    let salvo::Error::Other(inner) = err else {
        return (CloseReason::Error, None);
    };
    match inner.downcast_ref::<E>() {
        Some(E::Capacity(_)) => (CloseReason::TooBig, Some((1009, "message too big"))),
        Some(E::Utf8(_)) => (
            CloseReason::InvalidUtf8,
            Some((1007, "invalid UTF-8 in text frame")),
        ),
        Some(E::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
            (CloseReason::Vanished, None)
        }
        Some(E::ConnectionClosed | E::AlreadyClosed) => (CloseReason::Client, None),
        Some(E::Protocol(_)) => (CloseReason::Protocol, Some((1002, "protocol error"))),
        _ => (CloseReason::Error, None),
    }
}

/// `{"type":"error","message":…}`
pub(crate) fn error_reply(message: &str) -> Message {
    Message::text(serde_json::json!({"type": "error", "message": message}).to_string())
}

/// Parses a client message: a JSON object with a string `type`.
pub(crate) fn parse_command(text: &str) -> Result<(String, Map<String, Value>), Message> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return Err(error_reply(
            "message must be a JSON object with a \"type\" field",
        ));
    };
    match map.get("type").and_then(Value::as_str) {
        Some(kind) => Ok((kind.to_owned(), map)),
        None => Err(error_reply("message has no string \"type\" field")),
    }
}

/// Reads a group (room, topic) name field and checks it.
pub(crate) fn group_name(map: &Map<String, Value>, field: &str) -> Result<String, Message> {
    match map.get(field).and_then(Value::as_str) {
        None => Err(error_reply(&format!("missing string field \"{field}\""))),
        Some("") => Err(error_reply(&format!("\"{field}\" must not be empty"))),
        Some(name) if name.len() > groups::MAX_GROUP_NAME => Err(error_reply(&format!(
            "\"{field}\" is longer than {} bytes",
            groups::MAX_GROUP_NAME
        ))),
        Some(name) => Ok(name.to_owned()),
    }
}

#[cfg(test)]
mod ping_budget_tests {
    use super::*;

    #[test]
    fn fifty_pings_a_second_pass_the_fifty_first_does_not_and_a_new_second_starts_over() {
        let start = Instant::now();
        let mut budget = PingBudget::default();
        for i in 0..MAX_PINGS_PER_SECOND {
            assert!(
                budget.allow(start + Duration::from_millis(u64::from(i))),
                "ping {i}"
            );
        }
        assert!(!budget.allow(start + Duration::from_millis(999)));
        assert!(budget.allow(start + Duration::from_millis(1000)));
    }
}
