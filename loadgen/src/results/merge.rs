//! `loadgen merge`: the run directories of one sharded run joined into one run directory,
//! exactly.
//!
//! - Refused: directories that are not shards of one run (another scenario or plan, another
//!   shard count, a shard given twice) and a missing shard, unless partial merges are allowed
//!   (the verdict then names what is missing and fails).
//! - Latency: the shards' `.hlog` intervals are added by wall-clock second, and every
//!   percentile is computed again from the merged histograms (never averaged).
//! - Counts are summed; the expected messages no single shard could know (subscribers of a
//!   publisher on another shard, chat peers) are reconciled from every shard's counts
//!   ([`reconciled_expected`]); thresholds are evaluated again.
//! - `timeseries.csv` rows are aligned by wall-clock second: counts and loadgen RSS summed,
//!   target RSS the largest any shard saw (one target is seen by every shard), p99s from the
//!   merged intervals.
//! - Loadgen memory and CPU are summed and kept per shard (`shard` rows of `counters.csv`);
//!   the target's figures are the largest (plateau, peak) or smallest (baseline) any shard saw.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::live::reporter::{HlogFiles, write_interval};
use crate::live::stats::{Counters, Histograms, Metric, new_histogram};
use crate::results::output::{self, CounterOut};
use crate::results::report::{self, LATE_SEND_P99_US, Row, ThresholdResult};
use crate::results::rundir::{self, RunData, RunDirError};
use crate::results::shard_record::{ShardRecord, reconciled_expected};
use crate::scenario::{Subject, threshold};

/// A merged run directory and how it went.
#[derive(Debug)]
pub struct Merged {
    /// The merged run directory.
    pub dir: PathBuf,
    /// The console table.
    pub table: String,
    /// 0 pass, 1 failed, 3 a target failed or nothing connected (as `run`).
    pub exit_code: i32,
}

