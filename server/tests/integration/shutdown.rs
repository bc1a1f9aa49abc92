//! Graceful shutdown: SSE streams end cleanly, WebSockets get Close 1001, the process exits.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use crate::support::{self, DEADLINE, SseClient, closed_series, ws, ws_close_code};

#[tokio::test]
async fn shutdown_ends_sse_streams_and_sends_close_1001() {
    let server = support::start(support::config()).await;
    let addr = server.local_addr();
    let metrics = server.metrics();
    let mut stream = SseClient::connect(addr, "/sse/notifications").await;
    let mut socket = ws(addr, "/ws/chat").await;
    support::wait_metric(addr, "rt_connections_open_total", 2).await;

    let stopping = tokio::spawn(server.shutdown(Duration::from_secs(5)));
    // The stream ends cleanly (no transport error: `drain_to_end` panics on one).
    assert!(stream.drain_to_end().await.is_empty());
    // The socket gets Close 1001 (after its welcome message).
    assert_eq!(ws_close_code(&mut socket).await, 1001);
    drop(socket);
    timeout(DEADLINE, stopping)
        .await
        .expect("server stops within the deadline")
        .expect("shutdown task");
    let text = metrics.render(0);
    assert!(
        text.contains(&format!(
            "{} 1",
            closed_series("notifications", "sse", "shutdown")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 1", closed_series("ws_chat", "ws", "shutdown"))),
        "{text}"
    );
    assert_eq!(metrics.open_total(), 0);
}

#[tokio::test]
async fn binary_exits_cleanly_on_sigterm_after_ending_streams() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rt-server"))
        .args(["--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rt-server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(rest) = line.split("local_addr=").nth(1) {
                return rest
                    .trim()
                    .parse::<std::net::SocketAddr>()
                    .expect("addr in log");
            }
        }
        panic!("rt-server exited without logging its address");
    })
    .await
    .expect("address logged within deadline");
    let mut stream = SseClient::connect(addr, "/sse/counter?interval_ms=10").await;
    stream.next().await;

    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    // Remaining ticks may arrive; then the stream must end without a transport error.
    stream.drain_to_end().await;
    let status = timeout(DEADLINE, child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "rt-server exit status {status}");
}
