//! `loadgen calibrate`: loadgen's own timing error, measured against a known truth.
//!
//! Two runs against the bundled server with delay injection on (every K-th message held D ms,
//! see the server's `injection` module): SSE counter streams (`delivery`) and WebSocket
//! echoes (`ws_rtt`). The server records what it actually did in its `rt_truth_us`
//! histograms (counter: write minus intended time; echo: write minus receipt). loadgen's
//! percentile minus the server's is what loadgen adds: its own delay (timers, scheduling,
//! parsing) plus the loopback network, which on this machine is a few tens of µs.
//!
//! Goal: p50/p90/p99 within [`GOAL_PERCENTILE_US`], max within [`GOAL_MAX_US`]. Both sides
//! time the same messages: each counter stream ends after `duration / interval` events (all
//! inside loadgen's window), and the held time is below the send period and tick interval,
//! so no message queues behind a held one. Keep the held fraction (1 / `delay_every`) away
//! from the percentiles compared: at exactly 10% held, p90 sits on the boundary between held
//! and unheld messages and either side may land on it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::live::run::{DEFAULT_SEED, Progress, RunError, RunOptions};
use crate::live::stats::Metric;
use crate::scenario::{self, Scenario};

/// Largest acceptable difference at p50, p90 and p99, µs.
pub const GOAL_PERCENTILE_US: f64 = 200.0;
/// Largest acceptable difference of the maximum, µs.
pub const GOAL_MAX_US: f64 = 1_000.0;

/// The statistics compared, with the server's quantile label for each.
const STATS: [(&str, f64, &str); 4] = [
    ("p50", 0.5, "0.5"),
    ("p90", 0.9, "0.9"),
    ("p99", 0.99, "0.99"),
    ("max", 1.0, "1"),
];

/// How to calibrate.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// Measured phase of each run.
    pub duration: Duration,
    /// Connections per run.
    pub connections: u32,
    /// SSE counter tick interval, and WS sends per second per connection (1 / interval).
    pub interval: Duration,
    /// Every K-th message is held.
    pub delay_every: u64,
    /// For this long (must be shorter than `interval`).
    pub delay: Duration,
    /// Where the two run directories go (`sse/`, `ws/`).
    pub out: PathBuf,
    /// Executable with a `serve` subcommand (loadgen itself).
    pub server_exe: PathBuf,
}

/// Calibration settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
    /// A run could not start or be written.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A generated scenario did not validate (a bug).
    #[error("internal scenario: {0}")]
    Scenario(#[from] scenario::ScenarioError),
}

/// One latency metric compared with the server's truth (µs).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// `delivery` or `ws_rtt`.
    pub metric: Metric,
    /// Samples loadgen recorded.
    pub loadgen_count: u64,
    /// Samples the server recorded.
    pub truth_count: u64,
    /// (stat, loadgen, server truth) for p50, p90, p99, max.
    pub stats: Vec<(&'static str, Option<f64>, Option<f64>)>,
    /// The run directory.
    pub run_dir: PathBuf,
}

impl Comparison {
    /// Whether every statistic is within its goal (and both sides have samples).
    #[must_use]
    pub fn within_goal(&self) -> bool {
        self.stats.iter().all(|(stat, l, t)| match (l, t) {
            (Some(l), Some(t)) => (l - t).abs() <= goal(stat),
            _ => false,
        })
    }
}

fn goal(stat: &str) -> f64 {
    if stat == "max" {
        GOAL_MAX_US
    } else {
        GOAL_PERCENTILE_US
    }
}

/// The result of `calibrate`.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// SSE delivery, then WS round trip.
    pub comparisons: Vec<Comparison>,
    /// The settings used.
    pub options: CalibrateOptions,
}

impl Calibration {
    /// Whether both comparisons are within their goals.
    #[must_use]
    pub fn within_goal(&self) -> bool {
        self.comparisons.iter().all(Comparison::within_goal)
    }

    /// The table `loadgen calibrate` prints.
    #[must_use]
    pub fn table(&self) -> String {
        let o = &self.options;
        let mut out = format!(
            "calibration: {} connections, {} ms interval, every {}th message held {} ms, {} s each\n",
            o.connections,
            o.interval.as_secs_f64() * 1000.0,
            o.delay_every,
            o.delay.as_secs_f64() * 1000.0,
            o.duration.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "{:<10} {:<5} {:>10} {:>10} {:>12} {:>8}",
            "metric", "stat", "loadgen", "truth", "difference", "goal"
        );
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.3}ms", v / 1000.0));
        for c in &self.comparisons {
            for (stat, l, t) in &c.stats {
                let diff = match (l, t) {
                    (Some(l), Some(t)) => format!("{:+.3}ms", (l - t) / 1000.0),
                    _ => "-".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:<10} {:<5} {:>10} {:>10} {:>12} {:>8}",
                    c.metric.name(),
                    stat,
                    ms(*l),
                    ms(*t),
                    diff,
                    format!("{:.1}ms", goal(stat) / 1000.0)
                );
            }
            let _ = writeln!(
                out,
                "{:<10} samples: loadgen {}, server {}; run in {}",
                c.metric.name(),
                c.loadgen_count,
                c.truth_count,
                c.run_dir.display()
            );
        }
        let _ = writeln!(
            out,
            "verdict: {}",
            if self.within_goal() {
                "loadgen's error is within the goals"
            } else {
                "loadgen's error is OUTSIDE the goals (is the machine busy?)"
            }
        );
        out
    }
}

