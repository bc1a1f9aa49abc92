//! `figures`: deterministic regression figures for CI. Wall-clock latency on shared runners
//! moves by tens of percent between identical runs; these figures do not move:
//! instructions per event (valgrind's callgrind) of the server's in-process fan-out and of
//! loadgen's SSE and WebSocket read paths, and heap bytes per event and per connection
//! (counted by the global allocator of this binary). See `benches/README.md`.
//!
//! ```text
//! figures measure --out results/figures/baseline.json   # every workload, under callgrind
//! figures compare results/figures/baseline.json new.json  # exit 1 on a figure 2% worse
//! figures run sse-client --scale quick                    # one workload, natively (JSON)
//! ```

mod callgrind;
mod figure_file;
mod server_delivery;
mod workloads;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

use figure_file::{FigureFile, compare, figures_of};
use workloads::{Scale, Workload};

/// Counts every allocation of this process (the heap figures read it).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[derive(Debug, Parser)]
#[command(
    name = "figures",
    about = "Deterministic regression figures: instructions and heap bytes per event and per connection"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the workloads under callgrind and writes their figures as JSON.
    Measure {
        /// Where to write the figures (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
        /// How much work each workload does; files of different scales do not compare.
        #[arg(long, value_enum, default_value = "full")]
        scale: Scale,
        /// Only these workloads (repeatable); all when absent.
        #[arg(long, value_enum)]
        only: Vec<Workload>,
    },
    /// Runs one workload natively and prints what it measured as JSON (`measure` runs this
    /// under callgrind).
    Run {
        /// The workload.
        #[arg(value_enum)]
        workload: Workload,
        /// How much work it does.
        #[arg(long, value_enum, default_value = "full")]
        scale: Scale,
    },
    /// Compares two figures files; exits 1 when a figure grew beyond the tolerance.
    Compare {
        /// The committed baseline.
        baseline: PathBuf,
        /// The new figures.
        new: PathBuf,
        /// Largest accepted growth of any figure, in percent of its baseline value.
        #[arg(long, default_value_t = 2.0, value_parser = parse_tolerance)]
        tolerance_percent: f64,
    },
}

fn parse_tolerance(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of percent"))?;
    if !(0.0..=1000.0).contains(&v) {
        return Err(format!("tolerance {v}% is outside 0..=1000"));
    }
    Ok(v)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("figures: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn execute(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run { workload, scale } => {
            let measured = workloads::run(workload, scale)?;
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer(&mut stdout, &measured)?;
            writeln!(stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Measure { out, scale, only } => {
            let file = measure(scale, &only)?;
            let json = serde_json::to_string_pretty(&file)? + "\n";
            match out {
                Some(path) => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                    }
                    std::fs::write(&path, json)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => std::io::stdout().write_all(json.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare {
            baseline,
            new,
            tolerance_percent,
        } => {
            let comparison = compare(
                &FigureFile::load(&baseline)?,
                &FigureFile::load(&new)?,
                tolerance_percent,
            )?;
            let mut stdout = std::io::stdout().lock();
            write!(stdout, "{}", comparison.table)?;
            if comparison.regressions.is_empty() {
                writeln!(stdout, "\nno figure grew by more than {tolerance_percent}%")?;
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(stdout)?;
            for r in &comparison.regressions {
                writeln!(stdout, "regression: {r}")?;
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs the chosen workloads, each in a child process under callgrind.
fn measure(scale: Scale, only: &[Workload]) -> anyhow::Result<FigureFile> {
    let valgrind = callgrind::version()?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let dir = std::env::temp_dir().join(format!("figures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut figures = Vec::new();
    let mut chosen = Workload::ALL
        .into_iter()
        .filter(|w| only.is_empty() || only.contains(w));
    let result = chosen.try_for_each(|workload| {
        eprintln!("figures: {} ...", workload.name());
        let (instructions, measured) = callgrind::run(&exe, workload, scale, &dir)?;
        figures.extend(figures_of(workload, instructions, &measured));
        anyhow::Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(FigureFile {
        scale,
        valgrind,
        rustc: rustc_version(),
        figures,
    })
}

/// `rustc --version`, or `unknown` when no rustc is on PATH.
fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}
