//! `/metrics` counts match exactly the clients a test opened and closed, per scenario.

use crate::support::{self, SseClient, closed_series, open_series, wait_metric, ws};

const N: u64 = 5;

const SSE: [(&str, &str); 6] = [
    ("counter", "/sse/counter"),
    ("sse_chat", "/sse/chat"),
    ("stocks", "/sse/stocks"),
    ("notifications", "/sse/notifications"),
    ("replay", "/sse/replay"),
    ("dashboard", "/sse/metrics"),
];

const WS: [(&str, &str); 4] = [
    ("ws_echo", "/ws/echo"),
    ("ws_chat", "/ws/chat"),
    ("rooms", "/ws/rooms"),
    ("pubsub", "/ws/pubsub"),
];

#[tokio::test]
async fn open_and_closed_counts_are_exact_for_every_scenario() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let mut sse = Vec::new();
    let mut sockets = Vec::new();
    for (_, path) in SSE {
        for _ in 0..N {
            sse.push(SseClient::connect(addr, path).await);
        }
    }
    for (_, path) in WS {
        for _ in 0..N {
            sockets.push(ws(addr, path).await);
        }
    }
    // WS sessions start right after the 101; poll until every one is registered.
    for (scenario, _) in SSE {
        wait_metric(addr, &open_series(scenario, "sse"), N).await;
    }
    for (scenario, _) in WS {
        wait_metric(addr, &open_series(scenario, "ws"), N).await;
    }
    wait_metric(addr, "rt_connections_open_total", N * 10).await;

    drop(sse);
    for mut socket in sockets {
        socket.close(None).await.expect("close handshake");
    }
    for (scenario, _) in SSE {
        wait_metric(addr, &open_series(scenario, "sse"), 0).await;
        wait_metric(addr, &closed_series(scenario, "sse", "client"), N).await;
        let accepted =
            format!("rt_connections_accepted_total{{scenario=\"{scenario}\",protocol=\"sse\"}}");
        assert_eq!(support::metric(addr, &accepted).await, N, "{scenario}");
    }
    for (scenario, _) in WS {
        wait_metric(addr, &open_series(scenario, "ws"), 0).await;
        wait_metric(addr, &closed_series(scenario, "ws", "client"), N).await;
    }
    wait_metric(addr, "rt_connections_open_total", 0).await;
    assert!(support::metric(addr, "process_resident_memory_bytes").await > 0);
}
