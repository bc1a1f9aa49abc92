//! Foreign message formats against small real WebSocket servers written here: Socket.IO-style
//! `42["tick",{..}]` frames with Engine.IO-style pings that must be answered, and
//! Phoenix-Channels-style `[join_ref, ref, topic, event, payload]` arrays with a heartbeat
//! the client must send. Both servers drop clients that miss their heartbeat, and count it.
//! (The Engine.IO HTTP long-polling handshake is out of scope: clients open the WebSocket
//! transport directly, as Socket.IO clients may with `transports: ["websocket"]`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support;

/// Which protocol the test server imitates.
#[derive(Debug, Clone, Copy)]
enum Style {
    SocketIo,
    Phoenix,
}

/// Ticks each connection gets, and their interval.
const TICKS: u64 = 20;
const TICK_EVERY: Duration = Duration::from_millis(25);
/// Engine.IO-style ping interval; a ping still unanswered after `SILENCE` drops the client.
const PING_EVERY: Duration = Duration::from_millis(100);
/// Phoenix-style: a client silent this long is dropped; Engine.IO-style: a ping unanswered
/// this long.
const SILENCE: Duration = Duration::from_millis(1000);

/// Clients the server dropped for a missed heartbeat.
#[derive(Debug, Clone, Default)]
struct Dropped(Arc<AtomicU64>);

impl Dropped {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves `style` on 127.0.0.1:0 until the test ends.
async fn foreign_server(style: Style) -> (SocketAddr, Dropped) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dropped = Dropped::default();
    let counter = dropped.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let missed = match style {
                    Style::SocketIo => socket_io(ws).await,
                    Style::Phoenix => phoenix(ws).await,
                };
                if missed {
                    counter.0.fetch_add(1, Ordering::AcqRel);
                }
            });
        }
    });
    (addr, dropped)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn now_us() -> u64 {
    wire::now_unix_us()
}

/// Engine.IO/Socket.IO style: open packet, `40` connect, `2` pings answered by `3`,
/// `42["tick",{seq,ts}]` events, `42["echo",..]` echoed. Returns whether it dropped the
/// client for an unanswered ping.
async fn socket_io(mut ws: Ws) -> bool {
    let open = r#"0{"sid":"s1","upgrades":[],"pingInterval":100,"pingTimeout":1000}"#;
    if ws.send(Message::text(open)).await.is_err() {
        return false;
    }
    let mut connected = false;
    let mut ticks = tokio::time::interval(TICK_EVERY);
    let mut pings = tokio::time::interval(PING_EVERY);
    let mut unanswered_since: Option<Instant> = None;
    let mut seq = 0;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if t == "40" {
                        connected = true;
                        let _ = ws.send(Message::text(r#"40{"sid":"c1"}"#)).await;
                    } else if t == "3" {
                        unanswered_since = None;
                    } else if t.starts_with(r#"42["echo""#) {
                        let _ = ws.send(Message::text(t.to_owned())).await;
                    }
                }
                Some(Ok(_)) => {}
                _ => return false,
            },
            _ = ticks.tick(), if connected && seq < TICKS => {
                seq += 1;
                let frame = format!(r#"42["tick",{{"seq":{seq},"ts":{}}}]"#, now_us());
                if ws.send(Message::text(frame)).await.is_err() {
                    return false;
                }
            },
            _ = pings.tick() => {
                if unanswered_since.is_some_and(|at| at.elapsed() >= SILENCE) {
                    let _ = ws.close(None).await;
                    return true;
                }
                unanswered_since.get_or_insert_with(Instant::now);
                if ws.send(Message::text("2")).await.is_err() {
                    return false;
                }
            },
        }
    }
}

/// Phoenix Channels style: `phx_join` answered by `phx_reply`, a `heartbeat` on topic
/// `phoenix` required (any message resets the silence timer), `tick` pushes, `echo` echoed.
/// Returns whether it dropped the client for silence.
async fn phoenix(mut ws: Ws) -> bool {
    let mut joined = false;
    let mut ticks = tokio::time::interval(TICK_EVERY);
    let mut check = tokio::time::interval(Duration::from_millis(50));
    let mut last_heard = Instant::now();
    let mut seq = 0;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    last_heard = Instant::now();
                    let Ok(Value::Array(m)) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    let reply = |status: &str| {
                        json!([m[0], m[1], m[2], "phx_reply", {"status": status, "response": {}}]).to_string()
                    };
                    match m.get(3).and_then(Value::as_str) {
                        Some("phx_join") => {
                            joined = true;
                            let _ = ws.send(Message::text(reply("ok"))).await;
                        }
                        Some("heartbeat") => {
                            let _ = ws.send(Message::text(reply("ok"))).await;
                        }
                        Some("echo") => {
                            let _ = ws.send(Message::text(t.as_str().to_owned())).await;
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                _ => return false,
            },
            _ = ticks.tick(), if joined && seq < TICKS => {
                seq += 1;
                let push = json!([null, null, "room:lobby", "tick", {"seq": seq, "ts": now_us()}]);
                if ws.send(Message::text(push.to_string())).await.is_err() {
                    return false;
                }
            },
            _ = check.tick() => {
                if last_heard.elapsed() >= SILENCE {
                    let _ = ws.close(None).await;
                    return true;
                }
            },
        }
    }
}

