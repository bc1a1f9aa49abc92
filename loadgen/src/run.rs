//! One run from start to finish: target, connections, phases, reporter, outputs.
//!
//! Phases: connect (arrival schedule) → warm-up → measured phase (senders and publishers run
//! from the end of connecting to the end of this phase) → drain (in-flight messages arrive)
//! → close. A hard time limit, Ctrl-C and a dying target each end the run early; results
//! gathered so far are written in every case.

use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use crate::client::{self, Ctx, GroupRun, RunCtx, Signals};
use crate::output::{self, RunFacts};
use crate::report::{self, Cpu, Memory, Outcome, Report, Row};
use crate::scenario::{Arrival, Expect, Protocol, Scenario};
use crate::stats::{Histograms, Metric, Shards};
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

/// A scraped gauge (bytes) as an integer; negative or non-finite values are dropped.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn gauge_u64(v: f64) -> Option<u64> {
    // Checked non-negative and finite; `as` saturates above u64::MAX.
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// When connection `i` of `count` arrives, relative to the start.
fn arrival_offset(arrival: Arrival, i: u32, count: u32) -> Duration {
    match arrival {
        Arrival::Rate(rate) => Duration::from_secs_f64(f64::from(i) / rate),
        Arrival::Ramp(ramp) => ramp.mul_f64(f64::from(i) / f64::from(count.max(1))),
    }
}

/// Pause between the last connection opening and the first message sent.
const SETTLE: Duration = Duration::from_millis(200);

/// What the reporter hands back at the end.
#[derive(Debug, Default)]
struct Gathered {
    totals: Histograms,
    rows: Vec<Row>,
    client_peak: Option<u64>,
    server_peak: Option<u64>,
}

