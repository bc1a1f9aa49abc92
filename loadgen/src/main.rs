//! `loadgen`: run, validate, report, compare and serve. Parses the command line and calls
//! the library.
//!
//! Exit codes: 0 pass, 1 thresholds failed (or loss, interruption, time limit) or a
//! regression found by `compare`, 2 invalid scenario, usage or run directory, 3 target
//! unreachable or failed.

// Standard output is this program's interface: the plan, the result table, the port line.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loadgen::scenario::units_parse_duration;
use loadgen::{Progress, RunOptions};

/// Load-test SSE and WebSocket endpoints from a scenario file.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write its results (prints a table; exit 1 if thresholds fail).
    Run(RunArgs),
    /// Check a scenario file and print what a run would do.
    Validate {
        /// The scenario file.
        file: PathBuf,
    },
    /// (Re)write report.html of a run directory from its files.
    Report {
        /// The run directory.
        dir: PathBuf,
    },
    /// Compare a run with a baseline: markdown table, exit 1 on a regression.
    ///
    /// Each side is a run directory or a directory of run directories (paired by scenario).
    /// Defaults: latency percentiles +15%, throughput -10%, memory per connection +10%, any
    /// increase of gaps, duplicates, lost, errors; changes under the noise floors pass.
    Compare(CompareArgs),
    /// Measure loadgen's own timing error: runs against the bundled server with delay
    /// injection and prints loadgen's percentiles minus the server's recorded truth (exit 1
    /// when outside the goals: p50/p90/p99 within 0.2 ms, max within 1 ms).
    Calibrate(CalibrateArgs),
    /// Run the bundled target server (what `run` starts when the scenario names no target).
    Serve {
        #[command(flatten)]
        args: server::cli::ServeArgs,
    },
}

#[derive(Debug, clap::Args)]
struct CalibrateArgs {
    /// Measured phase of each of the two runs.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    duration: std::time::Duration,
    /// Connections in each run.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// SSE counter tick interval; also the WS send period (whole milliseconds).
    #[arg(long, default_value = "20ms", value_parser = duration_arg)]
    interval: std::time::Duration,
    /// Every K-th message is held (SSE event written late, WS echo held).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    delay_every: u64,
    /// How long a held message is held (whole milliseconds, shorter than --interval).
    #[arg(long, default_value = "5ms", value_parser = duration_arg)]
    delay: std::time::Duration,
    /// Where the two run directories go (default: results/runs/calibrate-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// clap parser for a duration such as `500ms` or `10s`.
fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    units_parse_duration(text)
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Baseline run directory (or directory of run directories).
    baseline: PathBuf,
    /// Current run directory (or directory of run directories).
    current: PathBuf,
    /// Tolerance NAME=PERCENT; NAME is latency, throughput, memory, correctness or a metric
    /// such as delivery.p99 or server_bytes_per_connection (repeatable).
    #[arg(long = "tolerance", value_name = "NAME=PERCENT")]
    tolerances: Vec<String>,
    /// Latency changes up to this many milliseconds are noise.
    #[arg(long, default_value_t = 0.2, value_name = "MS")]
    noise_floor_ms: f64,
    /// Memory changes up to this many bytes per connection are noise.
    #[arg(long, default_value_t = 1024.0, value_name = "BYTES")]
    noise_floor_memory: f64,
    /// Throughput changes up to this many messages per second are noise.
    #[arg(long, default_value_t = 1.0, value_name = "PER_S")]
    noise_floor_throughput: f64,
    /// RSS changes up to this many bytes over all connections are noise (memory per
    /// connection of small runs).
    #[arg(long, default_value_t = 8_388_608.0, value_name = "BYTES")]
    noise_floor_rss: f64,
    /// Compare runs of the same scenario even when their plans (sizes, rates) differ.
    #[arg(long)]
    allow_plan_change: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The scenario file.
    file: PathBuf,
    /// Send the load to this server (http://IP:port) instead of the bundled one.
    #[arg(long, env = "LOADGEN_TARGET")]
    target: Option<String>,
    /// Bearer token sent with every request.
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run directory (default: results/runs/<scenario>-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cap every client group at this many connections (smoke runs).
    #[arg(long)]
    max_clients: Option<u32>,
    /// Override the measured phase, e.g. "5s" (smoke runs).
    #[arg(long)]
    duration: Option<String>,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
    /// Also write one CSV row per measured message (connection, group, metric, seq, intended
    /// and receive time, latency µs) to this file, to audit any figure.
    #[arg(long, value_name = "FILE")]
    raw_samples: Option<PathBuf>,
    /// Most rows `--raw-samples` writes; later messages are counted, not written.
    #[arg(long, value_name = "ROWS", requires = "raw_samples",
          default_value_t = loadgen::raw_samples::DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u64).range(1..))]
    raw_samples_limit: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Validate { file } => match loadgen::scenario::load(&file) {
                Ok(s) => {
                    print!("{}", s.plan());
                    println!("ok: {} is valid", file.display());
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            },
            Command::Report { dir } => match loadgen::html::write_report(&dir) {
                Ok(path) => {
                    println!("wrote {}", path.display());
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            },
            Command::Compare(args) => compare(&args),
            Command::Serve { args } => serve(args).await,
            Command::Run(args) => run(args).await,
            Command::Calibrate(args) => calibrate(args).await,
        }
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Exit 0 within the goals, 1 outside them or when a run fails, 2 for bad settings.
async fn calibrate(args: CalibrateArgs) -> i32 {
    let Ok(server_exe) = std::env::current_exe() else {
        eprintln!("error: cannot find loadgen's own executable to start the server with");
        return 1;
    };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("results/runs").join(format!(
            "calibrate-{}",
            loadgen::output::compact_time(wire::now_unix_us())
        ))
    });
    let options = loadgen::calibrate::CalibrateOptions {
        duration: args.duration,
        connections: args.connections,
        interval: args.interval,
        delay_every: args.delay_every,
        delay: args.delay,
        out,
        server_exe,
    };
    match loadgen::calibrate::calibrate(options).await {
        Ok(c) => {
            print!("{}", c.table());
            i32::from(!c.within_goal())
        }
        Err(loadgen::calibrate::CalibrateError::Invalid(m)) => {
            eprintln!("error: {m}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Exit 0 without regression, 1 with one, 2 when the runs cannot be compared.
fn compare(args: &CompareArgs) -> i32 {
    let mut options = loadgen::compare::CompareOptions {
        allow_plan_change: args.allow_plan_change,
        ..Default::default()
    };
    for spec in &args.tolerances {
        if let Err(e) = options.tolerances.set(spec) {
            eprintln!("error: --tolerance {e}");
            return 2;
        }
    }
    let floors = [
        ("--noise-floor-ms", args.noise_floor_ms),
        ("--noise-floor-memory", args.noise_floor_memory),
        ("--noise-floor-throughput", args.noise_floor_throughput),
        ("--noise-floor-rss", args.noise_floor_rss),
    ];
    if let Some((flag, v)) = floors.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
        eprintln!("error: {flag} must be 0 or more, got {v}");
        return 2;
    }
    options.tolerances.latency_floor_us = args.noise_floor_ms * 1000.0;
    options.tolerances.memory_floor_bytes = args.noise_floor_memory;
    options.tolerances.throughput_floor = args.noise_floor_throughput;
    options.tolerances.rss_floor_bytes = args.noise_floor_rss;
    let comparisons = match loadgen::compare::compare_paths(&args.baseline, &args.current, &options)
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let table = loadgen::compare::markdown(&comparisons);
    print!("{table}");
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{table}\n").as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "warning: cannot append to GITHUB_STEP_SUMMARY ({}): {e}",
                PathBuf::from(&path).display()
            );
        }
    }
    let failures: usize = comparisons
        .iter()
        .map(loadgen::compare::Comparison::failures)
        .sum();
    i32::from(failures > 0)
}

