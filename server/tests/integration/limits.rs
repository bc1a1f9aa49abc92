//! Limits and security: connection limit, WS message size and UTF-8, slow consumers, auth.

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use hyper::{Method, StatusCode};
use serde_json::json;
use server::ServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::{
    self, SseClient, call, json, metric, try_ws, wait_metric, ws, ws_close_code, ws_json, ws_send,
    ws_text,
};

#[tokio::test]
async fn connection_limit_holds_for_streams_until_they_end() {
    let config = ServerConfig {
        max_connections: 3,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    // Three long-lived streams: their handlers returned long ago, the limit must still hold.
    let a = SseClient::connect(addr, "/sse/counter").await;
    let _b = SseClient::connect(addr, "/sse/notifications").await;
    let _c = ws(addr, "/ws/echo").await;
    let over = SseClient::open(addr, "/sse/counter", &[]).await;
    assert_eq!(over.status, StatusCode::SERVICE_UNAVAILABLE);
    match try_ws(addr, "/ws/echo").await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE),
        other => panic!("expected 503 for the upgrade, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        metric(addr, "rt_connections_rejected_total{reason=\"limit\"}").await,
        2
    );
    drop(a);
    wait_metric(addr, "rt_connections_open_total", 2).await;
    let again = SseClient::open(addr, "/sse/counter", &[]).await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_ws_message_closes_with_1009_and_server_is_unaffected() {
    let config = ServerConfig {
        max_message_bytes: 1024,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut big = ws(addr, "/ws/echo").await;
    big.send(Message::binary(vec![7u8; 4096]))
        .await
        .expect("send");
    assert_eq!(ws_close_code(&mut big).await, 1009);
    wait_metric(addr, &support::closed_series("ws_echo", "ws", "too_big"), 1).await;
    let mut fine = ws(addr, "/ws/echo").await;
    fine.send(Message::text("x".repeat(1000)))
        .await
        .expect("send");
    assert_eq!(ws_text(&mut fine).await.len(), 1000);
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_with_1007() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut socket = ws(addr, "/ws/echo").await;
    let frame = Frame::message(vec![0x66, 0xFF, 0xFE], OpCode::Data(Data::Text), true);
    socket
        .send(Message::Frame(frame))
        .await
        .expect("send raw frame");
    assert_eq!(ws_close_code(&mut socket).await, 1007);
    wait_metric(
        addr,
        &support::closed_series("ws_echo", "ws", "invalid_utf8"),
        1,
    )
    .await;
}

#[tokio::test]
async fn slow_ws_consumer_is_bounded_counted_and_told() {
    let config = ServerConfig {
        client_queue: 4,
        max_body_bytes: 1 << 20,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut slow = ws(addr, "/ws/pubsub").await;
    ws_send(&mut slow, json!({"type": "subscribe", "topic": "t"})).await;
    assert_eq!(ws_json(&mut slow).await["type"], "subscribed");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(256 * 1024));
    let total = 120u64;
    let mut delivered = 0;
    for _ in 0..total {
        let answer = support::post(addr, "/publish/t", &big).await;
        delivered += json(&answer.body)["delivered"].as_u64().expect("delivered");
    }
    let dropped = metric(
        addr,
        "rt_messages_dropped_total{scenario=\"pubsub\",protocol=\"ws\"}",
    )
    .await;
    assert!(dropped > 0, "a 4-message queue must overflow");
    assert_eq!(delivered + dropped, total);
    let (mut received, mut missed) = (0, 0);
    while received < delivered {
        let msg = ws_json(&mut slow).await;
        match msg["type"].as_str() {
            Some("message") => received += 1,
            Some("lagged") => missed += msg["missed"].as_u64().expect("missed"),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The last lag notice comes before the next message; drops after the last queued
    // message are reported with the next message, so at most all drops are reported.
    assert!(missed > 0 && missed <= dropped);
}

#[tokio::test]
async fn bearer_token_guards_streams_sockets_and_publishing() {
    let config = ServerConfig {
        token: Some("s3cret".into()),
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    for (method, path) in [
        (Method::GET, "/sse/counter"),
        (Method::GET, "/sse/notifications"),
        (Method::POST, "/sse/notifications"),
        (Method::POST, "/publish/t"),
        (Method::GET, "/ws/echo"),
    ] {
        let answer = call(addr, method.clone(), path, &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let answer = call(
            addr,
            method.clone(),
            path,
            &[("authorization", "Bearer wrong")],
            Bytes::new(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} wrong token"
        );
    }
    assert_eq!(
        metric(addr, "rt_connections_rejected_total{reason=\"auth\"}").await,
        10
    );
    match try_ws(addr, "/ws/echo").await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), StatusCode::UNAUTHORIZED),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let ok = SseClient::open(addr, "/sse/counter", &[("authorization", "Bearer s3cret")]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let ok = SseClient::open(addr, "/sse/counter?token=s3cret", &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let mut socket = ws(addr, "/ws/echo?token=s3cret").await;
    socket.send(Message::text("in")).await.expect("send");
    assert_eq!(ws_text(&mut socket).await, "in");
    // Health and metrics stay open for probes.
    assert_eq!(support::get(addr, "/healthz").await.status, StatusCode::OK);
    assert_eq!(support::get(addr, "/metrics").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_4xx_not_panics() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    assert_eq!(
        support::get(addr, "/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        support::get(addr, "/pages/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let answer = call(
        addr,
        Method::DELETE,
        "/sse/notifications",
        &[],
        Bytes::new(),
    )
    .await;
    assert!(answer.status.is_client_error(), "{}", answer.status);
    // A plain GET to a WS route is not an upgrade.
    let answer = support::get(addr, "/ws/echo").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // Afterwards the server still works.
    let mut client = SseClient::connect(addr, "/sse/counter?interval_ms=5").await;
    client.next().await;
    server.shutdown(Duration::from_secs(2)).await;
}

/// Sends a POST announcing a 1 GiB body (by `Content-Length`, or chunked) and streams up to
/// 64 MiB of it; returns the answer's status line and how much the server let through
/// before it answered and closed.
async fn huge_post(addr: std::net::SocketAddr, chunked: bool) -> (String, usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const CAP: usize = 64 << 20;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked"
    } else {
        "Content-Length: 1073741824"
    };
    let head = format!(
        "POST /sse/notifications HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    wr.write_all(head.as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        let block = vec![b'1'; 64 << 10];
        let chunk_head = format!("{:x}\r\n", block.len());
        let mut sent = 0;
        while sent < CAP {
            let ok = if chunked {
                wr.write_all(chunk_head.as_bytes()).await.is_ok()
                    && wr.write_all(&block).await.is_ok()
                    && wr.write_all(b"\r\n").await.is_ok()
            } else {
                wr.write_all(&block).await.is_ok()
            };
            if !ok {
                break;
            }
            sent += block.len();
        }
        sent
    });
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut answer))
        .await
        .expect("an answer, not a server reading on")
        .expect("read");
    drop(rd);
    let sent = writer.await.expect("writer");
    let status = String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, sent)
}

#[tokio::test]
async fn a_1_gib_post_gets_413_without_the_body_being_read() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    for chunked in [false, true] {
        let (status, sent) = huge_post(addr, chunked).await;
        assert!(status.contains(" 413 "), "chunked {chunked}: {status}");
        // The server answered and closed long before 64 MiB: what got through is the 64 KiB
        // limit plus what the sockets' buffers absorbed.
        assert!(
            sent < 64 << 20,
            "chunked {chunked}: all {sent} bytes were taken"
        );
    }
    // Still serving, and counted as bad requests rather than published.
    assert_eq!(support::get(addr, "/healthz").await.status, StatusCode::OK);
    assert_eq!(
        metric(
            addr,
            "rt_messages_received_total{scenario=\"notifications\",protocol=\"sse\"}"
        )
        .await,
        0
    );
}

/// Writes `bytes` straight to the socket under `ws`, past the client's frame encoder.
async fn write_raw(ws: &mut support::Ws, bytes: &[u8]) {
    match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
            tcp.write_all(bytes).await.expect("raw write");
        }
        _ => panic!("plain TCP expected"),
    }
}

#[tokio::test]
async fn a_frame_announcing_a_huge_length_is_refused_with_1009_before_its_body() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut socket = ws(addr, "/ws/echo").await;
    // A masked binary frame header announcing 2^40 bytes (1 TiB), and no body: the server
    // must answer from the header alone, not wait for (or buffer) the payload.
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    write_raw(&mut socket, &header).await;
    assert_eq!(ws_close_code(&mut socket).await, 1009);
    wait_metric(addr, &support::closed_series("ws_echo", "ws", "too_big"), 1).await;
    // Others are served as before.
    let mut fine = ws(addr, "/ws/echo").await;
    fine.send(Message::text("still here")).await.expect("send");
    assert_eq!(ws_text(&mut fine).await, "still here");
}

