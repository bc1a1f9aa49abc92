//! The SSE parser fed one stream in three chunkings (whole, the fuzzer's chunk sizes, byte by
//! byte) must dispatch the same events, end with the same last event ID, retry and comment
//! count, and fail (event too large) the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::sse::{Event, Parser};

/// Small enough that the fuzzer reaches the too-large path.
const LIMIT: usize = 256;

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    failed: bool,
    last_event_id: String,
    retry_ms: Option<u64>,
    comments: u64,
    discarded_at_end: bool,
}

fn parse(stream: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> Outcome {
    let mut parser = Parser::with_max_event_bytes(LIMIT);
    let mut events = Vec::new();
    let mut failed = false;
    let mut rest = stream;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if parser.feed(chunk, |e| events.push(e.into())).is_err() {
            failed = true;
            break;
        }
    }
    Outcome {
        events,
        failed,
        last_event_id: parser.last_event_id().to_owned(),
        retry_ms: parser.retry_ms(),
        comments: parser.comments(),
        discarded_at_end: !failed && parser.finish(),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the chunk sizes, the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = parse(stream, &mut std::iter::empty());
    let pattern = [usize::from(seed % 7) + 1, usize::from(seed / 7 % 5) + 1, 3];
    let chunked = parse(stream, &mut pattern.iter().copied().cycle());
    let bytewise = parse(stream, &mut std::iter::repeat(1));
    assert_eq!(whole, chunked, "chunk sizes {pattern:?}");
    assert_eq!(whole, bytewise, "byte by byte");
});
