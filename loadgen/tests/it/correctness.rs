//! The measurement itself: gaps, duplicates, delays at the right percentiles, reconnects with
//! Last-Event-ID, 204, and clear failures for non-SSE answers and unreachable targets.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use loadgen::RunError;
use tokio::io::AsyncWriteExt;

use crate::support::{self, Handler, SSE_HEAD, event, fake_server, hold_open, respond};

fn one_client(path: &str, extra: &str, duration: &str) -> String {
    format!(
        r#"
[run]
duration = "{duration}"

[[clients]]
protocol = "sse"
path = "{path}"
count = 1
{extra}
"#
    )
}

/// Options for one SSE client on `path` of `addr` that expects one stream and never
/// reconnects, measuring for `duration`; writes into the returned temp dir named `name`.
fn one_stream(
    addr: std::net::SocketAddr,
    name: &str,
    path: &str,
    duration: &str,
) -> (loadgen::RunOptions, support::TempDir) {
    let dir = support::temp_dir(name);
    let scenario = support::scenario(&one_client(
        path,
        "expect = \"stream\"\nreconnect = false",
        duration,
    ));
    (support::options(scenario, Some(addr), &dir), dir)
}

fn not_found_elsewhere(path: &'static str, inner: Handler) -> Handler {
    Arc::new(move |seen, stream| {
        if seen.path.starts_with(path) {
            inner(seen, stream)
        } else {
            Box::pin(respond(stream, "404 Not Found", "text/plain"))
        }
    })
}

#[tokio::test]
async fn a_lossy_duplicating_server_yields_exact_gap_and_duplicate_counts() {
    // Sends 1..=100, skipping 10, 20, ..., 90 and sending every other multiple of 7 twice.
    let handler = not_found_elsewhere(
        "/lossy",
        Arc::new(|_, mut stream| {
            Box::pin(async move {
                let mut out = SSE_HEAD.to_vec();
                for seq in 1..=100u64 {
                    if seq % 10 == 0 && seq < 100 {
                        continue;
                    }
                    let copies = if seq % 7 == 0 { 2 } else { 1 };
                    for _ in 0..copies {
                        out.extend(event(seq, seq, wire::now_unix_us()));
                    }
                }
                let _ = stream.write_all(&out).await;
                hold_open(stream).await;
            })
        }),
    );
    let (addr, _) = fake_server(handler).await;
    let (options, _dir) = one_stream(addr, "lossy", "/lossy", "500ms");
    let report = loadgen::run(options).await.expect("runs");
    let c = report.counters;
    let dups = (1..=100u64).filter(|s| s % 7 == 0 && s % 10 != 0).count() as u64;
    assert_eq!(c.gaps, 9, "{c:?}");
    assert_eq!(c.duplicates, dups, "{c:?}");
    assert_eq!(c.messages_received, 91 + dups);
    assert_eq!(c.lost(), 9);
    assert_eq!(report.exit_code(), 1, "unexplained loss fails the run");
    assert!(
        report.failures().iter().any(|f| f.contains("lost")),
        "{:?}",
        report.failures()
    );
}

