//! `loadgen compare`: a current run against a baseline, metric by metric, with per-metric
//! tolerances and absolute noise floors. The CI gate.
//!
//! Metrics compared: latency percentiles (p50, p90, p99, p99.9 of every latency metric with
//! samples), throughput (measured messages per second), memory per connection of both sides,
//! and the correctness counters (gaps, duplicates, lost, errors, ...). A change counts as a
//! regression when it is worse than the metric's tolerance (a percentage of the baseline)
//! *and* larger than its kind's noise floor (an absolute amount); correctness counters have
//! no tolerance and no floor by default: any increase is a regression.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::live::stats::Metric;
use crate::results::rundir::{self, RunData, RunDirError};

/// Percentile columns compared for every latency metric, as `summary.csv` orders them.
const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];
/// Throughput metric (`counters.csv`, source `throughput`).
const THROUGHPUT: [&str; 1] = ["messages_per_s"];
/// Memory metrics (`counters.csv`, source `memory`), bytes per connection.
const MEMORY: [&str; 2] = ["client_bytes_per_connection", "server_bytes_per_connection"];
/// Correctness counters (`counters.csv`, source `loadgen`): more is worse.
const CORRECTNESS: [&str; 9] = [
    "lost",
    "gaps",
    "duplicates",
    "out_of_order",
    "parse_errors",
    "server_drops",
    "connections_failed",
    "send_errors",
    "errors",
];

/// What a metric measures, which decides its direction, tolerance and noise floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A latency percentile, µs; higher is worse.
    Latency,
    /// Messages per second; lower is worse.
    Throughput,
    /// Bytes per connection; higher is worse.
    Memory,
    /// A count of failures; higher is worse.
    Correctness,
}

impl Kind {
    /// Name used in `--tolerance KIND=PCT`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Throughput => "throughput",
            Self::Memory => "memory",
            Self::Correctness => "correctness",
        }
    }

    const ALL: [Self; 4] = [
        Self::Latency,
        Self::Throughput,
        Self::Memory,
        Self::Correctness,
    ];
}

/// Tolerances (percent of the baseline) and noise floors (absolute).
#[derive(Debug, Clone)]
pub struct Tolerances {
    /// Per kind, percent: a change worse than this is a regression.
    by_kind: BTreeMap<&'static str, f64>,
    /// Per metric key (`delivery.p99`, `gaps`, ...), percent; overrides the kind's.
    by_metric: BTreeMap<String, f64>,
    /// Latency changes up to this many µs are noise.
    pub latency_floor_us: f64,
    /// Memory changes up to this many bytes per connection are noise.
    pub memory_floor_bytes: f64,
    /// Throughput changes up to this many messages per second are noise.
    pub throughput_floor: f64,
    /// RSS changes up to this many bytes (in all, over every connection) are noise.
    pub rss_floor_bytes: f64,
}

impl Default for Tolerances {
    /// Latency +15 %, throughput -10 %, memory per connection +10 %, any increase of a
    /// correctness counter; noise floors 0.2 ms, 1 KiB per connection (or 8 MiB of RSS over
    /// all connections, whichever is more), 1 message/s.
    fn default() -> Self {
        Self {
            by_kind: BTreeMap::from([
                ("latency", 15.0),
                ("throughput", 10.0),
                ("memory", 10.0),
                ("correctness", 0.0),
            ]),
            by_metric: BTreeMap::new(),
            latency_floor_us: 200.0,
            memory_floor_bytes: 1024.0,
            throughput_floor: 1.0,
            rss_floor_bytes: 8.0 * 1_048_576.0,
        }
    }
}

