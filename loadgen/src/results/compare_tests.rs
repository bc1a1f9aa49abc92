//! `compare` on synthetic run directories written to a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::results::output::{COUNTERS_HEADER, SUMMARY_HEADER, TIMESERIES_HEADER};

/// A synthetic run: scenario, plan, latency rows `(metric, p50, p90, p99, p99.9)` in µs and
/// counters `(name, value)`.
struct Synthetic<'a> {
    scenario: &'a str,
    plan: &'a str,
    /// `scenario.plan_key` in run.json; `None` writes a run directory as before it existed.
    plan_key: Option<serde_json::Value>,
    latency: Vec<(&'a str, [u64; 4])>,
    counters: Vec<(&'a str, f64)>,
    samples: u64,
}

impl Default for Synthetic<'_> {
    fn default() -> Self {
        Self {
            scenario: "fanout",
            plan: "scenario fanout: x\ntarget: bundled\nclients subs: 100 x SSE /sse/chat\n",
            plan_key: None,
            latency: vec![
                ("delivery", [1_000, 2_000, 10_000, 20_000]),
                ("connect", [300, 500, 900, 1_200]),
            ],
            counters: vec![
                ("messages_per_s", 1000.0),
                ("client_bytes_per_connection", 10_240.0),
                ("server_bytes_per_connection", 20_480.0),
                ("gaps", 0.0),
                ("duplicates", 0.0),
                ("lost", 0.0),
                ("errors", 0.0),
                ("connections_at_plateau", 10_000.0),
            ],
            samples: 100_000,
        }
    }
}

