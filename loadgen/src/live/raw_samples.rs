//! `--raw-samples FILE`: an opt-in CSV with one row per measured message, so any figure of a
//! run can be audited (recomputed, plotted, joined with the target's logs).
//!
//! Rows are exactly the `delivery` and `ws_rtt` samples the histograms hold, up to a limit
//! ([`DEFAULT_LIMIT`] rows unless `--raw-samples-limit` says otherwise): the first rows
//! admitted are written, later ones are counted as not written (never silently lost). A
//! connection appends its row to its shard's buffer under the lock it already holds for the
//! sample; the reporter thread swaps the buffers out once a second and writes them, so no
//! file I/O happens on the I/O runtime.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::live::stats::{Metric, Shards};

/// Rows written when no limit is given.
pub const DEFAULT_LIMIT: u64 = 1_000_000;

/// The CSV header; one row per measured message.
pub const HEADER: &str = "conn,group,metric,seq,intended_us,received_us,latency_us";

/// Where raw samples go and how many at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSamplesOptions {
    /// The CSV file (created or truncated).
    pub path: PathBuf,
    /// Most rows written (>= 1).
    pub limit: u64,
}

/// One measured message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSample {
    /// Connection index over the whole run (0-based, in scenario order).
    pub conn: u64,
    /// Client group index (scenario order).
    pub group: u32,
    /// `delivery` or `ws_rtt`.
    pub metric: Metric,
    /// The message's `seq`.
    pub seq: u64,
    /// Its intended send time (the stamp), Unix µs.
    pub intended_us: u64,
    /// When loadgen received it, Unix µs.
    pub received_us: u64,
}

/// Rows admitted so far against the limit, shared by every connection.
#[derive(Debug)]
pub(crate) struct RawBudget {
    limit: u64,
    offered: AtomicU64,
}

impl RawBudget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            offered: AtomicU64::new(0),
        }
    }

    /// Whether one more row fits.
    pub(crate) fn admit(&self) -> bool {
        self.offered.fetch_add(1, Ordering::Relaxed) < self.limit
    }

    /// Rows offered beyond the limit.
    pub(crate) fn over_limit(&self) -> u64 {
        self.offered
            .load(Ordering::Relaxed)
            .saturating_sub(self.limit)
    }
}

/// `text` as one CSV field: quoted (quotes doubled) when it holds a comma, quote or line end.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// What the raw-sample file holds at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSamplesSummary {
    /// The file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Measured messages past the limit, not written.
    pub not_written: u64,
}

/// Writes the shards' raw-sample buffers to the CSV (on the reporter thread).
#[derive(Debug)]
pub(crate) struct RawWriter {
    path: PathBuf,
    out: BufWriter<File>,
    groups: Vec<String>,
    spare: Vec<RawSample>,
    rows: u64,
}

impl RawWriter {
    /// Creates (truncates) `path` and writes the header.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub(crate) fn create<'a>(
        path: &Path,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{HEADER}")?;
        Ok(Self {
            path: path.to_owned(),
            out,
            groups: groups
                .into_iter()
                .map(|g| csv_field(g).into_owned())
                .collect(),
            spare: Vec::new(),
            rows: 0,
        })
    }

    /// Takes every shard's buffered rows and appends them.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn drain(&mut self, shards: &Shards) -> std::io::Result<()> {
        for i in 0..shards.len() {
            shards
                .for_index(i)
                .with(|d| std::mem::swap(&mut d.raw, &mut self.spare));
            for s in &self.spare {
                let group = self
                    .groups
                    .get(s.group as usize)
                    .map_or("?", String::as_str);
                writeln!(
                    self.out,
                    "{},{},{},{},{},{},{}",
                    s.conn,
                    group,
                    s.metric.name(),
                    s.seq,
                    s.intended_us,
                    s.received_us,
                    s.received_us.saturating_sub(s.intended_us)
                )?;
            }
            self.rows += self.spare.len() as u64;
            self.spare.clear();
        }
        Ok(())
    }

    /// Flushes the file; returns the path and the rows written.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn finish(mut self, budget: &RawBudget) -> std::io::Result<RawSamplesSummary> {
        self.out.flush()?;
        Ok(RawSamplesSummary {
            path: self.path,
            rows: self.rows,
            not_written: budget.over_limit(),
        })
    }
}