#[tokio::test]
async fn a_known_delayed_fraction_is_in_every_raw_sample_and_at_the_right_percentiles() {
    // 200 events/s; every 10th is stamped 50 ms before it is sent (it is 50 ms late). Only
    // bounds the stamps guarantee are asserted (a delayed event's latency is at least 50 ms,
    // whatever the machine does); the measured figures themselves come from `calibrate`.
    let handler = not_found_elsewhere(
        "/delay",
        Arc::new(|_, mut stream| {
            Box::pin(async move {
                if stream.write_all(SSE_HEAD).await.is_err() {
                    return;
                }
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                for seq in 1..=400u64 {
                    tick.tick().await;
                    let now = wire::now_unix_us();
                    let ts = if seq % 10 == 0 { now - 50_000 } else { now };
                    if stream.write_all(&event(seq, seq, ts)).await.is_err() {
                        return;
                    }
                }
                hold_open(stream).await;
            })
        }),
    );
    let (addr, _) = fake_server(handler).await;
    let (mut options, _dir) = one_stream(addr, "delay", "/delay", "2500ms");
    let raw_path = options.results_root.join("raw.csv");
    options.raw_samples = Some(loadgen::live::raw_samples::RawSamplesOptions {
        path: raw_path.clone(),
        limit: 1_000_000,
    });
    let report = loadgen::run(options).await.expect("runs");
    let h = report
        .histograms
        .get(loadgen::live::stats::Metric::Delivery);
    assert_eq!(report.counters.messages_received, 400);
    assert_eq!(h.len(), 400, "warm-up 0: every event is a sample");
    // 40 of 400 samples (10%) are at least 50 ms: p95 and p99 are, p90 is not forced to be.
    assert!(
        h.value_at_quantile(0.95) >= 50_000,
        "p95 {}",
        h.value_at_quantile(0.95)
    );
    assert!(h.value_at_quantile(0.99) >= 50_000);
    assert!(h.count_between(50_000, u64::MAX) >= 40);

    let text = std::fs::read_to_string(&raw_path).expect("raw samples written");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(loadgen::live::raw_samples::HEADER));
    let rows: Vec<Vec<u64>> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!((f[0], f[1], f[2]), ("0", "group1", "delivery"), "{l}");
            f[3..].iter().map(|v| v.parse().expect("number")).collect()
        })
        .collect();
    assert_eq!(rows.len() as u64, h.len(), "one row per histogram sample");
    let mut seqs: Vec<u64> = rows.iter().map(|r| r[0]).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    for r in &rows {
        let (seq, intended, received, latency) = (r[0], r[1], r[2], r[3]);
        assert_eq!(latency, received - intended);
        if seq % 10 == 0 {
            assert!(latency >= 50_000, "seq {seq}: {latency} us");
        }
    }
    let summary = report.raw_samples.expect("summary");
    assert_eq!((summary.rows, summary.not_written), (400, 0));
}

#[tokio::test]
async fn raw_samples_stop_at_the_limit_and_count_the_rest() {
    let handler = not_found_elsewhere(
        "/burst",
        Arc::new(|_, mut stream| {
            Box::pin(async move {
                let mut out = SSE_HEAD.to_vec();
                for seq in 1..=50u64 {
                    out.extend(event(seq, seq, wire::now_unix_us()));
                }
                let _ = stream.write_all(&out).await;
                hold_open(stream).await;
            })
        }),
    );
    let (addr, _) = fake_server(handler).await;
    let (mut options, _dir) = one_stream(addr, "rawlimit", "/burst", "300ms");
    let raw_path = options.results_root.join("raw.csv");
    options.raw_samples = Some(loadgen::live::raw_samples::RawSamplesOptions {
        path: raw_path.clone(),
        limit: 20,
    });
    let report = loadgen::run(options).await.expect("runs");
    let summary = report.raw_samples.expect("summary");
    assert_eq!((summary.rows, summary.not_written), (20, 30));
    let text = std::fs::read_to_string(&raw_path).expect("written");
    assert_eq!(text.lines().count(), 21, "header and 20 rows");
}

