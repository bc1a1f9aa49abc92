//! One run from start to finish: target, connections, phases, reporter, outputs.
//!
//! Phases: connect (arrival schedule) → warm-up → measured phase (senders and publishers run
//! from the end of connecting to the end of this phase) → drain (in-flight messages arrive)
//! → close. A hard time limit, Ctrl-C and a dying target each end the run early; results
//! gathered so far are written in every case.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use crate::live::client::publisher::SeqPlan;
use crate::live::client::send_runtime::SendRuntime;
use crate::live::client::{self, Ctx, GroupRun, RunCtx, Signals};
use crate::live::deployment::{self, Deployment};
use crate::live::host::{self, FdLimitError};
use crate::live::raw_samples::{RawSamplesOptions, RawWriter};
use crate::live::reporter::{self, gauge_u64};
use crate::live::start_at::{StartAt, StartAtError};
use crate::live::stats::Shards;
use crate::live::supervise::{self, SharedPid};
use crate::live::target::{Probe, Target, TargetError};
use crate::live::transport::{self, Connector, Endpoints, TlsOptions, TlsSetupError};
use crate::results::output::{self, OutDirError, RunFacts};
use crate::results::report::{self, Cpu, Memory, Outcome, Report};
use crate::results::shard_record::{Deferred, GroupRecord, PublisherRecord, ShardRecord};
use crate::scenario::template::Vars;
use crate::scenario::{Arrival, Expect, Protocol, ResolvePin, Scenario, Sharding, TargetUrl};
use server::process::{self, ProcessSample, ProcessSampler};

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

/// Requests of a shard's clock-offset probe (the one with the shortest round trip counts).
const CLOCK_PROBE_ROUNDS: u32 = 8;

/// The `--seed` when none is given: runs are reproducible by default.
pub const DEFAULT_SEED: u64 = 1;