/// Run directories that cannot be merged, or a merge that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A directory cannot be read.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// A directory given holds no run directory.
    #[error("{0} is not a run directory and holds none")]
    NoRuns(PathBuf),
    /// A run directory of an unsharded run.
    #[error(
        "{0} is not a shard of a sharded run (its run.json has no `shard`: run with --shard I/N)"
    )]
    NotAShard(PathBuf),
    /// `run.json`'s `shard` cannot be read.
    #[error("{dir}: run.json `shard` is malformed: {message}")]
    BadShard {
        /// The run directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A shard of another scenario.
    #[error("{dir} is a run of scenario `{found}`, {first} of `{expected}`")]
    Scenario {
        /// The run directory.
        dir: PathBuf,
        /// Its scenario.
        found: String,
        /// The first shard's directory.
        first: PathBuf,
        /// The first shard's scenario.
        expected: String,
    },
    /// A shard of another plan (size, rates, durations).
    #[error(
        "{dir} ran another plan than {first} (their plan keys differ): shards must run one scenario at one size"
    )]
    Plan {
        /// The run directory.
        dir: PathBuf,
        /// The first shard's directory.
        first: PathBuf,
    },
    /// A shard of a run with another shard count.
    #[error("{dir} is shard {index} of {count}, {first} is of {expected}")]
    ShardCount {
        /// The run directory.
        dir: PathBuf,
        /// Its index.
        index: u32,
        /// Its count.
        count: u32,
        /// The first shard's directory.
        first: PathBuf,
        /// The first shard's count.
        expected: u32,
    },
    /// The same shard twice.
    #[error("shard {index} is given twice: {first} and {second}")]
    Duplicate {
        /// The shard index.
        index: u32,
        /// One directory.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// Shards missing (and partial merges not allowed).
    #[error("shard(s) {missing} of {count} missing: merge them too, or pass --allow-partial")]
    Missing {
        /// The missing indices, comma-separated.
        missing: String,
        /// The shard count.
        count: u32,
    },
    /// `--out` is one of the inputs.
    #[error("--out {0} is one of the shards' run directories")]
    OutIsInput(PathBuf),
    /// The merged directory cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One shard's run directory, read.
struct Shard {
    data: RunData,
    record: ShardRecord,
    started_unix_us: u64,
}

/// Merges the run directories in `dirs` (run directories, or directories holding them) into
/// `out`, which is created.
///
/// # Errors
/// [`MergeError`] naming the directory that does not belong, or what cannot be written.
pub fn merge_dirs(dirs: &[PathBuf], out: &Path, allow_partial: bool) -> Result<Merged, MergeError> {
    let shards = read_shards(dirs, out)?;
    let first = &shards[0];
    let count = first.record.count;
    let present: BTreeSet<u32> = shards.iter().map(|s| s.record.index).collect();
    let missing: Vec<String> = (0..count)
        .filter(|i| !present.contains(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(MergeError::Missing {
            missing: missing.join(", "),
            count,
        });
    }
    if shards.iter().any(|s| same_dir(&s.data.dir, out)) {
        return Err(MergeError::OutIsInput(out.to_path_buf()));
    }
    std::fs::create_dir_all(out).map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })?;

    let mut histograms = Histograms::default();
    for s in &shards {
        histograms.merge(&s.data.histograms);
    }
    let per_second = merge_intervals(&shards)?;
    write_hlogs(out, &per_second)?;

    let records: Vec<ShardRecord> = shards.iter().map(|s| s.record.clone()).collect();
    let mut counters = Counters::default();
    for s in &shards {
        counters.merge(&Counters::from_named(|name| {
            s.data.counter(name).and_then(as_u64)
        }));
    }
    counters.messages_expected += reconciled_expected(&records);

    let rules: Vec<_> = first
        .data
        .thresholds()
        .iter()
        .filter_map(|t| threshold::parse(&t.rule).ok())
        .collect();
    let thresholds = report::evaluate(&rules, &histograms, &counters);
    let timeseries = merge_timeseries(&shards, &per_second);
    let measured_s = first.data.run_json["measured_s"].as_f64().unwrap_or(0.0);

    let mut failures = Vec::new();
    if !missing.is_empty() {
        failures.push(format!(
            "partial merge: shard(s) {} of {count} missing",
            missing.join(", ")
        ));
    }
    let mut warnings = Vec::new();
    for s in &shards {
        let i = s.record.index;
        for f in s.data.failures() {
            // Thresholds and loss are judged again over the whole run.
            if !f.starts_with("threshold `") && !f.contains("expected messages were lost") {
                failures.push(format!("shard {i}: {f}"));
            }
        }
        warnings.extend(
            s.data
                .warnings()
                .into_iter()
                .map(|w| format!("shard {i}: {w}")),
        );
    }
    failures.extend(report::threshold_failures(&thresholds));
    failures.extend(report::count_failures(&counters));
    failures.dedup();
    let hosts: BTreeSet<&str> = shards
        .iter()
        .filter_map(|s| s.record.host.as_deref())
        .collect();
    if hosts.len() > 1 {
        warnings.push(format!(
            "the shards ran on {} machines: delivery latency compares the sender's clock with each receiver's, so it is only as true as their clocks' sync (each shard's clock offset against the target is in run.json `shards`)",
            hosts.len()
        ));
    }
    let target_failed = shards.iter().any(|s| s.data.exit_code() == Some(3));
    let exit_code = if target_failed || counters.connections_established == 0 {
        3
    } else {
        i32::from(!failures.is_empty())
    };

    let late = {
        let lag = histograms.get(Metric::SendLag);
        !lag.is_empty() && lag.value_at_quantile(0.99) > LATE_SEND_P99_US
    };
    let samples = histograms.get(Metric::Delivery).len()
        + histograms.get(Metric::WsRtt).len()
        + histograms.get(Metric::Interarrival).len();
    let per_s = if measured_s > 0.0 {
        samples as f64 / measured_s
    } else {
        0.0
    };
    let resources = Resources::of(&shards);
    let mut rows = Vec::new();
    let loadgen_rows = counters.rows();
    rows.extend(
        loadgen_rows
            .iter()
            .map(|(name, value)| CounterOut::new(name, value.to_string(), "loadgen")),
    );
    rows.extend(resources.rows(late));
    let per_s_text = format!("{per_s:.1}");
    rows.push(CounterOut::new("messages_per_s", per_s_text, "throughput"));
    let server = server_counters(&shards);
    rows.extend(
        server
            .iter()
            .map(|(name, value)| CounterOut::new(name, value.to_string(), "server")),
    );
    let shard_rows = resources.shard_rows();
    rows.extend(
        shard_rows
            .iter()
            .map(|(name, value)| CounterOut::new(name, value.clone(), "shard")),
    );

    let started_unix_us = shards.iter().map(|s| s.started_unix_us).min().unwrap_or(0);
    let ended_unix_us = shards
        .iter()
        .map(|s| {
            s.started_unix_us + to_u64(s.data.run_json["elapsed_s"].as_f64().unwrap_or(0.0) * 1e6)
        })
        .max()
        .unwrap_or(started_unix_us);
    let json = run_json(&RunJsonParts {
        shards: &shards,
        count,
        missing: &missing,
        started_unix_us,
        elapsed_s: ended_unix_us.saturating_sub(started_unix_us) as f64 / 1e6,
        thresholds: &thresholds,
        failures: &failures,
        warnings: &warnings,
        exit_code,
    });
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| MergeError::Write { path, source })
    };
    write(
        "summary.csv",
        output::summary_csv_of(&histograms, &timeseries),
    )?;
    write("counters.csv", output::counters_csv_of(&rows))?;
    write("timeseries.csv", output::timeseries_csv_of(&timeseries))?;
    write(
        "run.json",
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
    )?;
    crate::results::html::write_report(out)?;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nscenario {} merged from {} of {count} shards -> {}",
        first.data.scenario(),
        shards.len(),
        out.display()
    );
    report::latency_lines(&mut table, &histograms);
    report::counter_lines(&mut table, &counters);
    let _ = writeln!(
        table,
        "memory: loadgen {} per connection over all shards, target peak {}",
        resources
            .client_per_connection()
            .map_or("-".to_owned(), |b| format!("{:.2} KiB", b / 1024.0)),
        resources
            .server_peak
            .map_or("-".to_owned(), |b| format!("{:.1} MiB", b / 1_048_576.0)),
    );
    for s in &shards {
        let r = &s.record;
        let _ = writeln!(
            table,
            "shard {}/{}: {} on {} (start offset {}, clock vs target {}), {} connections",
            r.index,
            r.count,
            s.data.dir.display(),
            r.host.as_deref().unwrap_or("?"),
            r.start_offset_us
                .map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            r.clock_offset.map_or("unknown".to_owned(), |c| format!(
                "{:+.3} ms ± {:.3}",
                c.offset_us as f64 / 1000.0,
                c.rtt_us as f64 / 2000.0
            )),
            r.groups
                .iter()
                .map(|g| u64::from(g.connections))
                .sum::<u64>()
        );
    }
    for w in &warnings {
        let _ = writeln!(table, "WARNING: {w}");
    }
    report::verdict_lines(&mut table, &thresholds, &failures);
    Ok(Merged {
        dir: out.to_path_buf(),
        table,
        exit_code,
    })
}