#[tokio::test]
async fn without_warmup_every_message_counts_from_the_first_and_an_early_stall_shows() {
    // 40 events due every 5 ms from the moment the stream opens; the server stalls for 120 ms
    // after the 4th (20 ms in) and then sends the stalled events with their intended stamps.
    const EVENTS: u64 = 40;
    let handler = not_found_elsewhere(
        "/early",
        Arc::new(|_, mut stream| {
            Box::pin(async move {
                if stream.write_all(SSE_HEAD).await.is_err() {
                    return;
                }
                let start = wire::now_unix_us();
                let mut stalled = false;
                for seq in 1..=EVENTS {
                    let due = start + (seq - 1) * 5_000;
                    if seq == 5 && !stalled {
                        stalled = true;
                        tokio::time::sleep(Duration::from_millis(120)).await;
                    }
                    let now = wire::now_unix_us();
                    if due > now {
                        tokio::time::sleep(Duration::from_micros(due - now)).await;
                    }
                    if stream.write_all(&event(seq, seq, due)).await.is_err() {
                        return;
                    }
                }
                hold_open(stream).await;
            })
        }),
    );
    let (addr, _) = fake_server(handler).await;
    let (options, _dir) = one_stream(addr, "early", "/early", "1s");
    assert_eq!(options.scenario.run.warmup, Duration::ZERO);
    let report = loadgen::run(options).await.expect("runs");
    let h = report
        .histograms
        .get(loadgen::live::stats::Metric::Delivery);
    assert_eq!(report.counters.messages_received, EVENTS);
    assert_eq!(h.len(), EVENTS, "every message is a sample, from the first");
    // Event 5 (due 20 ms in) left 120 ms after event 4 (sent at 15 ms or later): at least
    // 115 ms late, a bound the stamps guarantee whatever the machine's speed.
    assert!(h.max() >= 115_000, "stall hidden: max {} us", h.max());
}

#[tokio::test]
async fn a_slow_post_endpoint_never_stops_the_stream_from_being_read() {
    // The chat POST answers only after 3 s; the stream sends its events right after the first
    // POST arrives. A sender that awaited its POST inside the read loop would read none of
    // them before the run (0.5 s) ends.
    const EVENTS: u64 = 20;
    let posted = Arc::new(tokio::sync::Notify::new());
    let handler: Handler = Arc::new(move |seen, mut stream| {
        let posted = Arc::clone(&posted);
        Box::pin(async move {
            if seen.path.starts_with("/slowchat/") {
                posted.notify_one();
                tokio::time::sleep(Duration::from_secs(3)).await;
                respond(stream, "200 OK", "application/json").await;
            } else if seen.path == "/slowchat" {
                let mut out = SSE_HEAD.to_vec();
                out.extend_from_slice(b"event: user\ndata: {\"id\":1}\n\n");
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), posted.notified()).await;
                let mut out = Vec::new();
                for seq in 1..=EVENTS {
                    out.extend(event(seq, seq, wire::now_unix_us()));
                }
                if stream.write_all(&out).await.is_ok() {
                    hold_open(stream).await;
                }
            } else {
                respond(stream, "404 Not Found", "text/plain").await;
            }
        })
    });
    let (addr, _) = fake_server(handler).await;
    let dir = support::temp_dir("slowpost");
    let scenario = support::scenario(&one_client(
        "/slowchat",
        "expect = \"none\"\nreconnect = false\nsend_rate = 20\nsend_path = \"/slowchat/{id}\"",
        "500ms",
    ));
    let report = loadgen::run(support::options(scenario, Some(addr), &dir))
        .await
        .expect("runs");
    let c = report.counters;
    assert!(c.messages_sent >= 1, "the POST was sent: {c:?}");
    assert_eq!(c.messages_received, EVENTS, "{c:?}");
}