/// What to run and where to write it.
#[derive(Debug)]
pub struct RunOptions {
    /// The validated scenario.
    pub scenario: Scenario,
    /// The file it came from (for `run.json`).
    pub scenario_file: Option<PathBuf>,
    /// Target override (`--target`); `None` and no target in the scenario: bundled server.
    pub target: Option<TargetUrl>,
    /// `--resolve HOST:PORT:ADDR` pins, used instead of DNS.
    pub resolve: Vec<ResolvePin>,
    /// How https servers are verified (`--ca-file`, `--insecure`).
    pub tls: TlsOptions,
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
    /// Seed of the `{rand:A..B}` placeholders (`--seed`): the same seed, the same values.
    pub seed: u64,
    /// `--start-at`: the connect phase starts at this wall-clock instant.
    pub start_at: Option<StartAt>,
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
    /// The TLS settings cannot be used (`--ca-file`).
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// `--start-at` had passed by the time the run could start.
    #[error(transparent)]
    StartAt(#[from] StartAtError),
    /// The run directory (or the raw-samples file) cannot take the results; found before
    /// connecting.
    #[error(transparent)]
    Output(#[from] OutDirError),
    /// The run happened but its results could not all be written; the report (for the
    /// console table) is here.
    #[error("cannot write results to {}: {why}", path.display())]
    Unwritten {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        why: String,
        /// The run's report.
        report: Box<Report>,
    },
}

impl RunError {
    /// Exit code: 2 for a scenario that cannot run here, 3 for target problems, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::FdLimit(_) | Self::Tls(_) | Self::StartAt(_) | Self::Output(_) => 2,
            Self::Target(_) => 3,
            Self::Unwritten { .. } => 1,
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
    host::raise_fd_limit(descriptors_needed(&opts.scenario))?;
    // Checked before anything starts: a run directory or raw-samples file that cannot be
    // written (read-only, full disk) is an error, not results lost at the end.
    let run_dir = output::run_dir(
        opts.out.as_deref(),
        &opts.results_root,
        &opts.scenario.name,
        wire::now_unix_us(),
    );
    output::prepare_run_dir(&run_dir)?;
    let result = run_in(opts, run_dir.clone()).await;
    if result.is_err() {
        // A run that never started leaves no empty directory behind (a non-empty one stays).
        let _ = std::fs::remove_dir(&run_dir);
    }
    result
}

/// [`run`] once its run directory is known to take the results.
async fn run_in(opts: RunOptions, run_dir: PathBuf) -> Result<Report, RunError> {
    let raw_writer = open_raw_samples(&opts)?;
    let connector = Connector::new(&opts.tls)?;
    let target_url = opts.target.clone().or_else(|| opts.scenario.target.clone());
    let deployment = start_target(&opts, target_url.as_ref(), &connector).await?;
    let probe = deployment.probe().clone();
    let probes = deployment.probes();
    let endpoints = Endpoints::resolve(&opts.scenario, deployment.endpoints(), &opts.resolve)
        .await
        .map_err(TargetError::from)?;
    let facts = RunFacts {
        scenario_file: opts.scenario_file.clone(),
        command_line: opts.command_line.clone(),
        target: target_url
            .as_ref()
            .map_or_else(|| deployment.describe_bundled(), ToString::to_string),
        seed: opts.seed,
        tls: opts.tls.clone(),
    };
    // Shards of one run measure their clocks against their common target before starting.
    let clock_offset = match &opts.scenario.sharding {
        Some(_) => probe.clock_offset(CLOCK_PROBE_ROUNDS).await,
        None => None,
    };
    if let Some(at) = opts.start_at {
        at.wait(opts.progress != Progress::Quiet).await?;
    }
    let started_unix_us = wire::now_unix_us();
    let t0 = Instant::now();
    let instances_before = deployment::scrape_each(&probes).await;
    let server_before = deployment::sum_series(&instances_before);
    let pids = deployment.pids();
    // A remote target's memory comes from its `/metrics`, not from pids.
    let server_pids = if target_url.is_some() {
        Vec::new()
    } else {
        pids.instances.clone()
    };
    let server_rss = ServerRss {
        pids: server_pids.clone(),
        remote: target_url.is_some().then(|| probe.clone()),
    };
    let mut memory = Memory {
        client_baseline: process::rss_bytes(None),
        server_baseline: server_rss.given_scrape(&server_before),
        ..Memory::default()
    };

    let signals = Signals::new();
    let mut run_ctx = RunCtx::new(
        (connector, endpoints),
        opts.token.clone(),
        &signals,
        (opts.scenario.clients.len(), opts.scenario.publishers.len()),
        opts.scenario.run.warmup,
        opts.raw_samples.as_ref().map(|r| r.limit),
        opts.seed,
    )
    .map_err(|e| TargetError::Start(format!("cannot start the send timer thread: {e}")))?;
    run_ctx.source_addrs.clone_from(&opts.scenario.source_addrs);
    let ctx: Ctx = Arc::new(run_ctx);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let shards = Shards::new(cores * 2);
    let send_runtime = SendRuntime::start()
        .map_err(|e| TargetError::Start(format!("cannot start the publishers' thread: {e}")))?;
    let (mut tasks, last_arrival) =
        spawn_load(&opts.scenario, &ctx, &shards, t0, send_runtime.handle());
    let target_failed: Arc<Mutex<Option<String>>> = Arc::default();
    let reporter = reporter::Reporter::start(reporter::ReporterArgs {
        raw: raw_writer,
        ctx: Arc::clone(&ctx),
        shards: shards.clone(),
        run_dir: run_dir.clone(),
        t0,
        server_pids,
        probe: probe.clone(),
        remote: target_url.is_some(),
        progress: opts.progress,
        target_failed: Arc::clone(&target_failed),
    })
    .map_err(|e| TargetError::Start(format!("cannot start the reporter thread: {e}")))?;
    // The bundled server's instances and its Redis are started again if they die mid-run.
    let supervised = deployment.supervise(&pids, t0, &target_failed);

    let mut cpu = Cpu {
        cores,
        ..Cpu::default()
    };
    let phases = Phases {
        ctx: &ctx,
        signals: &signals,
        scenario: &opts.scenario,
        server_rss,
        redis_pid: pids.redis.clone(),
        connect_deadline: t0 + last_arrival + client::CONNECT_TIMEOUT,
    };
    let mut measured = None;
    let outcome = tokio::select! {
        () = phases.drive(&mut cpu, &mut memory, &mut measured) => Outcome::Completed,
        () = sleep_until(t0 + opts.scenario.run.time_limit) => Outcome::TimeLimit,
        () = cancelled(opts.cancel.clone()) => Outcome::Interrupted,
        why = target_died(&target_failed) => Outcome::TargetFailed(why),
    };
    stop_load(&signals, &mut tasks).await;
    let gathered = reporter.finish().await;
    let instances_after = deployment::scrape_each(&probes).await;
    let server_after = deployment::sum_series(&instances_after);
    let mut target_outages = gathered.outages;
    target_outages.extend(supervised.stop().await);
    target_outages.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));

