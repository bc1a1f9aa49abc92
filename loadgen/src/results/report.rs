//! The result of a run: verdict, thresholds, latency summaries, counters, memory, CPU, and
//! the console table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::live::stats::{Counters, Histograms, Metric};
use crate::scenario::{Scenario, Subject, Threshold};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ran to the end.
    Completed,
    /// Stopped by Ctrl-C / SIGTERM; results so far were written.
    Interrupted,
    /// The hard time limit cut the run short.
    TimeLimit,
    /// The target died or became unreachable mid-run.
    TargetFailed(String),
}

/// A span during which the target was down, seconds since the run started: a remote target
/// refusing connections (to the nearest once-a-second check), or the bundled server dead
/// until it was started again.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// When it went down.
    pub from_s: f64,
    /// When it answered again (or the end of the run).
    pub to_s: f64,
    /// What happened, for the verdict.
    pub cause: String,
}

/// One threshold's result.
#[derive(Debug, Clone)]
pub struct ThresholdResult {
    /// The rule.
    pub rule: Threshold,
    /// The measured value (µs for latencies), `None` when there was no sample.
    pub actual: Option<f64>,
    /// Whether it holds (a rule with no sample fails).
    pub passed: bool,
}

/// Memory of both sides, bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Loadgen RSS before connecting.
    pub client_baseline: Option<u64>,
    /// Loadgen RSS with every connection open (end of the measured phase).
    pub client_plateau: Option<u64>,
    /// Highest loadgen RSS sample.
    pub client_peak: Option<u64>,
    /// Target RSS before connecting.
    pub server_baseline: Option<u64>,
    /// Target RSS with every connection open.
    pub server_plateau: Option<u64>,
    /// Highest target RSS sample.
    pub server_peak: Option<u64>,
    /// Connections open at the plateau sample.
    pub connections: u64,
    /// Least-squares slope of loadgen's once-a-second RSS over the measured phase, bytes per
    /// minute (a leak shows as a steady positive slope; `None` under 3 samples).
    pub client_slope_per_min: Option<f64>,
    /// The same for the target's RSS.
    pub server_slope_per_min: Option<f64>,
    /// RSS of the `redis-server` loadgen spawned for the bundled instances, at the end of the
    /// measured phase.
    pub redis_plateau: Option<u64>,
}

/// Least-squares slope of `pick(row)` against `row.t_s` over the rows with `t_s` in
/// `[from_s, until_s]`, in units per minute; `None` with fewer than 3 such samples.
#[must_use]
pub fn slope_per_min(
    rows: &[Row],
    pick: fn(&Row) -> Option<u64>,
    (from_s, until_s): (f64, f64),
) -> Option<f64> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| (from_s..=until_s).contains(&r.t_s))
        .filter_map(|r| Some((r.t_s, pick(r)? as f64)))
        .collect();
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (t, v) in &points {
        cov += (t - mean_t) * (v - mean_v);
        var += (t - mean_t) * (t - mean_t);
    }
    (var > 0.0).then(|| cov / var * 60.0)
}

impl Memory {
    fn per_connection(baseline: Option<u64>, plateau: Option<u64>, n: u64) -> Option<f64> {
        let (b, p) = (baseline?, plateau?);
        (n > 0).then(|| p.saturating_sub(b) as f64 / n as f64)
    }

    /// `(client plateau - client baseline) / connections`, bytes.
    #[must_use]
    pub fn client_per_connection(&self) -> Option<f64> {
        Self::per_connection(self.client_baseline, self.client_plateau, self.connections)
    }

    /// `(server plateau - server baseline) / connections`, bytes.
    #[must_use]
    pub fn server_per_connection(&self) -> Option<f64> {
        Self::per_connection(self.server_baseline, self.server_plateau, self.connections)
    }
}

/// CPU use over the measured phase, percent of one core.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// Loadgen's own CPU.
    pub loadgen_percent: Option<f64>,
    /// The bundled server's CPU, summed over its instances (unknown for a remote target).
    pub server_percent: Option<f64>,
    /// The spawned `redis-server`'s CPU over the measured phase.
    pub redis_percent: Option<f64>,
    /// Cores available.
    pub cores: usize,
}

impl Cpu {
    /// Loadgen used at least 90% of the cores its runtime has: latencies measure the tool.
    #[must_use]
    pub fn loadgen_saturated(&self) -> bool {
        self.loadgen_percent
            .is_some_and(|p| p >= 90.0 * self.cores as f64)
    }

