//! Every shipped scenario validates, and runs at small scale against the bundled server (a
//! real child process) with loadgen's counts matching the server's own `/metrics`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use loadgen::results::output::{COUNTERS_HEADER, SUMMARY_HEADER, TIMESERIES_HEADER};
use loadgen::scenario::Protocol;

use crate::support;

const SHIPPED: [&str; 14] = [
    "fanout",
    "counter",
    "chat-sse",
    "stocks",
    "notifications",
    "replay",
    "ws-echo",
    "ws-chat",
    "rooms",
    "pubsub",
    "mixed",
    "soak-10k",
    "soak-19k",
    "cluster",
];

fn path_of(name: &str) -> PathBuf {
    support::scenarios_dir().join(format!("{name}.toml"))
}

#[test]
fn every_scenario_file_is_shipped_and_valid() {
    let mut on_disk: Vec<String> = std::fs::read_dir(support::scenarios_dir())
        .expect("scenarios/")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "toml")
                .then(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))?
        })
        .collect();
    on_disk.sort();
    let mut shipped: Vec<String> = SHIPPED.iter().map(|s| (*s).to_owned()).collect();
    shipped.sort();
    assert_eq!(
        on_disk, shipped,
        "every file in scenarios/ is tested, and only those"
    );
    for name in SHIPPED {
        let s = loadgen::scenario::load(&path_of(name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.thresholds.is_empty(), "{name} has no thresholds");
        assert!(!s.description.is_empty(), "{name} has no description");
    }
    let fanout = loadgen::scenario::load(&path_of("fanout")).expect("valid");
    assert_eq!(fanout.total_connections(), 2000);
    assert_eq!(fanout.run.duration, Duration::from_secs(30));
    assert_eq!(fanout.publishers[0].rate, 10.0);
    let soak = loadgen::scenario::load(&path_of("soak-10k")).expect("valid");
    assert_eq!(soak.total_connections(), 10_000);
    let soak = loadgen::scenario::load(&path_of("soak-19k")).expect("valid");
    assert_eq!(soak.total_connections(), 19_000);
    assert_eq!(soak.run.duration, Duration::from_secs(600));
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    after
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum()
}

async fn run_small(name: &str) {
    let mut scenario = loadgen::scenario::load(&path_of(name)).expect("valid");
    scenario.scale_down(Some(8), Some(Duration::from_millis(1500)));
    scenario.run.warmup = Duration::from_millis(300);
    let on_connect: u64 = scenario
        .clients
        .iter()
        .filter(|g| g.protocol == Protocol::Ws)
        .map(|g| g.on_connect.len() as u64 * u64::from(g.count))
        .sum();
    let dir = support::temp_dir(name);
    let report = loadgen::run(support::options(scenario, None, &dir))
        .await
        .expect("runs");
    let c = report.counters;
    assert_eq!(
        report.exit_code(),
        0,
        "{name}: {:?}\n{}",
        report.failures(),
        report.table()
    );
    assert!(c.messages_received > 0, "{name}: nothing measured");
    assert_eq!(c.lost(), 0, "{name}");
    // The server's own counters agree with ours.
    let (before, after) = (&report.server_before, &report.server_after);
    let accepted = delta(before, after, "rt_connections_accepted_total");
    assert_eq!(
        accepted, c.connections_established as f64,
        "{name}: connections accepted by the server"
    );
    let server_received = delta(before, after, "rt_messages_received_total");
    assert_eq!(
        server_received,
        (c.messages_sent + on_connect) as f64,
        "{name}: messages the server received"
    );
    let server_sent = delta(before, after, "rt_messages_sent_total");
    assert!(
        server_sent >= c.messages_received as f64,
        "{name}: server sent {server_sent}, we got {}",
        c.messages_received
    );
    // The documented files, with their pinned headers.
    for (file, header) in [
        ("summary.csv", SUMMARY_HEADER),
        ("counters.csv", COUNTERS_HEADER),
        ("timeseries.csv", TIMESERIES_HEADER),
    ] {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
        assert_eq!(text.lines().next(), Some(header), "{name}/{file}");
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(run["scenario"]["name"], name);
    assert_eq!(run["exit_code"], 0);
    for metric in ["connect", "first_event", "delivery", "ws_rtt", "reconnect"] {
        assert!(
            dir.join(format!("{metric}.hlog")).exists(),
            "{name}: {metric}.hlog"
        );
    }
    // Read back: the merged .hlog intervals are the histograms summary.csv was made from.
    let data = loadgen::results::rundir::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    for metric in loadgen::live::stats::Metric::ALL {
        let row = data.summary_row(metric.name()).expect("summary row");
        let h = data.histograms.get(metric);
        assert_eq!(row.count, h.len(), "{name}: {} count", metric.name());
        if row.count > 0 {
            assert_eq!(
                row.percentiles[2],
                Some(h.value_at_quantile(0.99) as f64),
                "{name}: {} p99",
                metric.name()
            );
        }
    }
    let throughput = data.counter("messages_per_s").expect("messages_per_s");
    assert!(
        (throughput - report.measured_messages_per_s()).abs() <= 0.051,
        "{name}: throughput {throughput} vs {}",
        report.measured_messages_per_s()
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains(&format!("loadgen report: {name}")), "{name}");
    // A run compared with itself: nothing regresses.
    let same = loadgen::results::compare::compare_paths(&dir, &dir, &Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(same[0].failures(), 0, "{name}: {}", same[0].markdown());
    let _ = std::fs::remove_dir_all(&dir);
}

macro_rules! small_runs {
    ($($test:ident => $name:literal,)*) => {$(
        #[tokio::test]
        async fn $test() {
            run_small($name).await;
        }
    )*};
}

small_runs! {
    fanout_runs_small => "fanout",
    counter_runs_small => "counter",
    chat_sse_runs_small => "chat-sse",
    stocks_runs_small => "stocks",
    notifications_runs_small => "notifications",
    replay_runs_small => "replay",
    ws_echo_runs_small => "ws-echo",
    ws_chat_runs_small => "ws-chat",
    rooms_runs_small => "rooms",
    pubsub_runs_small => "pubsub",
    mixed_runs_small => "mixed",
    soak_10k_runs_small => "soak-10k",
    soak_19k_runs_small => "soak-19k",
    cluster_runs_small => "cluster",
}

/// The "Testing your own server" examples: each validates (with the variables it needs set)
/// and appears verbatim in the README. They name hosts that are not ours: never run here.
#[test]
fn examples_for_your_own_server_validate_and_are_the_readme_s() {
    let dir = support::scenarios_dir().join("examples");
    let readme =
        std::fs::read_to_string(support::scenarios_dir().join("../README.md")).expect("README.md");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("scenarios/examples") {
        let path = entry.expect("entry").path();
        let out = std::process::Command::new(support::loadgen_exe())
            .arg("validate")
            .arg(&path)
            .env("STAGING_TOKEN", "t")
            .env("CHAT_TOKEN", "t")
            .env("CHAT_SESSION", "s")
            .output()
            .expect("loadgen validate");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).expect("example");
        assert!(
            readme.contains(text.trim()),
            "README.md does not show {} verbatim",
            path.display()
        );
        names.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    assert_eq!(names.len(), 4, "{names:?}");
}
