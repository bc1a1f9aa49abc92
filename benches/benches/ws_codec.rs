//! WebSocket frames encoded and decoded in memory by tungstenite, the crate the loadgen (via
//! tokio-tungstenite) and the server use: a client encoding masked text frames and a server
//! decoding them.

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::time::Duration;

use benches::stamped;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Messages decoded per iteration.
const BATCH: usize = 1_000;

/// An in-memory socket: reads from `input`, writes append to `output`.
#[derive(Debug, Default)]
struct Memory {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // Like a non-blocking socket with nothing to read.
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `BATCH` masked client frames carrying `text`.
fn encoded(text: &Utf8Bytes) -> Vec<u8> {
    let mut client = WebSocket::from_raw_socket(Memory::default(), Role::Client, None);
    for _ in 0..BATCH {
        client.send(Message::Text(text.clone())).expect("send");
    }
    std::mem::take(&mut client.get_mut().output)
}

fn codec(c: &mut Criterion) {
    for size in [128usize, 4096] {
        let text: Utf8Bytes = stamped(1, size).into();
        let frames = encoded(&text);
        let mut g = c.benchmark_group(format!("ws_{size}B"));
        g.throughput(Throughput::Bytes(frames.len() as u64 / BATCH as u64));
        g.bench_function(BenchmarkId::new("encode_client", size), |b| {
            let mut client = WebSocket::from_raw_socket(Memory::default(), Role::Client, None);
            b.iter(|| {
                client
                    .send(Message::Text(black_box(text.clone())))
                    .expect("send");
                client.get_mut().output.clear();
            });
        });
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new("decode_server", size), |b| {
            b.iter_batched(
                || {
                    let memory = Memory {
                        input: Cursor::new(frames.clone()),
                        output: Vec::new(),
                    };
                    WebSocket::from_raw_socket(memory, Role::Server, None)
                },
                |mut server| {
                    for _ in 0..BATCH {
                        let msg = server.read().expect("frame");
                        black_box(msg);
                    }
                },
                BatchSize::LargeInput,
            );
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
