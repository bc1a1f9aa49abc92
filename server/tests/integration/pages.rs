//! The combined router's index and browser pages are served and link to each other.

use hyper::StatusCode;

use crate::support;

#[tokio::test]
async fn index_and_pages_are_served_as_html() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let index = support::get(addr, "/").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(
        index.headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    for link in [
        "/pages/counter",
        "/pages/chat",
        "/pages/dashboard",
        "/metrics",
        "/healthz",
    ] {
        assert!(
            index.body.contains(&format!("href=\"{link}\"")),
            "index lacks {link}"
        );
    }
    for route in [
        "/sse/counter",
        "/sse/chat",
        "/sse/stocks",
        "/sse/notifications",
        "/sse/replay",
        "/ws/echo",
        "/ws/chat",
        "/ws/rooms",
        "/ws/pubsub",
        "/publish/",
    ] {
        assert!(index.body.contains(route), "index lacks {route}");
    }
    for (page, uses) in [
        ("/pages/counter", "new EventSource"),
        ("/pages/chat", "new WebSocket"),
        ("/pages/dashboard", "/sse/metrics"),
    ] {
        let answer = support::get(addr, page).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}");
        assert!(answer.body.contains(uses), "{page} does not use {uses}");
    }
    // /healthz tells the server's wall clock (clients estimate their clock offset from it):
    // one clock here, so it lies between the request and the answer.
    let before = wire::now_unix_us();
    let health = support::get(addr, "/healthz").await;
    let after = wire::now_unix_us();
    assert_eq!(health.body, "ok\n");
    let told: u64 = health.headers[wire::SERVER_TIME_HEADER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Unix microseconds");
    assert!(
        (before..=after).contains(&told),
        "{before} <= {told} <= {after}"
    );
}