impl Synthetic<'_> {
    fn with_latency(mut self, metric: &str, values: [u64; 4]) -> Self {
        let row = self
            .latency
            .iter_mut()
            .find(|(m, _)| *m == metric)
            .expect("metric in the synthetic run");
        row.1 = values;
        self
    }

    fn with_counter(mut self, name: &str, value: f64) -> Self {
        let row = self
            .counters
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("counter in the synthetic run");
        row.1 = value;
        self
    }

    fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create run dir");
        let json = serde_json::json!({
            "scenario": {"name": self.scenario, "plan": self.plan, "plan_key": self.plan_key},
            "exit_code": 0,
            "failures": [],
            "thresholds": [],
        });
        std::fs::write(dir.join("run.json"), json.to_string()).expect("run.json");
        let mut summary = format!("{SUMMARY_HEADER}\n");
        for (metric, p) in &self.latency {
            summary += &format!(
                "{metric},{},{},{},{},{},{},{},{},us\n",
                self.samples,
                p[0] / 2,
                p[0],
                p[0],
                p[1],
                p[2],
                p[3],
                p[3] * 2
            );
        }
        std::fs::write(dir.join("summary.csv"), summary).expect("summary.csv");
        let mut counters = format!("{COUNTERS_HEADER}\n");
        for (name, value) in &self.counters {
            counters += &format!("{name},{value},loadgen\n");
        }
        std::fs::write(dir.join("counters.csv"), counters).expect("counters.csv");
        std::fs::write(dir.join("timeseries.csv"), format!("{TIMESERIES_HEADER}\n"))
            .expect("timeseries.csv");
        dir.to_path_buf()
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "loadgen-compare-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn run(&self, name: &str, synthetic: &Synthetic<'_>) -> PathBuf {
        synthetic.write(&self.0.join(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compare_two(base: &Synthetic<'_>, cur: &Synthetic<'_>) -> Comparison {
    let scratch = Scratch::new("pair");
    let b = scratch.run("base", base);
    let c = scratch.run("cur", cur);
    let mut all = compare_paths(&b, &c, &CompareOptions::default()).expect("comparable");
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn line<'a>(c: &'a Comparison, key: &str) -> &'a Line {
    c.lines
        .iter()
        .find(|l| l.key == key)
        .unwrap_or_else(|| panic!("no line {key} in {:?}", c.lines))
}

#[test]
fn identical_runs_have_no_regression() {
    let c = compare_two(&Synthetic::default(), &Synthetic::default());
    assert_eq!(c.failures(), 0);
    assert!(c.lines.iter().all(|l| l.verdict == Verdict::Unchanged));
    // Every percentile of both latency metrics, throughput, both memory figures, counters.
    assert_eq!(c.lines.len(), 2 * 4 + 1 + 2 + 4);
    assert!(c.markdown().contains("no regression"));
}

#[test]
fn a_latency_regression_past_its_tolerance_is_caught() {
    let cur = Synthetic::default().with_latency("delivery", [1_000, 2_000, 12_000, 20_000]);
    let c = compare_two(&Synthetic::default(), &cur);
    let p99 = line(&c, "delivery.p99");
    assert_eq!(p99.verdict, Verdict::Regression, "+20% > +15%");
    assert_eq!(c.failures(), 1);
    let md = c.markdown();
    assert!(
        md.contains("| delivery.p99 | 10.000 ms | 12.000 ms | +2.000 ms (+20.0%) | **REGRESSION** (> +15%) |"),
        "{md}"
    );
    assert!(md.contains("1 regression(s)"), "{md}");
}

#[test]
fn a_change_inside_the_tolerance_passes() {
    let cur = Synthetic::default().with_latency("delivery", [1_000, 2_000, 11_000, 20_000]);
    let c = compare_two(&Synthetic::default(), &cur);
    assert_eq!(line(&c, "delivery.p99").verdict, Verdict::WithinTolerance);
    assert_eq!(c.failures(), 0);
}

#[test]
fn an_improvement_is_reported_and_passes() {
    let cur = Synthetic::default()
        .with_latency("delivery", [1_000, 2_000, 6_000, 20_000])
        .with_counter("messages_per_s", 1500.0);
    let c = compare_two(&Synthetic::default(), &cur);
    assert_eq!(line(&c, "delivery.p99").verdict, Verdict::Improved);
    assert_eq!(line(&c, "messages_per_s").verdict, Verdict::Improved);
    assert_eq!(c.failures(), 0);
    assert!(c.markdown().contains("improved"));
}

#[test]
fn a_change_below_the_noise_floor_passes_even_when_large_in_percent() {
    // p50 of connect 300 µs -> 450 µs is +50%, but only 0.15 ms.
    let cur = Synthetic::default().with_latency("connect", [450, 500, 900, 1_200]);
    let c = compare_two(&Synthetic::default(), &cur);
    assert_eq!(line(&c, "connect.p50").verdict, Verdict::WithinNoise);
    assert_eq!(c.failures(), 0);
    // 300 -> 550 µs is past the 0.2 ms floor and the 15%: a regression.
    let cur = Synthetic::default().with_latency("connect", [550, 500, 900, 1_200]);
    let c = compare_two(&Synthetic::default(), &cur);
    assert_eq!(line(&c, "connect.p50").verdict, Verdict::Regression);
}

#[test]
fn throughput_and_memory_have_their_own_directions_and_tolerances() {
    let cur = Synthetic::default()
        .with_counter("messages_per_s", 890.0)
        .with_counter("server_bytes_per_connection", 22_800.0)
        .with_counter("client_bytes_per_connection", 11_000.0);
    let c = compare_two(&Synthetic::default(), &cur);
    assert_eq!(
        line(&c, "messages_per_s").verdict,
        Verdict::Regression,
        "-11%"
    );
    assert_eq!(
        line(&c, "server_bytes_per_connection").verdict,
        Verdict::Regression,
        "+11%"
    );
    assert_eq!(
        line(&c, "client_bytes_per_connection").verdict,
        Verdict::WithinNoise,
        "+0.74 KiB is under the 1 KiB floor"
    );
    assert_eq!(c.failures(), 2);
}

#[test]
fn any_increase_in_gaps_duplicates_or_errors_is_a_regression() {
    for counter in ["gaps", "duplicates", "errors", "lost"] {
        let cur = Synthetic::default().with_counter(counter, 1.0);
        let c = compare_two(&Synthetic::default(), &cur);
        assert_eq!(line(&c, counter).verdict, Verdict::Regression, "{counter}");
        assert_eq!(c.failures(), 1, "{counter}");
    }
    let base = Synthetic::default().with_counter("gaps", 5.0);
    let c = compare_two(&base, &Synthetic::default());
    assert_eq!(line(&c, "gaps").verdict, Verdict::Improved);
}

#[test]
fn a_metric_missing_from_the_current_run_is_reported_and_fails() {
    let mut cur = Synthetic::default();
    cur.latency.retain(|(m, _)| *m != "delivery");
    cur.counters
        .retain(|(n, _)| *n != "server_bytes_per_connection");
    let c = compare_two(&Synthetic::default(), &cur);
    assert_eq!(line(&c, "delivery.p99").verdict, Verdict::Missing);
    assert_eq!(
        line(&c, "server_bytes_per_connection").verdict,
        Verdict::Missing
    );
    assert_eq!(c.failures(), 4 + 1);
    let md = c.markdown();
    assert!(
        md.contains("| delivery.p99 | 10.000 ms | - | - | **MISSING** in current run |"),
        "{md}"
    );
}

#[test]
fn a_metric_new_in_the_current_run_is_listed_but_passes() {
    let mut base = Synthetic::default();
    base.latency.retain(|(m, _)| *m != "delivery");
    let c = compare_two(&base, &Synthetic::default());
    assert_eq!(line(&c, "delivery.p99").verdict, Verdict::New);
    assert_eq!(c.failures(), 0);
}

#[test]
fn different_scenarios_are_refused() {
    let scratch = Scratch::new("mismatch");
    let b = scratch.run("base", &Synthetic::default());
    let c = scratch.run(
        "cur",
        &Synthetic {
            scenario: "ws-echo",
            ..Synthetic::default()
        },
    );
    let err = compare_paths(&b, &c, &CompareOptions::default()).expect_err("refused");
    assert!(matches!(err, CompareError::ScenarioMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("`fanout`") && text.contains("`ws-echo`"),
        "{text}"
    );
}

#[test]
fn different_plans_are_refused_unless_allowed() {
    let scratch = Scratch::new("plan");
    let b = scratch.run("base", &Synthetic::default());
    let c = scratch.run(
        "cur",
        &Synthetic {
            plan: "scenario fanout: x\ntarget: http://127.0.0.1:9\nclients subs: 10000 x SSE /sse/chat\n",
            ..Synthetic::default()
        },
    );
    let err = compare_paths(&b, &c, &CompareOptions::default()).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("clients subs: 100 x") && text.contains("clients subs: 10000 x"),
        "names the differing line, not the target line: {text}"
    );
    let options = CompareOptions {
        allow_plan_change: true,
        ..CompareOptions::default()
    };
    let all = compare_paths(&b, &c, &options).expect("allowed");
    assert!(all[0].notes[0].contains("plans differ"));
}

/// The plan key of a small scenario, with `edit` applied to its text first.
fn key_of(edit: impl Fn(&str) -> String) -> serde_json::Value {
    let text = r#"
name = "fanout"
description = "first words"
thresholds = ["delivery.p99 < 50ms"]
[run]
duration = "5s"
time_limit = "1m"
[[clients]]
name = "subs"
protocol = "sse"
path = "/sse/notifications"
count = 50
"#;
    crate::scenario::parse(&edit(text), Path::new("k.toml"))
        .expect("valid")
        .plan_key()
}

#[test]
fn descriptions_thresholds_names_and_time_limits_never_block_a_comparison() {
    let scratch = Scratch::new("plankey");
    let base = Synthetic {
        plan_key: Some(key_of(str::to_owned)),
        ..Synthetic::default()
    };
    let edited = key_of(|t| {
        t.replace("first words", "other words")
            .replace("delivery.p99 < 50ms", "gaps == 0")
            .replace("name = \"subs\"", "name = \"readers\"")
            .replace("time_limit = \"1m\"", "time_limit = \"2m\"")
    });
    let cur = Synthetic {
        plan: "scenario fanout: a new description\ntarget: bundled\nthreshold: gaps == 0\n",
        plan_key: Some(edited),
        ..Synthetic::default()
    };
    let (b, c) = (scratch.run("base", &base), scratch.run("cur", &cur));
    let all = compare_paths(&b, &c, &CompareOptions::default()).expect("comparable");
    assert!(all[0].notes.is_empty(), "{:?}", all[0].notes);
}

#[test]
fn a_structured_plan_difference_names_the_field() {
    let scratch = Scratch::new("plankey-count");
    let base = Synthetic {
        plan_key: Some(key_of(str::to_owned)),
        ..Synthetic::default()
    };
    let cur = Synthetic {
        plan_key: Some(key_of(|t| t.replace("count = 50", "count = 500"))),
        ..Synthetic::default()
    };
    let (b, c) = (scratch.run("base", &base), scratch.run("cur", &cur));
    let err = compare_paths(&b, &c, &CompareOptions::default()).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("groups[0].count: 50") && text.contains("groups[0].count: 500"),
        "{text}"
    );
}