async fn serve(args: server::cli::ServeArgs) -> i32 {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let grace = args
        .shutdown_grace()
        .unwrap_or(std::time::Duration::from_secs(5));
    let running = match server::start(config, args.listen).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 3;
        }
    };
    // The parent reads this line to learn the port.
    println!("{} {}", loadgen::target::LISTENING, running.local_addr());
    server::shutdown_signal().await;
    running.shutdown(grace).await;
    0
}

async fn run(args: RunArgs) -> i32 {
    let mut scenario = match loadgen::scenario::load(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let duration = match args
        .duration
        .as_deref()
        .map(units_parse_duration)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --duration: {e}");
            return 2;
        }
    };
    if args.max_clients == Some(0) {
        eprintln!("error: --max-clients must be at least 1");
        return 2;
    }
    scenario.scale_down(args.max_clients, duration);
    let target = match args
        .target
        .as_deref()
        .map(loadgen::scenario::parse_target_url)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --target: {e}");
            return 2;
        }
    };
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        eprintln!("\ninterrupted: stopping and writing the results gathered so far");
        let _ = cancel_tx.send(true);
    });
    let options = RunOptions {
        scenario,
        scenario_file: Some(args.file.clone()),
        target,
        token: args.token,
        out: args.out,
        results_root: PathBuf::from("results/runs"),
        server_exe: std::env::current_exe().ok(),
        progress: Progress::detect(args.quiet),
        command_line: std::env::args().collect(),
        cancel: Some(cancel_rx),
        raw_samples: args
            .raw_samples
            .map(|path| loadgen::raw_samples::RawSamplesOptions {
                path,
                limit: args.raw_samples_limit,
            }),
    };
    match loadgen::run(options).await {
        Ok(report) => {
            print!("{}", report.table());
            report.exit_code()
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
