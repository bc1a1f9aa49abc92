//! `[server] instances` and `redis`: loadgen starts several bundled servers sharing a real
//! `redis-server` (Debian's, from PATH: `.ci/run` installs it), spreads connections over them,
//! sums their counters and memory, and keeps every one of them up.

use std::process::Command;

use testkit::redis::RedisServer;

use crate::support::{self, children_of, text, wait_for};

/// SSE subscribers of a publisher on instance 1, WebSocket pub/sub subscribers of one on
/// instance 2, over `redis`.
fn cluster_scenario(redis: &str, duration: &str) -> String {
    format!(
        r#"
name = "cluster-test"
description = "test: three instances over Redis"
thresholds = ["lost == 0", "gaps == 0", "duplicates == 0"]

[run]
settle = "200ms"
warmup = "500ms"
duration = "{duration}"

[server]
instances = 3
redis = "{redis}"

[[publishers]]
name = "news"
protocol = "http"
path = "/sse/notifications"
rate = 20
payload_bytes = 64

[[publishers]]
name = "prices"
protocol = "http"
path = "/publish/prices"
rate = 20
payload_bytes = 64

[[clients]]
name = "sse"
protocol = "sse"
path = "/sse/notifications"
count = 30
arrival_rate = 500
events = ["notification"]
expect = "publisher:news"

[[clients]]
name = "ws"
protocol = "ws"
path = "/ws/pubsub"
count = 9
arrival_rate = 500
on_connect = ['{{"type":"subscribe","topic":"prices"}}']
types = ["message"]
stamp = {{ pointer = "/data" }}
expect = "publisher:prices"
"#
    )
}

#[tokio::test]
async fn three_instances_over_a_spawned_redis_share_the_load_and_are_summed() {
    let dir = support::temp_dir("cluster");
    let scenario = support::scenario(&cluster_scenario("spawn", "2s"));
    let report = loadgen::run(support::options(scenario, None, &dir))
        .await
        .expect("runs");
    let table = report.table();
    assert_eq!(report.exit_code(), 0, "{table}");
    let c = &report.counters;
    assert!(c.messages_received > 0 && c.lost() == 0, "{table}");
    // Round-robin: 10 SSE and 3 WebSocket subscribers per instance, and one publisher's
    // connection on each of the first two.
    let accepted: Vec<u64> = report
        .instances
        .iter()
        .map(|i| i.connections_accepted)
        .collect();
    assert_eq!(accepted.len(), 3, "{table}");
    assert!(accepted.iter().all(|&a| a >= 13), "{accepted:?}\n{table}");
    // The server rows are sums over every instance.
    let delta = |series: &str| {
        report.server_after.get(series).copied().unwrap_or(0.0)
            - report.server_before.get(series).copied().unwrap_or(0.0)
    };
    let accepted_total: f64 = report
        .server_after
        .keys()
        .filter(|k| k.starts_with("rt_connections_accepted_total"))
        .map(|k| delta(k))
        .sum();
    assert_eq!(
        accepted_total,
        accepted.iter().sum::<u64>() as f64,
        "{table}"
    );
    // Every broadcast went through Redis and came back to each of the three instances.
    let published = delta("rt_backplane_published_total");
    assert!(published >= 40.0, "{published}\n{table}");
    assert!(
        delta("rt_backplane_received_total") >= 3.0 * published,
        "{table}"
    );
    // Memory of the instances together, and the Redis loadgen started.
    assert!(report.memory.server_baseline.is_some(), "{table}");
    assert!(report.memory.redis_plateau.is_some(), "{table}");
    assert!(report.cpu.redis_percent.is_some(), "{table}");
    assert!(
        table.contains("instances: 3 of the bundled server"),
        "{table}"
    );
    let data = loadgen::results::rundir::load(&dir).expect("run directory");
    assert_eq!(
        data.counter("instance_3_connections_accepted"),
        Some(accepted[2] as f64)
    );
    for row in ["redis_rss_plateau_bytes", "redis_cpu_percent"] {
        assert!(data.counter(row).is_some(), "{row} in counters.csv");
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("run.json"))
            .expect("json");
    let target = run["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("3 instances over Redis at redis://127.0.0.1:"),
        "{target}"
    );
}