/// Runs a scenario to the end and writes its results.
///
/// # Errors
/// [`RunError`] when the run cannot start or its results cannot be written; a run that starts
/// always produces a [`Report`], whatever happens to the target.
pub async fn run(opts: RunOptions) -> Result<Report, RunError> {
    let scenario = opts.scenario;
    sysinfo::raise_fd_limit(descriptors_needed(&scenario))?;
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
    let ctx: Ctx = Arc::new(RunCtx::new(
        target.addr,
        opts.token.clone(),
        &signals,
        scenario.clients.len(),
        scenario.publishers.len(),
    ));
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

    let (reporter_stop, reporter_stop_rx) = watch::channel(false);
    let target_failed: Arc<Mutex<Option<String>>> = Arc::default();
    let reporter = tokio::spawn(reporter(ReporterArgs {
        ctx: Arc::clone(&ctx),
        shards: shards.clone(),
        run_dir: run_dir.clone(),
        t0,
        server_pid,
        target_addr: target.addr,
        remote: target_addr.is_some(),
        progress: opts.progress,
        stop: reporter_stop_rx,
        target_failed: Arc::clone(&target_failed),
    }));

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
        // Let the server process the last joins and subscriptions before anyone sends.
        sleep(SETTLE).await;
        let from = Instant::now() + scenario.run.warmup;
        let until = from + scenario.run.duration;
        ctx.set_window(from, until);
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
            server_rss(Some(&target::scrape(target.addr).await))
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
    let _ = reporter_stop.send(true);
    let gathered = reporter.await.unwrap_or_default();
    let server_after = target::scrape(target.addr).await;
    target.stop().await;

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

struct ReporterArgs {
    ctx: Ctx,
    shards: Shards,
    run_dir: PathBuf,
    t0: Instant,
    server_pid: Option<u32>,
    target_addr: SocketAddr,
    remote: bool,
    progress: Progress,
    stop: watch::Receiver<bool>,
    target_failed: Arc<Mutex<Option<String>>>,
}

/// Once a second: merges the shards' interval histograms, writes them to the `.hlog`s,
/// samples memory, appends a time-series row, shows progress, watches the bundled server.
async fn reporter(mut a: ReporterArgs) -> Gathered {
    let mut gathered = Gathered::default();
    let base = SystemTime::now();
    let mut files: Vec<BufWriter<std::fs::File>> = Metric::ALL
        .iter()
        .filter_map(|m| {
            std::fs::File::create(a.run_dir.join(format!("{}.hlog", m.name())))
                .ok()
                .map(BufWriter::new)
        })
        .collect();
    let mut serializers: Vec<V2DeflateSerializer> =
        files.iter().map(|_| V2DeflateSerializer::new()).collect();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .with_base_time(base)
        .with_start_time(base)
        .add_comment("loadgen latency log; values in microseconds");
    let mut logs: Vec<_> = files
        .iter_mut()
        .zip(serializers.iter_mut())
        .filter_map(|(f, s)| builder.begin_log_with(f, s).ok())
        .collect();
    let mut ticker =
        tokio::time::interval_at(a.t0 + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_received, mut last_errors) = (0u64, 0u64);
    let mut last_tick = a.t0;
    let mut refused_in_a_row = 0u32;
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = a.stop.wait_for(|s| *s) => true,
        };
        let now = Instant::now();
        let interval = a.shards.take_interval();
        gathered.totals.merge(&interval);
        if logs.len() == Metric::ALL.len() {
            let start = last_tick.saturating_duration_since(a.t0);
            let length = now.saturating_duration_since(last_tick);
            for (log, metric) in logs.iter_mut().zip(Metric::ALL) {
                let h = interval.get(metric);
                if !h.is_empty() {
                    let _ = log.write_histogram(h, start, length, None);
                }
            }
        }
        last_tick = now;
        let counters = a.shards.counters();
        let received = a.ctx.received.load(Ordering::Relaxed);
        let client_rss = sysinfo::rss_bytes(None);
        let server_rss = match a.server_pid {
            Some(pid) => {
                let rss = sysinfo::rss_bytes(Some(pid));
                if rss.is_none() && !stopping {
                    *a.target_failed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) =
                        Some("the bundled server exited".to_owned());
                }
                rss
            }
            None if a.remote => {
                // A remote target is gone when it refuses connections three seconds running.
                if client::tcp_connect(a.target_addr).await.is_ok() {
                    refused_in_a_row = 0;
                } else {
                    refused_in_a_row += 1;
                    if refused_in_a_row >= 3 && !stopping {
                        *a.target_failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) =
                            Some(format!("{} refuses connections", a.target_addr));
                    }
                }
                target::scrape(a.target_addr)
                    .await
                    .get("process_resident_memory_bytes")
                    .and_then(|v| gauge_u64(*v))
            }
            None => None,
        };
        gathered.client_peak = gathered.client_peak.max(client_rss);
        gathered.server_peak = gathered.server_peak.max(server_rss);
        let p99 = |m: Metric| {
            let h = interval.get(m);
            (!h.is_empty()).then(|| h.value_at_quantile(0.99))
        };
        let row = Row {
            t_s: now.saturating_duration_since(a.t0).as_secs_f64(),
            connections_open: a.ctx.open.load(Ordering::Relaxed),
            events_per_s: received - last_received,
            errors: counters.errors() - last_errors,
            client_rss_bytes: client_rss,
            server_rss_bytes: server_rss,
            delivery_p99_us: p99(Metric::Delivery),
            ws_rtt_p99_us: p99(Metric::WsRtt),
            connect_p99_us: p99(Metric::Connect),
        };
        last_received = received;
        last_errors = counters.errors();
        show_progress(
            a.progress,
            gathered.rows.len() + 1,
            &row,
            &gathered.totals,
            counters.errors(),
        );
        gathered.rows.push(row);
        if stopping {
            break;
        }
    }
    if a.progress == Progress::Live {
        eprintln!();
    }
    drop(logs);
    for f in &mut files {
        let _ = f.flush();
    }
    gathered
}

fn show_progress(mode: Progress, second: usize, row: &Row, totals: &Histograms, errors: u64) {
    let p99 = [Metric::Delivery, Metric::WsRtt, Metric::Connect]
        .into_iter()
        .map(|m| totals.get(m))
        .find(|h| !h.is_empty())
        .map_or("-".to_owned(), |h| {
            format!("{:.2}ms", h.value_at_quantile(0.99) as f64 / 1000.0)
        });
    let line = format!(
        "t={:>5.1}s open={} events/s={} errors={} p99={} rss={:.1}MiB",
        row.t_s,
        row.connections_open,
        row.events_per_s,
        errors,
        p99,
        row.client_rss_bytes.unwrap_or(0) as f64 / 1048576.0
    );
    match mode {
        Progress::Quiet => {}
        Progress::Live => eprint!("\r{line}   "),
        Progress::Lines => {
            // Every 5 s is enough for logs.
            if second.is_multiple_of(5) {
                eprintln!("{line}");
            }
        }
    }
}