impl Tolerances {
    /// Applies `NAME=PCT` where NAME is a kind (`latency`, `throughput`, `memory`,
    /// `correctness`) or a metric key (`delivery.p99`, `server_bytes_per_connection`, `gaps`)
    /// and PCT a non-negative percentage (`20` or `20%`).
    ///
    /// # Errors
    /// [`CompareError::BadTolerance`] naming what is wrong.
    pub fn set(&mut self, spec: &str) -> Result<(), CompareError> {
        let bad = |why: String| CompareError::BadTolerance(format!("`{spec}`: {why}"));
        let (name, pct) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=PERCENT, e.g. delivery.p99=20%".to_owned()))?;
        let (name, pct) = (name.trim(), pct.trim());
        let value: f64 = pct
            .strip_suffix('%')
            .unwrap_or(pct)
            .trim()
            .parse()
            .map_err(|_| bad(format!("`{pct}` is not a percentage")))?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad("the percentage must be 0 or more".to_owned()));
        }
        if let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == name) {
            self.by_kind.insert(kind.name(), value);
        } else if known_metric_keys().iter().any(|k| k == name) {
            self.by_metric.insert(name.to_owned(), value);
        } else {
            return Err(bad(format!(
                "unknown metric `{name}`; use latency, throughput, memory, correctness or one of: {}",
                known_metric_keys().join(", ")
            )));
        }
        Ok(())
    }

    /// Tolerance of one metric, percent.
    #[must_use]
    pub fn percent(&self, key: &str, kind: Kind) -> f64 {
        self.by_metric
            .get(key)
            .or_else(|| self.by_kind.get(kind.name()))
            .copied()
            .unwrap_or(0.0)
    }

    /// Absolute change below which a metric of this kind is noise. For memory per
    /// connection it is also the RSS noise spread over `connections` (the fewer of the two
    /// runs'), when known: a few MiB of allocator and runtime noise is kilobytes per
    /// connection in a small run.
    #[must_use]
    pub fn floor(&self, kind: Kind, connections: Option<f64>) -> f64 {
        match kind {
            Kind::Latency => self.latency_floor_us,
            Kind::Memory => connections
                .filter(|c| *c > 0.0)
                .map_or(self.memory_floor_bytes, |c| {
                    self.memory_floor_bytes.max(self.rss_floor_bytes / c)
                }),
            Kind::Throughput => self.throughput_floor,
            Kind::Correctness => 0.0,
        }
    }
}

/// Every metric key `compare` knows.
#[must_use]
pub fn known_metric_keys() -> Vec<String> {
    let mut keys: Vec<String> = Metric::ALL
        .iter()
        .flat_map(|m| PERCENTILES.iter().map(move |p| format!("{}.{p}", m.name())))
        .collect();
    keys.extend(
        THROUGHPUT
            .iter()
            .chain(&MEMORY)
            .chain(&CORRECTNESS)
            .map(|s| (*s).to_owned()),
    );
    keys
}

/// How `compare` runs.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Tolerances and noise floors.
    pub tolerances: Tolerances,
    /// Compare runs whose plans (sizes, rates, durations) differ instead of refusing.
    pub allow_plan_change: bool,
}

/// Runs that cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A run directory could not be read.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// The two runs are of different scenarios.
    #[error(
        "refusing to compare different scenarios: baseline {baseline_dir} ran `{baseline}`, current {current_dir} ran `{current}`"
    )]
    ScenarioMismatch {
        /// Baseline scenario.
        baseline: String,
        /// Its directory.
        baseline_dir: PathBuf,
        /// Current scenario.
        current: String,
        /// Its directory.
        current_dir: PathBuf,
    },
    /// Same scenario, different plan (size, rates, durations).
    #[error(
        "refusing to compare `{scenario}` runs with different plans (baseline: `{baseline}`, current: `{current}`); compare runs of the same size, or pass --allow-plan-change"
    )]
    PlanMismatch {
        /// The scenario.
        scenario: String,
        /// First difference on the baseline's side (`groups[0].count: 50`, or a plan line).
        baseline: String,
        /// First difference on the current run's side.
        current: String,
    },
    /// A directory holds no run directories.
    #[error("{0} is neither a run directory (no run.json) nor a directory of run directories")]
    NoRuns(PathBuf),
    /// A collection holds two runs of one scenario.
    #[error("{dir} holds two runs of scenario `{scenario}`: {first} and {second}")]
    DuplicateScenario {
        /// The collection.
        dir: PathBuf,
        /// The scenario.
        scenario: String,
        /// One run.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// The current run's scenario has no baseline.
    #[error("no baseline for scenario `{scenario}` in {dir}")]
    NoBaseline {
        /// The scenario.
        scenario: String,
        /// The baseline collection.
        dir: PathBuf,
    },
    /// A `--tolerance` that cannot be used.
    #[error("bad tolerance {0}")]
    BadTolerance(String),
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same value.
    Unchanged,
    /// Changed by less than the noise floor.
    WithinNoise,
    /// Changed, but by less than the tolerance.
    WithinTolerance,
    /// Better by more than the tolerance.
    Improved,
    /// Worse by more than the tolerance and the noise floor.
    Regression,
    /// In the baseline but not in the current run.
    Missing,
    /// In the current run but not in the baseline.
    New,
    /// A percentile with fewer than [`TAIL_SAMPLES`] samples beyond it in either run: shown,
    /// not judged.
    TooFewSamples,
}