/// Reads every shard and checks that they belong to one run. In a directory of run
/// directories, `out` and earlier merges are skipped: they are results, not shards.
fn read_shards(dirs: &[PathBuf], out: &Path) -> Result<Vec<Shard>, MergeError> {
    let mut run_dirs = Vec::new();
    for dir in dirs {
        if rundir::is_run_dir(dir) {
            run_dirs.push((dir.clone(), false));
            continue;
        }
        let mut inside: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| RunDirError::from_io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| rundir::is_run_dir(p) && !same_dir(p, out))
            .collect();
        if inside.is_empty() {
            return Err(MergeError::NoRuns(dir.clone()));
        }
        inside.sort();
        run_dirs.extend(inside.into_iter().map(|p| (p, true)));
    }
    let mut shards: Vec<Shard> = Vec::new();
    for (dir, found_inside) in run_dirs {
        let data = rundir::load(&dir)?;
        if found_inside && !data.run_json["merged"].is_null() {
            continue;
        }
        let value = &data.run_json["shard"];
        if value.is_null() {
            return Err(MergeError::NotAShard(dir));
        }
        let record: ShardRecord =
            serde_json::from_value(value.clone()).map_err(|e| MergeError::BadShard {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
        let started_unix_us =
            data.run_json["started_unix_us"]
                .as_u64()
                .ok_or_else(|| MergeError::BadShard {
                    dir: dir.clone(),
                    message: "run.json has no started_unix_us".to_owned(),
                })?;
        if let Some(first) = shards.first() {
            check_belongs(first, &dir, &data, &record)?;
        }
        if let Some(twin) = shards.iter().find(|s| s.record.index == record.index) {
            return Err(MergeError::Duplicate {
                index: record.index,
                first: twin.data.dir.clone(),
                second: dir,
            });
        }
        shards.push(Shard {
            data,
            record,
            started_unix_us,
        });
    }
    if shards.is_empty() {
        return Err(MergeError::NoRuns(
            dirs.first().cloned().unwrap_or_default(),
        ));
    }
    shards.sort_by_key(|s| s.record.index);
    Ok(shards)
}

/// Same scenario, plan and shard count as the first shard.
fn check_belongs(
    first: &Shard,
    dir: &Path,
    data: &RunData,
    record: &ShardRecord,
) -> Result<(), MergeError> {
    if data.scenario() != first.data.scenario() {
        return Err(MergeError::Scenario {
            dir: dir.to_path_buf(),
            found: data.scenario().to_owned(),
            first: first.data.dir.clone(),
            expected: first.data.scenario().to_owned(),
        });
    }
    if data.plan_key() != first.data.plan_key() {
        return Err(MergeError::Plan {
            dir: dir.to_path_buf(),
            first: first.data.dir.clone(),
        });
    }
    if record.count != first.record.count {
        return Err(MergeError::ShardCount {
            dir: dir.to_path_buf(),
            index: record.index,
            count: record.count,
            first: first.data.dir.clone(),
            expected: first.record.count,
        });
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A counter value read as f64 back to an exact integer (counts are written as integers).
fn as_u64(v: f64) -> Option<u64> {
    (v >= 0.0 && v.fract() == 0.0).then(|| to_u64(v))
}

/// `v` rounded to the nearest integer, clamped to `0..=u64::MAX` (NaN is 0).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn to_u64(v: f64) -> u64 {
    // `as` saturates and maps NaN to 0: exactly the clamp wanted.
    v.round() as u64
}

/// Every shard's intervals added per metric by the wall-clock second they end in.
type PerSecond = Vec<BTreeMap<u64, hdrhistogram::Histogram<u64>>>;

fn merge_intervals(shards: &[Shard]) -> Result<PerSecond, MergeError> {
    let mut merged: PerSecond = Metric::ALL.iter().map(|_| BTreeMap::new()).collect();
    for s in shards {
        for (mi, metric) in Metric::ALL.iter().enumerate() {
            let path = s.data.dir.join(format!("{}.hlog", metric.name()));
            if !path.exists() {
                continue;
            }
            for interval in rundir::hlog_intervals(&path)? {
                let end = to_u64(interval.start_unix_s + interval.length_s);
                let h = merged[mi].entry(end).or_insert_with(new_histogram);
                for v in interval.histogram.iter_recorded() {
                    // Recording into the same layout cannot fail; values were clamped when recorded.
                    let _ = h.record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
    }
    Ok(merged)
}

/// One `.hlog` per metric: the merged intervals, one per wall-clock second.
fn write_hlogs(out: &Path, per_second: &PerSecond) -> Result<(), MergeError> {
    let first_end = per_second
        .iter()
        .filter_map(|m| m.keys().next().copied())
        .min()
        .unwrap_or(1);
    let base_s = first_end.saturating_sub(1);
    let mut files = HlogFiles::create(out);
    {
        let mut logs = files.begin(UNIX_EPOCH + Duration::from_secs(base_s));
        if logs.len() != Metric::ALL.len() {
            return Err(MergeError::Write {
                path: out.to_path_buf(),
                source: std::io::Error::other("cannot create the .hlog files"),
            });
        }
        for (log, seconds) in logs.iter_mut().zip(per_second) {
            for (end, h) in seconds {
                let start = Duration::from_secs(end.saturating_sub(1).saturating_sub(base_s));
                write_interval(log, h, start, Duration::from_secs(1));
            }
        }
    }
    files.flush();
    Ok(())
}

/// The shards' `timeseries.csv` rows aligned by wall-clock second.
fn merge_timeseries(shards: &[Shard], per_second: &PerSecond) -> Vec<Row> {
    let base_us = shards.iter().map(|s| s.started_unix_us).min().unwrap_or(0);
    let base_s = base_us as f64 / 1e6;
    // Per second since the earliest start: per shard, its latest row in that second.
    let mut by_second: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
    for s in shards {
        let mut own: BTreeMap<u64, Row> = BTreeMap::new();
        let start_s = s.started_unix_us as f64 / 1e6;
        for row in &s.data.timeseries {
            let second = to_u64(start_s + row.t_s - base_s);
            let slot = own.entry(second).or_default();
            // Two rows in one second (the last, partial one): counts add, gauges are the latest.
            let (events, errors) = (slot.events_per_s, slot.errors);
            *slot = row.clone();
            slot.events_per_s += events;
            slot.errors += errors;
        }
        for (second, row) in own {
            by_second.entry(second).or_default().push(row);
        }
    }
    let p99 = |metric: Metric, second: u64| {
        let end = to_u64(base_s + second as f64);
        let mi = Metric::ALL.iter().position(|m| *m == metric)?;
        let h = per_second[mi].get(&end)?;
        (!h.is_empty()).then(|| h.value_at_quantile(0.99))
    };
    by_second
        .into_iter()
        .map(|(second, rows)| {
            let sum =
                |pick: fn(&Row) -> Option<u64>| rows.iter().filter_map(pick).reduce(|a, b| a + b);
            Row {
                t_s: second as f64,
                connections_open: rows.iter().map(|r| r.connections_open).sum(),
                events_per_s: rows.iter().map(|r| r.events_per_s).sum(),
                errors: rows.iter().map(|r| r.errors).sum(),
                client_rss_bytes: sum(|r| r.client_rss_bytes),
                server_rss_bytes: rows.iter().filter_map(|r| r.server_rss_bytes).max(),
                delivery_p99_us: p99(Metric::Delivery, second),
                ws_rtt_p99_us: p99(Metric::WsRtt, second),
                connect_p99_us: p99(Metric::Connect, second),
            }
        })
        .collect()
}

/// Memory and CPU of every shard and of the run as a whole.
struct Resources {
    /// Per shard: (index, client baseline, plateau, peak, connections, loadgen CPU %).
    shards: Vec<ShardResources>,
    server_baseline: Option<f64>,
    server_plateau: Option<f64>,
    server_peak: Option<f64>,
    server_cpu: Option<f64>,
    saturated: (bool, bool),
}

struct ShardResources {
    index: u32,
    client_baseline: Option<f64>,
    client_plateau: Option<f64>,
    client_peak: Option<f64>,
    connections: f64,
    loadgen_cpu: Option<f64>,
    cores: f64,
}

impl Resources {
    fn of(shards: &[Shard]) -> Self {
        let all = |name: &'static str| shards.iter().filter_map(move |s| s.data.counter(name));
        let max = |name: &'static str| all(name).reduce(f64::max);
        Self {
            shards: shards
                .iter()
                .map(|s| ShardResources {
                    index: s.record.index,
                    client_baseline: s.data.counter("client_rss_baseline_bytes"),
                    client_plateau: s.data.counter("client_rss_plateau_bytes"),
                    client_peak: s.data.counter("client_rss_peak_bytes"),
                    connections: s.data.counter("connections_at_plateau").unwrap_or(0.0),
                    loadgen_cpu: s.data.counter("loadgen_cpu_percent"),
                    cores: s.data.counter("cores").unwrap_or(0.0),
                })
                .collect(),
            server_baseline: all("server_rss_baseline_bytes").reduce(f64::min),
            server_plateau: max("server_rss_plateau_bytes"),
            server_peak: max("server_rss_peak_bytes"),
            server_cpu: max("server_cpu_percent"),
            saturated: (
                all("loadgen_saturated").any(|v| v > 0.0),
                all("machine_saturated").any(|v| v > 0.0),
            ),
        }
    }

    /// Sum over shards, `None` unless every shard knows it.
    fn total(&self, pick: fn(&ShardResources) -> Option<f64>) -> Option<f64> {
        self.shards.iter().map(pick).sum()
    }

    fn connections(&self) -> f64 {
        self.shards.iter().map(|s| s.connections).sum()
    }

    fn client_per_connection(&self) -> Option<f64> {
        let (b, p, n) = (
            self.total(|s| s.client_baseline)?,
            self.total(|s| s.client_plateau)?,
            self.connections(),
        );
        (n > 0.0).then(|| (p - b).max(0.0) / n)
    }

    fn rows(&self, late: bool) -> Vec<CounterOut<'static>> {
        let int = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.0}"));
        let one = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.1}"));
        let n = self.connections();
        let server_per_connection = match (self.server_baseline, self.server_plateau) {
            (Some(b), Some(p)) if n > 0.0 => Some((p - b).max(0.0) / n),
            _ => None,
        };
        let memory = [
            (
                "client_rss_baseline_bytes",
                int(self.total(|s| s.client_baseline)),
            ),
            (
                "client_rss_plateau_bytes",
                int(self.total(|s| s.client_plateau)),
            ),
            ("client_rss_peak_bytes", int(self.total(|s| s.client_peak))),
            (
                "client_bytes_per_connection",
                int(self.client_per_connection()),
            ),
            ("server_rss_baseline_bytes", int(self.server_baseline)),
            ("server_rss_plateau_bytes", int(self.server_plateau)),
            ("server_rss_peak_bytes", int(self.server_peak)),
            ("server_bytes_per_connection", int(server_per_connection)),
            ("connections_at_plateau", format!("{n:.0}")),
        ];
        let cpu = [
            ("loadgen_cpu_percent", one(self.total(|s| s.loadgen_cpu))),
            ("server_cpu_percent", one(self.server_cpu)),
            (
                "cores",
                format!("{:.0}", self.shards.iter().map(|s| s.cores).sum::<f64>()),
            ),
            ("loadgen_saturated", u8::from(self.saturated.0).to_string()),
            ("machine_saturated", u8::from(self.saturated.1).to_string()),
            ("loadgen_late", u8::from(late).to_string()),
        ];
        memory
            .into_iter()
            .map(|(name, value)| CounterOut::new(name, value, "memory"))
            .chain(
                cpu.into_iter()
                    .map(|(name, value)| CounterOut::new(name, value, "cpu")),
            )
            .collect()
    }

    /// `shard<i>_...` rows: each shard's own memory and CPU.
    fn shard_rows(&self) -> Vec<(String, String)> {
        let int = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.0}"));
        let mut out = Vec::new();
        for s in &self.shards {
            let per_connection = match (s.client_baseline, s.client_plateau) {
                (Some(b), Some(p)) if s.connections > 0.0 => Some((p - b).max(0.0) / s.connections),
                _ => None,
            };
            let i = s.index;
            out.push((
                format!("shard{i}_client_rss_peak_bytes"),
                int(s.client_peak),
            ));
            out.push((
                format!("shard{i}_client_bytes_per_connection"),
                int(per_connection),
            ));
            out.push((
                format!("shard{i}_connections_at_plateau"),
                format!("{:.0}", s.connections),
            ));
            out.push((
                format!("shard{i}_loadgen_cpu_percent"),
                s.loadgen_cpu
                    .map_or_else(String::new, |v| format!("{v:.1}")),
            ));
        }
        out
    }
}

/// The target's own counters: every shard scraped the same target, so each series is the
/// largest change any shard saw.
fn server_counters(shards: &[Shard]) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in shards {
        for row in s.data.counters.iter().filter(|r| r.source == "server") {
            if let Some(v) = row.value {
                let slot = out.entry(row.name.clone()).or_insert(v);
                *slot = slot.max(v);
            }
        }
    }
    out
}