/// Runs both calibration runs and compares loadgen's figures with the server's truth.
///
/// # Errors
/// [`CalibrateError`] for settings that cannot work or a run that cannot start.
pub async fn calibrate(options: CalibrateOptions) -> Result<Calibration, CalibrateError> {
    check(&options)?;
    let interval_ms = options.interval.as_secs_f64() * 1000.0;
    let query = format!(
        "delay_every={}&delay_ms={}",
        options.delay_every,
        options.delay.as_millis()
    );
    let sse = format!(
        r#"name = "calibrate-sse"
[run]
duration = "{d}ms"
[[clients]]
name = "counter"
protocol = "sse"
path = "/sse/counter?interval_ms={i}&count={events}&{query}"
count = {n}
arrival_rate = 1000
expect = "stream"
reconnect = false
"#,
        d = options.duration.as_millis(),
        i = options.interval.as_millis(),
        n = options.connections,
        events = (options.duration.as_millis() / options.interval.as_millis()).max(1),
    );
    let ws = format!(
        r#"name = "calibrate-ws"
[run]
duration = "{d}ms"
[[clients]]
name = "echo"
protocol = "ws"
path = "/ws/echo?{query}"
count = {n}
arrival_rate = 1000
send_rate = {rate}
latency = "rtt"
"#,
        d = options.duration.as_millis(),
        n = options.connections,
        rate = 1000.0 / interval_ms,
    );
    let mut comparisons = Vec::new();
    for (text, dir, metric, route) in [
        (
            sse,
            "sse",
            Metric::Delivery,
            "scenario=\"counter\",protocol=\"sse\"",
        ),
        (
            ws,
            "ws",
            Metric::WsRtt,
            "scenario=\"ws_echo\",protocol=\"ws\"",
        ),
    ] {
        let scenario = scenario::parse(&text, Path::new("calibrate.toml"))?;
        let run_dir = options.out.join(dir);
        let report = crate::run(run_options(scenario, &options, &run_dir)).await?;
        comparisons.push(compare(metric, route, &report, run_dir));
    }
    Ok(Calibration {
        comparisons,
        options,
    })
}

fn check(o: &CalibrateOptions) -> Result<(), CalibrateError> {
    let bad = |m: String| Err(CalibrateError::Invalid(m));
    if o.connections == 0 || o.connections > 10_000 {
        return bad(format!(
            "--connections must be from 1 to 10000, got {}",
            o.connections
        ));
    }
    if o.interval < Duration::from_millis(1) || !o.interval.as_nanos().is_multiple_of(1_000_000) {
        return bad("--interval must be a whole number of milliseconds, at least 1ms".to_owned());
    }
    if o.delay_every == 0 {
        return bad("--delay-every must be at least 1".to_owned());
    }
    if o.delay >= o.interval || !o.delay.as_nanos().is_multiple_of(1_000_000) {
        return bad(format!(
            "--delay must be whole milliseconds and shorter than --interval ({} ms), so no message queues behind a held one",
            o.interval.as_millis()
        ));
    }
    if o.duration < Duration::from_secs(1) {
        return bad("--duration must be at least 1s".to_owned());
    }
    Ok(())
}

fn run_options(scenario: Scenario, o: &CalibrateOptions, dir: &Path) -> RunOptions {
    RunOptions {
        scenario,
        scenario_file: None,
        target: None,
        resolve: Vec::new(),
        tls: crate::live::transport::TlsOptions::default(),
        token: None,
        out: Some(dir.to_owned()),
        results_root: o.out.clone(),
        server_exe: Some(o.server_exe.clone()),
        progress: Progress::Quiet,
        command_line: std::env::args().collect(),
        cancel: None,
        raw_samples: None,
        seed: DEFAULT_SEED,
        start_at: None,
    }
}

fn compare(
    metric: Metric,
    route: &str,
    report: &crate::results::report::Report,
    run_dir: PathBuf,
) -> Comparison {
    let h = report.histograms.get(metric);
    let truth = |q: &str| -> Option<f64> {
        report
            .server_after
            .get(&format!("rt_truth_us{{{route},quantile=\"{q}\"}}"))
            .copied()
    };
    let truth_count = report
        .server_after
        .get(&format!("rt_truth_us_count{{{route}}}"))
        .copied()
        .unwrap_or(0.0);
    let stats = STATS
        .iter()
        .map(|(name, q, label)| {
            let mine = (!h.is_empty()).then(|| {
                if *q >= 1.0 {
                    h.max() as f64
                } else {
                    h.value_at_quantile(*q) as f64
                }
            });
            (*name, mine, truth(label))
        })
        .collect();
    Comparison {
        metric,
        loadgen_count: h.len(),
        truth_count: truth_count_u64(truth_count),
        stats,
        run_dir,
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn truth_count_u64(v: f64) -> u64 {
    // A count scraped as text: non-negative and integral; `as` saturates.
    if v.is_finite() && v >= 0.0 {
        v as u64
    } else {
        0
    }
}