    // A raw-samples file that failed mid-run is reported after the table, not instead of it.
    let mut unwritten = None;
    let raw_samples = match (gathered.raw, &opts.raw_samples) {
        (Some(Err(source)), Some(raw)) => {
            unwritten = Some((raw.path.clone(), source.to_string()));
            None
        }
        (Some(Ok(summary)), _) => Some(summary),
        _ => None,
    };
    memory.client_peak = gathered.client_peak;
    memory.server_peak = gathered.server_peak;
    if let Some((from, until)) = measured {
        let window = (
            from.saturating_duration_since(t0).as_secs_f64(),
            until.saturating_duration_since(t0).as_secs_f64(),
        );
        memory.client_slope_per_min =
            report::slope_per_min(&gathered.rows, |r| r.client_rss_bytes, window);
        memory.server_slope_per_min =
            report::slope_per_min(&gathered.rows, |r| r.server_rss_bytes, window);
    }
    let counters = shards.counters();
    let thresholds = report::evaluate(&opts.scenario.thresholds, &gathered.totals, &counters);
    let shard = opts.scenario.sharding.as_ref().map(|s| {
        let mut record = shard_record(&opts.scenario, s, &ctx, opts.start_at, started_unix_us);
        record.clock_offset = clock_offset;
        record
    });
    let report = Report {
        scenario: opts.scenario,
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
        shard,
        target_outages,
        instances: deployment::shares(&probes, &instances_before, &instances_after),
    };
    let written = output::write_all(&report, &facts)
        .map_err(|e| (run_dir.clone(), e.to_string()))
        // Built from the files just written, exactly as `loadgen report` rebuilds it.
        .and_then(|()| {
            crate::results::html::write_report(&run_dir)
                .map(|_| ())
                .map_err(|e| (run_dir.clone(), e.to_string()))
        });
    match unwritten.map_or(written, Err) {
        Ok(()) => Ok(report),
        Err((path, why)) => Err(RunError::Unwritten {
            path,
            why,
            report: Box::new(report),
        }),
    }
}

/// What this shard records for `loadgen merge`: where it ran, when it started against
/// `--start-at`, and the counts behind the expectations it left to the merge.
fn shard_record(
    scenario: &Scenario,
    sharding: &Sharding,
    ctx: &RunCtx,
    start_at: Option<StartAt>,
    started_unix_us: u64,
) -> ShardRecord {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let groups = scenario
        .clients
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let publisher = match &g.expect {
                Expect::Publisher(name) => scenario.publishers.iter().position(|p| &p.name == name),
                _ => None,
            };
            let kind = match publisher {
                Some(publisher) => Deferred::Publisher { publisher },
                None => Deferred::Peers,
            };
            let deferred = sharding
                .defers(&g.expect, publisher, scenario)
                .then_some(kind);
            GroupRecord {
                name: g.name.clone(),
                whole_count: sharding.groups[gi].whole_count,
                conn_base: sharding.groups[gi].conn_base,
                connections: g.count,
                settled: ctx.settled[gi].load(Ordering::Acquire),
                sent: ctx.group_sent[gi].load(Ordering::Acquire),
                deferred,
            }
        })
        .collect();
    let publishers = scenario
        .publishers
        .iter()
        .enumerate()
        .map(|(pi, p)| PublisherRecord {
            name: p.name.clone(),
            publishes_here: scenario.publishes_here(pi),
            split: p.split,
            published: ctx.published(pi),
        })
        .collect();
    ShardRecord {
        index: sharding.shard.index,
        count: sharding.shard.count,
        host: read("/proc/sys/kernel/hostname"),
        clock_source: read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        start_at_unix_us: start_at.map(|a| a.unix_us),
        clock_offset: None,
        start_offset_us: start_at.map(|a| {
            i64::try_from(started_unix_us).unwrap_or(i64::MAX)
                - i64::try_from(a.unix_us).unwrap_or(i64::MAX)
        }),
        whole_plan: sharding.whole_plan.clone(),
        groups,
        publishers,
    }
}

