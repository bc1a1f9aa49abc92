//! SSE scenarios with a real client: counter, stocks, chat, notifications, replay, keep-alive,
//! retry, lag, dashboard.

use std::time::Duration;

use hyper::StatusCode;
use server::ServerConfig;
use wire::{Stamp, StampedMessage};

use crate::support::{self, SseClient, json, post, wait_metric};

#[tokio::test]
async fn counter_ticks_with_intended_time_stamps_and_retry_hint() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut client = SseClient::connect(addr, "/sse/counter?interval_ms=20").await;
    let mut previous: Option<Stamp> = None;
    for k in 1..=4u64 {
        let event = client.next().await;
        assert_eq!(event.event_type, "message");
        assert_eq!(event.last_event_id, k.to_string());
        let msg = StampedMessage::decode(&event.data).expect("stamped");
        assert_eq!(msg.seq, k);
        assert_eq!(msg.payload()["count"], k);
        if let Some(prev) = previous {
            // Intended times: exactly one interval apart, whatever the actual write times.
            assert_eq!(msg.ts - prev.ts, 20_000);
        }
        previous = Some(Stamp {
            seq: msg.seq,
            ts: msg.ts,
        });
    }
    assert_eq!(client.parser.retry_ms(), Some(1000));
    drop(client);
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn counter_resumes_after_last_event_id() {
    let server = support::start(support::config()).await;
    let mut client = SseClient::open(
        server.local_addr(),
        "/sse/counter?interval_ms=10",
        &[("last-event-id", "41")],
    )
    .await;
    assert_eq!(client.status, StatusCode::OK);
    let event = client.next().await;
    assert_eq!(Stamp::decode(&event.data).map(|s| s.seq), Ok(42));
}

#[tokio::test]
async fn counter_resuming_from_the_largest_id_does_not_overflow() {
    let server = support::start(support::config()).await;
    let max = u64::MAX.to_string();
    let mut client = SseClient::open(
        server.local_addr(),
        "/sse/counter?interval_ms=1",
        &[("last-event-id", &max)],
    )
    .await;
    assert_eq!(client.status, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(
            Stamp::decode(&client.next().await.data).map(|s| s.seq),
            Ok(u64::MAX)
        );
    }
}

#[tokio::test]
async fn counter_rejects_bad_parameters_with_a_message() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    for (path, needle) in [
        ("/sse/counter?interval_ms=0", "interval_ms"),
        ("/sse/counter?interval_ms=-5", "interval_ms"),
        ("/sse/counter?interval_ms=9999999999", "interval_ms"),
    ] {
        let answer = support::get(addr, path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer.body.contains(needle), "{path}: {}", answer.body);
    }
    let answer = support::call(
        addr,
        hyper::Method::GET,
        "/sse/counter",
        &[("last-event-id", "abc")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("Last-Event-ID"), "{}", answer.body);
    assert_eq!(
        support::metric(
            addr,
            "rt_connections_rejected_total{reason=\"bad_request\"}"
        )
        .await,
        4
    );
}

#[tokio::test]
async fn stock_feed_sends_named_price_events_for_each_symbol() {
    let server = support::start(support::config()).await;
    let mut client =
        SseClient::connect(server.local_addr(), "/sse/stocks?symbols=3&rate=200").await;
    let mut symbols = Vec::new();
    for k in 1..=6u64 {
        let event = client.next().await;
        assert_eq!(event.event_type, "price");
        let v = json(&event.data);
        assert_eq!(v["seq"], k);
        assert!(v["ts"].as_u64().is_some());
        assert!(v["price"].as_f64().is_some_and(|p| p > 0.0));
        assert!(v["change"].as_f64().is_some());
        symbols.push(v["symbol"].as_str().expect("symbol").to_owned());
    }
    assert_eq!(symbols, ["AAPL", "MSFT", "GOOG", "AAPL", "MSFT", "GOOG"]);
}

