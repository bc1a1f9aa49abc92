//! loadgen over a faulty network, for real: the target in one network namespace, loadgen in
//! another, a router between them that delays, drops and resets ([`testkit::faultnet`]; root,
//! iproute2 and nftables, which `.ci/run` installs). The numbers must stay true: an added
//! delay shows in delivery and RTT as itself, retransmitted loss shows in the tail and not as
//! gaps, reset streams resume with `Last-Event-ID` without a gap, WebSocket loss across a
//! reconnect is counted and explained, and reconnects after a partition are spread out.
//!
//! Publishers reach the target through its side door (an address no fault touches), so every
//! fault hits the subscribers only and the expected counts stay exact.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use testkit::faultnet::FaultNet;

use crate::support::{self, Target, counter, loadgen_exe, sleep_until, start_in, summary_of, text};

/// The target on the server host of a fault network, and where runs write.
struct Bench {
    net: FaultNet,
    _target: Target,
    port: u16,
    dir: support::TempDir,
}

impl Bench {
    fn start(tag: &str, net: u8) -> Self {
        let net = FaultNet::require(tag, net);
        let target = Target::start_with(net.server.command(loadgen_exe()), "0.0.0.0");
        let port = target
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let dir = support::temp_dir(&format!("network-{tag}"));
        Self {
            net,
            _target: target,
            port,
            dir,
        }
    }

    /// The address faults apply to.
    fn url(&self) -> String {
        format!("http://{}:{}", self.net.server.addr, self.port)
    }

    /// The address no fault touches (publishers).
    fn side_door(&self) -> String {
        format!("http://{}:{}", self.net.side_door, self.port)
    }