/// Creates the `--raw-samples` file, if asked for.
fn open_raw_samples(opts: &RunOptions) -> Result<Option<RawWriter>, RunError> {
    let Some(raw) = &opts.raw_samples else {
        return Ok(None);
    };
    let groups = opts.scenario.clients.iter().map(|g| g.name.as_str());
    RawWriter::create(&raw.path, groups)
        .map(Some)
        .map_err(|source| {
            RunError::Output(OutDirError::Unwritable {
                path: raw.path.clone(),
                source,
            })
        })
}

/// Resolves a remote target and keeps its addresses that accept TCP (none: unreachable),
/// or starts the bundled server (its instances and their Redis).
async fn start_target(
    opts: &RunOptions,
    url: Option<&TargetUrl>,
    connector: &Connector,
) -> Result<Deployment, RunError> {
    if let Some(url) = url {
        let endpoint = transport::resolve::resolve(url, &opts.resolve)
            .await
            .map_err(TargetError::from)?;
        let (endpoint, refused) = transport::resolve::keep_reachable(endpoint).await;
        if let Some((addr, reason)) = refused {
            return Err(TargetError::Unreachable { addr, reason }.into());
        }
        let server = &opts.scenario.server;
        if server.instance_count() > 1 || server.redis.is_some() {
            tracing::warn!(
                "[server] instances and redis are ignored: the target is {url}, not the bundled server"
            );
        }
        let target = Target::remote(Arc::new(endpoint), connector.clone());
        return Ok(Deployment::remote(target));
    }
    let exe = opts.server_exe.clone().ok_or_else(|| {
        TargetError::Start("no executable to start the bundled server with".to_owned())
    })?;
    Ok(Deployment::bundled(&exe, &opts.scenario.server, connector).await?)
}

/// Spawns every connection at its arrival time and every publisher (on `publishers`, see
/// [`SendRuntime`]); returns the tasks and the last arrival offset.
fn spawn_load(
    scenario: &Scenario,
    ctx: &Ctx,
    shards: &Shards,
    t0: Instant,
    publishers: &tokio::runtime::Handle,
) -> (JoinSet<()>, Duration) {
    let mut tasks = JoinSet::new();
    let mut last_arrival = Duration::ZERO;
    let shard_count = u64::from(scenario.run_shard().count);
    for (gi, group) in scenario.clients.iter().enumerate() {
        let publisher = match &group.expect {
            Expect::Publisher(name) => scenario.publishers.iter().position(|p| &p.name == name),
            _ => None,
        };
        let split = publisher.is_some_and(|p| scenario.publishers[p].split);
        let run = Arc::new(GroupRun {
            index: gi,
            spec: group.clone(),
            publisher,
            sources: if split { shard_count } else { 1 },
            deferred: scenario
                .sharding
                .as_ref()
                .is_some_and(|s| s.defers(&group.expect, publisher, scenario)),
            h2: client::h2pool::H2Pool::default(),
            fields: client::message_fields::MessageFields::of(group),
        });
        for i in 0..group.count {
            let offset = arrival_offset(group.arrival, i, group.count);
            last_arrival = last_arrival.max(offset);
            let (conn, group_conn) = scenario.connection_index(gi, i);
            let shard = shards.for_index(usize::try_from(conn).unwrap_or(usize::MAX));
            let start_at = t0 + offset;
            let vars = Vars {
                conn,
                group_conn: u64::from(group_conn),
                seed: ctx.seed,
            };
            let (ctx, run) = (Arc::clone(ctx), Arc::clone(&run));
            match group.protocol {
                Protocol::Sse => tasks.spawn(client::sse::run(ctx, run, shard, start_at, vars)),
                Protocol::Ws => tasks.spawn(client::ws::run(ctx, run, shard, start_at, vars)),
            };
        }
    }
    let shard = scenario.run_shard();
    for (pi, p) in scenario.publishers.iter().enumerate() {
        if !scenario.publishes_here(pi) {
            continue;
        }
        // A split publisher's share interleaves its sequence numbers with the other shards'.
        let seqs = if p.split {
            SeqPlan::interleaved(shard)
        } else {
            SeqPlan::WHOLE
        };
        let (ctx, stats) = (Arc::clone(ctx), shards.for_index(pi));
        tasks.spawn_on(
            client::publisher::run(ctx, p.clone(), pi, stats, seqs),
            publishers,
        );
    }
    (tasks, last_arrival)
}

