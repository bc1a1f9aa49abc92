//! Delay injection on the counter and WS echo, and the truth histograms on `/metrics`.

use futures_util::SinkExt;
use hyper::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, SseClient, metric, wait_metric, ws, ws_text};

fn truth(scenario: &str, protocol: &str, part: &str) -> String {
    let labels = format!("scenario=\"{scenario}\",protocol=\"{protocol}\"");
    match part {
        "count" => format!("rt_truth_us_count{{{labels}}}"),
        q => format!("rt_truth_us{{{labels},quantile=\"{q}\"}}"),
    }
}

#[tokio::test]
async fn counter_holds_every_kth_event_and_records_what_it_did() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    assert_eq!(metric(addr, &truth("counter", "sse", "count")).await, 0);
    // An ordinary stream records nothing.
    let mut plain = SseClient::connect(addr, "/sse/counter?interval_ms=5").await;
    for _ in 0..3 {
        plain.next().await;
    }
    let mut client =
        SseClient::connect(addr, "/sse/counter?interval_ms=5&delay_every=4&delay_ms=30").await;
    for k in 1..=12u64 {
        let event = client.next().await;
        let stamp = wire::Stamp::decode(&event.data).expect("stamped");
        assert_eq!(stamp.seq, k, "held events keep their order and seq");
    }
    drop(client);
    let count = metric(addr, &truth("counter", "sse", "count")).await;
    assert!(
        (12..=14).contains(&count),
        "one sample per event written: {count}"
    );
    // 3 of 12 events (25%) were held 30 ms past their slot: p90 and the max are at least that.
    assert!(metric(addr, &truth("counter", "sse", "0.9")).await >= 30_000);
    assert!(metric(addr, &truth("counter", "sse", "1")).await >= 30_000);
}

#[tokio::test]
async fn counter_ends_after_count_events() {
    let server = support::start(support::config()).await;
    let mut client =
        SseClient::connect(server.local_addr(), "/sse/counter?interval_ms=1&count=3").await;
    for k in 1..=3u64 {
        let event = client.next().await;
        assert_eq!(wire::Stamp::decode(&event.data).map(|s| s.seq), Ok(k));
    }
    assert!(
        client.drain_to_end().await.is_empty(),
        "the stream ends after 3 events"
    );
}

#[tokio::test]
async fn echo_holds_every_kth_reply_and_records_what_it_did() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut socket = ws(addr, "/ws/echo?delay_every=2&delay_ms=20").await;
    for i in 0..6 {
        socket
            .send(Message::text(format!("m{i}")))
            .await
            .expect("send");
        assert_eq!(ws_text(&mut socket).await, format!("m{i}"));
    }
    wait_metric(addr, &truth("ws_echo", "ws", "count"), 6).await;
    // 3 of 6 echoes were held 20 ms: p90 and the max are at least that.
    assert!(metric(addr, &truth("ws_echo", "ws", "0.9")).await >= 20_000);
    assert!(metric(addr, &truth("ws_echo", "ws", "1")).await >= 20_000);
}

#[tokio::test]
async fn bad_injection_queries_are_400_naming_the_parameter() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    for (path, words) in [
        ("/sse/counter?delay_every=3", "give both"),
        ("/sse/counter?delay_every=0&delay_ms=5", "delay_every"),
        ("/sse/counter?delay_every=2&delay_ms=999999", "delay_ms"),
        ("/ws/echo?delay_ms=5", "give both"),
    ] {
        let answer = support::get(addr, path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer.body.contains(words), "{path}: {}", answer.body);
    }
}