#[test]
fn old_run_directories_compare_by_plan_text_without_their_description() {
    let scratch = Scratch::new("plantext");
    let cur = Synthetic {
        plan: "scenario fanout: edited description\ntarget: bundled\nclients subs: 100 x SSE /sse/chat\nthreshold: gaps == 0\n",
        ..Synthetic::default()
    };
    let (b, c) = (
        scratch.run("base", &Synthetic::default()),
        scratch.run("cur", &cur),
    );
    let all = compare_paths(&b, &c, &CompareOptions::default()).expect("comparable");
    assert!(all[0].notes.is_empty());
}

#[test]
fn per_metric_tolerances_override_the_kind() {
    let cur = Synthetic::default().with_latency("delivery", [1_000, 2_000, 12_000, 20_000]);
    let scratch = Scratch::new("tolerance");
    let b = scratch.run("base", &Synthetic::default());
    let c = scratch.run("cur", &cur);
    let mut options = CompareOptions::default();
    options.tolerances.set("delivery.p99=25%").expect("valid");
    let all = compare_paths(&b, &c, &options).expect("comparable");
    assert_eq!(
        line(&all[0], "delivery.p99").verdict,
        Verdict::WithinTolerance
    );
    options.tolerances.set("latency=5").expect("valid");
    options.tolerances.set("delivery.p99=10").expect("valid");
    let all = compare_paths(&b, &c, &options).expect("comparable");
    assert_eq!(line(&all[0], "delivery.p99").verdict, Verdict::Regression);
}

