//! The command line: clap definitions with every value validated by a `value_parser`, and the
//! dispatch to [`crate::commands`]. The binary only initialises logging and the runtime.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands::{self, CalibrateCommand, RunCommand};
use crate::live::raw_samples::{DEFAULT_LIMIT, RawSamplesOptions};
use crate::live::run::DEFAULT_SEED;
use crate::live::start_at::StartAt;
use crate::live::transport::TlsOptions;
use crate::results::compare::{CompareOptions, Tolerances};
use crate::scenario::{
    Header, ResolvePin, RunShard, ShardError, TargetUrl, parse_target_url,
    units_parse_duration as duration,
};

/// Load-test SSE and WebSocket endpoints from a scenario file.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and write its results (prints a table; exit 1 if thresholds fail).
    Run(RunArgs),
    /// Check a scenario file and print what a run would do.
    Validate {
        /// The scenario file.
        file: PathBuf,
        /// Print this shard's share of the run (see `run --shard`).
        #[command(flatten)]
        shard: ShardArgs,
    },
    /// Merge the run directories of a sharded run into one (exact: histograms merged, counts
    /// summed and reconciled, thresholds re-evaluated); exits like `run`.
    Merge(MergeArgs),
    /// (Re)write report.html of a run directory from its files.
    Report {
        /// The run directory.
        dir: PathBuf,
    },
    /// Compare a run (or a directory of runs, paired by scenario) with a baseline: markdown
    /// table, exit 1 on a regression. Defaults: latency +15%, throughput -10%, memory per
    /// connection +10%, any increase of a correctness counter; changes under the floors pass.
    Compare(CompareArgs),
    /// Measure loadgen's own timing error against the bundled server's recorded truth (exit 1
    /// outside the goals: p50/p90/p99 within 0.2 ms, max within 1 ms).
    Calibrate(CalibrateArgs),
    /// Run the bundled target server (what `run` starts when the scenario names no target).
    Serve(server::cli::ServeArgs),
}

/// `loadgen run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file.
    file: PathBuf,
    /// Send the load to this server instead of the bundled one: http:// or https:// with a
    /// host name, IPv4 or [IPv6] literal and optional port (ws:// and wss:// follow).
    #[arg(long, env = "LOADGEN_TARGET", value_parser = parse_target_url)]
    target: Option<TargetUrl>,
    /// Connect to ADDR for HOST:PORT instead of asking DNS, as curl's --resolve (repeatable);
    /// Host and SNI still carry HOST.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    resolve: Vec<ResolvePin>,
    /// Trust the CA certificates in this PEM file instead of the built-in (Mozilla) roots.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// Do not verify server certificates (chain, name, expiry); printed and recorded.
    #[arg(long)]
    insecure: bool,
    /// Bearer token sent with every request.
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A header for every request, 'Name: value' (repeatable; replaces a scenario header of
    /// the same name; placeholders such as {conn} allowed).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = header)]
    headers: Vec<Header>,
    /// Seed of the {rand:A..B} placeholders: the same seed gives the same values.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Run directory (default: results/runs/<scenario>-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cap every client group at this many connections (smoke runs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_clients: Option<u32>,
    /// Override the measured phase, e.g. "5s" (smoke runs).
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
    /// Also write one CSV row per measured message to this file, to audit any figure.
    #[arg(long, value_name = "FILE")]
    raw_samples: Option<PathBuf>,
    /// Most rows `--raw-samples` writes; later messages are counted, not written.
    #[arg(long, value_name = "ROWS", requires = "raw_samples", default_value_t = DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u64).range(1..))]
    raw_samples_limit: u64,
    /// Run only this shard's share of the scenario (see `--shard`, `--shards`).
    #[command(flatten)]
    shard: ShardArgs,
    /// Start the connect phase at this wall-clock instant (RFC 3339 or Unix seconds), as
    /// every shard of a run does; a start more than 2 s in the past is an error.
    #[arg(long, env = "LOADGEN_START_AT", value_name = "TIME", value_parser = StartAt::parse)]
    start_at: Option<StartAt>,
}

/// Which share of a sharded run this process runs.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Shard I of N (0-based), e.g. 0/3: this process runs its share of every group, keeps
    /// the connection indices of the whole run, and runs publishers only as shard 0 (or its
    /// share of a `split = true` publisher).
    #[arg(
        long,
        env = "LOADGEN_SHARD",
        value_name = "I/N",
        conflicts_with = "shards"
    )]
    shard: Option<RunShard>,
    /// N shards, the index from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    shards: Option<u32>,
}

