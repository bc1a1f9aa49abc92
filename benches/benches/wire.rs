//! Wire formats: stamped-message encode/decode, the SSE encoder, and the SSE parser on
//! realistic streams (one event per read, many per read, events split across reads, CRLF),
//! in events/s and bytes/s.

use std::hint::black_box;
use std::time::Duration;

use benches::{sse_stream, stamped};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Events in the parsed stream; 256-byte payloads as the fan-out scenarios publish.
const EVENTS: u64 = 1_000;
const PAYLOAD: usize = 256;

fn stamp(c: &mut Criterion) {
    let mut g = c.benchmark_group("stamp");
    g.throughput(Throughput::Elements(1));
    let text = stamped(42, PAYLOAD);
    g.bench_function("encode_256B", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            black_box(stamped(black_box(seq), PAYLOAD))
        });
    });
    g.bench_function("decode_stamp_256B", |b| {
        b.iter(|| wire::Stamp::decode(black_box(&text)).expect("valid"));
    });
    g.bench_function("decode_message_256B", |b| {
        b.iter(|| wire::StampedMessage::decode(black_box(&text)).expect("valid"));
    });
    g.finish();
}

fn encoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_encode");
    let data = stamped(42, PAYLOAD);
    let mut one = Vec::new();
    wire::sse::encode_event(&mut one, Some("notification"), Some("42"), &data).expect("valid");
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("event_256B", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            wire::sse::encode_event(
                &mut out,
                Some("notification"),
                Some(black_box("42")),
                black_box(&data),
            )
            .expect("valid");
            black_box(out.len())
        });
    });
    g.finish();
}

/// Feeds `stream` in chunks of `chunk` bytes (0: one event per read) and counts events.
fn parse(stream: &[u8], chunk: usize, boundaries: &[usize]) -> u64 {
    let mut parser = wire::sse::Parser::new();
    let mut events = 0u64;
    let mut count = |_: wire::sse::EventRef<'_>| events += 1;
    if chunk == 0 {
        let mut start = 0;
        for &end in boundaries {
            parser.feed(&stream[start..end], &mut count).expect("valid");
            start = end;
        }
    } else {
        for piece in stream.chunks(chunk) {
            parser.feed(piece, &mut count).expect("valid");
        }
    }
    events
}

/// Offsets just after each event's blank line.
fn event_ends(stream: &[u8], crlf: bool) -> Vec<usize> {
    let sep: &[u8] = if crlf { b"\r\n\r\n" } else { b"\n\n" };
    stream
        .windows(sep.len())
        .enumerate()
        .filter(|(_, w)| *w == sep)
        .map(|(i, _)| i + sep.len())
        .collect()
}

fn parser(c: &mut Criterion) {
    let lf = sse_stream(EVENTS, PAYLOAD, false);
    let crlf = sse_stream(EVENTS, PAYLOAD, true);
    let (lf_ends, crlf_ends) = (event_ends(&lf, false), event_ends(&crlf, true));
    assert_eq!(lf_ends.len() as u64, EVENTS);
    // (name, stream, chunk size, event boundaries): 0 = one event per read.
    let cases: [(&str, &[u8], usize, &[usize]); 4] = [
        ("one_event_per_read", &lf, 0, &lf_ends),
        ("many_per_read_64KiB", &lf, 64 * 1024, &lf_ends),
        ("split_across_reads_100B", &lf, 100, &lf_ends),
        ("crlf_one_event_per_read", &crlf, 0, &crlf_ends),
    ];
    for (unit, throughput) in [
        ("events", Throughput::Elements(EVENTS)),
        ("bytes", Throughput::Bytes(0)),
    ] {
        let mut g = c.benchmark_group(format!("sse_parse_{unit}"));
        for (name, stream, chunk, ends) in cases {
            g.throughput(match throughput {
                Throughput::Bytes(_) => Throughput::Bytes(stream.len() as u64),
                ref t => t.clone(),
            });
            g.bench_with_input(BenchmarkId::from_parameter(name), &stream, |b, s| {
                b.iter(|| {
                    let n = parse(black_box(s), chunk, ends);
                    assert_eq!(n, EVENTS);
                    n
                });
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stamp, encoder, parser
}
criterion_main!(benches);
