//! loadgen's latency histograms: the cost of recording one sample (what every received
//! message pays) and of merging interval histograms (what the reporter pays each second).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loadgen::live::stats::{Histograms, Metric};

/// Deterministic latencies spread like a real run: mostly 0.2–5 ms, a tail to 2 s.
fn latencies(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 1000 == 0 {
                x % 2_000_000
            } else {
                200 + x % 4_800
            }
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let values = latencies(10_000);
    let mut g = c.benchmark_group("histogram_record");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("delivery_10k_samples", |b| {
        let mut h = Histograms::default();
        b.iter(|| {
            for &v in &values {
                h.record(Metric::Delivery, black_box(v));
            }
        });
    });
    g.finish();
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram_merge");
    // One second of one shard: a few thousand samples in every metric.
    let mut interval = Histograms::default();
    for metric in Metric::ALL {
        for v in latencies(5_000) {
            interval.record(metric, v);
        }
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("interval_into_totals_5_metrics", |b| {
        let mut totals = Histograms::default();
        b.iter(|| totals.merge(black_box(&interval)));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = record, merge
}
criterion_main!(benches);