impl Verdict {
    /// Whether this verdict fails the comparison.
    #[must_use]
    pub fn fails(self) -> bool {
        matches!(self, Self::Regression | Self::Missing)
    }

    fn text(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::WithinNoise => "within noise",
            Self::WithinTolerance => "ok",
            Self::Improved => "improved",
            Self::Regression => "**REGRESSION**",
            Self::Missing => "**MISSING** in current run",
            Self::New => "new (no baseline)",
            Self::TooFewSamples => "not judged (too few samples)",
        }
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Metric key, e.g. `delivery.p99` or `gaps`.
    pub key: String,
    /// Its kind.
    pub kind: Kind,
    /// Baseline value (µs, messages/s, bytes per connection or a count).
    pub baseline: Option<f64>,
    /// Current value, same unit.
    pub current: Option<f64>,
    /// Tolerance applied, percent.
    pub tolerance: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// One scenario's comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The scenario.
    pub scenario: String,
    /// Baseline run directory (`None`: the scenario has no baseline).
    pub baseline_dir: Option<PathBuf>,
    /// Current run directory (`None`: the scenario was not run).
    pub current_dir: Option<PathBuf>,
    /// Compared metrics.
    pub lines: Vec<Line>,
    /// Remarks (the runs' own verdicts, scenarios without a counterpart).
    pub notes: Vec<String>,
}

impl Comparison {
    /// Lines that fail (regressions and missing metrics), plus one when the scenario was not
    /// run at all.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.lines.iter().filter(|l| l.verdict.fails()).count()
            + usize::from(self.current_dir.is_none())
    }

    /// The markdown section: a heading, the table and the notes.
    #[must_use]
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let dir = |d: &Option<PathBuf>| {
            d.as_ref()
                .map_or("(none)".to_owned(), |d| format!("`{}`", d.display()))
        };
        let _ = writeln!(
            out,
            "### `{}`: baseline {} vs current {}\n",
            self.scenario,
            dir(&self.baseline_dir),
            dir(&self.current_dir)
        );
        if !self.lines.is_empty() {
            out.push_str("| metric | baseline | current | change | verdict |\n");
            out.push_str("|---|---:|---:|---:|---|\n");
            for l in &self.lines {
                let tolerance = match (l.verdict, l.kind) {
                    (Verdict::Regression, Kind::Throughput) => format!(" (< -{}%)", l.tolerance),
                    (Verdict::Regression, _) => format!(" (> +{}%)", l.tolerance),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {}{tolerance} |",
                    l.key,
                    fmt_value(l.kind, l.baseline),
                    fmt_value(l.kind, l.current),
                    fmt_change(l),
                    l.verdict.text()
                );
            }
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        let failures = self.failures();
        let _ = writeln!(
            out,
            "{}\n",
            if failures == 0 {
                "Result: **no regression**".to_owned()
            } else {
                format!("Result: **{failures} regression(s)**")
            }
        );
        out
    }
}

fn fmt_value(kind: Kind, v: Option<f64>) -> String {
    let Some(v) = v else {
        return "-".to_owned();
    };
    match kind {
        Kind::Latency => format!("{:.3} ms", v / 1000.0),
        Kind::Throughput => format!("{v:.1}/s"),
        Kind::Memory => format!("{:.2} KiB", v / 1024.0),
        Kind::Correctness => format!("{v:.0}"),
    }
}