struct RunJsonParts<'a> {
    shards: &'a [Shard],
    count: u32,
    missing: &'a [String],
    started_unix_us: u64,
    elapsed_s: f64,
    thresholds: &'a [ThresholdResult],
    failures: &'a [String],
    warnings: &'a [String],
    exit_code: i32,
}

/// The merged `run.json`: the first shard's scenario facts, the whole run's plan, the shard
/// list, the merged verdict.
fn run_json(p: &RunJsonParts<'_>) -> serde_json::Value {
    let first = &p.shards[0];
    let j = &first.data.run_json;
    let thresholds: Vec<serde_json::Value> = p
        .thresholds
        .iter()
        .map(|t| {
            let unit = match t.rule.subject {
                Subject::Latency { .. } => "us",
                Subject::Counter(_) => "count",
            };
            serde_json::json!({"rule": t.rule.text, "actual": t.actual, "unit": unit, "passed": t.passed})
        })
        .collect();
    let shard_list: Vec<serde_json::Value> = p
        .shards
        .iter()
        .map(|s| {
            serde_json::json!({
                "index": s.record.index,
                "dir": s.data.dir.display().to_string(),
                "host": s.record.host,
                "clock_source": s.record.clock_source,
                "started_at": output::rfc3339(s.started_unix_us),
                "started_unix_us": s.started_unix_us,
                "start_at_unix_us": s.record.start_at_unix_us,
                "start_offset_us": s.record.start_offset_us,
                "clock_offset_us": s.record.clock_offset.map(|c| c.offset_us),
                "clock_probe_rtt_us": s.record.clock_offset.map(|c| c.rtt_us),
                "connections": s.record.groups.iter().map(|g| u64::from(g.connections)).sum::<u64>(),
                "outcome": s.data.run_json["outcome"],
                "exit_code": s.data.exit_code(),
                "machine": s.data.run_json["machine"],
            })
        })
        .collect();
    let outcome = p
        .shards
        .iter()
        .map(|s| s.data.run_json["outcome"].clone())
        .find(|o| o.as_str() != Some("Completed"))
        .unwrap_or_else(|| "Completed".into());
    serde_json::json!({
        "scenario": {
            "name": j["scenario"]["name"],
            "description": j["scenario"]["description"],
            "file": j["scenario"]["file"],
            "plan": first.record.whole_plan,
            "plan_key": j["scenario"]["plan_key"],
        },
        "versions": j["versions"],
        "command_line": std::env::args().collect::<Vec<_>>(),
        "seed": j["seed"],
        "header_names": j["header_names"],
        "target": j["target"],
        "started_at": output::rfc3339(p.started_unix_us),
        "started_unix_us": p.started_unix_us,
        "elapsed_s": p.elapsed_s,
        "measured_s": j["measured_s"],
        "machine": j["machine"],
        "outcome": outcome,
        "exit_code": p.exit_code,
        "failures": p.failures,
        "warnings": p.warnings,
        "tls": j["tls"],
        "thresholds": thresholds,
        "merged": {
            "shards": p.count,
            "merged": p.shards.len(),
            "missing": p.missing,
            "clock": "delivery latency across machines is only as true as the shards' clock sync; each shard's clock source and start offset are listed in `shards`",
        },
        "shards": shard_list,
    })
}
