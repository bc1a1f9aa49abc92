//! Helpers: temp dirs, run options, and a scriptable fake HTTP server.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use loadgen::scenario::Scenario;
use loadgen::{Progress, RunOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

pub(crate) fn loadgen_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadgen"))
}

/// Runs `loadgen ARGS` to the end, without the environment variables its flags read (so a
/// developer's shell cannot change what a test checks).
pub(crate) fn loadgen(args: &[&str]) -> std::process::Output {
    std::process::Command::new(loadgen_exe())
        .args(args)
        .env_remove("LOADGEN_TARGET")
        .env_remove("LOADGEN_TOKEN")
        .env_remove("LOADGEN_SHARD")
        .env_remove("LOADGEN_START_AT")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .expect("run loadgen")
}

pub(crate) fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A fresh, empty directory under the system temp dir, removed (with everything in it) when
/// dropped; derefs to its path.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `loadgen serve` on a free loopback port, killed when dropped.
pub(crate) struct Target {
    child: std::process::Child,
    /// `http://<addr>`.
    pub(crate) url: String,
}

impl Target {
    /// `loadgen serve` on a free loopback port.
    pub(crate) fn start() -> Self {
        Self::start_with(std::process::Command::new(loadgen_exe()), "127.0.0.1")
    }

    /// `loadgen serve` started by `command` (e.g. inside a namespace), listening on `ip`.
    pub(crate) fn start_with(mut command: std::process::Command, ip: &str) -> Self {
        let mut child = command
            .args([
                "serve",
                "--listen",
                &format!("{ip}:0"),
                "--client-queue",
                "4096",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start loadgen serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("port line");
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("no LISTENING line: {line:?}"))
            .to_owned();
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    /// The target's `/metrics` series whose names start with `prefix`, summed (blocking GET).
    pub(crate) fn metric_sum(&self, prefix: &str) -> f64 {
        use std::io::{Read as _, Write as _};
        let addr = self.url.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return 0.0;
        };
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        loadgen::live::target::parse_metrics(&text)
            .iter()
            .filter(|(series, _)| series.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

/// A [`TempDir`] named after `name`.
pub(crate) fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "loadgen-{name}-{}-{}",
        std::process::id(),
        wire::now_unix_us()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// Options for a quiet run writing into `out`.
pub(crate) fn options(scenario: Scenario, target: Option<SocketAddr>, out: &Path) -> RunOptions {
    RunOptions {
        scenario,
        scenario_file: None,
        target: target.map(loadgen::scenario::TargetUrl::plain),
        resolve: Vec::new(),
        tls: loadgen::live::transport::TlsOptions::default(),
        token: None,
        out: Some(out.to_owned()),
        results_root: out.to_owned(),
        server_exe: Some(loadgen_exe()),
        progress: Progress::Quiet,
        command_line: vec!["test".to_owned()],
        cancel: None,
        raw_samples: None,
        seed: loadgen::live::run::DEFAULT_SEED,
        start_at: None,
    }
}

/// rt-server with its defaults on a loopback port, in this process.
pub(crate) async fn rt_server() -> server::RunningServer {
    server::start(server::ServerConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("server")
}

/// Runs the inline scenario `text` against `server`, quietly, into a temp dir named `name`.
pub(crate) async fn run_against(
    server: &server::RunningServer,
    name: &str,
    text: &str,
) -> loadgen::results::report::Report {
    let dir = temp_dir(name);
    loadgen::run(options(scenario(text), Some(server.local_addr()), &dir))
        .await
        .expect("runs")
}

/// Parses a scenario given inline.
pub(crate) fn scenario(text: &str) -> Scenario {
    loadgen::scenario::parse(text, Path::new("inline.toml")).expect("valid inline scenario")
}

/// One request a fake server saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) last_event_id: Option<String>,
    pub(crate) at: Instant,
    /// Every header line, name lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    /// The client's address.
    pub(crate) peer: SocketAddr,
}

impl Seen {
    /// The value of header `name` (lower case), if sent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Reply = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Writes the whole response for one request on the stream (then the connection closes).
pub(crate) type Handler = Arc<dyn Fn(Seen, TcpStream) -> Reply + Send + Sync>;

/// A fake HTTP/1.1 server on 127.0.0.1:0; `/metrics` and unknown paths are the handler's.
pub(crate) async fn fake_server(handler: Handler) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let last_event_id = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("last-event-id: ")
                            .or_else(|| l.strip_prefix("Last-Event-ID: "))
                    })
                    .map(str::to_owned);
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let request = Seen {
                    path,
                    last_event_id,
                    at: Instant::now(),
                    headers,
                    peer,
                };
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(request.clone());
                handler(request, stream).await;
            });
        }
    });
    (addr, seen)
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Response head of an event stream that ends when the connection closes.
pub(crate) const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