#[tokio::test]
async fn dropped_streams_resume_gap_free_with_last_event_id_honour_retry_and_stop_on_204() {
    const TOTAL: u64 = 30;
    const PER_CONNECTION: u64 = 5;
    let handler = not_found_elsewhere(
        "/drop",
        Arc::new(|seen, mut stream| {
            Box::pin(async move {
                let after: u64 = seen
                    .last_event_id
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if after >= TOTAL {
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let mut out = SSE_HEAD.to_vec();
                out.extend_from_slice(b"retry: 200\n\n");
                for seq in after + 1..=(after + PER_CONNECTION).min(TOTAL) {
                    out.extend(event(seq, seq, wire::now_unix_us()));
                }
                let _ = stream.write_all(&out).await;
            })
        }),
    );
    let (addr, seen) = fake_server(handler).await;
    let dir = support::temp_dir("drop");
    let scenario = support::scenario(&one_client("/drop", "expect = \"stream\"", "3s"));
    let report = loadgen::run(support::options(scenario, Some(addr), &dir))
        .await
        .expect("runs");
    let c = report.counters;
    assert_eq!(
        (c.messages_received, c.gaps, c.duplicates),
        (TOTAL, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.reconnects, TOTAL / PER_CONNECTION, "{c:?}");
    let requests: Vec<_> = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|s| s.path == "/drop")
        .cloned()
        .collect();
    let ids: Vec<Option<String>> = requests.iter().map(|s| s.last_event_id.clone()).collect();
    let want: Vec<Option<String>> = std::iter::once(None)
        .chain((1..=TOTAL / PER_CONNECTION).map(|k| Some((k * PER_CONNECTION).to_string())))
        .collect();
    assert_eq!(
        ids, want,
        "Last-Event-ID on every reconnect; nothing after the 204"
    );
    for pair in requests.windows(2) {
        let waited = pair[1].at.duration_since(pair[0].at);
        assert!(
            waited >= Duration::from_millis(190),
            "reconnected after {waited:?}, retry is 200 ms"
        );
    }
    assert_eq!(report.exit_code(), 0, "{:?}", report.failures());
}

#[tokio::test]
async fn a_stream_cut_between_id_and_blank_line_resumes_after_the_last_dispatched_event() {
    // First stream: events 1..=5, then `id: 6` and its data but no blank line, then the cut.
    // Event 6 was never dispatched: the reconnect must say `Last-Event-ID: 5` and get 6 again.
    let handler = not_found_elsewhere(
        "/cut",
        Arc::new(|seen, mut stream| {
            Box::pin(async move {
                let after: u64 = seen
                    .last_event_id
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if after >= 10 {
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let mut out = SSE_HEAD.to_vec();
                out.extend_from_slice(b"retry: 50\n\n");
                for seq in after + 1..=after + 5 {
                    out.extend(event(seq, seq, wire::now_unix_us()));
                }
                if after == 0 {
                    let partial = format!(
                        "id: 6\ndata: {{\"seq\":6,\"ts\":{}}}\n",
                        wire::now_unix_us()
                    );
                    out.extend_from_slice(partial.as_bytes());
                }
                let _ = stream.write_all(&out).await;
            })
        }),
    );
    let (addr, seen) = fake_server(handler).await;
    let dir = support::temp_dir("cut");
    let scenario = support::scenario(&one_client("/cut", "expect = \"stream\"", "2s"));
    let report = loadgen::run(support::options(scenario, Some(addr), &dir))
        .await
        .expect("runs");
    let c = report.counters;
    assert_eq!(
        (c.messages_received, c.gaps, c.duplicates),
        (10, 0, 0),
        "{c:?}"
    );
    let ids: Vec<Option<String>> = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|s| s.path == "/cut")
        .map(|s| s.last_event_id.clone())
        .collect();
    assert_eq!(
        ids,
        [None, Some("5".to_owned()), Some("10".to_owned())],
        "the undispatched id 6 is never sent"
    );
}

#[tokio::test]
async fn non_sse_answers_fail_clearly_with_exit_code_3() {
    let handler: Handler = Arc::new(|seen, stream| {
        Box::pin(async move {
            match seen.path.as_str() {
                "/500" => respond(stream, "500 Internal Server Error", "text/plain").await,
                "/plain" => respond(stream, "200 OK", "text/plain").await,
                _ => respond(stream, "404 Not Found", "text/plain").await,
            }
        })
    });
    let (addr, _) = fake_server(handler).await;
    for (path, words) in [
        ("/404", "HTTP status 404"),
        ("/500", "HTTP status 500"),
        ("/plain", "content type"),
    ] {
        let dir = support::temp_dir("bad");
        let scenario = support::scenario(&one_client(path, "", "200ms"));
        let report = loadgen::run(support::options(scenario, Some(addr), &dir))
            .await
            .expect("runs");
        assert_eq!(report.exit_code(), 3, "{path}");
        let failures = report.failures().join("; ");
        assert!(
            failures.contains(words) && failures.contains(path),
            "{path}: {failures}"
        );
        assert_eq!(
            report.counters.connections_failed(),
            1,
            "{path}: one attempt, no retry"
        );
        assert!(
            dir.join("counters.csv").exists(),
            "results are written even then"
        );
    }
}

#[tokio::test]
async fn an_unreachable_target_is_exit_code_3_before_anything_runs() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr")
    };
    let dir = support::temp_dir("unreachable");
    let scenario = support::scenario(&one_client("/sse/counter", "", "1s"));
    let err = loadgen::run(support::options(scenario, Some(closed), &dir))
        .await
        .expect_err("unreachable");
    assert!(matches!(err, RunError::Target(_)), "{err}");
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
}

