//! The shards' per-second data on one wall-clock timeline: `.hlog` intervals and
//! `timeseries.csv` rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::{MergeError, Shard, to_u64};
use crate::live::reporter::{HlogFiles, write_interval};
use crate::live::stats::{Metric, new_histogram};
use crate::results::report::Row;
use crate::results::rundir;

/// Every shard's intervals added per metric by the wall-clock second they end in.
pub(super) type PerSecond = Vec<BTreeMap<u64, hdrhistogram::Histogram<u64>>>;

pub(super) fn merge_intervals(shards: &[Shard]) -> Result<PerSecond, MergeError> {
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
pub(super) fn write_hlogs(out: &Path, per_second: &PerSecond) -> Result<(), MergeError> {
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
pub(super) fn merge_timeseries(shards: &[Shard], per_second: &PerSecond) -> Vec<Row> {
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