async fn run(scenario: &str, addr: SocketAddr, name: &str) -> loadgen::results::report::Report {
    let dir = support::temp_dir(name);
    let options = support::options(support::scenario(scenario), Some(addr), &dir);
    loadgen::run(options).await.expect("run completes")
}

fn socket_io_scenario(replies: &str) -> String {
    format!(
        r#"
[run]
duration = "2s"

[[clients]]
name = "sio"
protocol = "ws"
path = "/socket.io/?EIO=4&transport=websocket"
count = 5
expect = "stream"
types = ["tick"]
frame = {{ prefix = "42", type_pointer = "/0" }}
stamp = {{ pointer = "/1" }}
on_connect = ["40"]
{replies}

[[clients]]
name = "sio-echo"
protocol = "ws"
path = "/socket.io/?EIO=4&transport=websocket"
count = 3
send_rate = 20
latency = "rtt"
types = ["echo"]
frame = {{ prefix = "42", type_pointer = "/0" }}
stamp = {{ pointer = "/1" }}
message = '["echo", {{"from": "u{{conn}}"}}]'
on_connect = ["40"]
{replies}
"#
    )
}

#[tokio::test]
async fn socket_io_frames_are_measured_exactly_and_pings_answered_keep_clients_connected() {
    let (addr, dropped) = foreign_server(Style::SocketIo).await;
    let report = run(
        &socket_io_scenario(r#"replies = { "2" = "3" }"#),
        addr,
        "sio",
    )
    .await;
    let c = &report.counters;
    assert_eq!(dropped.count(), 0, "answered pings keep every client");
    assert_eq!(c.streams_dropped, 0, "{c:?}");
    assert_eq!(
        c.parse_errors, 0,
        "control frames (0, 40, 2) are not parse errors"
    );
    // 5 tick streams of exactly TICKS each, plus every echo of the echo group.
    assert_eq!(c.gaps, 0);
    assert!(c.messages_sent > 0);
    assert_eq!(c.messages_received, 5 * TICKS + c.messages_sent, "{c:?}");
    assert_eq!(c.lost(), 0);
    assert!(
        !report
            .histograms
            .get(loadgen::live::stats::Metric::WsRtt)
            .is_empty()
    );
}

#[tokio::test]
async fn a_socket_io_client_that_ignores_pings_is_dropped_by_the_server() {
    let (addr, dropped) = foreign_server(Style::SocketIo).await;
    let report = run(&socket_io_scenario(""), addr, "sio-silent").await;
    assert_eq!(dropped.count(), 8);
    assert_eq!(report.counters.streams_dropped, 8);
    assert_eq!(report.counters.parse_errors, 0);
}

fn phoenix_scenario(keepalive: &str) -> String {
    format!(
        r#"
[run]
duration = "2s"

[[clients]]
name = "lobby"
protocol = "ws"
path = "/socket/websocket?vsn=2.0.0"
count = 5
expect = "stream"
types = ["tick"]
frame = {{ type_pointer = "/3" }}
stamp = {{ pointer = "/4" }}
on_connect = ['["{{conn}}", "{{conn}}", "room:lobby", "phx_join", {{}}]']
{keepalive}

[[clients]]
name = "lobby-echo"
protocol = "ws"
path = "/socket/websocket?vsn=2.0.0"
count = 3
send_rate = 20
latency = "rtt"
types = ["echo"]
frame = {{ type_pointer = "/3" }}
stamp = {{ pointer = "/4" }}
message = '[null, "{{conn}}", "room:lobby", "echo", {{}}]'
on_connect = ['["{{conn}}", "{{conn}}", "room:lobby", "phx_join", {{}}]']
{keepalive}
"#
    )
}

#[tokio::test]
async fn phoenix_arrays_are_measured_exactly_and_a_heartbeat_keeps_clients_connected() {
    let (addr, dropped) = foreign_server(Style::Phoenix).await;
    let keepalive =
        r#"keepalive = { every = "100ms", message = '[null, "hb", "phoenix", "heartbeat", {}]' }"#;
    let report = run(&phoenix_scenario(keepalive), addr, "phx").await;
    let c = &report.counters;
    assert_eq!(dropped.count(), 0);
    assert_eq!(c.streams_dropped, 0, "{c:?}");
    assert_eq!(
        c.parse_errors, 0,
        "replies without a stamp are not parse errors"
    );
    assert_eq!(c.gaps, 0);
    assert!(c.messages_sent > 0);
    assert_eq!(c.messages_received, 5 * TICKS + c.messages_sent, "{c:?}");
    assert_eq!(c.lost(), 0);
}

#[tokio::test]
async fn a_phoenix_client_without_heartbeat_is_dropped_by_the_server() {
    let (addr, dropped) = foreign_server(Style::Phoenix).await;
    let report = run(&phoenix_scenario(""), addr, "phx-silent").await;
    // The echo group keeps talking (its messages count as heard); the silent one is dropped.
    assert_eq!(dropped.count(), 5);
    assert_eq!(report.counters.streams_dropped, 5);
}