/// Waits (bounded) until the server has sent at least 10 counter events.
async fn events_flowing(server: &server::RunningServer) {
    let series = "rt_messages_sent_total{scenario=\"counter\",protocol=\"sse\"} ";
    let started = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let text = server.metrics().render(0);
        let sent: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.parse().ok())
            .unwrap_or(0);
        if sent >= 10 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no events flowed"
        );
    }
}

#[tokio::test]
async fn a_target_dying_mid_run_ends_it_with_exit_code_3_and_results_written() {
    let server = support::rt_server().await;
    let addr = server.local_addr();
    let dir = support::temp_dir("dies");
    let scenario = support::scenario(&one_client(
        "/sse/counter?interval_ms=20",
        "expect = \"stream\"",
        "60s",
    ));
    let run = tokio::spawn(loadgen::run(support::options(scenario, Some(addr), &dir)));
    // Once events flow, take the server away for good: after 10 refused checks (a shorter
    // outage is only reported) the run ends.
    events_flowing(&server).await;
    server.shutdown(Duration::from_secs(1)).await;
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run notices within seconds, not at its 60 s end")
        .expect("task")
        .expect("runs");
    assert!(
        matches!(
            report.outcome,
            loadgen::results::report::Outcome::TargetFailed(_)
        ),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.exit_code(), 3);
    assert!(report.counters.messages_received > 0);
    let counters = std::fs::read_to_string(dir.join("counters.csv")).expect("written");
    assert!(counters.contains("messages_received,"));
}

#[tokio::test]
async fn an_interrupted_run_writes_what_it_gathered() {
    let server = support::rt_server().await;
    let dir = support::temp_dir("interrupt");
    let scenario = support::scenario(&one_client(
        "/sse/counter?interval_ms=20",
        "expect = \"stream\"",
        "30s",
    ));
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let mut options = support::options(scenario, Some(server.local_addr()), &dir);
    options.cancel = Some(cancelled);
    let run = tokio::spawn(loadgen::run(options));
    events_flowing(&server).await;
    cancel.send(true).expect("run listening");
    let report = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("stops promptly")
        .expect("task")
        .expect("runs");
    assert_eq!(
        report.outcome,
        loadgen::results::report::Outcome::Interrupted
    );
    assert_eq!(report.exit_code(), 1);
    assert!(report.counters.messages_received > 0);
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("written"))
            .expect("json");
    assert_eq!(run_json["outcome"], "Interrupted");
    assert!(
        std::fs::read_to_string(dir.join("timeseries.csv"))
            .expect("written")
            .lines()
            .count()
            > 1
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn a_scenario_needing_more_files_than_allowed_is_refused_with_exit_code_2() {
    // The decision is a pure function of the need and the limits (the host's own limit is
    // whatever it is); `run` calls it before anything starts.
    let scenario = support::scenario(
        &one_client("/sse/counter", "", "1s").replace("count = 1", "count = 1000000"),
    );
    let needed = loadgen::live::run::descriptors_needed(&scenario);
    assert_eq!(needed, 1_000_000 + 64, "one per connection plus headroom");
    let refused = loadgen::live::host::plan_fd_limit(needed, 1_024, 20_000).expect_err("too many");
    let err = RunError::from(refused);
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("open files"), "{err}");
}