/// A plain response with no body.
pub(crate) async fn respond(mut stream: TcpStream, status_line: &str, content_type: &str) {
    let text = format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: {content_type}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = stream.write_all(text.as_bytes()).await;
}

/// One stamped SSE event with an id.
pub(crate) fn event(id: u64, seq: u64, ts: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let data = format!("{{\"seq\":{seq},\"ts\":{ts}}}");
    let id = id.to_string();
    wire::sse::encode_event(&mut out, None, Some(&id), &data).expect("valid event");
    out
}

/// Keeps the connection open until the client goes away (bounded).
pub(crate) async fn hold_open(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
}

/// `name`'s value in a run directory's `counters.csv`.
pub(crate) fn counter(dir: &Path, name: &str) -> u64 {
    let csv = std::fs::read_to_string(dir.join("counters.csv")).expect("counters.csv");
    csv.lines()
        .find_map(|l| {
            let mut f = l.split(',');
            (f.next() == Some(name)).then(|| f.next().expect("value").parse().expect("integer"))
        })
        .unwrap_or_else(|| panic!("no counter {name} in {}", dir.display()))
}

/// `metric`'s row of a run directory's `summary.csv` (µs): count, min, p50, p90, p99, p99.9,
/// max.
pub(crate) fn summary_of(dir: &Path, metric: &str) -> Vec<u64> {
    let csv = std::fs::read_to_string(dir.join("summary.csv")).expect("summary.csv");
    let row = csv
        .lines()
        .find(|l| l.starts_with(&format!("{metric},")))
        .unwrap_or_else(|| panic!("no {metric} row in {}", dir.display()));
    let f: Vec<&str> = row.split(',').collect();
    // metric,count,min,mean,p50,p90,p99,p99.9,max,unit
    [1, 2, 4, 5, 6, 7, 8]
        .iter()
        .map(|&i| f[i].parse().expect("integer"))
        .collect()
}

/// The Unix second `seconds` from now: a start shared by `--start-at` runs and a test's
/// schedule of faults.
pub(crate) fn start_in(seconds: u64) -> u64 {
    wire::now_unix_us() / 1_000_000 + seconds
}

/// Sleeps until `ms` milliseconds past the Unix second `start`: the fault schedule.
pub(crate) fn sleep_until(start: u64, ms: u64) {
    let at_us = start * 1_000_000 + ms * 1000;
    let now = wire::now_unix_us();
    if at_us > now {
        std::thread::sleep(Duration::from_micros(at_us - now));
    }
}

/// A path as `&str` (test paths are UTF-8).
pub(crate) fn text(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Waits (at most 30 s, polling every 50 ms) until `ready` holds.
pub(crate) fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The children of process `pid` (every thread's), from `/proc`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `loadgen run FILE --quiet --out RUN_DIR --start-at START` (a Unix second), output piped.
pub(crate) fn run_starting_at(file: &Path, run_dir: &Path, start: u64) -> std::process::Child {
    std::process::Command::new(loadgen_exe())
        .args(["run", text(file), "--quiet", "--out", text(run_dir)])
        .args(["--start-at", &start.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start loadgen")
}

/// Sends SIGKILL to `pid` (a crash, as the OOM killer would).
pub(crate) fn kill_hard(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -KILL {pid}");
}
