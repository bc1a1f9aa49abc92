//! Memory and CPU: summed over the shards' loadgen processes and kept per shard; the
//! target's figures are the extremes any shard saw (one target, seen by every shard).

use std::collections::BTreeMap;

use super::Shard;
use crate::results::output::CounterOut;

/// Memory and CPU of every shard and of the run as a whole.
pub(super) struct Resources {
    /// Per shard: (index, client baseline, plateau, peak, connections, loadgen CPU %).
    shards: Vec<ShardResources>,
    server_baseline: Option<f64>,
    server_plateau: Option<f64>,
    pub(super) server_peak: Option<f64>,
    server_cpu: Option<f64>,
    /// The steepest target RSS slope any shard saw, bytes per minute.
    server_slope: Option<f64>,
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
    /// Its loadgen's RSS slope, bytes per minute (the shards' slopes add up).
    client_slope: Option<f64>,
}

impl Resources {
    pub(super) fn of(shards: &[Shard]) -> Self {
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
                    client_slope: s.data.counter("client_rss_slope_bytes_per_min"),
                })
                .collect(),
            server_baseline: all("server_rss_baseline_bytes").reduce(f64::min),
            server_plateau: max("server_rss_plateau_bytes"),
            server_peak: max("server_rss_peak_bytes"),
            server_cpu: max("server_cpu_percent"),
            server_slope: max("server_rss_slope_bytes_per_min"),
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

    pub(super) fn client_per_connection(&self) -> Option<f64> {
        let (b, p, n) = (
            self.total(|s| s.client_baseline)?,
            self.total(|s| s.client_plateau)?,
            self.connections(),
        );
        (n > 0.0).then(|| (p - b).max(0.0) / n)
    }

    pub(super) fn rows(&self, late: bool) -> Vec<CounterOut<'static>> {
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
            (
                "client_rss_slope_bytes_per_min",
                int(self.total(|s| s.client_slope)),
            ),
            ("server_rss_slope_bytes_per_min", int(self.server_slope)),
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
    pub(super) fn shard_rows(&self) -> Vec<(String, String)> {
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
pub(super) fn server_counters(shards: &[Shard]) -> BTreeMap<String, f64> {
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