impl ShardArgs {
    /// The shard asked for, if any (`--shards` reads `JOB_COMPLETION_INDEX`).
    fn resolve(&self) -> Result<Option<RunShard>, ShardError> {
        match (self.shard, self.shards) {
            (Some(shard), _) => Ok(Some(shard)),
            (None, Some(count)) => RunShard::from_job_index(
                std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
                count,
            )
            .map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// `loadgen merge` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' run directories (or directories holding them).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged run directory goes.
    #[arg(long)]
    out: PathBuf,
    /// Merge even when shards are missing; the verdict says which (and fails).
    #[arg(long)]
    allow_partial: bool,
}

/// `loadgen compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline run directory (or directory of run directories).
    baseline: PathBuf,
    /// Current run directory (or directory of run directories).
    current: PathBuf,
    /// NAME=PERCENT: NAME is latency, throughput, memory, correctness or a metric such as
    /// delivery.p99 (repeatable).
    #[arg(long = "tolerance", value_name = "NAME=PERCENT", value_parser = tolerance)]
    tolerances: Vec<String>,
    /// Latency changes up to this many milliseconds are noise.
    #[arg(long, default_value_t = 0.2, value_name = "MS", value_parser = non_negative)]
    noise_floor_ms: f64,
    /// Memory changes up to this many bytes per connection are noise.
    #[arg(long, default_value_t = 1024.0, value_name = "BYTES", value_parser = non_negative)]
    noise_floor_memory: f64,
    /// Throughput changes up to this many messages per second are noise.
    #[arg(long, default_value_t = 1.0, value_name = "PER_S", value_parser = non_negative)]
    noise_floor_throughput: f64,
    /// RSS changes up to this many bytes over all connections are noise.
    #[arg(long, default_value_t = 8_388_608.0, value_name = "BYTES", value_parser = non_negative)]
    noise_floor_rss: f64,
    /// Compare runs of the same scenario even when their plans differ.
    #[arg(long)]
    allow_plan_change: bool,
}

/// `loadgen calibrate` arguments.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Measured phase of each of the two runs.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Connections in each run.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// SSE counter tick interval; also the WS send period (whole milliseconds).
    #[arg(long, default_value = "20ms", value_parser = duration)]
    interval: Duration,
    /// Every K-th message is held (SSE event written late, WS echo held).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    delay_every: u64,
    /// How long a held message is held (whole milliseconds, shorter than --interval).
    #[arg(long, default_value = "5ms", value_parser = duration)]
    delay: Duration,
    /// Where the two run directories go (default: results/runs/calibrate-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn header(arg: &str) -> Result<Header, String> {
    crate::scenario::headers::parse_cli(arg)
}

/// `NAME=PERCENT`, checked as `compare` will apply it.
fn tolerance(spec: &str) -> Result<String, String> {
    Tolerances::default().set(spec).map_err(|e| e.to_string())?;
    Ok(spec.to_owned())
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("must be a number, 0 or more, got {text:?}")),
    }
}

/// Runs `command`; returns the process exit code.
pub async fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run(a) => {
            let shard = match a.shard.resolve() {
                Ok(shard) => shard,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            };
            commands::run(RunCommand {
                shard,
                start_at: a.start_at,
                raw_samples: a.raw_samples.map(|path| RawSamplesOptions {
                    path,
                    limit: a.raw_samples_limit,
                }),
                file: a.file,
                target: a.target,
                resolve: a.resolve,
                tls: TlsOptions {
                    ca_file: a.ca_file,
                    insecure: a.insecure,
                },
                token: a.token,
                out: a.out,
                max_clients: a.max_clients,
                duration: a.duration,
                quiet: a.quiet,
                headers: a.headers,
                seed: a.seed,
            })
            .await
        }
        Command::Validate { file, shard } => match shard.resolve() {
            Ok(shard) => commands::validate(&file, shard),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Merge(a) => commands::merge(&a.dirs, &a.out, a.allow_partial),
        Command::Report { dir } => commands::report(&dir),
        Command::Compare(a) => {
            let mut options = CompareOptions {
                allow_plan_change: a.allow_plan_change,
                ..CompareOptions::default()
            };
            for spec in &a.tolerances {
                // Already checked by the value parser.
                let _ = options.tolerances.set(spec);
            }
            let t = &mut options.tolerances;
            t.latency_floor_us = a.noise_floor_ms * 1000.0;
            t.memory_floor_bytes = a.noise_floor_memory;
            t.throughput_floor = a.noise_floor_throughput;
            t.rss_floor_bytes = a.noise_floor_rss;
            commands::compare(&a.baseline, &a.current, &options)
        }
        Command::Calibrate(a) => {
            commands::calibrate(CalibrateCommand {
                duration: a.duration,
                connections: a.connections,
                interval: a.interval,
                delay_every: a.delay_every,
                delay: a.delay,
                out: a.out,
            })
            .await
        }
        Command::Serve(args) => commands::serve(&args).await,
    }
}