fn fmt_change(l: &Line) -> String {
    let (Some(b), Some(c)) = (l.baseline, l.current) else {
        return "-".to_owned();
    };
    let delta = c - b;
    let absolute = match l.kind {
        Kind::Latency => format!("{:+.3} ms", delta / 1000.0),
        Kind::Throughput => format!("{delta:+.1}/s"),
        Kind::Memory => format!("{:+.2} KiB", delta / 1024.0),
        Kind::Correctness => format!("{delta:+.0}"),
    };
    if b == 0.0 {
        absolute
    } else {
        format!("{absolute} ({:+.1}%)", delta / b * 100.0)
    }
}

/// The verdict for a metric that moved from `base` to `cur`.
#[must_use]
pub fn judge(kind: Kind, base: f64, cur: f64, tolerance_pct: f64, floor: f64) -> Verdict {
    // Positive `worse` is a change for the worse, in the metric's unit.
    let worse = if kind == Kind::Throughput {
        base - cur
    } else {
        cur - base
    };
    if worse == 0.0 {
        return Verdict::Unchanged;
    }
    if worse.abs() <= floor {
        return Verdict::WithinNoise;
    }
    let allowed = base.abs() * tolerance_pct / 100.0;
    if worse > allowed {
        Verdict::Regression
    } else if -worse > allowed {
        Verdict::Improved
    } else {
        Verdict::WithinTolerance
    }
}

/// The comparable metrics of a run: (key, kind, value). Latency percentiles appear only for
/// metrics with samples.
#[must_use]
pub fn metrics_of(run: &RunData) -> Vec<(String, Kind, Option<f64>)> {
    let mut out = Vec::new();
    for metric in Metric::ALL {
        let Some(row) = run.summary_row(metric.name()).filter(|r| r.count > 0) else {
            continue;
        };
        for (p, value) in PERCENTILES.iter().zip(row.percentiles) {
            out.push((format!("{}.{p}", metric.name()), Kind::Latency, value));
        }
    }
    for (names, kind) in [
        (&THROUGHPUT[..], Kind::Throughput),
        (&MEMORY[..], Kind::Memory),
        (&CORRECTNESS[..], Kind::Correctness),
    ] {
        for name in names {
            out.push(((*name).to_owned(), kind, run.counter(name)));
        }
    }
    out
}

/// Samples needed beyond a percentile before it is compared: a percentile estimated from
/// fewer tail samples than this moves by tens of percent between identical runs.
pub const TAIL_SAMPLES: f64 = 10.0;

/// Whether both runs have at least [`TAIL_SAMPLES`] samples beyond the percentile `key`
/// names (`delivery.p99` needs 1,000 samples, `p99.9` 10,000); other metrics always do.
fn enough_samples(key: &str, base: &RunData, cur: &RunData) -> bool {
    let Some((metric, p)) = key.rsplit_once(".p") else {
        return true;
    };
    let Ok(percentile) = p.parse::<f64>() else {
        return true;
    };
    let needed = (TAIL_SAMPLES / (1.0 - percentile / 100.0)).ceil();
    let count = |run: &RunData| run.summary_row(metric).map_or(0, |r| r.count);
    count(base).min(count(cur)) as f64 >= needed
}

/// Where two runs' plans first differ, as (baseline, current) descriptions; `None` when they
/// measured the same thing. Structured keys when both runs have one; for older run
/// directories, the plan text without the lines that never decide comparability (name and
/// description, target, thresholds, and the hard time limit).
fn plan_difference(base: &RunData, cur: &RunData) -> Option<(String, String)> {
    if let (Some(b), Some(c)) = (base.plan_key(), cur.plan_key()) {
        return first_difference("", b, c);
    }
    let lines = |plan: &'_ str| -> Vec<String> {
        plan.lines()
            .filter(|l| {
                !(l.starts_with("scenario ")
                    || l.starts_with("target:")
                    || l.starts_with("threshold:"))
            })
            .map(|l| l.split(", hard limit").next().unwrap_or(l).to_owned())
            .collect()
    };
    let (bp, cp) = (lines(base.plan()), lines(cur.plan()));
    (bp != cp).then(|| {
        let i = (0..bp.len().max(cp.len()))
            .find(|&i| bp.get(i) != cp.get(i))
            .unwrap_or(0);
        let at = |p: &[String]| p.get(i).cloned().unwrap_or_else(|| "(nothing)".to_owned());
        (at(&bp), at(&cp))
    })
}

