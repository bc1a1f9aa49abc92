//! loadgen when its own surroundings fail: a run directory it cannot write (read-only, full
//! disk) is refused before connecting; a disk that fills during the run still gets the
//! summary printed; SIGTERM stops a run as Ctrl-C does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{self, Target, children_of, loadgen, text, wait_for};

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped (root only: CI
/// runs as root).
struct SmallDisk {
    at: PathBuf,
    /// Holds the mount point's directory until the disk is unmounted.
    _dir: support::TempDir,
}

impl SmallDisk {
    fn mount(name: &str, size: &str) -> Self {
        let dir = support::temp_dir(name);
        let at = dir.join("disk");
        std::fs::create_dir_all(&at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                text(&at),
            ])
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { at, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).output();
    }
}

/// `loadgen run counter.toml --out OUT` against a target that does not exist: a refusal
/// of `--out` (exit 2) rather than an unreachable target (exit 3) shows it came first.
/// Returns stderr.
fn refused_out(out_dir: &Path) -> String {
    let target = format!("http://127.0.0.1:{}", closed_port());
    let counter = support::scenarios_dir().join("counter.toml");
    let out = loadgen(&[
        "run",
        text(&counter),
        "--target",
        &target,
        "--quiet",
        "--out",
        text(out_dir),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn an_unwritable_out_is_refused_before_connecting() {
    let stderr = refused_out(Path::new("/proc/loadgen-cannot-write-here/run"));
    assert!(
        stderr.contains("cannot write results to /proc/loadgen-cannot-write-here/run"),
        "{stderr}"
    );
}

#[test]
fn a_full_disk_is_refused_before_connecting() {
    let disk = SmallDisk::mount("full-disk", "1m");
    let run_dir = disk.at.join("run");
    let stderr = refused_out(&run_dir);
    assert!(stderr.contains("bytes free on its file system"), "{stderr}");
    assert!(!run_dir.exists(), "no empty run directory is left behind");
}

/// `loadgen run counter.toml` with 3 connections to `target` for `duration` into `out`,
/// output piped.
fn counter_run(target: &Target, out: &Path, duration: &str) -> Child {
    let counter = support::scenarios_dir().join("counter.toml");
    Command::new(support::loadgen_exe())
        .args([
            "run",
            text(&counter),
            "--target",
            &target.url,
            "--max-clients",
            "3",
            "--duration",
            duration,
            "--quiet",
            "--out",
            text(out),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadgen")
}

/// Waits until the target holds the run's 3 connections.
fn wait_connected(target: &Target) {
    wait_for("the run's 3 connections", || {
        target.metric_sum("rt_connections_open") >= 3.0
    });
}

#[test]
fn a_disk_that_fills_during_the_run_still_gets_the_summary() {
    let disk = SmallDisk::mount("filling-disk", "20m");
    let run_dir = disk.at.join("run");
    let target = Target::start();
    let child = counter_run(&target, &run_dir, "5s");
    wait_connected(&target);
    // Fill the disk: the run's files at the end no longer fit.
    let _ = std::fs::write(disk.at.join("filler"), vec![0u8; 21 << 20]);
    let out = child.wait_with_output().expect("loadgen ran");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("latency") && stdout.contains("verdict:"),
        "{stdout}"
    );
    assert!(stderr.contains("cannot write results to"), "{stderr}");
}

#[test]
fn sigterm_stops_a_run_like_ctrl_c_and_the_results_are_written() {
    let dir = support::temp_dir("sigterm");
    let run_dir = dir.join("run");
    let target = Target::start();
    let child = counter_run(&target, &run_dir, "60s");
    wait_connected(&target);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("loadgen ran");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stdout.contains("interrupted before the end"), "{stdout}");
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("run.json")).expect("run.json written"),
    )
    .expect("json");
    assert_eq!(run["outcome"], "Interrupted");
    assert!(run_dir.join("report.html").is_file());
}

/// Sums the target's `rt_connections_closed_total` for the WS echo route by reason.
fn echo_closes(target: &Target, reason: &str) -> f64 {
    target.metric_sum(&format!(
        "rt_connections_closed_total{{scenario=\"ws_echo\",protocol=\"ws\",reason=\"{reason}\"}}"
    ))
}

#[test]
fn every_websocket_ends_with_the_close_handshake_at_the_end_of_a_run() {
    // The largest WebSocket run the suite affords: 1,000 sockets echoing 10 messages a second
    // each; at the end every one sends its Close and waits for the server's.
    const SOCKETS: f64 = 1000.0;
    let dir = support::temp_dir("ws-closes");
    let file = dir.join("ws-closes.toml");
    std::fs::write(
        &file,
        r#"
[run]
warmup = "500ms"
duration = "2s"

[[clients]]
name = "echoers"
protocol = "ws"
path = "/ws/echo"
count = 1000
arrival_rate = 2000
send_rate = 10
payload_bytes = 64
latency = "rtt"
"#,
    )
    .expect("scenario");
    let target = Target::start();
    let out = loadgen(&[
        "run",
        text(&file),
        "--target",
        &target.url,
        "--quiet",
        "--out",
        text(&dir.join("run")),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("every echo socket to be closed", || {
        target.metric_sum("rt_connections_open{scenario=\"ws_echo\"") == 0.0
    });
    assert_eq!(echo_closes(&target, "client"), SOCKETS);
    assert_eq!(echo_closes(&target, "vanished"), 0.0);
    assert_eq!(echo_closes(&target, "error"), 0.0);
}

/// SSE and reconnecting WebSocket subscribers of two publishers, on the bundled target.
const RESTART_SCENARIO: &str = r#"
name = "restart"
description = "test: the bundled target is killed mid-run"
thresholds = ["lost == 0"]

[run]
settle = "200ms"
warmup = "1s"
duration = "7s"

[[publishers]]
name = "sse-news"
protocol = "http"
path = "/sse/notifications"
rate = 20
payload_bytes = 64

[[publishers]]
name = "ws-news"
protocol = "http"
path = "/publish/news"
rate = 20
payload_bytes = 64

[[clients]]
name = "sse"
protocol = "sse"
path = "/sse/notifications"
count = 20
arrival_rate = 500
events = ["notification"]
expect = "publisher:sse-news"

[[clients]]
name = "ws"
protocol = "ws"
path = "/ws/pubsub"
count = 10
arrival_rate = 500
on_connect = ['{"type":"subscribe","topic":"news"}']
types = ["message"]
stamp = { pointer = "/data" }
expect = "publisher:ws-news"
reconnect = true
"#;

#[test]
fn the_bundled_target_killed_mid_run_is_started_again_and_the_verdict_says_so() {
    let dir = support::temp_dir("restart");
    let file = dir.join("restart.toml");
    std::fs::write(&file, RESTART_SCENARIO).expect("scenario");
    let run_dir = dir.join("run");
    // Connections start 3 s from now (the bundled server is up by then); 3 s into the run,
    // well inside its measured phase, the server gets SIGKILL.
    let start = support::start_in(3);
    let child = support::run_starting_at(&file, &run_dir, start);
    wait_for("the bundled server", || !children_of(child.id()).is_empty());
    let servers = children_of(child.id());
    support::sleep_until(start, 3000);
    for pid in servers {
        support::kill_hard(pid);
    }
    let out = child.wait_with_output().expect("loadgen ran");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}");
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("run.json")).expect("run.json written"),
    )
    .expect("json");
    // The run went on to its end against the server started again...
    assert_eq!(run["outcome"], "Completed", "{stdout}\n{stderr}");
    let rows = std::fs::read_to_string(run_dir.join("timeseries.csv")).expect("timeseries");
    let last_second_events: u64 = rows
        .lines()
        .rev()
        .nth(1)
        .and_then(|l| l.split(',').nth(2)?.parse().ok())
        .expect("events_per_s");
    assert!(
        last_second_events > 0,
        "nothing arrived after the restart\n{rows}"
    );
    // ...the verdict says what happened...
    let warnings = run["warnings"].to_string();
    assert!(
        warnings.contains("the bundled server exited (signal: 9 (SIGKILL)) and was started again on the same address"),
        "{warnings}"
    );
    // ...every connection came back...
    let dropped = support::counter(&run_dir, "streams_dropped");
    assert!(dropped >= 30, "{dropped} streams dropped\n{stdout}");
    assert!(support::counter(&run_dir, "reconnects") >= dropped);
    // ...and the counts reconcile: every lost message fell while connections were down
    // (what the dead server held, what was published before they were back), and the failure
    // says so.
    let lost = support::counter(&run_dir, "lost");
    let across = support::counter(&run_dir, "gaps_across_reconnects");
    assert!(
        lost > 0 && across == lost,
        "lost {lost}, across reconnects {across}\n{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "{lost} of them were published while connections were down"
        )),
        "{stdout}"
    );
}