/// Where the target's RSS comes from: the bundled server's instances' pids (summed), or a
/// remote target's `/metrics` (`process_resident_memory_bytes`).
#[derive(Debug, Clone)]
struct ServerRss {
    /// The bundled server's instances' pids (0 while one is down); empty for a remote target.
    pids: Vec<SharedPid>,
    remote: Option<Probe>,
}

impl ServerRss {
    /// The pids of the bundled server's instances that run now.
    fn current_pids(&self) -> Vec<u32> {
        self.pids.iter().filter_map(supervise::current).collect()
    }

    /// RSS now (bundled: the sum over the instances that run) or from a scrape already taken
    /// (remote).
    fn given_scrape(&self, scraped: &std::collections::BTreeMap<String, f64>) -> Option<u64> {
        if self.pids.is_empty() {
            return scraped
                .get("process_resident_memory_bytes")
                .and_then(|v| gauge_u64(*v));
        }
        self.current_pids()
            .into_iter()
            .filter_map(|pid| process::rss_bytes(Some(pid)))
            .reduce(|a, b| a + b)
    }

    /// RSS now; a remote target is scraped off the I/O runtime.
    async fn now(&self) -> Option<u64> {
        match (self.pids.is_empty(), &self.remote) {
            (true, Some(probe)) => {
                let probe = probe.clone();
                let scraped = reporter::off_runtime(async move { probe.scrape().await })
                    .await
                    .unwrap_or_default();
                self.given_scrape(&scraped)
            }
            _ => self.given_scrape(&std::collections::BTreeMap::new()),
        }
    }
}

/// The run's phases after the connections were spawned.
struct Phases<'a> {
    ctx: &'a Ctx,
    signals: &'a Signals,
    scenario: &'a Scenario,
    server_rss: ServerRss,
    /// The spawned Redis's pid (0 while it is down).
    redis_pid: Option<SharedPid>,
    connect_deadline: Instant,
}