/// The first place two JSON values differ, as `path: value` on each side.
fn first_difference(
    path: &str,
    base: &serde_json::Value,
    cur: &serde_json::Value,
) -> Option<(String, String)> {
    use serde_json::Value;
    let show = |v: Option<&Value>| {
        let text = v.map_or("(nothing)".to_owned(), Value::to_string);
        format!("{}: {text}", if path.is_empty() { "plan" } else { path })
    };
    match (base, cur) {
        (Value::Object(b), Value::Object(c)) => b
            .keys()
            .chain(c.keys().filter(|k| !b.contains_key(*k)))
            .find_map(|k| {
                let (bv, cv) = (b.get(k), c.get(k));
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (bv, cv) {
                    (Some(bv), Some(cv)) => first_difference(&sub, bv, cv),
                    _ => Some((
                        format!(
                            "{sub}: {}",
                            bv.map_or("(nothing)".to_owned(), Value::to_string)
                        ),
                        format!(
                            "{sub}: {}",
                            cv.map_or("(nothing)".to_owned(), Value::to_string)
                        ),
                    )),
                }
            }),
        (Value::Array(b), Value::Array(c)) if b.len() == c.len() => b
            .iter()
            .zip(c)
            .enumerate()
            .find_map(|(i, (bv, cv))| first_difference(&format!("{path}[{i}]"), bv, cv)),
        _ if base == cur => None,
        _ => Some((show(Some(base)), show(Some(cur)))),
    }
}

/// Compares two runs of one scenario.
///
/// # Errors
/// [`CompareError::ScenarioMismatch`] or [`CompareError::PlanMismatch`] when the runs are not
/// comparable.
pub fn compare_runs(
    base: &RunData,
    cur: &RunData,
    options: &CompareOptions,
) -> Result<Comparison, CompareError> {
    if base.scenario() != cur.scenario() {
        return Err(CompareError::ScenarioMismatch {
            baseline: base.scenario().to_owned(),
            baseline_dir: base.dir.clone(),
            current: cur.scenario().to_owned(),
            current_dir: cur.dir.clone(),
        });
    }
    let mut notes = Vec::new();
    if let Some((baseline, current)) = plan_difference(base, cur) {
        if !options.allow_plan_change {
            return Err(CompareError::PlanMismatch {
                scenario: cur.scenario().to_owned(),
                baseline,
                current,
            });
        }
        notes.push(format!(
            "plans differ (baseline `{baseline}`, current `{current}`); compared anyway (--allow-plan-change)"
        ));
    }
    for (which, run) in [("baseline", base), ("current", cur)] {
        if run.exit_code().is_some_and(|c| c != 0) {
            notes.push(format!(
                "the {which} run itself failed: {}",
                run.failures().join("; ")
            ));
        }
    }
    let tol = &options.tolerances;
    let connections = [base, cur]
        .iter()
        .filter_map(|r| r.counter("connections_at_plateau"))
        .reduce(f64::min);
    let cur_metrics = metrics_of(cur);
    let current: BTreeMap<&str, Option<f64>> = cur_metrics
        .iter()
        .map(|(k, _, v)| (k.as_str(), *v))
        .collect();
    let mut lines = Vec::new();
    let mut seen = Vec::new();
    for (key, kind, b) in metrics_of(base) {
        let c = current.get(key.as_str()).copied().flatten();
        seen.push(key.clone());
        let tolerance = tol.percent(&key, kind);
        let verdict = match (b, c) {
            (None, None) => continue,
            (Some(_), None) => Verdict::Missing,
            (None, Some(_)) => Verdict::New,
            (Some(b), Some(c)) if b != c && !enough_samples(&key, base, cur) => {
                Verdict::TooFewSamples
            }
            (Some(b), Some(c)) => judge(kind, b, c, tolerance, tol.floor(kind, connections)),
        };
        lines.push(Line {
            key,
            kind,
            baseline: b,
            current: c,
            tolerance,
            verdict,
        });
    }
    for (key, kind, c) in cur_metrics {
        if c.is_some() && !seen.contains(&key) {
            lines.push(Line {
                tolerance: tol.percent(&key, kind),
                key,
                kind,
                baseline: None,
                current: c,
                verdict: Verdict::New,
            });
        }
    }
    Ok(Comparison {
        scenario: cur.scenario().to_owned(),
        baseline_dir: Some(base.dir.clone()),
        current_dir: Some(cur.dir.clone()),
        lines,
        notes,
    })
}