#[tokio::test]
async fn sse_chat_broadcasts_to_others_and_forgets_disconnected_users() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut alice = SseClient::connect(addr, "/sse/chat").await;
    let mut bob = SseClient::connect(addr, "/sse/chat").await;
    let alice_id = json(&alice.next().await.data)["id"].as_u64().expect("id");
    let bob_id = json(&bob.next().await.data)["id"].as_u64().expect("id");
    assert_ne!(alice_id, bob_id);

    let answer = post(
        addr,
        &format!("/sse/chat/{alice_id}"),
        r#"{"text":"hi","seq":1,"ts":5}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(json(&answer.body)["delivered"], 1);
    let got = json(&bob.next().await.data);
    assert_eq!(
        (
            got["from"].as_u64(),
            got["text"].as_str(),
            got["seq"].as_u64()
        ),
        (Some(alice_id), Some("hi"), Some(1))
    );
    // Plain text is wrapped.
    post(addr, &format!("/sse/chat/{bob_id}"), "plain words").await;
    let got = json(&alice.next().await.data);
    assert_eq!(
        (got["from"].as_u64(), got["text"].as_str()),
        (Some(bob_id), Some("plain words"))
    );

    // Bob disconnects without any message being sent to him: he is removed at once.
    drop(bob);
    wait_metric(addr, &support::open_series("sse_chat", "sse"), 1).await;
    let answer = post(addr, &format!("/sse/chat/{bob_id}"), "anyone?").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = post(addr, "/sse/chat/not-a-number", "x").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn notifications_keep_publisher_stamps_and_send_keepalives() {
    let config = ServerConfig {
        keepalive: Duration::from_millis(30),
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut client = SseClient::connect(addr, "/sse/notifications").await;
    client.wait_comments(2).await;

    let answer = post(
        addr,
        "/sse/notifications",
        r#"{"seq":77,"ts":123456,"body":"x"}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(json(&answer.body)["subscribers"], 1);
    let event = client.next().await;
    assert_eq!(event.event_type, "notification");
    assert_eq!(event.last_event_id, "1");
    assert_eq!(
        Stamp::decode(&event.data),
        Ok(Stamp {
            seq: 77,
            ts: 123_456
        })
    );

    post(addr, "/sse/notifications", "").await;
    let event = client.next().await;
    let stamp = Stamp::decode(&event.data).expect("server-stamped");
    assert_eq!(stamp.seq, 2);
    assert!(stamp.ts > 0);
}

/// Events put the keep-alive off and never stop it: once they stop, comments come again
/// (the stream polls its keep-alive timer only when it may be due).
#[tokio::test]
async fn keepalives_resume_after_a_burst_of_events() {
    let config = ServerConfig {
        keepalive: Duration::from_millis(40),
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut client = SseClient::connect(addr, "/sse/notifications").await;
    client.wait_comments(1).await;
    for _ in 0..20 {
        post(addr, "/sse/notifications", "").await;
        assert_eq!(client.next().await.event_type, "notification");
    }
    let seen = client.comments();
    client.wait_comments(seen + 3).await;
}

#[tokio::test]
async fn publish_bodies_are_validated() {
    let config = ServerConfig {
        max_body_bytes: 64,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    for (body, status, needle) in [
        ("[1,2]", StatusCode::BAD_REQUEST, "JSON object"),
        ("{not json", StatusCode::BAD_REQUEST, "not valid JSON"),
        (r#"{"seq":-1}"#, StatusCode::BAD_REQUEST, "`seq`"),
        (r#"{"ts":"now"}"#, StatusCode::BAD_REQUEST, "`ts`"),
        (&"x".repeat(100), StatusCode::PAYLOAD_TOO_LARGE, "64 bytes"),
    ] {
        for path in ["/sse/notifications", "/sse/replay"] {
            let answer = post(addr, path, body).await;
            assert_eq!(answer.status, status, "{path} {body}");
            assert!(
                answer.body.contains(needle),
                "{path} {body}: {}",
                answer.body
            );
        }
    }
    let answer = support::call(
        addr,
        hyper::Method::POST,
        "/sse/notifications",
        &[],
        vec![0xFFu8, 0xFE],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("UTF-8"));
}

async fn publish_n(addr: std::net::SocketAddr, path: &str, n: u64) {
    for _ in 0..n {
        assert_eq!(post(addr, path, "{}").await.status, StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn replay_resumes_exactly_after_last_event_id() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    publish_n(addr, "/sse/replay", 10).await;
    let mut client = SseClient::open(addr, "/sse/replay", &[("last-event-id", "6")]).await;
    assert_eq!(client.status, StatusCode::OK);
    publish_n(addr, "/sse/replay", 2).await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..6 {
            ids.push(client.next().await.last_event_id);
        }
        ids
    };
    assert_eq!(
        ids,
        ["7", "8", "9", "10", "11", "12"],
        "no gap, no duplicate"
    );
}

#[tokio::test]
async fn replay_reports_events_lost_from_the_ring() {
    let config = ServerConfig {
        replay_capacity: 5,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    publish_n(addr, "/sse/replay", 12).await;
    let mut client = SseClient::open(addr, "/sse/replay", &[("last-event-id", "3")]).await;
    let lost = client.next().await;
    assert_eq!(lost.event_type, "lost");
    let notice = json(&lost.data);
    assert_eq!(
        notice["missed"], 4,
        "events 4..=7 fell out of a 5-event ring"
    );
    assert_eq!(notice["first_available"], 8);
    for id in 8..=12 {
        assert_eq!(client.next().await.last_event_id, id.to_string());
    }
}

#[tokio::test]
async fn replay_drop_after_ends_the_stream_and_resume_continues_it() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut first = SseClient::connect(addr, "/sse/replay?drop_after=3").await;
    publish_n(addr, "/sse/replay", 5).await;
    let events = first.drain_to_end().await;
    let ids: Vec<&str> = events.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    wait_metric(
        addr,
        &support::closed_series("replay", "sse", "stream_end"),
        1,
    )
    .await;
    let last = first.parser.last_event_id().to_owned();
    let mut second = SseClient::open(addr, "/sse/replay", &[("last-event-id", &last)]).await;
    assert_eq!(second.next().await.last_event_id, "4");
    assert_eq!(second.next().await.last_event_id, "5");
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_how_many_it_missed() {
    let config = ServerConfig {
        client_queue: 4,
        max_body_bytes: 1 << 20,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let mut slow = SseClient::connect(addr, "/sse/notifications").await;
    // Large events while the client reads nothing: socket buffers fill, the stream blocks,
    // the 4-slot queue overflows.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(256 * 1024));
    let total = 120u64;
    for _ in 0..total {
        post(addr, "/sse/notifications", &big).await;
    }
    let (mut received, mut missed) = (0u64, 0u64);
    while received + missed < total {
        let event = slow.next().await;
        match event.event_type.as_str() {
            "notification" => received += 1,
            "lagged" => missed += json(&event.data)["missed"].as_u64().expect("missed"),
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(missed > 0, "the queue of 4 must have overflowed");
    assert_eq!(
        received + missed,
        total,
        "every event is either delivered or reported"
    );
    let lagged = support::metric(
        addr,
        "rt_messages_lagged_total{scenario=\"notifications\",protocol=\"sse\"}",
    )
    .await;
    assert_eq!(lagged, missed);
}

#[tokio::test]
async fn dashboard_stream_reports_open_connections() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let _counter = SseClient::connect(addr, "/sse/counter").await;
    let mut dash = SseClient::connect(addr, "/sse/metrics?interval_ms=50").await;
    let event = dash.next().await;
    assert_eq!(event.event_type, "metrics");
    let snapshot = json(&event.data);
    assert_eq!(snapshot["open_total"], 2);
    let counter = snapshot["scenarios"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["scenario"] == "counter"))
        .expect("counter row");
    assert_eq!(counter["open"], 1);
}

/// Reads an HTTP/1.1 response with a chunked body from `stream` until `events` events (SSE
/// `data:` lines) arrived; returns the events' `seq` stamps in order and how many events each
/// chunk carried.
async fn read_chunked_events(
    stream: &mut tokio::net::TcpStream,
    events: usize,
) -> (Vec<u64>, Vec<usize>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("head line");
        if line == "\r\n" {
            break;
        }
        assert!(!line.is_empty(), "connection closed inside the head");
    }
    let (mut seqs, mut per_chunk) = (Vec::new(), Vec::new());
    while seqs.len() < events {
        line.clear();
        reader.read_line(&mut line).await.expect("chunk size");
        let size = usize::from_str_radix(line.trim_end(), 16).expect("hex chunk size");
        assert!(size > 0, "the stream ended after {} events", seqs.len());
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).await.expect("chunk");
        assert!(chunk.ends_with(b"\r\n"), "chunk not closed by CRLF");
        let text = String::from_utf8(chunk).expect("utf-8");
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        per_chunk.push(data.len());
        for d in data {
            let v: serde_json::Value = serde_json::from_str(d).expect("json event");
            seqs.push(v["seq"].as_u64().expect("seq"));
        }
    }
    (seqs, per_chunk)
}

#[tokio::test]
async fn events_queued_while_a_subscriber_is_not_reading_go_out_in_one_write() {
    let config = ServerConfig {
        max_body_bytes: 1 << 20,
        client_queue: 1024,
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    // A stream that does not read for now.
    let mut stream = support::non_reading_subscriber(addr).await;
    // 10 MiB of events: more than the socket buffers hold, so the server's writes wait and
    // the rest queue up for the subscriber.
    let pad = "x".repeat(256 * 1024);
    for seq in 1..=40 {
        let body = format!("{{\"seq\":{seq},\"ts\":1,\"pad\":\"{pad}\"}}");
        assert_eq!(
            post(addr, "/sse/notifications", &body).await.status,
            StatusCode::ACCEPTED
        );
    }
    let (seqs, per_chunk) = read_chunked_events(&mut stream, 40).await;
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<u64>>(),
        "every event, in order"
    );
    // The events that queued while the socket was full left in shared chunks (one write
    // each), not one chunk per event.
    assert!(
        per_chunk.iter().any(|&n| n >= 2) && per_chunk.len() < 40,
        "events per chunk: {per_chunk:?}"
    );
}