    /// Loadgen and server together used at least 90% of the machine.
    #[must_use]
    pub fn machine_saturated(&self) -> bool {
        let total = self.loadgen_percent.unwrap_or(0.0)
            + self.server_percent.unwrap_or(0.0)
            + self.redis_percent.unwrap_or(0.0);
        total >= 90.0 * self.cores as f64
    }
}

/// One second of the run: one row of `timeseries.csv` (field names are its columns).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Connections open.
    pub connections_open: u64,
    /// Measured messages received in this second.
    pub events_per_s: u64,
    /// Errors in this second.
    pub errors: u64,
    /// Loadgen RSS.
    pub client_rss_bytes: Option<u64>,
    /// Target RSS.
    pub server_rss_bytes: Option<u64>,
    /// p99 of this second's delivery samples, µs.
    pub delivery_p99_us: Option<u64>,
    /// p99 of this second's WS RTT samples, µs.
    pub ws_rtt_p99_us: Option<u64>,
    /// p99 of this second's connect samples, µs.
    pub connect_p99_us: Option<u64>,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario as run (after any scaling).
    pub scenario: Scenario,
    /// Where the outputs were written.
    pub run_dir: PathBuf,
    /// Start, Unix µs.
    pub started_unix_us: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Latency histograms (measured phase).
    pub histograms: Histograms,
    /// Correctness counters (whole run).
    pub counters: Counters,
    /// The target's `/metrics` before the run.
    pub server_before: BTreeMap<String, f64>,
    /// The target's `/metrics` after the run.
    pub server_after: BTreeMap<String, f64>,
    /// Memory of both sides.
    pub memory: Memory,
    /// CPU of both sides.
    pub cpu: Cpu,
    /// Per-second rows.
    pub timeseries: Vec<Row>,
    /// Threshold results.
    pub thresholds: Vec<ThresholdResult>,
    /// Up to five distinct connection errors seen.
    pub error_samples: Vec<String>,
    /// `--raw-samples`: the file and how many rows it holds.
    pub raw_samples: Option<crate::live::raw_samples::RawSamplesSummary>,
    /// A shard of a sharded run: its facts for `loadgen merge`.
    pub shard: Option<crate::results::shard_record::ShardRecord>,
    /// When the target was down mid-run (see warnings).
    pub target_outages: Vec<Outage>,
    /// Each instance's share when the bundled server ran as several (`[server] instances`);
    /// empty otherwise.
    pub instances: Vec<InstanceShare>,
}

/// One instance of the bundled server run as several: how much of the load it carried
/// (changes of its own `/metrics` counters over the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceShare {
    /// Its URL.
    pub url: String,
    /// `rt_connections_accepted_total`, every label summed.
    pub connections_accepted: u64,
    /// `rt_messages_sent_total`, every label summed.
    pub messages_sent: u64,
}

impl InstanceShare {
    /// The share of the instance at `url` from its scrapes before and after the run.
    #[must_use]
    pub fn from_scrapes(
        url: String,
        before: &BTreeMap<String, f64>,
        after: &BTreeMap<String, f64>,
    ) -> Self {
        let delta = |name: &str| {
            let sum = |m: &BTreeMap<String, f64>| -> f64 {
                m.iter()
                    .filter(|(k, _)| k.split('{').next() == Some(name))
                    .map(|(_, v)| *v)
                    .sum()
            };
            crate::live::reporter::gauge_u64(sum(after) - sum(before)).unwrap_or(0)
        };
        Self {
            url,
            connections_accepted: delta("rt_connections_accepted_total"),
            messages_sent: delta("rt_messages_sent_total"),
        }
    }
}

/// `send_lag.p99` above this (µs) flags the run: loadgen sent late, so every latency measured
/// from a send slot includes loadgen's own delay.
pub const LATE_SEND_P99_US: u64 = 1_000;

/// Percentiles reported for every latency metric (`summary.csv` columns).
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)];

