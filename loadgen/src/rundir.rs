//! Reads a run directory back (`run.json`, `summary.csv`, `counters.csv`, `timeseries.csv`
//! and the `.hlog` interval logs) for `loadgen report` and `loadgen compare`.
//!
//! Reading only the files makes both commands work on any run directory, including ones
//! committed under `results/` and ones produced on another machine.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use crate::output::{COUNTERS_HEADER, SUMMARY_HEADER, TIMESERIES_HEADER};
use crate::report::Row;
use crate::stats::{Histograms, Metric};

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
#[derive(Debug, Clone, PartialEq)]
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
    let summary = parse_rows(&summary_path, SUMMARY_HEADER, summary_row)?;
    let counters_path = dir.join("counters.csv");
    let counters = parse_rows(&counters_path, COUNTERS_HEADER, counter_row)?;
    let series_path = dir.join("timeseries.csv");
    let timeseries = parse_rows(&series_path, TIMESERIES_HEADER, series_row)?;
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

/// Parses a CSV file whose first line must be `header`; `row` turns one line's fields into a
/// value or says what is wrong with them.
fn parse_rows<T>(
    path: &Path,
    header: &str,
    row: fn(&[String]) -> Result<T, String>,
) -> Result<Vec<T>, RunDirError> {
    let text = read(path)?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let format_error = |line: usize, message: String| RunDirError::Format {
        path: path.to_path_buf(),
        line,
        message,
    };
    if first != header {
        return Err(format_error(1, format!("expected the header `{header}`")));
    }
    let columns = header.split(',').count();
    let mut out = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields = split_csv(line);
        if fields.len() != columns {
            return Err(format_error(
                i + 2,
                format!("{} fields, expected {columns}", fields.len()),
            ));
        }
        out.push(row(&fields).map_err(|m| format_error(i + 2, m))?);
    }
    Ok(out)
}

/// Splits one CSV line; a field may be wrapped in double quotes (no escaped quotes inside,
/// as loadgen writes them).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn number(field: &str, column: &str) -> Result<Option<f64>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse::<f64>()
        .map(Some)
        .map_err(|_| format!("{column} `{field}` is not a number"))
}

fn whole(field: &str, column: &str) -> Result<Option<u64>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{column} `{field}` is not a whole number"))
}

fn summary_row(f: &[String]) -> Result<SummaryRow, String> {
    Ok(SummaryRow {
        metric: f[0].clone(),
        count: whole(&f[1], "count")?.unwrap_or(0),
        min: number(&f[2], "min")?,
        mean: number(&f[3], "mean")?,
        percentiles: [
            number(&f[4], "p50")?,
            number(&f[5], "p90")?,
            number(&f[6], "p99")?,
            number(&f[7], "p99.9")?,
        ],
        max: number(&f[8], "max")?,
        unit: f[9].clone(),
    })
}

fn counter_row(f: &[String]) -> Result<CounterRow, String> {
    Ok(CounterRow {
        name: f[0].clone(),
        value: number(&f[1], "value")?,
        source: f[2].clone(),
    })
}

fn series_row(f: &[String]) -> Result<Row, String> {
    Ok(Row {
        t_s: number(&f[0], "t_s")?.ok_or("t_s is empty")?,
        connections_open: whole(&f[1], "connections_open")?.unwrap_or(0),
        events_per_s: whole(&f[2], "events_per_s")?.unwrap_or(0),
        errors: whole(&f[3], "errors")?.unwrap_or(0),
        client_rss_bytes: whole(&f[4], "client_rss_bytes")?,
        server_rss_bytes: whole(&f[5], "server_rss_bytes")?,
        delivery_p99_us: whole(&f[6], "delivery_p99_us")?,
        ws_rtt_p99_us: whole(&f[7], "ws_rtt_p99_us")?,
        connect_p99_us: whole(&f[8], "connect_p99_us")?,
    })
}

/// Adds every interval of an `.hlog` file into `histograms`.
fn merge_hlog(path: &Path, metric: Metric, histograms: &mut Histograms) -> Result<(), RunDirError> {
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
    let mut merged = Histograms::default();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| bad(format!("not an HdrHistogram interval log ({e:?})")))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| bad(format!("interval is not base64: {e}")))?;
        let h: hdrhistogram::Histogram<u64> = deserializer
            .deserialize(&mut encoded.as_slice())
            .map_err(|e| bad(format!("interval histogram is corrupt: {e:?}")))?;
        for v in h.iter_recorded() {
            merged.record_n(metric, v.value_iterated_to(), v.count_at_value());
        }
    }
    histograms.merge(&merged);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted() {
        assert_eq!(
            split_csv("\"rt_x{scenario='a';kind='b'}\",3,server"),
            ["rt_x{scenario='a';kind='b'}", "3", "server"]
        );
        assert_eq!(split_csv("a,,c"), ["a", "", "c"]);
    }
}
