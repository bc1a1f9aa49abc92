//! Run directory files. Column names are stable (pinned by a golden test and documented in the
//! README): `summary.csv`, `counters.csv`, `timeseries.csv`, `run.json`; the `.hlog` interval
//! logs are written while the run goes (see `run`).

use std::path::{Path, PathBuf};

use crate::live::stats::Metric;
use crate::results::report::{PERCENTILES, Report};

/// Header of `summary.csv`.
pub const SUMMARY_HEADER: &str = "metric,count,min,mean,p50,p90,p99,p99.9,max,unit";
/// Header of `counters.csv`.
pub const COUNTERS_HEADER: &str = "name,value,source";
/// Header of `timeseries.csv`.
pub const TIMESERIES_HEADER: &str = "t_s,connections_open,events_per_s,errors,client_rss_bytes,server_rss_bytes,delivery_p99_us,ws_rtt_p99_us,connect_p99_us";

/// Extra facts for `run.json`.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// The scenario file.
    pub scenario_file: Option<PathBuf>,
    /// The command line as typed.
    pub command_line: Vec<String>,
    /// `http://addr` or `bundled`.
    pub target: String,
    /// The `--seed` of the placeholders.
    pub seed: u64,
    /// How servers were verified (`--ca-file`, `--insecure`).
    pub tls: crate::live::transport::TlsOptions,
}

/// The warning every output carries when certificates were not verified.
pub const INSECURE_WARNING: &str =
    "--insecure: server certificates were NOT verified (any server could have answered)";