    /// Starts `loadgen run` of `scenario` on the client host; `start_at` (Unix seconds) lines
    /// it up with a fault schedule.
    fn spawn(&self, name: &str, scenario: &str, start_at: Option<u64>) -> (Child, PathBuf) {
        let file = self.dir.join(format!("{name}.toml"));
        std::fs::write(&file, scenario).expect("write scenario");
        let out = self.dir.join(name);
        let mut cmd: Command = self.net.client.command(loadgen_exe());
        cmd.args(["run", text(&file), "--target", &self.url(), "--quiet"])
            .args(["--out", text(&out)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(at) = start_at {
            cmd.args(["--start-at", &at.to_string()]);
        }
        (cmd.spawn().expect("start loadgen"), out)
    }

    fn run(&self, name: &str, scenario: &str) -> (Output, PathBuf) {
        let (child, out) = self.spawn(name, scenario, None);
        (child.wait_with_output().expect("loadgen ran"), out)
    }
}

fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `failures` or `warnings` of a run directory's `run.json`, joined.
fn verdict(dir: &Path, field: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("run.json"))
            .expect("run.json is JSON");
    json[field]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// WebSocket echo sockets measuring the round trip (appended to [`sse_feed`]).
const ECHOERS: &str = r#"
[[clients]]
name = "echoers"
protocol = "ws"
path = "/ws/echo"
count = 10
arrival_rate = 200
send_rate = 20
payload_bytes = 64
latency = "rtt"
"#;

/// 10 SSE subscribers fed through the side door and 10 WebSocket echo sockets, for `duration`.
fn delay_scenario(side_door: &str, duration: &str) -> String {
    sse_feed(side_door, 10, duration) + ECHOERS
}

#[test]
fn an_added_20ms_delay_shows_in_delivery_and_rtt_as_20ms() {
    let mut bench = Bench::start("fdly", 81);
    let scenario = delay_scenario(&bench.side_door(), "3s");
    let (out, clean) = bench.run("clean", &scenario);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    bench
        .net
        .delay(Duration::from_millis(20))
        .expect("delay line");
    let (out, delayed) = bench.run("delayed", &scenario);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    // The server's packets to the client now wait 20 ms: publish-to-delivery and the echo
    // round trip both grow by exactly that (medians, within 1 ms), nothing else moves.
    for metric in ["delivery", "ws_rtt"] {
        let (before, after) = (summary_of(&clean, metric), summary_of(&delayed, metric));
        let shift = after[2] as f64 / 1000.0 - before[2] as f64 / 1000.0;
        eprintln!(
            "{metric}: p50 {:.3} ms -> {:.3} ms, shift {shift:.3} ms",
            before[2] as f64 / 1000.0,
            after[2] as f64 / 1000.0
        );
        assert!(
            (19.0..=21.0).contains(&shift),
            "{metric} p50 moved by {shift:.3} ms, not 20 ms: {before:?} -> {after:?}"
        );
    }
    assert_eq!(counter(&delayed, "lost"), 0);
}

#[test]
fn one_percent_loss_is_retransmitted_not_reported_as_gaps_and_shows_in_the_tail() {
    let bench = Bench::start("floss", 82);
    let scenario = delay_scenario(&bench.side_door(), "6s");
    bench.net.loss(1).expect("loss rule");
    let retransmits_before =
        FaultNet::retransmitted(&bench.net.server) + FaultNet::retransmitted(&bench.net.client);
    let (out, dir) = bench.run("lossy", &scenario);
    let dropped = bench.net.faulted_packets();
    let retransmitted = FaultNet::retransmitted(&bench.net.server)
        + FaultNet::retransmitted(&bench.net.client)
        - retransmits_before;
    let delivery = summary_of(&dir, "delivery");
    eprintln!(
        "1% loss: {dropped} packets dropped, {retransmitted} segments retransmitted; delivery p50 {} us, p99 {} us, max {} us",
        delivery[2], delivery[4], delivery[6]
    );
    // The fault was real: packets were dropped and TCP resent them.
    assert!(
        dropped > 0 && retransmitted > 0,
        "{dropped} {retransmitted}"
    );
    // TCP hid the loss from the application: no gap, nothing lost, the run passes.
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    for name in ["gaps", "lost", "duplicates", "parse_errors"] {
        assert_eq!(counter(&dir, name), 0, "{name}");
    }
    // ...but not from the latency: a retransmitted event waits for a loss-probe or
    // retransmission timer (at least 2 jiffies plus twice the smoothed RTT; ~20 ms here),
    // far above the clean path's ~2 ms.
    assert!(
        delivery[6] >= 10_000,
        "the tail does not show the retransmissions: {delivery:?}"
    );
}

/// SSE subscribers of a publisher that goes through the side door at 50 messages/s.
fn sse_feed(side_door: &str, count: u32, duration: &str) -> String {
    format!(
        r#"
name = "sse-feed"
description = "test: SSE subscribers through the fault network"
thresholds = ["lost == 0", "gaps == 0", "duplicates == 0"]

[run]
settle = "200ms"
warmup = "1s"
duration = "{duration}"

[[publishers]]
name = "news"
protocol = "http"
path = "/sse/notifications"
target = "{side_door}"
rate = 50
payload_bytes = 64

[[clients]]
name = "subscribers"
protocol = "sse"
path = "/sse/notifications"
count = {count}
arrival_rate = 500
events = ["notification"]
expect = "publisher:news"
"#
    )
}

/// WebSocket pub/sub subscribers (reconnecting) of a publisher behind the side door.
fn ws_feed(side_door: &str, count: u32, duration: &str) -> String {
    format!(
        r#"
name = "ws-feed"
description = "test: reconnecting WebSocket subscribers through the fault network"
thresholds = ["lost == 0", "gaps == 0", "duplicates == 0"]

[run]
settle = "200ms"
warmup = "1s"
duration = "{duration}"

[[publishers]]
name = "feed"
protocol = "http"
path = "/publish/feed"
target = "{side_door}"
rate = 50
payload_bytes = 64

[[clients]]
name = "subscribers"
protocol = "ws"
path = "/ws/pubsub"
count = {count}
arrival_rate = 500
on_connect = ['{{"type":"subscribe","topic":"feed"}}']
types = ["message"]
stamp = {{ pointer = "/data" }}
expect = "publisher:feed"
reconnect = true
"#
    )
}

#[test]
fn reset_connections_resume_sse_without_a_gap_and_ws_loss_is_counted_and_explained() {
    let bench = Bench::start("frst", 83);
    // Both runs start together; 1.5 s into their measured phase every connection is reset and
    // new ones are refused with a reset for 2 s.
    let start = start_in(2);
    let (sse, sse_dir) = bench.spawn("sse", &sse_feed(&bench.side_door(), 30, "8s"), Some(start));
    let (ws, ws_dir) = bench.spawn("ws", &ws_feed(&bench.side_door(), 20, "8s"), Some(start));
    sleep_until(start, 3000);
    bench.net.reset().expect("reset");
    sleep_until(start, 5000);
    let rejected = bench.net.faulted_packets();
    bench.net.heal().expect("heal");
    let (sse, ws) = (
        sse.wait_with_output().expect("sse run"),
        ws.wait_with_output().expect("ws run"),
    );
    eprintln!(
        "reset: {rejected} packets answered with a reset; SSE {} reconnects, WS {} reconnects, {} WS messages lost across them",
        counter(&sse_dir, "reconnects"),
        counter(&ws_dir, "reconnects"),
        counter(&ws_dir, "gaps_across_reconnects")
    );
    // The fault was real: reconnect attempts during the 2 s were refused with resets.
    assert!(rejected > 0);

    // SSE: every stream was dropped, came back with Last-Event-ID, and the server replayed
    // what it missed: no gap, nothing lost, although the publisher never paused.
    let dropped = counter(&sse_dir, "streams_dropped");
    assert!(
        dropped >= 30,
        "{dropped} SSE streams dropped\n{}",
        explain(&sse)
    );
    assert!(counter(&sse_dir, "reconnects") >= dropped);
    for name in ["gaps", "lost", "duplicates", "gaps_across_reconnects"] {
        assert_eq!(counter(&sse_dir, name), 0, "SSE {name}\n{}", explain(&sse));
    }
    assert_eq!(
        summary_of(&sse_dir, "reconnect")[0],
        dropped,
        "every dropped stream resumed and got messages again"
    );
    let warnings = verdict(&sse_dir, "warnings");
    assert!(
        warnings.contains("every resumed stream went on without a gap")
            && warnings.contains("target down from t=")
            && warnings.contains("it refused connections"),
        "{warnings}"
    );

    // WebSocket: no replay, so what was published while a socket was down is lost; the run
    // fails, counts the reconnects, and says the loss fell across them.
    let dropped = counter(&ws_dir, "streams_dropped");
    assert!(
        dropped >= 20,
        "{dropped} WS sockets dropped\n{}",
        explain(&ws)
    );
    assert!(counter(&ws_dir, "reconnects") >= dropped);
    let (lost, across) = (
        counter(&ws_dir, "lost"),
        counter(&ws_dir, "gaps_across_reconnects"),
    );
    assert!(
        lost > 0 && across == lost,
        "lost {lost}, across reconnects {across}"
    );
    assert_eq!(ws.status.code(), Some(1), "{}", explain(&ws));
    let failures = verdict(&ws_dir, "failures");
    assert!(
        failures.contains(&format!(
            "{lost} of them were published while connections were down"
        )),
        "{failures}"
    );
}

#[test]
fn reconnects_after_a_partition_are_spread_out_not_a_storm() {
    let bench = Bench::start("fpart", 84);
    let start = start_in(2);
    let (run, dir) = bench.spawn(
        "partition",
        &sse_feed(&bench.side_door(), 200, "12s"),
        Some(start),
    );
    // 1.5 s into the measured phase the connections break and nothing gets through for 5 s.
    sleep_until(start, 3000);
    bench.net.kill_connections().expect("reset");
    bench.net.partition().expect("partition");
    sleep_until(start, 8000);
    let dropped = bench.net.faulted_packets();
    bench.net.heal().expect("heal");
    assert!(dropped > 0, "the partition dropped nothing");
    let out = run.wait_with_output().expect("run");
    let reconnect = summary_of(&dir, "reconnect");
    let (min, p50, p90) = (reconnect[1], reconnect[2], reconnect[3]);
    eprintln!(
        "partition: {} reconnects, drop-to-resume min {:.3} s, p50 {:.3} s, p90 {:.3} s, max {:.3} s",
        reconnect[0],
        min as f64 / 1e6,
        p50 as f64 / 1e6,
        p90 as f64 / 1e6,
        reconnect[6] as f64 / 1e6
    );
    assert_eq!(
        reconnect[0],
        200,
        "every stream came back\n{}",
        explain(&out)
    );
    for name in ["gaps", "lost", "duplicates"] {
        assert_eq!(counter(&dir, name), 0, "{name}\n{}", explain(&out));
    }
    // All 200 dropped in the same instant; with jitter their returns fill a window as wide
    // as the first delay (1 s) instead of landing together on the kernel's SYN retries.
    assert!(
        p90 - min >= 400_000,
        "reconnects bunched together: min {min} us, p90 {p90} us"
    );
}
