//! The bundled server on 127.0.0.1 with N real SSE clients (hyper + the `wire` parser, over
//! TCP): time from POSTing one notification until every client has parsed it. Server and
//! clients share this process's two-worker runtime and the machine's two cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{Arrivals, Publisher, runtime, stamped, subscribe};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("fanout_loopback");
    g.sample_size(20);
    for clients in [100usize, 1_000] {
        let config = server::ServerConfig {
            max_connections: clients + 16,
            ..server::ServerConfig::default()
        };
        let arrivals = Arc::new(Arrivals::default());
        let (running, mut publisher) = rt.block_on(async {
            let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
            let running = server::start(config, addr).await.expect("server starts");
            let addr = running.local_addr();
            for _ in 0..clients {
                subscribe(addr, "/sse/notifications", Arc::clone(&arrivals)).await;
            }
            (running, Publisher::connect(addr).await)
        });
        g.throughput(Throughput::Elements(clients as u64));
        g.bench_function(BenchmarkId::from_parameter(clients), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for seq in 0..iters {
                        arrivals.expect(clients);
                        let start = Instant::now();
                        publisher
                            .post("/sse/notifications", stamped(seq + 1, 256))
                            .await;
                        arrivals.wait().await;
                        total += start.elapsed();
                    }
                    total
                })
            });
        });
        rt.block_on(running.shutdown(Duration::from_secs(2)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = fanout
}
criterion_main!(benches);