/// Value of a latency statistic, µs.
#[must_use]
pub fn latency_stat(histograms: &Histograms, metric: &str, stat: &str) -> Option<f64> {
    let metric = Metric::ALL.into_iter().find(|m| m.name() == metric)?;
    let h = histograms.get(metric);
    if h.is_empty() {
        return None;
    }
    let value = match stat {
        "min" => h.min() as f64,
        "max" => h.max() as f64,
        "mean" => h.mean(),
        other => {
            let q: f64 = other.strip_prefix('p')?.parse().ok()?;
            h.value_at_quantile(q / 100.0) as f64
        }
    };
    Some(value)
}

/// Evaluates rules against the measurements.
#[must_use]
pub fn evaluate(
    rules: &[Threshold],
    histograms: &Histograms,
    counters: &Counters,
) -> Vec<ThresholdResult> {
    rules
        .iter()
        .map(|rule| {
            let actual = match &rule.subject {
                Subject::Latency { metric, stat } => latency_stat(histograms, metric, stat),
                Subject::Counter(name) => counters.get(name).map(|v| v as f64),
            };
            ThresholdResult {
                rule: rule.clone(),
                passed: actual.is_some_and(|a| rule.op.holds(a, rule.limit)),
                actual,
            }
        })
        .collect()
}

impl Report {
    /// Measured messages (delivery and WS round-trip samples) per second of the measured
    /// phase: the run's throughput.
    #[must_use]
    pub fn measured_messages_per_s(&self) -> f64 {
        // Unstamped streams have no latency sample: their messages count through
        // `interarrival` (one sample per message after a stream's first).
        let samples = self.histograms.get(Metric::Delivery).len()
            + self.histograms.get(Metric::WsRtt).len()
            + self.histograms.get(Metric::Interarrival).len();
        let seconds = self.scenario.run.duration.as_secs_f64();
        if seconds > 0.0 {
            samples as f64 / seconds
        } else {
            0.0
        }
    }

    /// Whether loadgen sent late: `send_lag.p99` above [`LATE_SEND_P99_US`].
    #[must_use]
    pub fn loadgen_late(&self) -> bool {
        let lag = self.histograms.get(Metric::SendLag);
        !lag.is_empty() && lag.value_at_quantile(0.99) > LATE_SEND_P99_US
    }

