//! The counter page in real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol: the count shown must advance, with no console errors or exceptions.
//!
//! `.ci/run` installs Chromium when it is missing. Under CI (`CI` set) a missing browser fails
//! the test; on a developer machine without Chromium the test says so loudly and returns.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::{Instant, interval, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, Ws};

/// Chromium can take a while to start on a loaded 2-core machine.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn launch(binary: &PathBuf, url: &str) -> (Browser, u16) {
    // One profile per test: two Chromiums sharing a profile hand their pages to one process.
    let page: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let profile = std::env::temp_dir().join(format!(
        "rt-browser-{}-{page}-{}",
        std::process::id(),
        wire::now_unix_us()
    ));
    std::fs::create_dir_all(&profile).expect("profile dir");
    let child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let browser = Browser { child, profile };
    // Chromium writes the port it picked to DevToolsActivePort in the profile.
    let port_file = browser.profile.join("DevToolsActivePort");
    let started = Instant::now();
    let mut poll = interval(Duration::from_millis(50));
    let port = loop {
        poll.tick().await;
        // The file is complete once it has both lines (port, then browser path); a partly
        // written file could hold a truncated port.
        let contents = std::fs::read_to_string(&port_file).unwrap_or_default();
        let mut lines = contents.lines();
        if let (Some(port), Some(_path)) = (lines.next(), lines.next())
            && let Ok(port) = port.trim().parse::<u16>()
        {
            break port;
        }
        assert!(
            started.elapsed() < BROWSER_DEADLINE,
            "chromium did not open DevTools"
        );
    };
    (browser, port)
}

struct Page {
    ws: Ws,
    next_id: u64,
    problems: Vec<String>,
}

impl Page {
    /// Sends a DevTools command and returns its result, noting console errors on the way.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let cmd = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(cmd.to_string()))
            .await
            .expect("send CDP");
        loop {
            let msg = timeout(BROWSER_DEADLINE, self.ws.next())
                .await
                .expect("CDP answer within deadline")
                .expect("CDP socket open")
                .expect("CDP frame");
            let Message::Text(text) = msg else { continue };
            let value: Value = serde_json::from_str(&text).expect("CDP JSON");
            match value["method"].as_str() {
                Some("Runtime.exceptionThrown") => self.problems.push(value["params"].to_string()),
                Some("Runtime.consoleAPICalled") if value["params"]["type"] == "error" => {
                    self.problems.push(value["params"].to_string());
                }
                _ => {}
            }
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method} failed: {value}");
                return value["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }
}

/// Opens `path` of a fresh server in Chromium; `None` when Chromium is absent outside CI.
async fn open_page(path: &str) -> Option<(server::RunningServer, Browser, Page)> {
    let Some(binary) = find_chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required under CI: install Debian's `chromium` (.ci/run does)"
        );
        eprintln!(
            "NOTICE: chromium not installed; browser test not run (set CI to make this fatal)"
        );
        return None;
    };
    let server = support::start(support::config()).await;
    let url = format!("http://{}{path}", server.local_addr());
    let (browser, port) = launch(&binary, &url).await;
    let page_path = path.split('?').next().unwrap_or(path).to_owned();

    let devtools: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let mut poll = interval(Duration::from_millis(100));
    let debugger_url = loop {
        poll.tick().await;
        // DevTools may not accept connections yet: keep polling until the deadline.
        let list = if tokio::net::TcpStream::connect(devtools).await.is_ok() {
            support::get(devtools, "/json/list").await.body
        } else {
            String::new()
        };
        let targets: Value = serde_json::from_str(&list).unwrap_or(Value::Null);
        let found = targets.as_array().and_then(|all| {
            all.iter().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains(&page_path))
            })
        });
        if let Some(url) = found.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
            break url.to_owned();
        }
        assert!(
            started.elapsed() < BROWSER_DEADLINE,
            "{path} never opened: {list}"
        );
    };
    let (ws, _) = tokio_tungstenite::connect_async(debugger_url)
        .await
        .expect("CDP connect");
    let mut page = Page {
        ws,
        next_id: 0,
        problems: Vec::new(),
    };
    page.call("Runtime.enable", json!({})).await;
    Some((server, browser, page))
}

/// Polls `expression` (a number shown on the page) until `accept` holds; returns it.
async fn wait_number(page: &mut Page, expression: &str, accept: impl Fn(u64) -> bool) -> u64 {
    let started = Instant::now();
    let mut poll = interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        let shown = page.eval(expression).await;
        let value = shown.as_str().and_then(|s| s.parse::<u64>().ok());
        if let Some(v) = value.filter(|v| accept(*v)) {
            return v;
        }
        assert!(
            started.elapsed() < BROWSER_DEADLINE,
            "{expression} stuck at {shown}"
        );
    }
}

#[tokio::test]
async fn counter_page_shows_an_advancing_count_in_chromium() {
    let Some((server, _browser, mut page)) = open_page("/pages/counter?interval_ms=100").await
    else {
        return;
    };
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
    let Some((server, _browser, mut page)) = open_page("/pages/dashboard").await else {
        return;
    };
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
