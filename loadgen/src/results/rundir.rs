//! Reads a run directory back (`run.json`, `summary.csv`, `counters.csv`, `timeseries.csv`
//! and the `.hlog` interval logs) for `loadgen report` and `loadgen compare`.
//!
//! Reading only the files makes both commands work on any run directory, including ones
//! committed under `results/` and ones produced on another machine.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use crate::live::stats::{Histograms, Metric};
use crate::results::output::{COUNTERS_HEADER, SUMMARY_HEADER, TIMESERIES_HEADER};
use crate::results::report::Row;

/// A run directory that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// The directory or one of its required files does not exist.
    #[error("{0} does not exist (is this a loadgen run directory?)")]
    Missing(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not in the format loadgen writes.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 for the whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl RunDirError {
    /// [`RunDirError::Missing`] when `path` does not exist, [`RunDirError::Io`] otherwise.
    #[must_use]
    pub fn from_io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::Missing(path.to_path_buf())
        } else {
            Self::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// One row of `summary.csv`. Latency rows are in µs, RSS rows in bytes; every statistic is
/// `None` when the metric has no samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// `delivery`, `connect`, ..., `client_rss`, `server_rss`.
    pub metric: String,
    /// Number of samples.
    pub count: u64,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// 50th, 90th, 99th and 99.9th percentiles, in that order.
    pub percentiles: [Option<f64>; 4],
    /// Largest sample.
    pub max: Option<f64>,
    /// `us` or `bytes`.
    pub unit: String,
}

/// One row of `counters.csv`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CounterRow {
    /// Counter name (server series keep their labels).
    pub name: String,
    /// Value; `None` when it was not known (e.g. memory of a remote target).
    pub value: Option<f64>,
    /// `loadgen`, `memory`, `cpu`, `throughput` or `server`.
    pub source: String,
}

/// A threshold as `run.json` records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRecord {
    /// The rule as written, e.g. `delivery.p99 < 100ms`.
    pub rule: String,
    /// Measured value (µs for latencies).
    pub actual: Option<f64>,
    /// `us` or `count` (absent in runs written before the unit was recorded).
    pub unit: Option<String>,
    /// Whether it held.
    pub passed: bool,
}

/// Everything in a run directory.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The directory.
    pub dir: PathBuf,
    /// `run.json` as written.
    pub run_json: serde_json::Value,
    /// `summary.csv`.
    pub summary: Vec<SummaryRow>,
    /// `counters.csv`.
    pub counters: Vec<CounterRow>,
    /// `timeseries.csv`.
    pub timeseries: Vec<Row>,
    /// The `.hlog` interval logs merged per metric (empty where a log is absent).
    pub histograms: Histograms,
}

impl RunData {
    /// Scenario name from `run.json`.
    #[must_use]
    pub fn scenario(&self) -> &str {
        self.run_json["scenario"]["name"].as_str().unwrap_or("")
    }

    /// The scenario's plan (what was run, at which size) from `run.json`.
    #[must_use]
    pub fn plan(&self) -> &str {
        self.run_json["scenario"]["plan"].as_str().unwrap_or("")
    }

    /// The structured plan key (`Scenario::plan_key`); `None` for run directories written
    /// before it was recorded.
    #[must_use]
    pub fn plan_key(&self) -> Option<&serde_json::Value> {
        let key = &self.run_json["scenario"]["plan_key"];
        (!key.is_null()).then_some(key)
    }

    /// Process exit code the run had.
    #[must_use]
    pub fn exit_code(&self) -> Option<i64> {
        self.run_json["exit_code"].as_i64()
    }