    /// Why the figures may not be the target's: loadgen or the machine was saturated, or
    /// loadgen sent late. The run is not failed for it; the verdict says it.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cpu.loadgen_saturated() {
            out.push(
                "loadgen saturated its cores: latencies measure loadgen, not the target".to_owned(),
            );
        } else if self.cpu.machine_saturated() {
            out.push(
                "loadgen and target together saturated the machine: latencies include CPU contention"
                    .to_owned(),
            );
        }
        let c = &self.counters;
        if c.streams_dropped > 0 {
            out.push(format!(
                "{} streams dropped mid-run; {} reconnects followed, {} messages fell in the gaps{}",
                c.streams_dropped,
                c.reconnects,
                c.gaps_across_reconnects,
                if c.gaps_across_reconnects == 0 && c.reconnects > 0 {
                    " (every resumed stream went on without a gap)"
                } else {
                    ""
                }
            ));
        }
        let accepted: Vec<u64> = self
            .instances
            .iter()
            .map(|i| i.connections_accepted)
            .collect();
        if accepted.len() > 1 && accepted.contains(&0) && accepted.iter().any(|&a| a > 0) {
            out.push(format!(
                "some instances accepted no connection (accepted per instance: {accepted:?}): the load did not reach every instance"
            ));
        }
        for o in &self.target_outages {
            out.push(format!(
                "target down from t={:.2}s to t={:.2}s: {}",
                o.from_s, o.to_s, o.cause
            ));
        }
        if self.loadgen_late() {
            let p99 = self.histograms.get(Metric::SendLag).value_at_quantile(0.99);
            out.push(format!(
                "loadgen sent late (send_lag p99 {:.2} ms > {:.0} ms): latencies measured from send slots include loadgen's own delay",
                p99 as f64 / 1000.0,
                LATE_SEND_P99_US as f64 / 1000.0
            ));
        }
        out
    }

    /// Why the run failed, if it did.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.outcome {
            Outcome::Completed => {}
            Outcome::Interrupted => out.push("interrupted before the end".to_owned()),
            Outcome::TimeLimit => out.push("hit the hard time limit".to_owned()),
            Outcome::TargetFailed(why) => out.push(format!("target failed: {why}")),
        }
        out.extend(threshold_failures(&self.thresholds));
        out.extend(count_failures(&self.counters));
        if !self.error_samples.is_empty() {
            out.push(format!(
                "connection errors: {}",
                self.error_samples.join(", ")
            ));
        }
        out
    }

    /// Process exit code: 0 pass, 1 failed (thresholds, loss, interrupted, time limit),
    /// 3 target unreachable or failed.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if matches!(self.outcome, Outcome::TargetFailed(_))
            || self.counters.connections_established == 0
        {
            return 3;
        }
        i32::from(!self.failures().is_empty())
    }

    /// The console table.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nscenario {} ({:.1}s) -> {}",
            self.scenario.name,
            self.elapsed.as_secs_f64(),
            self.run_dir.display()
        );
        latency_lines(&mut out, &self.histograms);
        counter_lines(&mut out, &self.counters);
        let mib = |b: Option<u64>| {
            b.map_or("-".to_owned(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        let kib = |b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.2} KiB", b / 1024.0));
        let m = &self.memory;
        let _ = writeln!(
            out,
            "memory: loadgen peak {} ({} per connection), target peak {} ({} per connection), {} connections",
            mib(m.client_peak),
            kib(m.client_per_connection()),
            mib(m.server_peak),
            kib(m.server_per_connection()),
            m.connections
        );
        if m.client_slope_per_min.is_some() || m.server_slope_per_min.is_some() {
            let slope = |b: Option<f64>| {
                b.map_or("-".to_owned(), |b| format!("{:+.1} KiB/min", b / 1024.0))
            };
            let _ = writeln!(
                out,
                "memory slope over the measured phase: loadgen {}, target {}",
                slope(m.client_slope_per_min),
                slope(m.server_slope_per_min)
            );
        }
        let pct = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.0}%"));
        let _ = writeln!(
            out,
            "cpu: loadgen {}, target {} (of one core; {} cores)",
            pct(self.cpu.loadgen_percent),
            pct(self.cpu.server_percent),
            self.cpu.cores
        );
        if !self.instances.is_empty() {
            let list = |f: fn(&InstanceShare) -> u64| {
                let v: Vec<String> = self.instances.iter().map(|i| f(i).to_string()).collect();
                v.join(" / ")
            };
            let _ = writeln!(
                out,
                "instances: {} of the bundled server; connections accepted {}, messages sent {}",
                self.instances.len(),
                list(|i| i.connections_accepted),
                list(|i| i.messages_sent)
            );
        }
        if m.redis_plateau.is_some() || self.cpu.redis_percent.is_some() {
            let _ = writeln!(
                out,
                "redis (spawned): {} at the end of the measured phase, cpu {} over it",
                mib(m.redis_plateau),
                pct(self.cpu.redis_percent)
            );
        }
        for warning in self.warnings() {
            let _ = writeln!(out, "WARNING: {warning}");
        }
        if let Some(raw) = &self.raw_samples {
            let _ = write!(
                out,
                "raw samples: {} rows in {}",
                raw.rows,
                raw.path.display()
            );
            if raw.not_written > 0 {
                let _ = write!(
                    out,
                    " ({} more measured messages past --raw-samples-limit not written)",
                    raw.not_written
                );
            }
            let _ = writeln!(out);
        }
        verdict_lines(&mut out, &self.thresholds, &self.failures());
        out
    }
}

/// Failures the counts alone show: unexplained loss, no connection at all.
pub(crate) fn count_failures(c: &Counters) -> Vec<String> {
    let mut out = Vec::new();
    let loss = c.unexplained_loss();
    if loss > 0 {
        let mut line =
            format!("{loss} expected messages were lost without the server reporting it");
        if c.gaps_across_reconnects > 0 {
            let _ = write!(
                line,
                ": {} of them were published while connections were down ({} streams dropped, {} reconnects; WebSocket has no replay, SSE resumes only what the server still holds for Last-Event-ID)",
                c.gaps_across_reconnects.min(loss),
                c.streams_dropped,
                c.reconnects
            );
        }
        out.push(line);
    }
    if c.connections_established == 0 {
        out.push("no connection was established".to_owned());
    }
    out
}

/// The console table's latency rows (metrics without samples are left out).
pub(crate) fn latency_lines(out: &mut String, histograms: &Histograms) {
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    for metric in Metric::ALL {
        let h = histograms.get(metric);
        if h.is_empty() {
            continue;
        }
        let ms = |v: u64| format!("{:.2}ms", v as f64 / 1000.0);
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            metric.name(),
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            format!("{:.2}ms", h.mean() / 1000.0)
        );
    }
}

