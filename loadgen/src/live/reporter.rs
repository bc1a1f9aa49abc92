//! The once-a-second reporter, on a thread of its own (with its own single-threaded tokio
//! runtime for the target scrapes), so nothing it does ever runs on the I/O runtime that
//! receives and records messages: it swaps the shards' interval histograms out (the only
//! thing done under a shard's lock), merges them, writes the `.hlog` intervals, samples the
//! memory of both processes, scrapes a remote target's `/metrics`, appends a time-series
//! row, shows progress and watches the target.

use std::future::Future;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::live::client::Ctx;
use crate::live::raw_samples::{RawSamplesSummary, RawWriter};
use crate::live::run::Progress;
use crate::live::stats::{Histograms, IntervalCollector, Metric, Shards};
use crate::live::supervise::{self, SharedPid};
use crate::live::target::Probe;
use crate::results::report::{Outage, Row};
use server::process::ProcessSampler;

/// What the reporter hands back at the end.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    /// `--raw-samples`: the file written, or why it could not be.
    pub(crate) raw: Option<std::io::Result<RawSamplesSummary>>,
    pub(crate) totals: Histograms,
    pub(crate) rows: Vec<Row>,
    pub(crate) client_peak: Option<u64>,
    pub(crate) server_peak: Option<u64>,
    /// When a remote target refused connections (and came back, or the run ended).
    pub(crate) outages: Vec<Outage>,
}

/// The running reporter thread.
#[derive(Debug)]
pub(crate) struct Reporter {
    stop: watch::Sender<bool>,
    done: oneshot::Receiver<Gathered>,
}

impl Reporter {
    /// Starts the reporter thread; its first tick is one second after `args.t0`.
    ///
    /// # Errors
    /// The OS refused a thread, or its runtime could not be built.
    pub(crate) fn start(args: ReporterArgs) -> std::io::Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("loadgen-reporter".to_owned())
            .spawn(move || {
                let gathered = runtime.block_on(reporter(args, stop_rx));
                let _ = done_tx.send(gathered);
            })?;
        Ok(Self { stop, done })
    }

    /// Takes a last sample, stops the thread and returns what it gathered.
    pub(crate) async fn finish(self) -> Gathered {
        let _ = self.stop.send(true);
        self.done.await.unwrap_or_default()
    }
}

/// Runs `work` to completion on a fresh single-threaded runtime in a blocking thread: for the
/// few scrapes that must happen at a phase boundary, kept off the I/O runtime's workers.
/// `None` if that runtime could not be built.
pub(crate) async fn off_runtime<F>(work: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(runtime.block_on(work))
    })
    .await
    .ok()
    .flatten()
}

/// A scraped gauge (bytes) as an integer; negative or non-finite values are dropped.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn gauge_u64(v: f64) -> Option<u64> {
    // Checked non-negative and finite; `as` saturates above u64::MAX.
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// What the reporter reads and where it writes.
pub(crate) struct ReporterArgs {
    pub(crate) ctx: Ctx,
    pub(crate) shards: Shards,
    pub(crate) run_dir: PathBuf,
    pub(crate) t0: Instant,
    /// The bundled server's instances' pids, kept current by their supervisors (empty for a
    /// remote target).
    pub(crate) server_pids: Vec<SharedPid>,
    /// Scrapes the target.
    pub(crate) probe: Probe,
    pub(crate) remote: bool,
    pub(crate) progress: Progress,
    pub(crate) target_failed: Arc<Mutex<Option<String>>>,
    /// `--raw-samples`: where the shards' raw rows go.
    pub(crate) raw: Option<RawWriter>,
}

