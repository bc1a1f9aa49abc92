//! The figures file (JSON) and the comparison of two of them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::workloads::{Measured, Scale, Workload};

/// One deterministic figure. Every figure is a cost: lower is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figure {
    /// `workload.what_per_unit`, e.g. `sse-client.instructions_per_event`.
    pub(crate) name: String,
    /// The value (instructions, bytes or allocations).
    pub(crate) value: f64,
}

/// A set of figures with what produced them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FigureFile {
    /// How much work each workload did (files of different scales do not compare).
    pub(crate) scale: Scale,
    /// valgrind's version line (instruction counts move with it).
    pub(crate) valgrind: String,
    /// `rustc --version` at measurement time (instruction counts move with the compiler).
    pub(crate) rustc: String,
    /// The figures, in workload order.
    pub(crate) figures: Vec<Figure>,
}

impl FigureFile {
    /// Reads and checks a figures file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a figures file", path.display()))?;
        if let Some(bad) = file
            .figures
            .iter()
            .find(|f| !f.value.is_finite() || f.value < 0.0)
        {
            bail!(
                "{}: figure `{}` has the impossible value {}",
                path.display(),
                bad.name,
                bad.value
            );
        }
        Ok(file)
    }
}

/// The figures of one workload's run: `instructions` from callgrind, if counted.
pub(crate) fn figures_of(
    workload: Workload,
    instructions: Option<u64>,
    m: &Measured,
) -> Vec<Figure> {
    let name = workload.name();
    let figure = |what: &str, value: f64| Figure {
        name: format!("{name}.{what}"),
        value: round(value),
    };
    let mut out = Vec::new();
    if let Some(i) = instructions.filter(|_| m.events > 0) {
        out.push(figure("instructions_per_event", i as f64 / m.events as f64));
    }
    if let Some(b) = m.heap_bytes_per_event {
        out.push(figure("heap_bytes_per_event", b));
    }
    if let Some(a) = m.allocations_per_event {
        out.push(figure("allocations_per_event", a));
    }
    if let Some(b) = m.heap_bytes_per_connection {
        out.push(figure("heap_bytes_per_connection", b));
    }
    out
}

/// Four significant digits: 0.1% steps, finer than the 2% gate at any magnitude (0.0042
/// allocations per delivery stays visible), and stable in a diff.
fn round(v: f64) -> f64 {
    format!("{v:.3e}").parse().unwrap_or(v)
}

/// The outcome of comparing a new figures file with a baseline.
#[derive(Debug)]
pub(crate) struct Comparison {
    /// A Markdown table, one row per figure.
    pub(crate) table: String,
    /// The figures that grew beyond the tolerance (or disappeared).
    pub(crate) regressions: Vec<String>,
}

