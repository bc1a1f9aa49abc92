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
    assert_eq!(support::get(addr, "/healthz").await.body, "ok\n");
}
