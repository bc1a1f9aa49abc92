//! Sampling a process's RSS and CPU time, as loadgen does once a second for itself and the
//! bundled server: through `server::process` (the sysinfo crate), with a kept sampler and
//! one-shot, against reading `/proc/self/status` and `/proc/self/stat` directly (the former
//! implementation, Linux only), to show sysinfo is cheap enough for per-second sampling.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use server::process::{self, ProcessSampler};

/// What the removed `/proc` reader did: VmRSS from status, utime + stime from stat.
fn proc_read() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((kib * 1024, ticks))
}

fn sampling(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_sample");
    let mut sampler = ProcessSampler::default();
    g.bench_function("sysinfo_kept_sampler", |b| {
        b.iter(|| black_box(sampler.sample(None)));
    });
    g.bench_function("sysinfo_one_shot", |b| {
        b.iter(|| black_box(process::rss_bytes(None)));
    });
    if std::path::Path::new("/proc/self/stat").exists() {
        g.bench_function("proc_files", |b| b.iter(|| black_box(proc_read())));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = sampling
}
criterion_main!(benches);