#[tokio::test]
async fn endless_continuation_fragments_are_cut_off_at_the_message_limit_with_1009() {
    let config = ServerConfig {
        max_message_bytes: 16 * 1024,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut socket = ws(addr, "/ws/echo").await;
    // A text message that never ends: 1 KiB fragments without FIN, up to 1,000 of them; the
    // server closes once the message passes 16 KiB, so sending stops failing soon after.
    let first = Frame::message(vec![b'a'; 1024], OpCode::Data(Data::Text), false);
    socket.send(Message::Frame(first)).await.expect("send");
    let mut sent = 1u32;
    while sent < 1000 {
        let more = Frame::message(vec![b'a'; 1024], OpCode::Data(Data::Continue), false);
        if socket.send(Message::Frame(more)).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert_eq!(
        ws_close_code(&mut socket).await,
        1009,
        "after {sent} fragments"
    );
    wait_metric(addr, &support::closed_series("ws_echo", "ws", "too_big"), 1).await;
}

#[tokio::test]
async fn a_ping_flood_is_answered_without_growing_and_then_closed_with_1008() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut flood = ws(addr, "/ws/echo").await;
    // 20,000 pings of 125 bytes as fast as they go, no reads in between.
    let mut sent = 0u32;
    while sent < 20_000 {
        if flood
            .send(Message::Ping(Bytes::from_static(&[7u8; 125])))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    assert_eq!(ws_close_code(&mut flood).await, 1008, "after {sent} pings");
    wait_metric(addr, &support::closed_series("ws_echo", "ws", "policy"), 1).await;
    let mut fine = ws(addr, "/ws/echo").await;
    fine.send(Message::text("still here")).await.expect("send");
    assert_eq!(ws_text(&mut fine).await, "still here");
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503_while_the_admitted_lose_nothing() {
    let config = ServerConfig {
        max_connections: 20,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut admitted = Vec::new();
    for _ in 0..20 {
        admitted.push(SseClient::connect(addr, "/sse/notifications").await);
    }
    // 200 more streams and 50 more sockets while the admitted ones are fed: each is refused
    // with 503, none takes a slot, none disturbs a delivery.
    for round in 0..50u64 {
        for _ in 0..4 {
            let over = SseClient::open(addr, "/sse/notifications", &[]).await;
            assert_eq!(over.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        match try_ws(addr, "/ws/echo").await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE),
            other => panic!("expected 503, got {:?}", other.map(|_| ())),
        }
        let body = format!("{{\"seq\":{},\"ts\":1}}", round + 1);
        let answer = support::post(addr, "/sse/notifications", &body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        assert_eq!(json(&answer.body)["subscribers"], 20);
    }
    assert_eq!(
        metric(addr, "rt_connections_rejected_total{reason=\"limit\"}").await,
        250
    );
    for client in &mut admitted {
        for id in 1..=50u64 {
            let event = client.next().await;
            assert_eq!(event.last_event_id, id.to_string(), "every event, in order");
        }
    }
    // A refused client keeps nothing: the server closes the connection after its 503.
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"GET /sse/notifications HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_string(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test]
async fn slowloris_heads_are_cut_by_the_header_timeout_and_counted() {
    let config = ServerConfig {
        header_timeout: Duration::from_secs(1),
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    // 20 clients trickle a request head, one header line every 200 ms, never ending it.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /sse/counter HTTP/1.1\r\nHost: t\r\n")
            .await
            .expect("start");
        slow.push(s);
    }
    let trickle = async {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut open = 0;
            for s in &mut slow {
                if s.write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_ok()
                {
                    open += 1;
                }
            }
            if open == 0 {
                return i;
            }
        }
        panic!("the server never closed the trickling connections");
    };
    tokio::time::timeout(Duration::from_secs(15), trickle)
        .await
        .expect("cut within seconds");
    wait_metric(
        addr,
        "rt_connections_unanswered_total{sent=\"partial\"}",
        20,
    )
    .await;
    // A client that says nothing is counted apart; a normal one is served as ever.
    drop(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    wait_metric(addr, "rt_connections_unanswered_total{sent=\"nothing\"}", 1).await;
    let answer = call(addr, Method::GET, "/healthz", &[], Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn an_sse_client_that_stops_reading_is_evicted_after_the_write_stall_timeout() {
    let config = ServerConfig {
        write_stall_timeout: Duration::from_secs(1),
        max_body_bytes: 1 << 20,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    // A stream that never reads.
    let stuck = support::non_reading_subscriber(addr).await;
    // 32 MiB of events: far more than the socket buffers on both sides hold, so the
    // server's writes stall; a second later the stream is closed and its slot is free.
    let pad = "x".repeat(512 * 1024);
    for seq in 1..=64 {
        let body = format!("{{\"seq\":{seq},\"ts\":1,\"pad\":\"{pad}\"}}");
        let answer = support::post(addr, "/sse/notifications", &body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    wait_metric(addr, "rt_connections_open_total", 0).await;
    drop(stuck);
}
