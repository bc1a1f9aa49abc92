//! Where connections go: a group's own `targets` (round-robin over servers behind no
//! balancer, IPv4 and IPv6 literals), the run target's host name resolved once.

use crate::support;

/// `rt_connections_accepted_total` of the SSE counter on `server`.
fn counter_streams(server: &server::RunningServer) -> f64 {
    let text = server.metrics().render(0);
    let scrape = loadgen::live::target::parse_metrics(&text);
    scrape
        .iter()
        .filter(|(k, _)| k.starts_with("rt_connections_accepted_total{") && k.contains("counter"))
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test]
async fn a_group_spreads_its_connections_over_its_targets_ipv4_and_ipv6() {
    let v4 = server::start(server::ServerConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("IPv4 server");
    let v6 = server::start(
        server::ServerConfig::default(),
        "[::1]:0".parse().expect("addr"),
    )
    .await
    .expect("IPv6 loopback server (needs ::1 on lo)");
    let scenario = format!(
        r#"
[run]
duration = "300ms"

[[clients]]
protocol = "sse"
path = "/sse/counter?interval_ms=50"
count = 10
reconnect = false
targets = ["http://127.0.0.1:{}", "http://[::1]:{}"]
"#,
        v4.local_addr().port(),
        v6.local_addr().port()
    );
    let dir = support::temp_dir("targets");
    // The run's own target is a third server that this group never uses.
    let run_target = server::start(server::ServerConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("run target");
    let options = support::options(
        support::scenario(&scenario),
        Some(run_target.local_addr()),
        &dir,
    );
    let report = loadgen::run(options).await.expect("run");
    assert_eq!(
        report.counters.connections_established, 10,
        "{:?}",
        report.error_samples
    );
    assert_eq!(counter_streams(&v4), 5.0);
    assert_eq!(counter_streams(&v6), 5.0);
    assert_eq!(counter_streams(&run_target), 0.0);
}

#[tokio::test]
async fn localhost_is_resolved_and_the_host_header_carries_the_name() {
    let handler: support::Handler = std::sync::Arc::new(|_seen, mut stream| {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = stream.write_all(support::SSE_HEAD).await;
            let _ = stream.write_all(b"data: hello\n\n").await;
            support::hold_open(stream).await;
        })
    });
    let (addr, seen) = support::fake_server(handler).await;
    let dir = support::temp_dir("localhost");
    let mut options = support::options(
        support::scenario(
            "[run]\nduration = \"200ms\"\n\n[[clients]]\nprotocol = \"sse\"\npath = \"/s\"\ncount = 2\nreconnect = false\nstamp = \"none\"\n",
        ),
        None,
        &dir,
    );
    options.target = Some(
        loadgen::scenario::TargetUrl::parse(&format!("http://localhost:{}", addr.port()))
            .expect("url"),
    );
    let report = loadgen::run(options).await.expect("run");
    assert_eq!(report.counters.connections_established, 2);
    let hosts: Vec<String> = seen
        .lock()
        .expect("log")
        .iter()
        .filter_map(|r| r.header("host").map(str::to_owned))
        .collect();
    assert!(!hosts.is_empty());
    assert!(
        hosts
            .iter()
            .all(|h| *h == format!("localhost:{}", addr.port())),
        "{hosts:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_refused_clearly_with_where_it_pointed() {
    let handler: support::Handler = std::sync::Arc::new(|_seen, mut stream| {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = stream
                .write_all(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: https://elsewhere.example/events\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        })
    });
    let (addr, seen) = support::fake_server(handler).await;
    let dir = support::temp_dir("redirect");
    let options = support::options(
        support::scenario(
            "[run]\nduration = \"200ms\"\n\n[[clients]]\nprotocol = \"sse\"\npath = \"/old\"\ncount = 2\n",
        ),
        Some(addr),
        &dir,
    );
    let report = loadgen::run(options).await.expect("run");
    assert_eq!(report.exit_code(), 3);
    assert_eq!(report.counters.failed_status, 2);
    // EventSource does not retry after a failed connection: one attempt each.
    assert_eq!(report.counters.connections_attempted, 2);
    let errors = report.error_samples.join(" | ");
    assert!(
        errors.contains("307")
            && errors.contains("https://elsewhere.example/events")
            && errors.contains("not followed"),
        "{errors}"
    );
    let gets = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|r| r.path == "/old")
        .count();
    assert_eq!(gets, 2);
}
