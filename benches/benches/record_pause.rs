//! The longest pause a recording call sees while the reporter takes its interval: 10,000
//! connection tasks on a two-worker runtime record into loadgen's shards (as received
//! messages do) while a reporter thread takes the shards' intervals, merges them and writes
//! them to an `.hlog`, ten times faster than a real run (every 100 ms) to see many ticks.
//!
//! Two ways of taking the interval are compared on the same load: `swap` (what loadgen does:
//! swap with a spare, merge outside the lock) and `allocate` (what it did before: allocate
//! fresh histograms while holding the shard's lock); `none` runs the same load without a
//! reporter, the floor set by scheduling alone. Prints, per way, how many calls were
//! timed and the pause percentiles and maximum in µs. Not a criterion bench: the figure is a
//! maximum, which criterion does not report.
//!
//! `cargo bench -p benches --bench record_pause`

#![allow(clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use loadgen::live::stats::{Histograms, IntervalCollector, Metric, Shards};

const CONNECTIONS: usize = 10_000;
/// Each connection records one sample this often (100,000 recordings/s in all).
const EVERY: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
enum Way {
    /// No reporter at all: the noise floor (scheduling, timer) of the same load.
    Idle,
    Swap,
    Allocate,
}

fn reporter(shards: &Shards, way: Way, stop: &AtomicBool) {
    let mut collector = IntervalCollector::new(shards);
    let mut totals = Histograms::default();
    let mut sink = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.with_base_time(SystemTime::now());
    let mut log = builder
        .begin_log_with(&mut sink, &mut serializer)
        .expect("log into memory");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let interval = match way {
            Way::Idle => continue,
            Way::Swap => collector.collect(shards).clone(),
            Way::Allocate => {
                let mut merged = Histograms::default();
                for i in 0..shards.len() {
                    let taken = shards
                        .for_index(i)
                        .with(|d| std::mem::take(&mut d.interval));
                    merged.merge(&taken);
                }
                merged
            }
        };
        totals.merge(&interval);
        let _ = log.write_histogram(interval.get(Metric::Delivery), Duration::ZERO, TICK, None);
    }
}

fn measure(way: Way) -> (u64, Histogram<u64>) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let shards = Shards::new(cores * 2);
    let stop = Arc::new(AtomicBool::new(false));
    let reporter_thread = {
        let (shards, stop) = (shards.clone(), Arc::clone(&stop));
        std::thread::spawn(move || reporter(&shards, way, &stop))
    };
    let calls = Arc::new(AtomicU64::new(0));
    let slow: Arc<std::sync::Mutex<Histogram<u64>>> = Arc::new(std::sync::Mutex::new(
        Histogram::new_with_bounds(1, 10_000_000, 3).expect("bounds"),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let end = tokio::time::Instant::now() + RUN;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CONNECTIONS {
            let shard = shards.for_index(i);
            let (calls, slow) = (Arc::clone(&calls), Arc::clone(&slow));
            tasks.spawn(async move {
                let offset = EVERY.mul_f64(i as f64 / CONNECTIONS as f64);
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, EVERY);
                let mut local =
                    Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("bounds");
                let mut n = 0u64;
                while tokio::time::Instant::now() < end {
                    tick.tick().await;
                    let started = Instant::now();
                    shard.with(|d| d.interval.record(Metric::Delivery, 250 + n % 500));
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    local.saturating_record(us.max(1));
                    n += 1;
                }
                calls.fetch_add(n, Ordering::Relaxed);
                let _ = slow.lock().map(|mut h| h.add(&local));
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    stop.store(true, Ordering::Relaxed);
    let _ = reporter_thread.join();
    let pauses = slow.lock().map(|h| h.clone()).expect("not poisoned");
    (calls.load(Ordering::Relaxed), pauses)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("record_pause: benchmark");
        return;
    }
    println!(
        "recording pauses, {CONNECTIONS} connections x 1 sample / {EVERY:?}, reporter tick every {TICK:?}, {RUN:?}"
    );
    println!(
        "{:<9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "way", "calls", "p50 us", "p99 us", "p99.9", "p99.99", "max us"
    );
    for (name, way) in [
        ("none", Way::Idle),
        ("swap", Way::Swap),
        ("allocate", Way::Allocate),
    ] {
        let (calls, h) = measure(way);
        println!(
            "{name:<9} {calls:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max()
        );
    }
}