#[tokio::test]
async fn instances_over_a_given_redis_use_it_and_an_unreachable_one_is_named() {
    let redis = RedisServer::require();
    let dir = support::temp_dir("cluster-given");
    let scenario = support::scenario(&cluster_scenario(&redis.url(), "1s"));
    let report = loadgen::run(support::options(scenario, None, &dir))
        .await
        .expect("runs");
    assert_eq!(report.exit_code(), 0, "{}", report.table());
    assert!(report.memory.redis_plateau.is_none(), "not ours to measure");
    // Redis that refuses: the run does not start, and says which Redis.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://127.0.0.1:{closed}");
    let dir = support::temp_dir("cluster-refused");
    let scenario = support::scenario(&cluster_scenario(&url, "1s"));
    let err = loadgen::run(support::options(scenario, None, &dir))
        .await
        .expect_err("no Redis there");
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("unreachable"),
        "{text}"
    );
}

#[test]
fn without_redis_server_on_path_the_error_names_the_package() {
    let dir = support::temp_dir("cluster-no-redis");
    let file = dir.join("cluster.toml");
    std::fs::write(&file, cluster_scenario("spawn", "1s")).expect("scenario");
    let out = Command::new(support::loadgen_exe())
        .args([
            "run",
            text(&file),
            "--quiet",
            "--out",
            text(&dir.join("run")),
        ])
        .env("PATH", dir.join("empty-path"))
        .output()
        .expect("loadgen ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("redis-server") && stderr.contains("apt-get install redis-server"),
        "{stderr}"
    );
}

/// One of three instances is SIGKILLed mid-run: loadgen starts it again on its address, it
/// backfills its replay ring from Redis, and its SSE subscribers resume there with
/// `Last-Event-ID` without losing anything.
#[test]
fn an_instance_killed_mid_run_comes_back_and_its_streams_resume_from_redis() {
    let dir = support::temp_dir("cluster-kill");
    let file = dir.join("cluster.toml");
    // SSE subscribers and their publisher only: a WebSocket has no replay.
    let whole = cluster_scenario("spawn", "7s");
    let at = |part: &str| whole.find(part).expect(part);
    let (prices, clients) = (at("[[publishers]]\nname = \"prices\""), at("[[clients]]"));
    let ws = at("[[clients]]\nname = \"ws\"");
    let scenario = format!("{}{}", &whole[..prices], &whole[clients..ws]);
    std::fs::write(&file, scenario).expect("scenario");
    let run_dir = dir.join("run");
    // Connections start 3 s from now (the instances are up by then); 3 s into the run, well
    // inside its measured phase, the last instance gets SIGKILL (the first one takes the
    // publishes to /sse/notifications and stays).
    let start = support::start_in(3);
    let child = support::run_starting_at(&file, &run_dir, start);
    let servers = || -> Vec<u32> {
        let mut pids: Vec<u32> = children_of(child.id())
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split('\0').any(|arg| arg == "serve"))
            })
            .collect();
        pids.sort_unstable();
        pids
    };
    wait_for("three instances", || servers().len() == 3);
    let last = *servers().last().expect("three");
    support::sleep_until(start, 3000);
    support::kill_hard(last);
    let out = child.wait_with_output().expect("loadgen ran");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("run.json")).expect("run.json written"),
    )
    .expect("json");
    assert_eq!(run["outcome"], "Completed", "{stdout}\n{stderr}");
    let warnings = run["warnings"].to_string();
    assert!(
        warnings.contains("instance 3 of 3 of the bundled server exited (signal: 9 (SIGKILL)) and was started again on the same address"),
        "{warnings}\n{stdout}"
    );
    // Its third of the streams dropped and came back...
    let dropped = support::counter(&run_dir, "streams_dropped");
    assert!(dropped >= 10, "{dropped} streams dropped\n{stdout}");
    assert!(
        support::counter(&run_dir, "reconnects") >= dropped,
        "{stdout}"
    );
    // ...and resumed from the ring the new instance filled from Redis: nothing lost.
    assert_eq!(support::counter(&run_dir, "lost"), 0, "{stdout}");
    assert_eq!(support::counter(&run_dir, "gaps"), 0, "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}
