//! Sharded runs: three `loadgen run --shard I/3` processes against one target, then
//! `loadgen merge`: the merged counts are those of the whole plan and the merged percentiles
//! are those of the union of the shards' raw samples.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{self, Target, loadgen_exe, text};
use support::{counter, loadgen as run};

/// A publisher split over the shards, its SSE subscribers, and a WebSocket chat whose peers
/// sit in every shard: the expectations no shard knows alone.
const SCENARIO: &str = r#"
name = "sharded"
description = "test: split publisher, subscribers and a chat over three shards"
thresholds = ["lost == 0", "gaps == 0", "duplicates == 0", "errors == 0"]

[run]
settle = "300ms"
warmup = "500ms"
duration = "2s"

[[publishers]]
name = "news"
protocol = "http"
path = "/sse/notifications"
rate = 30
payload_bytes = 64
split = true

[[clients]]
name = "subscribers"
protocol = "sse"
path = "/sse/notifications"
count = 10
arrival_rate = 200
events = ["notification"]
expect = "publisher:news"

[[clients]]
name = "chatters"
protocol = "ws"
path = "/ws/chat"
count = 7
arrival_rate = 200
send_rate = 2
payload_bytes = 64
message = '{"type":"chat","text":"hi"}'
types = ["chat"]
expect = "peers"
"#;