impl Phases<'_> {
    /// Connect → settle → warm-up → measured phase (CPU and the memory plateau sampled at its
    /// ends) → drain. Sets `measured` to the measured phase once it has begun.
    async fn drive(
        &self,
        cpu: &mut Cpu,
        memory: &mut Memory,
        measured: &mut Option<(Instant, Instant)>,
    ) {
        self.connect().await;
        // Optionally let the server process the last joins and subscriptions before anyone
        // sends (`run.settle`, default 0).
        sleep(self.scenario.run.settle).await;
        let from = Instant::now() + self.scenario.run.warmup;
        let until = from + self.scenario.run.duration;
        let warmup = !self.scenario.run.warmup.is_zero();
        self.ctx.set_window(warmup.then_some(from), until);
        *measured = Some((from, until));
        let _ = self.signals.start_sending.send(true);
        sleep_until(from).await;
        let redis_pid = || self.redis_pid.as_ref().and_then(supervise::current);
        let pids_at_start = (self.server_rss.current_pids(), redis_pid());
        let start = sample_processes(pids_at_start.clone()).await;
        let started = Instant::now();
        sleep_until(until).await;
        let pids_at_end = (self.server_rss.current_pids(), redis_pid());
        let end = sample_processes(pids_at_end.clone()).await;
        let wall = started.elapsed().as_secs_f64();
        let pct = |a: Option<ProcessSample>, b: Option<ProcessSample>| {
            Some((b?.cpu_time.saturating_sub(a?.cpu_time)).as_secs_f64() / wall * 100.0)
        };
        cpu.loadgen_percent = pct(start.client, end.client);
        // A process started again mid-phase has no CPU time of the whole phase.
        cpu.server_percent = if pids_at_start.0 == pids_at_end.0 {
            pct(start.server, end.server)
        } else {
            None
        };
        cpu.redis_percent = if pids_at_start.1 == pids_at_end.1 {
            pct(start.redis, end.redis)
        } else {
            None
        };
        memory.client_plateau = end.client.map(|s| s.rss_bytes);
        memory.server_plateau = match end.server {
            Some(server) => Some(server.rss_bytes),
            None => self.server_rss.now().await,
        };
        memory.redis_plateau = end.redis.map(|s| s.rss_bytes);
        memory.connections = self.ctx.open.load(Ordering::Relaxed);
        let _ = self.signals.stop_sending.send(true);
        self.drain().await;
    }

    /// Until every connection has finished its first attempt (established or failed),
    /// bounded by the last arrival plus the connect timeout. Counting open connections
    /// instead would stall on streams that drop and reconnect.
    async fn connect(&self) {
        let total = self.scenario.total_connections();
        while Instant::now() < self.connect_deadline
            && self.ctx.first_attempts.load(Ordering::Relaxed) < total
        {
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until nothing has arrived for half a second (at most [`client::IN_FLIGHT_GRACE`]).
    async fn drain(&self) {
        let drain_end = Instant::now() + client::IN_FLIGHT_GRACE;
        let mut last = self.ctx.received.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while Instant::now() < drain_end && quiet_since.elapsed() < Duration::from_millis(500) {
            sleep(Duration::from_millis(50)).await;
            let now = self.ctx.received.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
    }
}

/// Memory and CPU time of loadgen, of the bundled server's instances and of the spawned
/// Redis at one moment.
#[derive(Debug, Default)]
struct Sampled {
    client: Option<ProcessSample>,
    /// Summed over the instances.
    server: Option<ProcessSample>,
    redis: Option<ProcessSample>,
}

/// [`Sampled`] for the instances' pids and the Redis pid, sampled on a blocking-pool thread:
/// at the edges of the measured phase a worker must not stop reading for the few hundred µs
/// sysinfo takes.
async fn sample_processes((server_pids, redis_pid): (Vec<u32>, Option<u32>)) -> Sampled {
    tokio::task::spawn_blocking(move || {
        let mut sampler = ProcessSampler::default();
        let server = server_pids
            .into_iter()
            .filter_map(|p| sampler.sample(Some(p)))
            .reduce(|a, b| ProcessSample {
                rss_bytes: a.rss_bytes + b.rss_bytes,
                cpu_time: a.cpu_time + b.cpu_time,
            });
        Sampled {
            client: sampler.sample(None),
            server,
            redis: redis_pid.and_then(|p| sampler.sample(Some(p))),
        }
    })
    .await
    .unwrap_or_default()
}

/// Completes when `cancel` is raised (Ctrl-C); never without one.
async fn cancelled(cancel: Option<watch::Receiver<bool>>) {
    match cancel {
        Some(mut rx) => {
            let _ = rx.wait_for(|c| *c).await;
        }
        None => std::future::pending().await,
    }
}

/// Completes with the reason once the reporter has seen the target die.
async fn target_died(failed: &Mutex<Option<String>>) -> String {
    loop {
        sleep(Duration::from_millis(200)).await;
        if let Some(why) = failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return why;
        }
    }
}

/// Stops senders and connections and waits (at most 10 s) for every task to end.
async fn stop_load(signals: &Signals, tasks: &mut JoinSet<()>) {
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
}