/// The console table's connection and message counts.
pub(crate) fn counter_lines(out: &mut String, c: &Counters) {
    let _ = writeln!(
        out,
        "connections: {} attempted, {} established, {} failed, {} reconnects",
        c.connections_attempted,
        c.connections_established,
        c.connections_failed(),
        c.reconnects
    );
    let _ = writeln!(
        out,
        "messages: {} sent, {} expected, {} received, {} lost, {} gaps, {} duplicates, {} out of order, {} parse errors, {} server-reported drops",
        c.messages_sent,
        c.messages_expected,
        c.messages_received,
        c.lost(),
        c.gaps,
        c.duplicates,
        c.out_of_order,
        c.parse_errors,
        c.server_drops
    );
}

/// The console table's threshold results and verdict.
pub(crate) fn verdict_lines(out: &mut String, thresholds: &[ThresholdResult], failures: &[String]) {
    for t in thresholds {
        let actual = t
            .actual
            .map_or("no samples".to_owned(), |a| fmt_value(&t.rule, a));
        let _ = writeln!(
            out,
            "{} {} (actual {actual})",
            if t.passed { "PASS" } else { "FAIL" },
            t.rule
        );
    }
    if failures.is_empty() {
        let _ = writeln!(out, "verdict: PASS");
    } else {
        let _ = writeln!(out, "verdict: FAIL: {}", failures.join("; "));
    }
}

/// Threshold failures as the verdict words them.
pub(crate) fn threshold_failures(thresholds: &[ThresholdResult]) -> impl Iterator<Item = String> {
    thresholds.iter().filter(|t| !t.passed).map(|t| {
        format!(
            "threshold `{}` failed ({})",
            t.rule,
            t.actual
                .map_or("no samples".to_owned(), |a| fmt_value(&t.rule, a))
        )
    })
}

fn fmt_value(rule: &Threshold, v: f64) -> String {
    match rule.subject {
        Subject::Latency { .. } => format!("{:.3}ms", v / 1000.0),
        Subject::Counter(_) => format!("{v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percentile definition (README, "What is measured"): pXX is HdrHistogram's value at
    /// that percentile, the smallest recorded value (to 3 significant digits, reported as the
    /// highest value equivalent to it) that XX% of the samples are at or below.
    #[test]
    fn rss_slope_is_the_least_squares_line_over_the_window_only() {
        let rows: Vec<Row> = (0..20u32)
            .map(|t| Row {
                t_s: f64::from(t),
                // 1,000 bytes more each second inside [5, 15], a jump outside it.
                client_rss_bytes: Some(if (5..=15).contains(&t) {
                    1_000_000 + 1000 * u64::from(t)
                } else {
                    9_000_000
                }),
                server_rss_bytes: (t % 2 == 0).then_some(500),
                ..Row::default()
            })
            .collect();
        let client = slope_per_min(&rows, |r| r.client_rss_bytes, (5.0, 15.0)).expect("slope");
        assert!((client - 60_000.0).abs() < 1e-6, "{client}");
        let flat = slope_per_min(&rows, |r| r.server_rss_bytes, (5.0, 15.0)).expect("slope");
        assert!(flat.abs() < 1e-9, "{flat}");
        assert_eq!(
            slope_per_min(&rows, |r| r.client_rss_bytes, (5.0, 6.5)),
            None
        );
    }

    #[test]
    fn p90_with_exactly_ten_percent_large_samples_is_the_small_value() {
        let mut h = Histograms::default();
        h.record_n(Metric::Delivery, 1_000, 900);
        h.record_n(Metric::Delivery, 50_000, 100);
        let stat = |s: &str| latency_stat(&h, "delivery", s).expect("samples");
        let large = h.get(Metric::Delivery).highest_equivalent(50_000) as f64;
        assert_eq!(stat("p50"), 1_000.0);
        assert_eq!(stat("p90"), 1_000.0, "exactly 90% are at or below 1 ms");
        assert_eq!(stat("p90.1"), large, "the 901st sample is large");
        assert_eq!(stat("p99"), large);
        assert_eq!(stat("max"), large);
        assert_eq!(stat("min"), 1_000.0);
    }
}