/// The distinct header names the scenario's groups and publishers send.
fn header_names(scenario: &crate::scenario::Scenario) -> Vec<String> {
    let mut names: Vec<String> = scenario
        .clients
        .iter()
        .flat_map(|g| &g.headers)
        .chain(scenario.publishers.iter().flat_map(|p| &p.headers))
        .map(|h| h.name.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Free space a run directory's file system must have before a run starts: room for the
/// CSVs, `.hlog`s and report of a long run (raw samples are checked as they are written).
pub const MIN_FREE_BYTES: u64 = 16 << 20;

/// A run directory that cannot take a run's results.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    /// It cannot be created or written.
    #[error("cannot write results to {}: {source}", path.display())]
    Unwritable {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Its file system is (nearly) full.
    #[error("cannot write results to {}: only {free} bytes free on its file system (a run needs {MIN_FREE_BYTES})", path.display())]
    Full {
        /// The directory.
        path: PathBuf,
        /// Bytes free for this user.
        free: u64,
    },
}

/// Creates `dir` and proves it takes a file, and that its file system has
/// [`MIN_FREE_BYTES`] free, before a run starts.
///
/// # Errors
/// [`OutDirError`] naming the directory and the reason.
pub fn prepare_run_dir(dir: &Path) -> Result<(), OutDirError> {
    let existed = dir.is_dir();
    let checked = check_run_dir(dir);
    if checked.is_err() && !existed {
        // Refused: leave nothing behind (only an empty directory is removed).
        let _ = std::fs::remove_dir(dir);
    }
    checked
}

fn check_run_dir(dir: &Path) -> Result<(), OutDirError> {
    let unwritable = |source| OutDirError::Unwritable {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let probe = dir.join(".loadgen-write-test");
    std::fs::write(&probe, b"ok").map_err(unwritable)?;
    let _ = std::fs::remove_file(&probe);
    let stat = rustix::fs::statvfs(dir).map_err(|e| unwritable(e.into()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < MIN_FREE_BYTES {
        return Err(OutDirError::Full {
            path: dir.to_path_buf(),
            free,
        });
    }
    Ok(())
}

/// Writes every file except the `.hlog`s into `report.run_dir`.
///
/// # Errors
/// The I/O error of the first file that could not be written.
pub fn write_all(report: &Report, facts: &RunFacts) -> std::io::Result<()> {
    let dir = &report.run_dir;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("summary.csv"), summary_csv(report))?;
    std::fs::write(dir.join("counters.csv"), counters_csv(report))?;
    std::fs::write(dir.join("timeseries.csv"), timeseries_csv(report))?;
    let json =
        serde_json::to_string_pretty(&run_json(report, facts)).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("run.json"), json + "\n")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// One `summary.csv` row as written (latency in µs, RSS in bytes; empty when no samples).
#[derive(serde::Serialize)]
struct SummaryOut<'a> {
    metric: &'a str,
    count: u64,
    min: Option<u64>,
    mean: Option<f64>,
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
    #[serde(rename = "p99.9")]
    p99_9: Option<u64>,
    max: Option<u64>,
    unit: &'a str,
}

impl<'a> SummaryOut<'a> {
    fn empty(metric: &'a str, unit: &'a str) -> Self {
        Self {
            metric,
            count: 0,
            min: None,
            mean: None,
            p50: None,
            p90: None,
            p99: None,
            p99_9: None,
            max: None,
            unit,
        }
    }
}

/// Rounds to one decimal (means and seconds are written that way).
fn one_decimal(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Writes `rows` as CSV with their field names as the header.
fn csv_text<T: serde::Serialize>(rows: impl IntoIterator<Item = T>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing into memory cannot fail; rows are flat structs of strings and numbers.
        let _ = w.serialize(row);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// `summary.csv`: one row per latency metric (µs), then the RSS samples of both sides (bytes).
#[must_use]
pub fn summary_csv(report: &Report) -> String {
    summary_csv_of(&report.histograms, &report.timeseries)
}

/// `summary.csv` of latency `histograms` and the RSS columns of `timeseries`.
#[must_use]
pub fn summary_csv_of(
    histograms: &crate::live::stats::Histograms,
    timeseries: &[crate::results::report::Row],
) -> String {
    let mut rows = Vec::new();
    for metric in Metric::ALL {
        let h = histograms.get(metric);
        if h.is_empty() {
            rows.push(SummaryOut::empty(metric.name(), "us"));
            continue;
        }
        let p = |q: f64| Some(h.value_at_quantile(q / 100.0));
        rows.push(SummaryOut {
            metric: metric.name(),
            count: h.len(),
            min: Some(h.min()),
            mean: Some(one_decimal(h.mean())),
            p50: p(PERCENTILES[0].1),
            p90: p(PERCENTILES[1].1),
            p99: p(PERCENTILES[2].1),
            p99_9: p(PERCENTILES[3].1),
            max: Some(h.max()),
            unit: "us",
        });
    }
    type Pick = fn(&crate::results::report::Row) -> Option<u64>;
    let rss: [(&str, Pick); 2] = [
        ("client_rss", |r| r.client_rss_bytes),
        ("server_rss", |r| r.server_rss_bytes),
    ];
    for (name, pick) in rss {
        let mut samples: Vec<u64> = timeseries.iter().filter_map(pick).collect();
        samples.sort_unstable();
        if samples.is_empty() {
            rows.push(SummaryOut::empty(name, "bytes"));
            continue;
        }
        // Nearest-rank on the sorted samples; `permille` of 1000 is the maximum.
        let at = |permille: usize| Some(samples[(samples.len() - 1) * permille / 1000]);
        let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
        rows.push(SummaryOut {
            metric: name,
            count: samples.len() as u64,
            min: Some(samples[0]),
            mean: Some(one_decimal(mean)),
            p50: at(500),
            p90: at(900),
            p99: at(990),
            p99_9: at(999),
            max: Some(samples[samples.len() - 1]),
            unit: "bytes",
        });
    }
    csv_text(rows)
}

/// `counters.csv`: loadgen's counters, memory and CPU figures, and the target's own counters
/// (change over the run).
#[must_use]
pub fn counters_csv(report: &Report) -> String {
    let mut rows: Vec<CounterOut> = report
        .counters
        .rows()
        .into_iter()
        .map(|(name, value)| CounterOut::new(name, value.to_string(), "loadgen"))
        .collect();
    let m = &report.memory;
    let memory = [
        ("client_rss_baseline_bytes", opt(m.client_baseline)),
        ("client_rss_plateau_bytes", opt(m.client_plateau)),
        ("client_rss_peak_bytes", opt(m.client_peak)),
        (
            "client_bytes_per_connection",
            opt(m.client_per_connection().map(|v| format!("{v:.0}"))),
        ),
        ("server_rss_baseline_bytes", opt(m.server_baseline)),
        ("server_rss_plateau_bytes", opt(m.server_plateau)),
        ("server_rss_peak_bytes", opt(m.server_peak)),
        (
            "server_bytes_per_connection",
            opt(m.server_per_connection().map(|v| format!("{v:.0}"))),
        ),
        ("connections_at_plateau", m.connections.to_string()),
        (
            "client_rss_slope_bytes_per_min",
            opt(m.client_slope_per_min.map(|v| format!("{v:.0}"))),
        ),
        (
            "server_rss_slope_bytes_per_min",
            opt(m.server_slope_per_min.map(|v| format!("{v:.0}"))),
        ),
        ("redis_rss_plateau_bytes", opt(m.redis_plateau)),
    ];
    rows.extend(memory.map(|(name, value)| CounterOut::new(name, value, "memory")));
    let c = &report.cpu;
    let cpu = [
        (
            "loadgen_cpu_percent",
            opt(c.loadgen_percent.map(|v| format!("{v:.1}"))),
        ),
        (
            "server_cpu_percent",
            opt(c.server_percent.map(|v| format!("{v:.1}"))),
        ),
        (
            "redis_cpu_percent",
            opt(c.redis_percent.map(|v| format!("{v:.1}"))),
        ),
        ("cores", c.cores.to_string()),
        (
            "loadgen_saturated",
            u8::from(c.loadgen_saturated()).to_string(),
        ),
        (
            "machine_saturated",
            u8::from(c.machine_saturated()).to_string(),
        ),
        ("loadgen_late", u8::from(report.loadgen_late()).to_string()),
    ];
    rows.extend(cpu.map(|(name, value)| CounterOut::new(name, value, "cpu")));
    rows.push(CounterOut::new(
        "messages_per_s",
        format!("{:.1}", report.measured_messages_per_s()),
        "throughput",
    ));
    // Several instances: each one's share, numbered from 1 as in the console table.
    let shares: Vec<(String, String)> = report
        .instances
        .iter()
        .enumerate()
        .flat_map(|(i, share)| {
            [
                (
                    format!("instance_{}_connections_accepted", i + 1),
                    share.connections_accepted.to_string(),
                ),
                (
                    format!("instance_{}_messages_sent", i + 1),
                    share.messages_sent.to_string(),
                ),
            ]
        })
        .collect();
    rows.extend(
        shares
            .iter()
            .map(|(name, value)| CounterOut::new(name, value.clone(), "server")),
    );
    // Server series keep their exact names (labels, commas, quotes): the CSV writer quotes.
    for (series, after) in &report.server_after {
        if !series.starts_with("rt_") {
            continue;
        }
        let before = report.server_before.get(series).copied().unwrap_or(0.0);
        rows.push(CounterOut::new(
            series,
            (after - before).to_string(),
            "server",
        ));
    }
    csv_text(rows)
}

/// One `counters.csv` row as written; `value` is already formatted (integers stay exact,
/// empty when unknown).
#[derive(Debug, serde::Serialize)]
pub struct CounterOut<'a> {
    name: &'a str,
    value: String,
    source: &'a str,
}

/// `counters.csv` of rows already built.
#[must_use]
pub fn counters_csv_of(rows: &[CounterOut<'_>]) -> String {
    csv_text(rows)
}

impl<'a> CounterOut<'a> {
    /// A row: `name`, its formatted `value`, and where it comes from (`loadgen`, `memory`,
    /// `cpu`, `throughput`, `server`, `shard`).
    #[must_use]
    pub fn new(name: &'a str, value: String, source: &'a str) -> Self {
        Self {
            name,
            value,
            source,
        }
    }
}

/// `timeseries.csv`: one row per second.
#[must_use]
pub fn timeseries_csv(report: &Report) -> String {
    timeseries_csv_of(&report.timeseries)
}

/// `timeseries.csv` of `rows`.
#[must_use]
pub fn timeseries_csv_of(rows: &[crate::results::report::Row]) -> String {
    if rows.is_empty() {
        return format!("{TIMESERIES_HEADER}\n");
    }
    csv_text(rows.iter().map(|r| crate::results::report::Row {
        t_s: one_decimal(r.t_s),
        ..r.clone()
    }))
}

/// `run.json`: scenario, versions, command line, start time, machine, verdict.
#[must_use]
pub fn run_json(report: &Report, facts: &RunFacts) -> serde_json::Value {
    let thresholds: Vec<serde_json::Value> = report
        .thresholds
        .iter()
        .map(|t| {
            let unit = match t.rule.subject {
                crate::scenario::Subject::Latency { .. } => "us",
                crate::scenario::Subject::Counter(_) => "count",
            };
            serde_json::json!({"rule": t.rule.text, "actual": t.actual, "unit": unit, "passed": t.passed})
        })
        .collect();
    let mut warnings = report.warnings();
    if facts.tls.insecure {
        warnings.insert(0, INSECURE_WARNING.to_owned());
    }
    let roots = if facts.tls.insecure {
        "none (not verified)"
    } else if facts.tls.ca_file.is_some() {
        "ca_file"
    } else {
        "webpki-roots (Mozilla)"
    };
    serde_json::json!({
        "scenario": {
            "name": report.scenario.name,
            "description": report.scenario.description,
            "file": facts.scenario_file.as_ref().map(|p| p.display().to_string()),
            "plan": report.scenario.plan(),
            // The whole run's key: a shard, the merge of all shards and the unsharded run
            // compare as the same plan.
            "plan_key": report.scenario.whole_plan_key(),
        },
        "versions": {
            "loadgen": env!("CARGO_PKG_VERSION"),
            "wire": env!("CARGO_PKG_VERSION"),
        },
        "command_line": facts.command_line,
        "seed": facts.seed,
        // Names only: header values often carry credentials.
        "header_names": header_names(&report.scenario),
        "target": facts.target,
        "started_at": rfc3339(report.started_unix_us),
        "started_unix_us": report.started_unix_us,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "measured_s": report.scenario.run.duration.as_secs_f64(),
        "machine": crate::live::host::machine(),
        "outcome": format!("{:?}", report.outcome),
        "exit_code": report.exit_code(),
        "failures": report.failures(),
        "warnings": warnings,
        "tls": {
            "insecure": facts.tls.insecure,
            "ca_file": facts.tls.ca_file.as_ref().map(|p| p.display().to_string()),
            "roots": roots,
        },
        "raw_samples": report.raw_samples.as_ref().map(|r| serde_json::json!({
            "file": r.path.display().to_string(),
            "rows": r.rows,
            "not_written": r.not_written,
        })),
        "thresholds": thresholds,
        "shard": report.shard,
    })
}

/// `2026-11-21T14:25:37Z` from Unix µs (UTC, proleptic Gregorian).
#[must_use]
pub fn rfc3339(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `20261121-142537` for run directory names.
#[must_use]
pub fn compact_time(unix_us: u64) -> String {
    rfc3339(unix_us)
        .replace(['-', ':'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_owned()
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The run directory: `--out` as given, or `<root>/<scenario>-<time>`.
#[must_use]
pub fn run_dir(out: Option<&Path>, root: &Path, scenario: &str, unix_us: u64) -> PathBuf {
    out.map_or_else(
        || root.join(format!("{scenario}-{}", compact_time(unix_us))),
        Path::to_path_buf,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_271_137_000_000), "2026-11-21T14:25:37Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(compact_time(1_795_271_137_000_000), "20261121-142537");
    }

    /// Golden: these names are an interface (dashboards and CI scripts read them).
    #[test]
    fn column_names_are_pinned() {
        assert_eq!(
            SUMMARY_HEADER,
            "metric,count,min,mean,p50,p90,p99,p99.9,max,unit"
        );
        assert_eq!(COUNTERS_HEADER, "name,value,source");
        assert_eq!(
            TIMESERIES_HEADER,
            "t_s,connections_open,events_per_s,errors,client_rss_bytes,server_rss_bytes,delivery_p99_us,ws_rtt_p99_us,connect_p99_us"
        );
        let names: Vec<&str> = crate::live::stats::Counters::default()
            .rows()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "connections_attempted",
                "connections_established",
                "connections_failed",
                "failed_refused",
                "failed_timeout",
                "failed_reset",
                "failed_status",
                "failed_content_type",
                "failed_tls",
                "failed_other",
                "streams_dropped",
                "reconnects",
                "h2_connections",
                "messages_sent",
                "send_errors",
                "messages_expected",
                "messages_received",
                "lost",
                "gaps",
                "gaps_across_reconnects",
                "duplicates",
                "out_of_order",
                "parse_errors",
                "server_drops",
                "errors",
                "bytes_received"
            ]
        );
        let metrics: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            metrics,
            crate::scenario::threshold::LATENCY_METRICS,
            "every metric can be a threshold"
        );
        assert_eq!(
            metrics,
            [
                "connect",
                "tls",
                "first_event",
                "delivery",
                "ws_rtt",
                "reconnect",
                "send_lag",
                "interarrival"
            ]
        );
    }
}