    /// Failures listed in `run.json` (empty for a passing run).
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        string_list(&self.run_json["failures"])
    }

    /// Why the figures may not be the target's (saturation, late sending); empty for run
    /// directories written before warnings were recorded.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        string_list(&self.run_json["warnings"])
    }

    /// Thresholds and their results.
    #[must_use]
    pub fn thresholds(&self) -> Vec<ThresholdRecord> {
        self.run_json["thresholds"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|t| ThresholdRecord {
                        rule: t["rule"].as_str().unwrap_or("").to_owned(),
                        actual: t["actual"].as_f64(),
                        unit: t["unit"].as_str().map(str::to_owned),
                        passed: t["passed"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A `summary.csv` row by metric name.
    #[must_use]
    pub fn summary_row(&self, metric: &str) -> Option<&SummaryRow> {
        self.summary.iter().find(|r| r.metric == metric)
    }

    /// A `counters.csv` value by name (`None` when absent or empty).
    #[must_use]
    pub fn counter(&self, name: &str) -> Option<f64> {
        self.counters
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.value)
    }
}

fn string_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `dir` looks like a run directory (it has a `run.json`).
#[must_use]
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("run.json").is_file()
}

/// Reads a run directory.
///
/// # Errors
/// [`RunDirError`] naming the file (and line) that is missing or malformed.
pub fn load(dir: &Path) -> Result<RunData, RunDirError> {
    if !dir.is_dir() {
        return Err(RunDirError::Missing(dir.to_path_buf()));
    }
    let json_path = dir.join("run.json");
    let run_json: serde_json::Value =
        serde_json::from_str(&read(&json_path)?).map_err(|e| RunDirError::Format {
            path: json_path.clone(),
            line: e.line(),
            message: e.to_string(),
        })?;
    if !run_json["scenario"]["name"].is_string() {
        return Err(RunDirError::Format {
            path: json_path,
            line: 0,
            message: "no scenario.name".to_owned(),
        });
    }
    let summary_path = dir.join("summary.csv");
    let summary = parse_rows::<SummaryIn>(&summary_path, SUMMARY_HEADER)?
        .into_iter()
        .map(SummaryRow::from)
        .collect();
    let counters = parse_rows(&dir.join("counters.csv"), COUNTERS_HEADER)?;
    let timeseries = parse_rows(&dir.join("timeseries.csv"), TIMESERIES_HEADER)?;
    let mut histograms = Histograms::default();
    for metric in Metric::ALL {
        let path = dir.join(format!("{}.hlog", metric.name()));
        if path.exists() {
            merge_hlog(&path, metric, &mut histograms)?;
        }
    }
    Ok(RunData {
        dir: dir.to_path_buf(),
        run_json,
        summary,
        counters,
        timeseries,
        histograms,
    })
}

fn read(path: &Path) -> Result<String, RunDirError> {
    std::fs::read_to_string(path).map_err(|e| RunDirError::from_io(path, e))
}

/// Reads a CSV file whose header must be `header` into rows of `T` (field names are the
/// columns; empty fields are `None`).
fn parse_rows<T: serde::de::DeserializeOwned>(
    path: &Path,
    header: &str,
) -> Result<Vec<T>, RunDirError> {
    let text = read(path)?;
    let format_error = |line: usize, message: String| RunDirError::Format {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let found = reader
        .headers()
        .map_err(|e| format_error(1, e.to_string()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if found != header {
        return Err(format_error(1, format!("expected the header `{header}`")));
    }
    reader
        .deserialize()
        .map(|row| {
            row.map_err(|e| {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                let message = match e.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                    _ => e.to_string(),
                };
                format_error(line, message)
            })
        })
        .collect()
}

/// A `summary.csv` row as read (every statistic may be empty).
#[derive(serde::Deserialize)]
struct SummaryIn {
    metric: String,
    count: Option<u64>,
    min: Option<f64>,
    mean: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    #[serde(rename = "p99.9")]
    p99_9: Option<f64>,
    max: Option<f64>,
    unit: String,
}

impl From<SummaryIn> for SummaryRow {
    fn from(r: SummaryIn) -> Self {
        Self {
            metric: r.metric,
            count: r.count.unwrap_or(0),
            min: r.min,
            mean: r.mean,
            percentiles: [r.p50, r.p90, r.p99, r.p99_9],
            max: r.max,
            unit: r.unit,
        }
    }
}

/// One interval of an `.hlog` file.
#[derive(Debug, Clone)]
pub struct HlogInterval {
    /// Start, Unix seconds (the log's BaseTime plus the interval's timestamp).
    pub start_unix_s: f64,
    /// Length, seconds.
    pub length_s: f64,
    /// The interval's samples, µs.
    pub histogram: hdrhistogram::Histogram<u64>,
}

/// Every interval of an `.hlog` file, in file order.
///
/// # Errors
/// [`RunDirError`] naming the file when it cannot be read or is not an interval log.
pub fn hlog_intervals(path: &Path) -> Result<Vec<HlogInterval>, RunDirError> {
    let bytes = std::fs::read(path).map_err(|source| RunDirError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message: String| RunDirError::Format {
        path: path.to_path_buf(),
        line: 0,
        message,
    };
    let mut deserializer = Deserializer::new();
    let mut base_s = 0.0;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| bad(format!("not an HdrHistogram interval log ({e:?})")))?;
        let interval = match entry {
            LogEntry::BaseTime(base) => {
                base_s = base.as_secs_f64();
                continue;
            }
            LogEntry::Interval(interval) => interval,
            LogEntry::StartTime(_) => continue,
        };
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| bad(format!("interval is not base64: {e}")))?;
        let histogram: hdrhistogram::Histogram<u64> = deserializer
            .deserialize(&mut encoded.as_slice())
            .map_err(|e| bad(format!("interval histogram is corrupt: {e:?}")))?;
        out.push(HlogInterval {
            start_unix_s: base_s + interval.start_timestamp().as_secs_f64(),
            length_s: interval.duration().as_secs_f64(),
            histogram,
        });
    }
    Ok(out)
}

/// Adds every interval of an `.hlog` file into `histograms`.
fn merge_hlog(path: &Path, metric: Metric, histograms: &mut Histograms) -> Result<(), RunDirError> {
    let mut merged = Histograms::default();
    for interval in hlog_intervals(path)? {
        for v in interval.histogram.iter_recorded() {
            merged.record_n(metric, v.value_iterated_to(), v.count_at_value());
        }
    }
    histograms.merge(&merged);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::report::{Cpu, Memory, Outcome, Report};

    #[test]
    fn what_a_run_writes_reads_back_exactly_names_with_commas_and_quotes_too() {
        let dir = std::env::temp_dir().join(format!(
            "loadgen-rundir-{}-{}",
            std::process::id(),
            wire::now_unix_us()
        ));
        let series = r#"rt_x{scenario="a,b",note="say \"hi\""}"#;
        let mut histograms = Histograms::default();
        histograms.record(Metric::Delivery, 1_234);
        let row = Row {
            t_s: 1.0,
            connections_open: 3,
            events_per_s: 7,
            errors: 0,
            client_rss_bytes: Some(1 << 20),
            server_rss_bytes: None,
            delivery_p99_us: Some(1_234),
            ws_rtt_p99_us: None,
            connect_p99_us: None,
        };
        let report = Report {
            scenario: crate::scenario::parse(
                "[run]\nduration = \"1s\"\n[[clients]]\nprotocol = \"sse\"\npath = \"/x\"\ncount = 1\n",
                Path::new("t.toml"),
            )
            .expect("valid"),
            run_dir: dir.clone(),
            started_unix_us: 0,
            elapsed: std::time::Duration::from_secs(1),
            outcome: Outcome::Completed,
            histograms,
            counters: crate::live::stats::Counters::default(),
            server_before: std::collections::BTreeMap::new(),
            server_after: [(series.to_owned(), 5.0)].into_iter().collect(),
            memory: Memory::default(),
            cpu: Cpu::default(),
            timeseries: vec![row.clone()],
            thresholds: Vec::new(),
            error_samples: Vec::new(),
            raw_samples: None,
            shard: None,
            target_outages: Vec::new(),
            instances: Vec::new(),
        };
        crate::results::output::write_all(&report, &crate::results::output::RunFacts::default())
            .expect("written");
        let run = load(&dir).expect("reads back");
        let _ = std::fs::remove_dir_all(&dir);
        let server = run
            .counters
            .iter()
            .find(|c| c.source == "server")
            .expect("server row");
        assert_eq!(server.name, series, "the name round-trips exactly");
        assert_eq!(server.value, Some(5.0));
        assert_eq!(run.timeseries, [row]);
        let delivery = run.summary_row("delivery").expect("delivery row");
        assert_eq!(
            (delivery.count, delivery.percentiles[0]),
            (1, Some(1_234.0))
        );
        assert_eq!(run.summary_row("server_rss").map(|r| r.count), Some(0));
    }
}