#[test]
fn bad_tolerances_are_refused_with_the_reason() {
    let mut t = Tolerances::default();
    for (spec, says) in [
        ("delivery.p99", "NAME=PERCENT"),
        ("delivery.p98=10%", "unknown metric `delivery.p98`"),
        ("latency=fast", "not a percentage"),
        ("latency=-5%", "0 or more"),
    ] {
        let err = t.set(spec).expect_err(spec).to_string();
        assert!(err.contains(says), "{spec}: {err}");
    }
}

#[test]
fn collections_are_paired_by_scenario_and_an_unrun_scenario_fails() {
    let scratch = Scratch::new("collections");
    let ws = Synthetic {
        scenario: "ws-echo",
        ..Synthetic::default()
    };
    scratch.run("baseline/fanout", &Synthetic::default());
    scratch.run("baseline/ws-echo", &ws);
    scratch.run("current/fanout-20261121-120000", &Synthetic::default());
    let base = scratch.0.join("baseline");
    let cur = scratch.0.join("current");
    let all = compare_paths(&base, &cur, &CompareOptions::default()).expect("comparable");
    assert_eq!(all.len(), 2);
    let unrun = all
        .iter()
        .find(|c| c.scenario == "ws-echo")
        .expect("ws-echo");
    assert_eq!(unrun.failures(), 1);
    assert!(markdown(&all).contains("FAIL: 1 regression(s)"));
    // One current run against the collection: only its own scenario is compared.
    let single = scratch.0.join("current/fanout-20261121-120000");
    let all = compare_paths(&base, &single, &CompareOptions::default()).expect("comparable");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].failures(), 0);
}

#[test]
fn unreadable_directories_are_named() {
    let scratch = Scratch::new("unreadable");
    let b = scratch.run("base", &Synthetic::default());
    let empty = scratch.0.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let err = compare_paths(&b, &empty, &CompareOptions::default()).expect_err("no runs");
    assert!(err.to_string().contains("neither a run directory"), "{err}");
    let err = compare_paths(&b, &scratch.0.join("nope"), &CompareOptions::default())
        .expect_err("missing");
    assert!(err.to_string().contains("does not exist"), "{err}");
    std::fs::write(b.join("summary.csv"), "metric,count\n").expect("write");
    let err = compare_paths(&b, &b, &CompareOptions::default()).expect_err("bad csv");
    assert!(err.to_string().contains("summary.csv:1"), "{err}");
}

#[test]
fn tail_percentiles_with_too_few_samples_are_shown_but_not_judged() {
    let base = Synthetic {
        samples: 500,
        ..Synthetic::default()
    };
    let cur = Synthetic {
        samples: 500,
        ..Synthetic::default()
    }
    .with_latency("delivery", [1_000, 4_000, 30_000, 60_000]);
    let c = compare_two(&base, &cur);
    // 500 samples: p90 has 50 beyond it (judged), p99 has 5 (not judged).
    assert_eq!(line(&c, "delivery.p90").verdict, Verdict::Regression);
    assert_eq!(line(&c, "delivery.p99").verdict, Verdict::TooFewSamples);
    assert_eq!(line(&c, "delivery.p99.9").verdict, Verdict::TooFewSamples);
    assert_eq!(c.failures(), 1);
    assert!(c.markdown().contains("not judged (too few samples)"));
}

#[test]
fn memory_noise_scales_with_the_connections_of_a_small_run() {
    let small = |bytes: f64| {
        Synthetic::default()
            .with_counter("connections_at_plateau", 50.0)
            .with_counter("client_bytes_per_connection", bytes)
    };
    // 50 connections: 8 MiB / 50 = 164 KiB per connection is noise.
    let c = compare_two(&small(200_000.0), &small(260_000.0));
    assert_eq!(
        line(&c, "client_bytes_per_connection").verdict,
        Verdict::WithinNoise
    );
    let c = compare_two(&small(200_000.0), &small(400_000.0));
    assert_eq!(
        line(&c, "client_bytes_per_connection").verdict,
        Verdict::Regression
    );
}