/// Once a second: merges the shards' interval histograms, writes them to the `.hlog`s,
/// samples memory, appends a time-series row, shows progress, watches the target.
async fn reporter(mut a: ReporterArgs, mut stop: watch::Receiver<bool>) -> Gathered {
    let mut gathered = Gathered::default();
    let mut hlogs = HlogFiles::create(&a.run_dir);
    let mut logs = hlogs.begin(SystemTime::now());
    let mut ticker =
        tokio::time::interval_at(a.t0 + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_received, mut last_errors) = (0u64, 0u64);
    let mut last_tick = a.t0;
    let mut watch = TargetWatch {
        server_pids: a.server_pids,
        remote: a.remote.then(|| a.probe.clone()),
        down_since: None,
        refused_in_a_row: 0,
        outages: Vec::new(),
        failed: Arc::clone(&a.target_failed),
        sampler: ProcessSampler::default(),
    };
    let mut own = ProcessSampler::default();
    let mut collector = IntervalCollector::new(&a.shards);
    let mut raw = a.raw.take();
    let mut raw_error = None;
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let now = Instant::now();
        let interval = collector.collect(&a.shards);
        if let Some(writer) = &mut raw
            && let Err(e) = writer.drain(&a.shards)
        {
            raw_error = Some(e);
            raw = None;
        }
        gathered.totals.merge(interval);
        if logs.len() == Metric::ALL.len() {
            let start = last_tick.saturating_duration_since(a.t0);
            let length = now.saturating_duration_since(last_tick);
            for (log, metric) in logs.iter_mut().zip(Metric::ALL) {
                write_interval(log, interval.get(metric), start, length);
            }
        }
        last_tick = now;
        let counters = a.shards.counters();
        let received = a.ctx.received.load(Ordering::Relaxed);
        let client_rss = own.sample(None).map(|s| s.rss_bytes);
        let t_s = now.saturating_duration_since(a.t0).as_secs_f64();
        let server_rss = watch.sample(stopping, t_s).await;
        gathered.client_peak = gathered.client_peak.max(client_rss);
        gathered.server_peak = gathered.server_peak.max(server_rss);
        let p99 = |m: Metric| p99_of(interval.get(m));
        let row = Row {
            t_s,
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
    hlogs.flush();
    gathered.outages = watch.finish(last_tick.saturating_duration_since(a.t0).as_secs_f64());
    gathered.raw = match (raw, raw_error, a.ctx.raw.as_ref()) {
        (_, Some(e), _) => Some(Err(e)),
        (Some(writer), None, Some(budget)) => Some(writer.finish(budget)),
        _ => None,
    };
    gathered
}

/// The `.hlog` files of a run, one per metric (a metric whose file cannot be created has
/// none, and then no log is written at all).
pub(crate) struct HlogFiles {
    files: Vec<BufWriter<std::fs::File>>,
    serializers: Vec<V2DeflateSerializer>,
}

pub(crate) type HlogWriter<'a> = hdrhistogram::serialization::interval_log::IntervalLogWriter<
    'a,
    'a,
    BufWriter<std::fs::File>,
    V2DeflateSerializer,
>;

impl HlogFiles {
    pub(crate) fn create(dir: &std::path::Path) -> Self {
        let files: Vec<_> = Metric::ALL
            .iter()
            .filter_map(|m| {
                std::fs::File::create(dir.join(format!("{}.hlog", m.name())))
                    .ok()
                    .map(BufWriter::new)
            })
            .collect();
        let serializers = files.iter().map(|_| V2DeflateSerializer::new()).collect();
        Self { files, serializers }
    }

    /// Writes the log headers (base time `base`, values in µs) and returns one writer per
    /// metric, in [`Metric::ALL`] order.
    pub(crate) fn begin(&mut self, base: SystemTime) -> Vec<HlogWriter<'_>> {
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .with_base_time(base)
            .with_start_time(base)
            .add_comment("loadgen latency log; values in microseconds");
        self.files
            .iter_mut()
            .zip(self.serializers.iter_mut())
            .filter_map(|(f, s)| builder.begin_log_with(f, s).ok())
            .collect()
    }

    pub(crate) fn flush(&mut self) {
        for f in &mut self.files {
            let _ = f.flush();
        }
    }
}

/// Appends one interval to an `.hlog` (nothing for an empty interval).
pub(crate) fn write_interval(
    log: &mut HlogWriter<'_>,
    h: &hdrhistogram::Histogram<u64>,
    start: Duration,
    length: Duration,
) {
    if !h.is_empty() {
        let _ = log.write_histogram(h, start, length, None);
    }
}

/// p99 of a histogram, `None` when empty.
fn p99_of(h: &hdrhistogram::Histogram<u64>) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(0.99))
}

/// Samples the target's RSS each tick and notices when it died: the bundled server's
/// process is gone, or a remote target refused connections three seconds running.
/// Once-a-second checks a remote target may refuse in a row before the run stops as failed:
/// a restart or a network blip shorter than this is an outage the verdict reports.
const DOWN_LIMIT: u32 = 10;

/// A remote target's outage: it refused connections.
fn refused(from_s: f64, to_s: f64) -> Outage {
    Outage {
        from_s,
        to_s,
        cause: "it refused connections".to_owned(),
    }
}

struct TargetWatch {
    /// The bundled server's instances' pids (0 while one is down); empty for a remote target.
    server_pids: Vec<SharedPid>,
    /// A remote target (memory from its `/metrics`).
    remote: Option<Probe>,
    /// Since when (s into the run) the remote target refuses connections.
    down_since: Option<f64>,
    /// Consecutive once-a-second checks it refused.
    refused_in_a_row: u32,
    /// Outages it came back from.
    outages: Vec<Outage>,
    failed: Arc<Mutex<Option<String>>>,
    sampler: ProcessSampler,
}

impl TargetWatch {
    /// The target's RSS now (`t_s` seconds into the run; the bundled server's: summed over
    /// its instances), if known; records an outage of a remote target, and its death
    /// (refusing for [`DOWN_LIMIT`] checks in a row) unless the run is `stopping`. The
    /// bundled server's deaths are the supervisors' to record.
    async fn sample(&mut self, stopping: bool, t_s: f64) -> Option<u64> {
        if !self.server_pids.is_empty() {
            // An instance is left out while its supervisor starts it again (which reports
            // the death itself).
            return self
                .server_pids
                .iter()
                .filter_map(supervise::current)
                .filter_map(|pid| self.sampler.sample(Some(pid)))
                .map(|s| s.rss_bytes)
                .reduce(|a, b| a + b);
        }
        let probe = self.remote.as_ref()?;
        if probe.accepts().await {
            self.refused_in_a_row = 0;
            if let Some(from_s) = self.down_since.take() {
                self.outages.push(refused(from_s, t_s));
            }
        } else {
            self.refused_in_a_row += 1;
            self.down_since.get_or_insert(t_s);
            if self.refused_in_a_row >= DOWN_LIMIT && !stopping {
                self.fail(format!(
                    "{} refused connections for {DOWN_LIMIT} s",
                    probe.endpoint().url
                ));
            }
        }
        probe
            .scrape()
            .await
            .get("process_resident_memory_bytes")
            .and_then(|v| gauge_u64(*v))
    }

    /// The outages, one still open at `end_s` closed there.
    fn finish(mut self, end_s: f64) -> Vec<Outage> {
        if let Some(from_s) = self.down_since.take() {
            self.outages.push(refused(from_s, end_s));
        }
        self.outages
    }

    fn fail(&self, why: String) {
        *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
    }
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
