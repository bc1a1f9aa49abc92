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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod resources;
mod run_json;
mod timeline;

use crate::live::stats::{Counters, Histograms, Metric};
use crate::results::output::{self, CounterOut};
use crate::results::report::{self, LATE_SEND_P99_US};
use crate::results::rundir::{self, RunData, RunDirError};
use crate::results::shard_record::{ShardRecord, reconciled_expected};
use crate::scenario::threshold;
use resources::{Resources, server_counters};
use run_json::{RunJsonParts, run_json};
use timeline::{merge_intervals, merge_timeseries, write_hlogs};

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