/// Runs `SCENARIO` as three shards (shard `i` started by `command(i)`, all at one instant)
/// against `target`, each with raw samples; returns the shards' run directories.
fn run_three_shards(dir: &Path, target: &Target, command: impl Fn(u32) -> Command) -> Vec<PathBuf> {
    let file = dir.join("sharded.toml");
    std::fs::write(&file, SCENARIO).expect("write scenario");
    // Every shard starts its connect phase at the same instant, 3 s from now.
    let start_at = support::start_in(3).to_string();
    let shard_dirs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("shard{i}"))).collect();
    let children: Vec<_> = (0..3u32)
        .map(|i| {
            let raw = dir.join(format!("raw{i}.csv"));
            command(i)
                .args([
                    "run",
                    text(&file),
                    "--target",
                    &target.url,
                    "--shard",
                    &format!("{i}/3"),
                    "--start-at",
                    &start_at,
                    "--quiet",
                    "--raw-samples",
                    text(&raw),
                    "--out",
                    text(&shard_dirs[i as usize]),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start shard")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("shard ran");
        assert_eq!(
            out.status.code(),
            Some(0),
            "shard {i}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    shard_dirs
}

/// Merges `shard_dirs` into `dir/merged`; checks the counts against the whole plan (every
/// expectation reconciled) and the delivery percentiles against the union of the shards' raw
/// samples; returns the merged directory and those percentiles.
fn merge_and_check(dir: &Path, shard_dirs: &[PathBuf]) -> (PathBuf, Vec<u64>) {
    let merged = dir.join("merged");
    let mut args = vec!["merge"];
    args.extend(shard_dirs.iter().map(|d| text(d)));
    args.extend(["--out", text(&merged)]);
    let out = run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Counts: the whole plan, and every expectation reconciled.
    assert_eq!(counter(&merged, "connections_attempted"), 17);
    assert_eq!(counter(&merged, "connections_established"), 17);
    let published: u64 = shard_dirs
        .iter()
        .map(|d| {
            let j: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(d.join("run.json")).expect("run.json"),
            )
            .expect("json");
            j["shard"]["publishers"][0]["published"]
                .as_u64()
                .expect("published")
        })
        .sum();
    let chat_sent: u64 = shard_dirs
        .iter()
        .map(|d| counter(d, "messages_sent"))
        .sum::<u64>()
        - published;
    assert!(published > 0 && chat_sent > 0);
    assert_eq!(
        counter(&merged, "messages_expected"),
        10 * published + 7 * chat_sent - chat_sent
    );
    assert_eq!(counter(&merged, "lost"), 0, "{stdout}");
    assert_eq!(counter(&merged, "gaps"), 0, "{stdout}");
    assert_eq!(
        counter(&merged, "messages_received"),
        shard_dirs
            .iter()
            .map(|d| counter(d, "messages_received"))
            .sum::<u64>()
    );

    // Percentiles: those of the union of every shard's raw delivery samples.
    let mut union =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    for i in 0..shard_dirs.len() {
        let raw = std::fs::read_to_string(dir.join(format!("raw{i}.csv"))).expect("raw samples");
        for line in raw.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f[2] == "delivery" {
                union
                    .record(f[6].parse::<u64>().expect("latency").max(1))
                    .expect("record");
            }
        }
    }
    let want = vec![
        union.len(),
        union.min(),
        union.value_at_quantile(0.5),
        union.value_at_quantile(0.9),
        union.value_at_quantile(0.99),
        union.value_at_quantile(0.999),
        union.max(),
    ];
    assert!(union.len() > 100, "{} samples", union.len());
    assert_eq!(support::summary_of(&merged, "delivery"), want);
    (merged, want)
}

#[test]
fn three_shard_processes_merge_to_the_whole_plan_and_the_union_percentiles() {
    let dir = support::temp_dir("shards");
    let target = Target::start();
    let shard_dirs = run_three_shards(&dir, &target, |_| Command::new(loadgen_exe()));
    // Shards 1 and 2 publish their share and see only part of the chat: they cannot know
    // their subscribers' and chatters' expectations; shard records say what they left.
    let run1: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shard_dirs[1].join("run.json")).expect("run.json"),
    )
    .expect("json");
    assert_eq!(run1["shard"]["index"], 1);
    assert_eq!(run1["shard"]["groups"][0]["conn_base"], 4, "10 split 4/3/3");
    assert_eq!(
        run1["shard"]["groups"][0]["deferred"]["expect"],
        "publisher"
    );
    assert_eq!(run1["shard"]["groups"][1]["deferred"]["expect"], "peers");
    assert!(
        run1["shard"]["start_offset_us"]
            .as_i64()
            .expect("offset")
            .abs()
            < 2_000_000
    );
    // One clock on both sides: the server's time lies inside the probe's round trip, so the
    // estimated offset is within half of it.
    let offset = run1["shard"]["clock_offset"]["offset_us"]
        .as_i64()
        .expect("clock offset");
    let rtt = run1["shard"]["clock_offset"]["rtt_us"]
        .as_i64()
        .expect("probe round trip");
    assert!(
        offset.abs() <= rtt / 2 + 1,
        "offset {offset} µs, round trip {rtt} µs"
    );
    assert_eq!(counter(&shard_dirs[1], "messages_expected"), 0);

    let (merged, want) = merge_and_check(&dir, &shard_dirs);

    // A complete run directory that report and compare accept; run.json lists the shards.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(j["shards"].as_array().map(Vec::len), Some(3));
    assert_eq!(j["exit_code"], 0);
    let html = std::fs::read_to_string(merged.join("report.html")).expect("report.html");
    assert!(html.contains("id=\"shards\""));
    assert_eq!(run(&["report", text(&merged)]).status.code(), Some(0));
    // The directory holding the shards merges the same; the earlier merge in it is skipped.
    let again = dir.join("again");
    let out = run(&["merge", text(&dir), "--out", text(&again)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(support::summary_of(&again, "delivery"), want);
    assert_eq!(
        counter(&again, "messages_expected"),
        counter(&merged, "messages_expected")
    );
    let compared = run(&["compare", text(&merged), text(&merged)]);
    assert_eq!(
        compared.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&compared.stdout)
    );
}

#[test]
fn shards_in_their_own_network_namespaces_merge_like_loopback_ones() {
    // Four test hosts on 10.77.0.0/24: the target and one per shard, each with its own
    // address and network stack (root and iproute2 needed; CI runs as root).
    let mut net = testkit::netns::TestNet::require("lgs", 77);
    let target_host = net.host(1).expect("target host");
    let shard_hosts: Vec<_> = (0..3)
        .map(|i| net.host(11 + i).expect("shard host"))
        .collect();
    let dir = support::temp_dir("shards-netns");
    let target = Target::start_with(
        target_host.command(loadgen_exe()),
        &target_host.addr.to_string(),
    );
    assert!(
        target.url.starts_with("http://10.77.0.1:"),
        "{}",
        target.url
    );
    let shard_dirs = run_three_shards(&dir, &target, |i| {
        shard_hosts[i as usize].command(loadgen_exe())
    });
    // The target listens on its own namespace's address, so every connection crossed the
    // bridge from a shard's own address; the merge is as exact as over loopback.
    merge_and_check(&dir, &shard_dirs);
}

#[test]
fn merge_refuses_missing_duplicate_and_foreign_shards() {
    let dir = support::temp_dir("shards-refused");
    let target = Target::start();
    let counter_file = support::scenarios_dir().join("counter.toml");
    let shard = |i: u32, n: u32, name: &str, file: &Path| {
        let out_dir = dir.join(name);
        let out = run(&[
            "run",
            text(file),
            "--target",
            &target.url,
            "--shard",
            &format!("{i}/{n}"),
            "--max-clients",
            "4",
            "--duration",
            "1s",
            "--quiet",
            "--out",
            text(&out_dir),
        ]);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(1),
            "{out:?}"
        );
        out_dir
    };
    let a = shard(0, 2, "a", &counter_file);
    let b = shard(1, 2, "b", &counter_file);
    let other = shard(1, 3, "other", &counter_file);
    let stocks = shard(
        1,
        2,
        "stocks",
        &support::scenarios_dir().join("stocks.toml"),
    );
    let merged = dir.join("merged");
    let refused = |args: &[&str], says: &str| {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    refused(
        &["merge", text(&a), "--out", text(&merged)],
        "shard(s) 1 of 2 missing",
    );
    refused(
        &["merge", text(&a), text(&a), "--out", text(&merged)],
        "given twice",
    );
    refused(
        &["merge", text(&a), text(&other), "--out", text(&merged)],
        "is shard 1 of 3",
    );
    refused(
        &["merge", text(&a), text(&stocks), "--out", text(&merged)],
        "scenario `stocks`",
    );
    refused(
        &["merge", text(&a), text(&b), "--out", text(&a)],
        "is one of the shards",
    );
    // Partial on purpose: merged, and the verdict says what is missing.
    let out = run(&["merge", text(&a), "--allow-partial", "--out", text(&merged)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("partial merge: shard(s) 1 of 2 missing")
    );
    let out = run(&["merge", text(&a), text(&b), "--out", text(&merged)]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{out:?}"
    );
    assert_eq!(counter(&merged, "connections_attempted"), 4);
}

#[test]
fn bad_shard_and_start_values_are_usage_errors() {
    let file = support::scenarios_dir().join("counter.toml");
    let f = text(&file);
    for (args, says) in [
        (
            vec!["run", f, "--shard", "3/3", "--target", "http://127.0.0.1:9"],
            "out of range",
        ),
        (
            vec!["run", f, "--shard", "0/0", "--target", "http://127.0.0.1:9"],
            "0 shards",
        ),
        (
            vec!["run", f, "--shard", "x", "--target", "http://127.0.0.1:9"],
            "I/N",
        ),
        (
            vec![
                "run",
                f,
                "--shard",
                "0/100000",
                "--target",
                "http://127.0.0.1:9",
            ],
            "every shard needs at least one",
        ),
        (vec!["run", f, "--shard", "0/2"], "needs one target"),
        (
            vec!["run", f, "--shards", "2", "--target", "http://127.0.0.1:9"],
            "JOB_COMPLETION_INDEX",
        ),
        (
            vec![
                "run",
                f,
                "--start-at",
                "2000-01-01T00:00:00Z",
                "--target",
                "http://127.0.0.1:9",
            ],
            "in the past",
        ),
        (vec!["run", f, "--start-at", "tomorrow"], "RFC 3339"),
        (vec!["validate", f, "--shard", "2/2x"], "I/N"),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // The index from a Kubernetes Indexed Job.
    let out = Command::new(loadgen_exe())
        .args(["validate", f, "--shards", "3"])
        .env("JOB_COMPLETION_INDEX", "2")
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("shard 2/3 of a run"), "{stdout}");
    assert!(stdout.contains("run it with --target URL"), "{stdout}");
}
