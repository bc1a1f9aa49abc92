//! One run from start to finish: target, connections, phases, reporter, outputs.
//!
//! Phases: connect (arrival schedule) → warm-up → measured phase (senders and publishers run
//! from the end of connecting to the end of this phase) → drain (in-flight messages arrive)
//! → close. A hard time limit, Ctrl-C and a dying target each end the run early; results
//! gathered so far are written in every case.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use crate::client::{self, Ctx, GroupRun, RunCtx, Signals};
use crate::output::{self, RunFacts};
use crate::raw_samples::{RawSamplesOptions, RawWriter};
use crate::report::{self, Cpu, Memory, Outcome, Report};
use crate::reporter::{self, gauge_u64};
use crate::scenario::{Arrival, Expect, Protocol, Scenario};
use crate::stats::Shards;
use crate::sysinfo::{self, FdLimitError};
use crate::target::{self, Target, TargetError};

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Quiet,
    /// A plain line every few seconds (stderr is not a terminal).
    Lines,
    /// One line rewritten every second (stderr is a terminal).
    Live,
}

impl Progress {
    /// `Live` on a terminal, `Lines` otherwise, `Quiet` when asked.
    #[must_use]
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Live
        } else {
            Self::Lines
        }
    }
}

/// What to run and where to write it.
#[derive(Debug)]
pub struct RunOptions {
    /// The validated scenario.
    pub scenario: Scenario,
    /// The file it came from (for `run.json`).
    pub scenario_file: Option<PathBuf>,
    /// Target override (`--target`); `None` and no target in the scenario: bundled server.
    pub target: Option<SocketAddr>,
    /// Bearer token sent with every request.
    pub token: Option<String>,
    /// Run directory (`--out`); default `<results_root>/<scenario>-<time>`.
    pub out: Option<PathBuf>,
    /// Where run directories go by default.
    pub results_root: PathBuf,
    /// Executable with a `serve` subcommand, for the bundled server (usually loadgen itself).
    pub server_exe: Option<PathBuf>,
    /// Progress display.
    pub progress: Progress,
    /// The command line, for `run.json`.
    pub command_line: Vec<String>,
    /// Raised to stop the run early (Ctrl-C); results are still written.
    pub cancel: Option<watch::Receiver<bool>>,
    /// `--raw-samples`: one CSV row per measured message, up to a limit.
    pub raw_samples: Option<RawSamplesOptions>,
}

/// A run that could not start or whose results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Too many connections for the open-files limit.
    #[error(transparent)]
    FdLimit(#[from] FdLimitError),
    /// The target could not be started or reached.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The HTML report could not be built from the files written.
    #[error("cannot write the HTML report: {0}")]
    Report(#[from] crate::rundir::RunDirError),
    /// Results could not be written.
    #[error("cannot write results to {path}: {source}")]
    Output {
        /// The run directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl RunError {
    /// Exit code: 2 for a scenario that cannot run here, 3 for target problems, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::FdLimit(_) => 2,
            Self::Target(_) => 3,
            Self::Output { .. } | Self::Report(_) => 1,
        }
    }
}

/// Descriptors a scenario needs: one per connection and publisher, one more per SSE sender
/// (its POST connection), plus headroom for the runtime, files and scrapes.
#[must_use]
pub fn descriptors_needed(scenario: &Scenario) -> u64 {
    let senders: u64 = scenario
        .clients
        .iter()
        .filter(|g| g.protocol == Protocol::Sse && g.send.is_some())
        .map(|g| u64::from(g.count))
        .sum();
    scenario.total_connections() + senders + scenario.publishers.len() as u64 + 64
}

/// When connection `i` of `count` arrives, relative to the start.
fn arrival_offset(arrival: Arrival, i: u32, count: u32) -> Duration {
    match arrival {
        Arrival::Rate(rate) => Duration::from_secs_f64(f64::from(i) / rate),
        Arrival::Ramp(ramp) => ramp.mul_f64(f64::from(i) / f64::from(count.max(1))),
    }
}

