//! WebSocket scenarios with a real tokio-tungstenite client: echo, chat, rooms, pub/sub,
//! heartbeat.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use serde_json::json;
use server::ServerConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, json, ws, ws_close_code, ws_json, ws_send, ws_text};

#[tokio::test]
async fn echo_returns_text_and_binary_unchanged() {
    let server = support::start(support::config()).await;
    let mut socket = ws(server.local_addr(), "/ws/echo").await;
    socket.send(Message::text("héllo")).await.expect("send");
    assert_eq!(ws_text(&mut socket).await, "héllo");
    let payload: Vec<u8> = (0..=255).collect();
    socket
        .send(Message::binary(payload.clone()))
        .await
        .expect("send");
    let reply = loop {
        match socket.next().await.expect("open").expect("frame") {
            Message::Binary(b) => break b,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected binary, got {other:?}"),
        }
    };
    assert_eq!(reply.as_ref(), payload.as_slice());
}

#[tokio::test]
async fn chat_forwards_tagged_messages_to_others_with_join_and_leave() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut a = ws(addr, "/ws/chat").await;
    let a_id = ws_json(&mut a).await["id"].as_u64().expect("welcome id");
    let mut b = ws(addr, "/ws/chat").await;
    let b_id = ws_json(&mut b).await["id"].as_u64().expect("welcome id");
    assert_eq!(ws_json(&mut a).await, json!({"type": "join", "from": b_id}));

    ws_send(
        &mut a,
        json!({"type": "chat", "text": "hi", "seq": 1, "ts": 99}),
    )
    .await;
    assert_eq!(
        ws_json(&mut b).await,
        json!({"type": "chat", "text": "hi", "seq": 1, "ts": 99, "from": a_id})
    );
    ws_send(&mut b, json!({"type": "typing"})).await;
    assert_eq!(
        ws_json(&mut a).await,
        json!({"type": "typing", "from": b_id})
    );

    ws_send(&mut a, json!({"type": "shout"})).await;
    let err = ws_json(&mut a).await;
    assert_eq!(err["type"], "error");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("shout")));
    a.send(Message::text("not json")).await.expect("send");
    assert_eq!(ws_json(&mut a).await["type"], "error");

    drop(b);
    assert_eq!(
        ws_json(&mut a).await,
        json!({"type": "leave", "from": b_id})
    );
}

#[tokio::test]
async fn rooms_deliver_only_to_other_members() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let (mut a, mut b, mut c) = (
        ws(addr, "/ws/rooms").await,
        ws(addr, "/ws/rooms").await,
        ws(addr, "/ws/rooms").await,
    );
    ws_send(&mut a, json!({"type": "join", "room": "red"})).await;
    assert_eq!(
        ws_json(&mut a).await,
        json!({"type": "joined", "room": "red", "members": 1})
    );
    ws_send(&mut b, json!({"type": "join", "room": "red"})).await;
    assert_eq!(ws_json(&mut b).await["members"], 2);
    ws_send(&mut c, json!({"type": "join", "room": "blue"})).await;
    ws_json(&mut c).await;

    ws_send(
        &mut a,
        json!({"type": "broadcast", "room": "red", "text": "to red"}),
    )
    .await;
    let got = ws_json(&mut b).await;
    assert_eq!(
        (got["room"].as_str(), got["text"].as_str()),
        (Some("red"), Some("to red"))
    );
    // c (other room) gets nothing: its next message is the reply to its own request.
    ws_send(
        &mut c,
        json!({"type": "broadcast", "room": "red", "text": "sneak"}),
    )
    .await;
    assert!(
        ws_json(&mut c).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("join room"))
    );

    ws_send(&mut b, json!({"type": "leave", "room": "red"})).await;
    assert_eq!(
        ws_json(&mut b).await,
        json!({"type": "left", "room": "red"})
    );
    ws_send(
        &mut a,
        json!({"type": "broadcast", "room": "red", "text": "anyone?"}),
    )
    .await;
    ws_send(&mut b, json!({"type": "join"})).await;
    let err = ws_json(&mut b).await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"room\"")),
        "{err}"
    );
    ws_send(&mut a, json!({"type": "join", "room": "x".repeat(200)})).await;
    assert!(
        ws_json(&mut a).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than"))
    );
}

#[tokio::test]
async fn pubsub_delivers_ws_and_http_publishes_to_subscribers() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut sub = ws(addr, "/ws/pubsub").await;
    let mut publisher = ws(addr, "/ws/pubsub").await;
    ws_send(&mut sub, json!({"type": "subscribe", "topic": "prices"})).await;
    assert_eq!(
        ws_json(&mut sub).await,
        json!({"type": "subscribed", "topic": "prices"})
    );

    ws_send(
        &mut publisher,
        json!({"type": "publish", "topic": "prices", "data": {"seq": 1, "ts": 2}}),
    )
    .await;
    assert_eq!(ws_json(&mut publisher).await["delivered"], 1);
    assert_eq!(
        ws_json(&mut sub).await,
        json!({"type": "message", "topic": "prices", "data": {"seq": 1, "ts": 2}})
    );

    let answer = support::post(addr, "/publish/prices", r#"{"seq":2,"ts":3}"#).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(json(&answer.body)["delivered"], 1);
    assert_eq!(ws_json(&mut sub).await["data"], json!({"seq": 2, "ts": 3}));

    let answer = support::post(addr, "/publish/prices", "[]").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    ws_send(&mut sub, json!({"type": "unsubscribe", "topic": "prices"})).await;
    assert_eq!(ws_json(&mut sub).await["type"], "unsubscribed");
    let answer = support::post(addr, "/publish/prices", "{}").await;
    assert_eq!(json(&answer.body)["delivered"], 0);
}

#[tokio::test]
async fn heartbeat_closes_a_silent_peer_and_keeps_a_live_one() {
    let config = ServerConfig {
        ping_interval: Duration::from_millis(50),
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    // A live client keeps reading, so tungstenite answers every ping with a pong.
    let (mut live_tx, mut live_rx) = ws(addr, "/ws/echo").await.split();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = live_rx.next().await {
            if seen_tx.send(msg).is_err() {
                break;
            }
        }
    });
    let mut pings = 0;
    while pings < 3 {
        let msg = tokio::time::timeout(support::DEADLINE, seen.recv()).await;
        if let Message::Ping(_) = msg
            .expect("a ping within the deadline")
            .expect("live socket open")
        {
            pings += 1;
        }
    }
    // A silent client never reads, so never pongs.
    let mut silent = ws(addr, "/ws/echo").await;
    support::wait_metric(
        addr,
        &support::closed_series("ws_echo", "ws", "heartbeat"),
        1,
    )
    .await;
    assert_eq!(ws_close_code(&mut silent).await, server::CLOSE_HEARTBEAT);
    // The live one, pinged all along, is still served.
    live_tx
        .send(Message::text("still here"))
        .await
        .expect("send");
    loop {
        let msg = tokio::time::timeout(support::DEADLINE, seen.recv()).await;
        match msg
            .expect("the echo within the deadline")
            .expect("live socket open")
        {
            Message::Text(t) => {
                assert_eq!(t.as_str(), "still here");
                break;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        support::metric(addr, &support::open_series("ws_echo", "ws")).await,
        1
    );
    reader.abort();
}