#[tokio::test]
async fn churning_sse_clients_resume_gap_free_and_a_ws_publisher_feeds_ws_clients() {
    let server = support::rt_server().await;
    let report = support::run_against(
        &server,
        "churn",
        r#"
[run]
duration = "2s"

[[publishers]]
name = "http"
protocol = "http"
path = "/sse/notifications"
rate = 50

[[publishers]]
name = "ws"
protocol = "ws"
path = "/ws/chat"
rate = 20
message = '{"type":"chat"}'

[[clients]]
name = "churners"
protocol = "sse"
path = "/sse/notifications"
count = 3
churn = "300ms"
events = ["notification"]
expect = "publisher:http"

[[clients]]
name = "chatters"
protocol = "ws"
path = "/ws/chat"
count = 3
types = ["chat"]
expect = "publisher:ws"
"#,
    )
    .await;
    let c = report.counters;
    assert!(
        c.reconnects >= 3 * 5,
        "each SSE client churned every 300 ms: {c:?}"
    );
    assert_eq!(
        (c.gaps, c.duplicates, c.lost()),
        (0, 0, 0),
        "resumed with Last-Event-ID: {c:?}"
    );
    let sent_by_ws = report
        .server_after
        .get("rt_messages_received_total{scenario=\"ws_chat\",protocol=\"ws\"}")
        .copied();
    assert!(
        sent_by_ws.is_some_and(|n| n >= 20.0),
        "the WS publisher's messages reached the server: {sent_by_ws:?}"
    );
    assert_eq!(report.exit_code(), 0, "{:?}", report.failures());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn held_sse_streams_close_after_their_hold_time_while_the_run_goes_on() {
    let server = support::rt_server().await;
    let report = support::run_against(
        &server,
        "hold",
        r#"
[run]
duration = "2s"

[[publishers]]
name = "http"
protocol = "http"
path = "/sse/notifications"
rate = 50

[[clients]]
name = "held"
protocol = "sse"
path = "/sse/notifications"
count = 3
hold = "400ms"
events = ["notification"]
expect = "publisher:http"
"#,
    )
    .await;
    let c = report.counters;
    assert_eq!(
        (c.connections_established, c.reconnects, c.streams_dropped),
        (3, 0, 0),
        "each stream opened once and was closed by loadgen, not dropped: {c:?}"
    );
    // Open 400 ms of a 2 s run at 50 messages/s: about 20 messages each, 100 if held to the end.
    assert!(
        c.messages_received > 0 && c.messages_received <= 3 * 40,
        "the streams closed after their hold time: {c:?}"
    );
    assert_eq!(
        (c.lost(), c.gaps),
        (0, 0),
        "a held stream expects what was published while it was open: {c:?}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

/// Every echo is held 800 ms by the server, longer than the 500 ms between sends, so some
/// echo is always on its way: a socket that closed at its hold time at once lost one each time.
#[tokio::test]
async fn a_held_socket_waits_for_the_echoes_on_their_way_before_it_closes() {
    let server = support::rt_server().await;
    let report = support::run_against(
        &server,
        "hold-echo",
        r#"
[run]
duration = "4s"

[[clients]]
name = "held"
protocol = "ws"
path = "/ws/echo?delay_every=1&delay_ms=800"
count = 2
send_rate = 2
hold = "1500ms"
latency = "rtt"
expect = "echo"
"#,
    )
    .await;
    let c = report.counters;
    assert!(
        c.messages_sent >= 2,
        "each socket sent before its hold time: {c:?}"
    );
    assert_eq!(
        (c.connections_established, c.streams_dropped, c.reconnects),
        (2, 0, 0),
        "{c:?}"
    );
    assert_eq!(
        (c.messages_received, c.lost(), c.gaps),
        (c.messages_sent, 0, 0),
        "every echo of a message sent before the hold time arrived and was counted: {c:?}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn calibrate_compares_the_same_messages_the_server_timed() {
    let dir = support::temp_dir("calibrate");
    let options = loadgen::live::calibrate::CalibrateOptions {
        duration: Duration::from_secs(1),
        connections: 4,
        interval: Duration::from_millis(10),
        delay_every: 20,
        delay: Duration::from_millis(3),
        out: dir.to_path_buf(),
        server_exe: support::loadgen_exe(),
    };
    let c = loadgen::live::calibrate::calibrate(options)
        .await
        .expect("calibrates");
    let [sse, ws] = &c.comparisons[..] else {
        panic!("two comparisons: {c:?}");
    };
    assert_eq!(sse.metric, loadgen::live::stats::Metric::Delivery);
    // 4 streams of exactly 1 s / 10 ms = 100 events each, every one timed by both sides.
    assert_eq!((sse.loadgen_count, sse.truth_count), (400, 400));
    assert_eq!(ws.metric, loadgen::live::stats::Metric::WsRtt);
    assert!(
        ws.loadgen_count > 0 && ws.truth_count >= ws.loadgen_count,
        "{ws:?}"
    );
    for comparison in [sse, ws] {
        let stats: Vec<&str> = comparison.stats.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(stats, ["p50", "p90", "p99", "max"]);
        for (stat, mine, truth) in &comparison.stats {
            let (mine, truth) = (mine.expect("loadgen figure"), truth.expect("truth"));
            // The held messages (5%) were held 3 ms: the max of both sides is at least that.
            if *stat == "max" {
                assert!(mine >= 3_000.0 && truth >= 3_000.0, "{comparison:?}");
            }
        }
    }
    let table = c.table();
    assert!(table.contains("delivery") && table.contains("ws_rtt") && table.contains("verdict"));
}

#[tokio::test]
async fn unstamped_streams_count_every_event_and_sse_ids_find_gaps() {
    // /plain: 30 events of plain text, no id. /ids: events with ids 1..=20 but 7 missing.
    let handler: Handler = Arc::new(|seen, mut stream| {
        Box::pin(async move {
            if seen.path != "/plain" && seen.path != "/ids" {
                return respond(stream, "404 Not Found", "text/plain").await;
            }
            let mut out = SSE_HEAD.to_vec();
            if seen.path == "/plain" {
                for i in 0..30 {
                    out.extend_from_slice(format!("data: tick {i}, not JSON\n\n").as_bytes());
                }
            } else {
                for id in (1..=20u64).filter(|id| *id != 7) {
                    out.extend_from_slice(format!("id: {id}\ndata: x\n\n").as_bytes());
                }
            }
            if stream.write_all(&out).await.is_ok() {
                hold_open(stream).await;
            }
        })
    });
    let (addr, _) = fake_server(handler).await;
    let dir = support::temp_dir("unstamped");
    let plain = support::scenario(&one_client(
        "/plain",
        "stamp = \"none\"\nreconnect = false",
        "300ms",
    ));
    let report = loadgen::run(support::options(plain, Some(addr), &dir))
        .await
        .expect("runs");
    let c = report.counters;
    assert_eq!(
        (c.messages_received, c.parse_errors, c.lost()),
        (30, 0, 0),
        "{c:?}"
    );
    let h = |m| report.histograms.get(m).len();
    use loadgen::live::stats::Metric;
    assert_eq!(h(Metric::Interarrival), 29, "one per event after the first");
    assert_eq!(h(Metric::FirstEvent), 1);
    assert_eq!(h(Metric::Delivery), 0);
    assert_eq!(report.exit_code(), 0, "{:?}", report.failures());

    let ids = support::scenario(&one_client(
        "/ids",
        "expect = \"stream\"\nstamp = { seq = \"sse-id\" }\nreconnect = false",
        "300ms",
    ));
    let report = loadgen::run(support::options(ids, Some(addr), &dir))
        .await
        .expect("runs");
    let c = report.counters;
    assert_eq!(
        (c.messages_received, c.gaps, c.duplicates),
        (19, 1, 0),
        "{c:?}"
    );
}