/// Compares `new` with `baseline`: a figure regresses when it grew by more than
/// `tolerance_percent` of the baseline value (any growth from 0), or is missing from `new`.
///
/// # Errors
/// Files of different scales.
pub(crate) fn compare(
    baseline: &FigureFile,
    new: &FigureFile,
    tolerance_percent: f64,
) -> anyhow::Result<Comparison> {
    if baseline.scale != new.scale {
        bail!(
            "the files were measured at different scales ({:?} and {:?}): their figures do not compare",
            baseline.scale,
            new.scale
        );
    }
    let mut table =
        String::from("| figure | baseline | new | change | verdict |\n|---|---:|---:|---:|---|\n");
    let mut regressions = Vec::new();
    for base in &baseline.figures {
        let Some(now) = new.figures.iter().find(|f| f.name == base.name) else {
            let _ = writeln!(
                table,
                "| {} | {} | - | - | missing |",
                base.name, base.value
            );
            regressions.push(format!("{} is missing from the new figures", base.name));
            continue;
        };
        let limit = base.value * (1.0 + tolerance_percent / 100.0);
        let change = if base.value > 0.0 {
            format!("{:+.2}%", (now.value / base.value - 1.0) * 100.0)
        } else if now.value > 0.0 {
            "from 0".to_owned()
        } else {
            "0".to_owned()
        };
        let verdict = if now.value > limit {
            regressions.push(format!(
                "{} grew from {} to {} ({change}, tolerance {tolerance_percent}%)",
                base.name, base.value, now.value
            ));
            "REGRESSED"
        } else if base.value > 0.0 && now.value < base.value * (1.0 - tolerance_percent / 100.0) {
            "improved: update the baseline"
        } else {
            "ok"
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {change} | {verdict} |",
            base.name, base.value, now.value
        );
    }
    for extra in new
        .figures
        .iter()
        .filter(|f| !baseline.figures.iter().any(|b| b.name == f.name))
    {
        let _ = writeln!(
            table,
            "| {} | - | {} | - | new: no baseline |",
            extra.name, extra.value
        );
    }
    Ok(Comparison { table, regressions })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(figures: &[(&str, f64)]) -> FigureFile {
        FigureFile {
            scale: Scale::Full,
            valgrind: "valgrind-3.19.0".into(),
            rustc: "rustc 1.95.0".into(),
            figures: figures
                .iter()
                .map(|(n, v)| Figure {
                    name: (*n).into(),
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn growth_beyond_the_tolerance_regresses() {
        let base = file(&[
            ("a.instructions_per_event", 1000.0),
            ("a.heap_bytes_per_event", 0.0),
        ]);
        let ok = compare(
            &base,
            &file(&[
                ("a.instructions_per_event", 1019.0),
                ("a.heap_bytes_per_event", 0.0),
            ]),
            2.0,
        )
        .expect("same scale");
        assert!(ok.regressions.is_empty(), "{:?}", ok.regressions);
        let bad = compare(
            &base,
            &file(&[
                ("a.instructions_per_event", 1021.0),
                ("a.heap_bytes_per_event", 0.0),
            ]),
            2.0,
        )
        .expect("same scale");
        assert_eq!(bad.regressions.len(), 1);
        assert!(
            bad.regressions[0].contains("a.instructions_per_event grew from 1000 to 1021"),
            "{:?}",
            bad.regressions
        );
        assert!(bad.table.contains("REGRESSED"));
    }

    #[test]
    fn any_allocation_where_there_was_none_regresses() {
        let base = file(&[("a.heap_bytes_per_event", 0.0)]);
        let bad =
            compare(&base, &file(&[("a.heap_bytes_per_event", 0.01)]), 2.0).expect("same scale");
        assert_eq!(bad.regressions.len(), 1, "{}", bad.table);
        assert!(bad.table.contains("from 0"));
    }

    #[test]
    fn improvements_and_new_figures_pass_and_say_so() {
        let base = file(&[("a.instructions_per_event", 1000.0)]);
        let better = compare(
            &base,
            &file(&[("a.instructions_per_event", 900.0), ("b.x", 5.0)]),
            2.0,
        )
        .expect("same scale");
        assert!(better.regressions.is_empty());
        assert!(
            better.table.contains("improved: update the baseline"),
            "{}",
            better.table
        );
        assert!(
            better.table.contains("new: no baseline"),
            "{}",
            better.table
        );
    }

    #[test]
    fn a_missing_figure_regresses_and_scales_must_match() {
        let base = file(&[("a.instructions_per_event", 1000.0)]);
        let gone = compare(&base, &file(&[]), 2.0).expect("same scale");
        assert_eq!(
            gone.regressions,
            ["a.instructions_per_event is missing from the new figures"]
        );
        let mut quick = file(&[("a.instructions_per_event", 1000.0)]);
        quick.scale = Scale::Quick;
        let err = compare(&base, &quick, 2.0).expect_err("scales differ");
        assert!(err.to_string().contains("different scales"), "{err}");
    }

    #[test]
    fn figures_name_the_workload_and_divide_by_events() {
        let m = Measured {
            events: 200,
            heap_bytes_per_event: Some(0.0),
            allocations_per_event: Some(0.0),
            heap_bytes_per_connection: Some(1234.567),
        };
        let f = figures_of(Workload::SseClient, Some(1_000_000), &m);
        let names: Vec<_> = f.iter().map(|f| (f.name.as_str(), f.value)).collect();
        assert_eq!(
            names,
            [
                ("sse-client.instructions_per_event", 5000.0),
                ("sse-client.heap_bytes_per_event", 0.0),
                ("sse-client.allocations_per_event", 0.0),
                ("sse-client.heap_bytes_per_connection", 1235.0),
            ]
        );
    }
}
