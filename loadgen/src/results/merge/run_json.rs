//! The merged `run.json`.

use super::Shard;
use crate::results::output;
use crate::results::report::ThresholdResult;
use crate::scenario::Subject;

/// What the merged `run.json` says beyond the first shard's facts.
pub(super) struct RunJsonParts<'a> {
    pub(super) shards: &'a [Shard],
    pub(super) count: u32,
    pub(super) missing: &'a [String],
    pub(super) started_unix_us: u64,
    pub(super) elapsed_s: f64,
    pub(super) thresholds: &'a [ThresholdResult],
    pub(super) failures: &'a [String],
    pub(super) warnings: &'a [String],
    pub(super) exit_code: i32,
}

/// The merged `run.json`: the first shard's scenario facts, the whole run's plan, the shard
/// list, the merged verdict.
pub(super) fn run_json(p: &RunJsonParts<'_>) -> serde_json::Value {
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