/// Loads a run directory, or every run directory directly inside a collection, keyed by
/// scenario.
fn load_runs(path: &Path) -> Result<(bool, BTreeMap<String, RunData>), CompareError> {
    if rundir::is_run_dir(path) {
        let run = rundir::load(path)?;
        return Ok((true, BTreeMap::from([(run.scenario().to_owned(), run)])));
    }
    let entries = std::fs::read_dir(path).map_err(|e| RunDirError::from_io(path, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| rundir::is_run_dir(p))
        .collect();
    dirs.sort();
    let mut runs: BTreeMap<String, RunData> = BTreeMap::new();
    for dir in dirs {
        let run = rundir::load(&dir)?;
        if let Some(first) = runs.get(run.scenario()) {
            return Err(CompareError::DuplicateScenario {
                dir: path.to_path_buf(),
                scenario: run.scenario().to_owned(),
                first: first.dir.clone(),
                second: dir,
            });
        }
        runs.insert(run.scenario().to_owned(), run);
    }
    if runs.is_empty() {
        return Err(CompareError::NoRuns(path.to_path_buf()));
    }
    Ok((false, runs))
}

/// Compares `current` against `baseline`. Each is a run directory or a directory of run
/// directories (paired by scenario name). A single current run is compared with its
/// scenario's baseline only; a collection of current runs must cover every baseline scenario
/// (one not run is a failure).
///
/// # Errors
/// [`CompareError`] for unreadable directories and incomparable runs.
pub fn compare_paths(
    baseline: &Path,
    current: &Path,
    options: &CompareOptions,
) -> Result<Vec<Comparison>, CompareError> {
    let (base_single, mut base_runs) = load_runs(baseline)?;
    let (cur_single, cur_runs) = load_runs(current)?;
    if base_single && cur_single {
        let (b, c) = (base_runs.values(), cur_runs.values());
        return b.zip(c).map(|(b, c)| compare_runs(b, c, options)).collect();
    }
    if cur_single {
        let scenario = cur_runs.keys().next().cloned().unwrap_or_default();
        base_runs.retain(|s, _| *s == scenario);
        if base_runs.is_empty() {
            return Err(CompareError::NoBaseline {
                scenario,
                dir: baseline.to_path_buf(),
            });
        }
    }
    let mut out = Vec::new();
    for (scenario, base) in &base_runs {
        match cur_runs.get(scenario) {
            Some(cur) => out.push(compare_runs(base, cur, options)?),
            None => out.push(Comparison {
                scenario: scenario.clone(),
                baseline_dir: Some(base.dir.clone()),
                current_dir: None,
                lines: Vec::new(),
                notes: vec![format!(
                    "scenario `{scenario}` has a baseline but was not run (nothing in {})",
                    current.display()
                )],
            }),
        }
    }
    if !base_single {
        for (scenario, cur) in cur_runs.iter().filter(|(s, _)| !base_runs.contains_key(*s)) {
            out.push(Comparison {
                scenario: scenario.clone(),
                baseline_dir: None,
                current_dir: Some(cur.dir.clone()),
                lines: Vec::new(),
                notes: vec![format!(
                    "no baseline for `{scenario}` in {}; not compared",
                    baseline.display()
                )],
            });
        }
    }
    Ok(out)
}

/// The whole markdown report: every scenario's section and a total.
#[must_use]
pub fn markdown(comparisons: &[Comparison]) -> String {
    let mut out = String::from("## loadgen compare\n\n");
    for c in comparisons {
        out.push_str(&c.markdown());
    }
    let failures: usize = comparisons.iter().map(Comparison::failures).sum();
    let _ = writeln!(
        out,
        "**{}**",
        if failures == 0 {
            "PASS: no regression".to_owned()
        } else {
            format!("FAIL: {failures} regression(s)")
        }
    );
    out
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
