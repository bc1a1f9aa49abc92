//! The counter page in real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol: the count shown must advance, with no console errors or exceptions.
//!
//! `.ci/run` installs Chromium when it is missing; without it these tests fail, naming the
//! package.

use testkit::chromium::{self, Browser, Page};

use crate::support;

/// Opens `path` of a fresh server in Chromium (fails naming the package when it is missing).
async fn open_page(path: &str) -> (server::RunningServer, Browser, Page) {
    let binary = chromium::require();
    let server = support::start(support::config()).await;
    let url = format!("http://{}{path}", server.local_addr());
    let (browser, page) = chromium::open(&binary, &url).await;
    (server, browser, page)
}

/// Polls `expression` (a number shown on the page) until `accept` holds; returns it.
async fn wait_number(page: &mut Page, expression: &str, accept: impl Fn(u64) -> bool) -> u64 {
    let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    let shown = page
        .wait_for(expression, |v| number(v).is_some_and(&accept))
        .await;
    number(&shown).unwrap_or_default()
}

#[tokio::test]
async fn counter_page_shows_an_advancing_count_in_chromium() {
    let (server, _browser, mut page) = open_page("/pages/counter?interval_ms=100").await;
    let count = "document.getElementById('count').textContent";
    let first = wait_number(&mut page, count, |v| v >= 2).await;
    wait_number(&mut page, count, |v| v > first).await;
    assert_eq!(
        page.eval("document.getElementById('status').textContent")
            .await,
        "open"
    );
    assert!(
        page.problems.is_empty(),
        "console errors: {:?}",
        page.problems
    );
    // The server saw the browser's EventSource as one counter stream.
    let open = support::metric(server.local_addr(), &support::open_series("counter", "sse")).await;
    assert_eq!(open, 1);
}

#[tokio::test]
async fn dashboard_page_shows_the_servers_live_counters_in_chromium() {
    let (server, _browser, mut page) = open_page("/pages/dashboard").await;
    let addr = server.local_addr();
    let open = "document.getElementById('open').textContent";
    // The dashboard's own stream is one open connection.
    wait_number(&mut page, open, |v| v == 1).await;
    let _extra = support::SseClient::connect(addr, "/sse/counter").await;
    let _socket = support::ws(addr, "/ws/echo").await;
    wait_number(&mut page, open, |v| v == 3).await;
    let rows = page
        .eval("document.querySelectorAll('#rows tr').length")
        .await;
    assert_eq!(rows, 10, "one row per scenario");
    assert!(
        page.problems.is_empty(),
        "console errors: {:?}",
        page.problems
    );
}
