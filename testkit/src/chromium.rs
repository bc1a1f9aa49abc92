//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol.
//!
//! `.ci/run` installs Chromium when it is missing. Without it a browser test fails, naming the
//! package to install: a test that did not run never counts as passed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, interval, timeout};
use tokio_tungstenite::tungstenite::Message;

/// How long Chromium may take for anything (start, load, answer) on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The Chromium binary: `$CHROMIUM`, else the usual install paths.
#[must_use]
pub fn find() -> Option<PathBuf> {
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

/// The Chromium binary.
///
/// # Panics
/// When Chromium is not installed: the message names the package (`apt-get install chromium`,
/// which `.ci/run` does) and `$CHROMIUM` for another path.
#[must_use]
pub fn require() -> PathBuf {
    find().unwrap_or_else(|| {
        panic!(
            "chromium is not installed: this browser test needs Debian's `chromium` \
             (apt-get install chromium; .ci/run installs it), or set CHROMIUM to a Chrome binary"
        )
    })
}

/// A running Chromium with its own profile; killed and cleaned up when dropped.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One page's DevTools session. Console errors and uncaught exceptions seen while waiting for
/// answers collect in `problems`.
pub struct Page {
    ws: Socket,
    next_id: u64,
    /// Console errors and exceptions, as DevTools reported them.
    pub problems: Vec<String>,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("next_id", &self.next_id)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

/// Starts Chromium showing `url` and attaches to that page (console and exceptions enabled).
///
/// # Panics
/// When Chromium does not start, or the page does not open, within [`DEADLINE`].
pub async fn open(binary: &Path, url: &str) -> (Browser, Page) {
    let browser = launch(binary, url);
    let port = devtools_port(&browser.profile).await;
    let page_key = url.split('?').next().unwrap_or(url);
    let started = Instant::now();
    let mut poll = interval(Duration::from_millis(100));
    let debugger_url = loop {
        poll.tick().await;
        // DevTools may not accept connections yet: keep polling until the deadline.
        let list = http_get(port, "/json/list").await.unwrap_or_default();
        let targets: Value = serde_json::from_str(&list).unwrap_or(Value::Null);
        let found = targets.as_array().and_then(|all| {
            all.iter().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains(page_key))
            })
        });
        if let Some(url) = found.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
            break url.to_owned();
        }
        assert!(started.elapsed() < DEADLINE, "{url} never opened: {list}");
    };
    let (ws, _) = tokio_tungstenite::connect_async(debugger_url)
        .await
        .expect("DevTools WebSocket");
    let mut page = Page {
        ws,
        next_id: 0,
        problems: Vec::new(),
    };
    page.call("Runtime.enable", json!({})).await;
    page.call("Log.enable", json!({})).await;
    (browser, page)
}

fn launch(binary: &Path, url: &str) -> Browser {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // One profile per browser: two Chromiums sharing one hand their pages to one process.
    let profile = std::env::temp_dir().join(format!(
        "testkit-chromium-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&profile);
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
            "--hide-scrollbars",
            "--window-size=1200,900",
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
    Browser { child, profile }
}

/// Chromium writes the port it picked to `DevToolsActivePort` in the profile.
async fn devtools_port(profile: &Path) -> u16 {
    let port_file = profile.join("DevToolsActivePort");
    let started = Instant::now();
    let mut poll = interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        // Complete once it has both lines (port, then browser path); a partly written file
        // could hold a truncated port.
        let contents = std::fs::read_to_string(&port_file).unwrap_or_default();
        let mut lines = contents.lines();
        if let (Some(port), Some(_path)) = (lines.next(), lines.next())
            && let Ok(port) = port.trim().parse::<u16>()
        {
            return port;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "chromium did not open DevTools"
        );
    }
}

/// Body of `GET path` on the DevTools HTTP endpoint, `None` while it is not up.
///
/// DevTools keeps the connection open after answering and builds its URLs from the `Host`
/// header, so the request names the port and the body is read by `Content-Length`.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            response.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&response);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })?;
                if body.len() >= length {
                    return Some(body.to_owned());
                }
            }
        }
    };
    timeout(Duration::from_secs(5), read).await.ok()?
}

impl Page {
    /// Sends a DevTools command and returns its result, noting console errors on the way.
    ///
    /// # Panics
    /// When the command fails or no answer comes within [`DEADLINE`].
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let cmd = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(cmd.to_string()))
            .await
            .expect("send DevTools command");
        loop {
            let msg = timeout(DEADLINE, self.ws.next())
                .await
                .expect("DevTools answer within the deadline")
                .expect("DevTools socket open")
                .expect("DevTools frame");
            let Message::Text(text) = msg else { continue };
            let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
            match value["method"].as_str() {
                Some("Runtime.exceptionThrown") => self.problems.push(value["params"].to_string()),
                Some("Runtime.consoleAPICalled") if value["params"]["type"] == "error" => {
                    self.problems.push(value["params"].to_string());
                }
                Some("Log.entryAdded") if value["params"]["entry"]["level"] == "error" => {
                    self.problems.push(value["params"]["entry"].to_string());
                }
                _ => {}
            }
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method} failed: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Polls `expression` until `accept` holds for its value; returns that value.
    ///
    /// # Panics
    /// When it does not hold within [`DEADLINE`].
    pub async fn wait_for(&mut self, expression: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        let mut poll = interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            let value = self.eval(expression).await;
            if accept(&value) {
                return value;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{expression} stuck at {value}"
            );
        }
    }

    /// A PNG of the whole page (beyond the window), decoded from DevTools' base64.
    ///
    /// # Panics
    /// When DevTools returns something that is not base64.
    pub async fn screenshot_png(&mut self) -> Vec<u8> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or(""))
            .expect("screenshot is base64")
    }
}

/// Width and height of a PNG, from its IHDR chunk; `None` when `bytes` is not a PNG.
#[must_use]
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || !bytes.starts_with(SIGNATURE) || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some((word(16), word(20)))
}