/// Runs a scenario to the end and writes its results.
///
/// # Errors
/// [`RunError`] when the run cannot start or its results cannot be written; a run that starts
/// always produces a [`Report`], whatever happens to the target.
pub async fn run(opts: RunOptions) -> Result<Report, RunError> {
    let scenario = opts.scenario;
    sysinfo::raise_fd_limit(descriptors_needed(&scenario))?;
    // Checked before anything starts: a raw-samples file that cannot be written is an error.
    let raw_writer = match &opts.raw_samples {
        Some(raw) => Some(
            RawWriter::create(&raw.path, scenario.clients.iter().map(|g| g.name.as_str()))
                .map_err(|source| RunError::Output {
                    path: raw.path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let target_addr = opts.target.or(scenario.target);
    let target = match target_addr {
        Some(addr) => {
            client::tcp_connect(addr)
                .await
                .map_err(|e| TargetError::Unreachable {
                    addr,
                    reason: e.to_string(),
                })?;
            Target::remote(addr)
        }
        None => {
            let exe = opts.server_exe.clone().ok_or_else(|| {
                TargetError::Start("no executable to start the bundled server with".to_owned())
            })?;
            Target::spawn(&exe, &scenario.server.to_args()).await?
        }
    };
    let facts = RunFacts {
        scenario_file: opts.scenario_file.clone(),
        command_line: opts.command_line.clone(),
        target: target_addr.map_or_else(
            || format!("bundled (http://{})", target.addr),
            |a| format!("http://{a}"),
        ),
    };
    let started_unix_us = wire::now_unix_us();
    let run_dir = output::run_dir(
        opts.out.as_deref(),
        &opts.results_root,
        &scenario.name,
        started_unix_us,
    );
    std::fs::create_dir_all(&run_dir).map_err(|source| RunError::Output {
        path: run_dir.clone(),
        source,
    })?;
    let t0 = Instant::now();
    let server_before = target::scrape(target.addr).await;
    let server_pid = target.pid();
    let server_rss = move |scraped: Option<&std::collections::BTreeMap<String, f64>>| {
        server_pid.map_or_else(
            || {
                scraped
                    .and_then(|m| m.get("process_resident_memory_bytes"))
                    .and_then(|v| gauge_u64(*v))
            },
            |pid| sysinfo::rss_bytes(Some(pid)),
        )
    };
    let mut memory = Memory {
        client_baseline: sysinfo::rss_bytes(None),
        server_baseline: server_rss(Some(&server_before)),
        ..Memory::default()
    };

    let signals = Signals::new();
    let ctx: Ctx = Arc::new(
        RunCtx::new(
            target.addr,
            opts.token.clone(),
            &signals,
            (scenario.clients.len(), scenario.publishers.len()),
            scenario.run.warmup,
            opts.raw_samples.as_ref().map(|r| r.limit),
        )
        .map_err(|e| TargetError::Start(format!("cannot start the send timer thread: {e}")))?,
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let shards = Shards::new(cores * 2);
    let mut tasks = JoinSet::new();
    let mut conn_index = 0usize;
    let mut last_arrival = Duration::ZERO;
    for (gi, group) in scenario.clients.iter().enumerate() {
        let publisher = match &group.expect {
            Expect::Publisher(name) => scenario.publishers.iter().position(|p| &p.name == name),
            _ => None,
        };
        let run = Arc::new(GroupRun {
            index: gi,
            spec: group.clone(),
            publisher,
        });
        for i in 0..group.count {
            let offset = arrival_offset(group.arrival, i, group.count);
            last_arrival = last_arrival.max(offset);
            let shard = shards.for_index(conn_index);
            let start_at = t0 + offset;
            match group.protocol {
                Protocol::Sse => tasks.spawn(client::sse::run(
                    Arc::clone(&ctx),
                    Arc::clone(&run),
                    shard,
                    start_at,
                    conn_index as u64,
                )),
                Protocol::Ws => tasks.spawn(client::ws::run(
                    Arc::clone(&ctx),
                    Arc::clone(&run),
                    shard,
                    start_at,
                    conn_index as u64 + 1,
                )),
            };
            conn_index += 1;
        }
    }
    for (pi, p) in scenario.publishers.iter().enumerate() {
        tasks.spawn(client::publisher::run(
            Arc::clone(&ctx),
            p.clone(),
            pi,
            shards.for_index(pi),
        ));
    }

    let target_failed: Arc<Mutex<Option<String>>> = Arc::default();
    let reporter = reporter::Reporter::start(reporter::ReporterArgs {
        raw: raw_writer,
        ctx: Arc::clone(&ctx),
        shards: shards.clone(),
        run_dir: run_dir.clone(),
        t0,
        server_pid,
        target_addr: target.addr,
        remote: target_addr.is_some(),
        progress: opts.progress,
        target_failed: Arc::clone(&target_failed),
    })
    .map_err(|e| TargetError::Start(format!("cannot start the reporter thread: {e}")))?;

    let total = scenario.total_connections();
    let mut cpu = Cpu {
        cores,
        ..Cpu::default()
    };
    let drive = async {
        // Connect phase: every connection has finished its first attempt (established or
        // failed), bounded by the last arrival plus the connect timeout. Counting open
        // connections instead would stall on streams that drop and reconnect.
        let connect_deadline = t0 + last_arrival + client::CONNECT_TIMEOUT;
        while Instant::now() < connect_deadline
            && ctx.first_attempts.load(Ordering::Relaxed) < total
        {
            sleep(Duration::from_millis(20)).await;
        }
        // Optionally let the server process the last joins and subscriptions before anyone
        // sends (`run.settle`, default 0).
        sleep(scenario.run.settle).await;
        let from = Instant::now() + scenario.run.warmup;
        let until = from + scenario.run.duration;
        ctx.set_window((!scenario.run.warmup.is_zero()).then_some(from), until);
        let _ = signals.start_sending.send(true);
        sleep_until(from).await;
        let cpu_start = (
            Instant::now(),
            sysinfo::cpu_time(None),
            server_pid.and_then(|p| sysinfo::cpu_time(Some(p))),
        );
        sleep_until(until).await;
        let wall = cpu_start.0.elapsed().as_secs_f64();
        let pct = |a: Option<Duration>, b: Option<Duration>| {
            Some((b?.saturating_sub(a?)).as_secs_f64() / wall * 100.0)
        };
        cpu.loadgen_percent = pct(cpu_start.1, sysinfo::cpu_time(None));
        cpu.server_percent = pct(
            cpu_start.2,
            server_pid.and_then(|p| sysinfo::cpu_time(Some(p))),
        );
        memory.client_plateau = sysinfo::rss_bytes(None);
        memory.server_plateau = if target_addr.is_some() {
            let addr = target.addr;
            let scraped = reporter::off_runtime(async move { target::scrape(addr).await })
                .await
                .unwrap_or_default();
            server_rss(Some(&scraped))
        } else {
            server_rss(None)
        };
        memory.connections = ctx.open.load(Ordering::Relaxed);
        let _ = signals.stop_sending.send(true);
        // Drain: wait until nothing has arrived for half a second (at most 5 s).
        let drain_end = Instant::now() + Duration::from_secs(5);
        let mut last = ctx.received.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while Instant::now() < drain_end && quiet_since.elapsed() < Duration::from_millis(500) {
            sleep(Duration::from_millis(50)).await;
            let now = ctx.received.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
    };
    let mut cancel = opts.cancel.clone();
    let cancelled = async {
        match &mut cancel {
            Some(rx) => {
                let _ = rx.wait_for(|c| *c).await;
            }
            None => std::future::pending().await,
        }
    };
    let failed_flag = Arc::clone(&target_failed);
    let target_died = async move {
        loop {
            sleep(Duration::from_millis(200)).await;
            if let Some(why) = failed_flag
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                return why;
            }
        }
    };
    let outcome = tokio::select! {
        () = drive => Outcome::Completed,
        () = sleep_until(t0 + scenario.run.time_limit) => Outcome::TimeLimit,
        () = cancelled => Outcome::Interrupted,
        why = target_died => Outcome::TargetFailed(why),
    };
    let _ = signals.stop_sending.send(true);
    let _ = signals.stop.send(true);
    let joined = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if joined.is_err() {
        tracing::warn!("some connections did not close within 10 s; abandoning them");
        tasks.abort_all();
    }
    let gathered = reporter.finish().await;
    let server_after = target::scrape(target.addr).await;
    target.stop().await;

    let raw_samples = match (gathered.raw, &opts.raw_samples) {
        (Some(Err(source)), Some(raw)) => {
            return Err(RunError::Output {
                path: raw.path.clone(),
                source,
            });
        }
        (Some(Ok(summary)), _) => Some(summary),
        _ => None,
    };
    memory.client_peak = gathered.client_peak;
    memory.server_peak = gathered.server_peak;
    let counters = shards.counters();
    let thresholds = report::evaluate(&scenario.thresholds, &gathered.totals, &counters);
    let report = Report {
        scenario,
        run_dir: run_dir.clone(),
        started_unix_us,
        elapsed: t0.elapsed(),
        outcome,
        histograms: gathered.totals,
        counters,
        server_before,
        server_after,
        memory,
        cpu,
        timeseries: gathered.rows,
        thresholds,
        raw_samples,
        error_samples: ctx
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    };
    output::write_all(&report, &facts).map_err(|source| RunError::Output {
        path: run_dir.clone(),
        source,
    })?;
    // Built from the files just written, exactly as `loadgen report` rebuilds it.
    crate::html::write_report(&run_dir)?;
    Ok(report)
}
