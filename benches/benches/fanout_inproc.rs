//! The server's broadcast hub (notifications scenario) delivering one message to 1k and 10k
//! subscribers, each a task on a two-worker runtime as SSE connections are: time from publish
//! until every subscriber task has received the event. No sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{Arrivals, runtime, spawn_hub_subscribers, stamped};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use server::hub::ReplayHub;
use server::metrics::{Metrics, Scenario};

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("fanout_inproc");
    g.sample_size(30);
    for subscribers in [1_000usize, 10_000] {
        let hub = Arc::new(ReplayHub::new(Some("notification"), 16, 64));
        let metrics = Metrics::default().scenario(Scenario::Notifications);
        let arrivals = Arc::new(Arrivals::default());
        rt.block_on(async { spawn_hub_subscribers(&hub, subscribers, &metrics, &arrivals) });
        let body = stamped(1, 256);
        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        arrivals.expect(subscribers);
                        let start = Instant::now();
                        hub.publish(|_| body.clone());
                        arrivals.wait().await;
                        total += start.elapsed();
                    }
                    total
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = fanout
}
criterion_main!(benches);
