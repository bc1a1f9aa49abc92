//! Table-driven tests: one or more cases per WHATWG rule listed in the module docs. Every case
//! is run whole, split at every byte position into two reads, and one byte per read, so line
//! ends (including CRLF) split across reads are covered for every case.

use super::*;
use crate::sse::encode_event;

/// (event type, data, last event id)
type Want = (&'static str, &'static str, &'static str);

struct Case {
    rule: &'static str,
    input: &'static [u8],
    events: &'static [Want],
    retry: Option<u64>,
    /// `finish()` must report a discarded partial event.
    discards_at_eof: bool,
}

const fn case(rule: &'static str, input: &'static [u8], events: &'static [Want]) -> Case {
    Case {
        rule,
        input,
        events,
        retry: None,
        discards_at_eof: false,
    }
}

const CASES: &[Case] = &[
    // Rule 1: line endings.
    case("LF", b"data: a\n\n", &[("message", "a", "")]),
    case("CRLF", b"data: a\r\n\r\n", &[("message", "a", "")]),
    case("lone CR", b"data: a\r\r", &[("message", "a", "")]),
    case(
        "mixed endings",
        b"data: a\rdata: b\r\ndata: c\n\r\n",
        &[("message", "a\nb\nc", "")],
    ),
    case(
        "CR then LF is one line end, not a blank line",
        b"data: a\r\ndata: b\r\n\r\n",
        &[("message", "a\nb", "")],
    ),
    // Rule 2: BOM.
    case(
        "leading BOM skipped",
        b"\xEF\xBB\xBFdata: a\n\n",
        &[("message", "a", "")],
    ),
    case(
        "only one BOM skipped",
        b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
        // The second BOM makes the first line's field name unknown: that line is ignored.
        &[("message", "b", "")],
    ),
    case(
        "BOM later is not stripped",
        b"data: a\n\xEF\xBB\xBFdata: b\n\n",
        &[("message", "a", "")],
    ),
    // Rule 3: comments.
    case(
        ": comment ignored",
        b": hi\ndata: a\n:\n\n",
        &[("message", "a", "")],
    ),
    // Rule 4: field/value split.
    case(
        "no space after colon",
        b"data:a\n\n",
        &[("message", "a", "")],
    ),
    case(
        "only one space removed",
        b"data:  a\n\n",
        &[("message", " a", "")],
    ),
    case(
        "colon in value kept",
        b"data: a:b: c\n\n",
        &[("message", "a:b: c", "")],
    ),
    case(
        "line without colon is a field with empty value",
        b"data\n\n",
        &[("message", "", "")],
    ),
    case("field names are case-sensitive", b"Data: a\n\n", &[]),
    // Rule 5: data.
    case(
        "multi-line data joined by LF",
        b"data: a\ndata: b\n\n",
        &[("message", "a\nb", "")],
    ),
    case(
        "only the last LF removed",
        b"data: a\ndata:\n\n",
        &[("message", "a\n", "")],
    ),
    case(
        "empty data line dispatches empty data",
        b"data:\n\n",
        &[("message", "", "")],
    ),
    case(
        "invalid UTF-8 becomes replacement char",
        b"data: \xFF\n\n",
        &[("message", "\u{FFFD}", "")],
    ),
    // Rule 6: event type.
    case(
        "event sets type",
        b"event: price\ndata: 1\n\n",
        &[("price", "1", "")],
    ),
    case(
        "type resets after dispatch",
        b"event: x\ndata: 1\n\ndata: 2\n\n",
        &[("x", "1", ""), ("message", "2", "")],
    ),
    case(
        "empty event field means message",
        b"event:\ndata: 1\n\n",
        &[("message", "1", "")],
    ),
    // Rule 7: id.
    case(
        "id persists across events",
        b"id: 7\ndata: a\n\ndata: b\n\n",
        &[("message", "a", "7"), ("message", "b", "7")],
    ),
    case(
        "id with NUL ignored",
        b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n",
        &[("message", "a", "1"), ("message", "b", "1")],
    ),
    case(
        "empty id resets",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        &[("message", "a", "1"), ("message", "b", "")],
    ),
    case(
        "id without data still sets the buffer",
        b"id: 9\n\ndata: a\n\n",
        &[("message", "a", "9")],
    ),
    // Rule 8: retry.
    Case {
        retry: Some(1500),
        ..case(
            "retry digits",
            b"retry: 1500\ndata: a\n\n",
            &[("message", "a", "")],
        )
    },
    Case {
        retry: Some(10),
        ..case(
            "retry non-digits ignored",
            b"retry: 10\nretry: 1.5\nretry: -1\nretry: 2s\nretry:\n",
            &[],
        )
    },
    // Rule 9: unknown fields.
    case(
        "unknown field ignored",
        b"foo: bar\ndata: a\n\n",
        &[("message", "a", "")],
    ),
    // Rule 10: dispatch with empty data buffer.
    case(
        "blank line without data dispatches nothing and resets type",
        b"event: x\n\ndata: a\n\n",
        &[("message", "a", "")],
    ),
    // Rule 11: end of stream.
    Case {
        discards_at_eof: true,
        ..case(
            "event cut mid-event is discarded",
            b"data: a\n\ndata: b\n",
            &[("message", "a", "")],
        )
    },
    Case {
        discards_at_eof: true,
        ..case(
            "unterminated line is discarded",
            b"data: a\n\ndata: b",
            &[("message", "a", "")],
        )
    },
];

fn run(chunks: &[&[u8]]) -> (Vec<Event>, Parser) {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser
            .feed(chunk, |e| events.push(e.into()))
            .expect("within limits");
    }
    (events, parser)
}

fn check(case: &Case, how: &str, chunks: &[&[u8]]) {
    let (events, mut parser) = run(chunks);
    let got: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.data.as_str(),
                e.last_event_id.as_str(),
            )
        })
        .collect();
    assert_eq!(got, case.events, "rule `{}` ({how})", case.rule);
    assert_eq!(
        parser.retry_ms(),
        case.retry,
        "retry in `{}` ({how})",
        case.rule
    );
    assert_eq!(
        parser.finish(),
        case.discards_at_eof,
        "eof in `{}` ({how})",
        case.rule
    );
}

#[test]
fn every_rule_whole_split_and_bytewise() {
    for case in CASES {
        check(case, "whole", &[case.input]);
        for at in 0..=case.input.len() {
            let (a, b) = case.input.split_at(at);
            check(case, &format!("split at {at}"), &[a, b]);
        }
        let bytes: Vec<&[u8]> = case.input.chunks(1).collect();
        check(case, "bytewise", &bytes);
    }
}

#[test]
fn crlf_split_across_reads_is_one_line_end() {
    // A CR ending one read and the LF starting the next must not make a blank line (which
    // would dispatch "a" early and then "b" alone).
    let (events, _) = run(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "a\nb");
}

#[test]
fn comments_are_counted() {
    let (_, parser) = run(&[b": keep-alive\n:\ndata: a\n\n"]);
    assert_eq!(parser.comments(), 2);
}

#[test]
fn reset_stream_keeps_last_event_id_and_retry() {
    let (_, mut parser) = run(&[b"retry: 5\nid: 3\ndata: a\n\ndata: partial"]);
    parser.reset_stream();
    let mut got = Vec::new();
    parser
        .feed(b"data: b\n\n", |e| got.push(Event::from(e)))
        .expect("ok");
    assert_eq!(got[0].data, "b");
    assert_eq!(got[0].last_event_id, "3");
    assert_eq!(parser.retry_ms(), Some(5));
}

#[test]
fn oversized_event_is_an_error() {
    let mut parser = Parser::with_max_event_bytes(16);
    assert_eq!(
        parser.feed(b"data: 0123456789\ndata: 0123456789\n", |_| {}),
        Err(ParseError::EventTooLarge { limit: 16 })
    );
    let mut parser = Parser::with_max_event_bytes(16);
    assert_eq!(
        parser.feed(b"data: a very long line with no end", |_| {}),
        Err(ParseError::EventTooLarge { limit: 16 })
    );
}

#[test]
fn encoder_output_round_trips_through_parser() {
    let datas = [
        "",
        "x",
        "a\nb",
        "a\r\nb\rc",
        " leading space",
        "trailing\n",
        "ünïcødé",
        "::",
    ];
    for data in datas {
        let mut bytes = Vec::new();
        encode_event(&mut bytes, Some("t"), Some("5"), data).expect("valid");
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let (events, _) = run(&[a, b]);
            let want = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(events.len(), 1, "{data:?} split at {at}");
            assert_eq!(events[0].data, want, "{data:?} split at {at}");
            assert_eq!(events[0].event_type, "t");
            assert_eq!(events[0].last_event_id, "5");
        }
    }
}

/// (rule, input, last event ID string after it, ID buffer after it)
const ID_CASES: &[(&str, &[u8], &str, &str)] = &[
    (
        "id without a dispatch stays in the buffer",
        b"id: 7\n",
        "",
        "7",
    ),
    (
        "id and data without the blank line are not dispatched",
        b"id: 7\ndata: a\n",
        "",
        "7",
    ),
    (
        "dispatched id becomes the string",
        b"id: 7\ndata: a\n\n",
        "7",
        "7",
    ),
    (
        "a blank line without data still sets the string",
        b"id: 7\n\n",
        "7",
        "7",
    ),
    (
        "stream cut between id and blank line keeps the previous string",
        b"id: 1\ndata: a\n\nid: 2\ndata: b\n",
        "1",
        "2",
    ),
    (
        "id with NUL is ignored",
        b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n",
        "1",
        "1",
    ),
    (
        "empty id resets the string at dispatch",
        b"id: 1\ndata: a\n\nid:\ndata: b\n\n",
        "",
        "",
    ),
    (
        "bare id field resets too",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        "",
        "",
    ),
];

#[test]
fn last_event_id_string_changes_only_at_dispatch() {
    for (rule, input, string, buffer) in ID_CASES {
        let mut splits: Vec<Vec<&[u8]>> = vec![vec![input], input.chunks(1).collect()];
        splits.extend((0..=input.len()).map(|at| {
            let (a, b) = input.split_at(at);
            vec![a, b]
        }));
        for chunks in splits {
            let (_, parser) = run(&chunks);
            assert_eq!(parser.last_event_id(), *string, "string: {rule} {chunks:?}");
            assert_eq!(parser.last_event_id_buffer(), *buffer, "buffer: {rule}");
        }
    }
}

#[test]
fn reconnect_after_a_cut_between_id_and_blank_line_resumes_after_the_dispatched_event() {
    let (_, mut parser) = run(&[b"id: 1\ndata: a\n\nid: 2\ndata: b\n"]);
    parser.reset_stream();
    assert_eq!(parser.last_event_id(), "1", "Last-Event-ID to send");
    assert_eq!(
        parser.last_event_id_buffer(),
        "1",
        "undispatched id forgotten"
    );
    let mut got = Vec::new();
    parser
        .feed(b"data: b again\n\n", |e| got.push(Event::from(e)))
        .expect("ok");
    assert_eq!(got[0].last_event_id, "1");
}

/// Streams built from SSE's own pieces (field lines, comments, every line end, a BOM, NUL and
/// invalid UTF-8) and stray bytes, so that most inputs mean something to the parser.
fn sse_streams() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just(b"data: x".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"data".to_vec()),
        Just(b"event: e".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b"id".to_vec()),
        Just(b"retry: 250".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xFF\xC3".to_vec()),
        Just(vec![0u8]),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
}

/// Everything a parser reports after `chunks`: events, the ID string and buffer, retry,
/// comments, whether a partial event was left at the end, and the first error.
fn outcome(
    chunks: &[&[u8]],
    limit: usize,
) -> (Vec<Event>, String, String, Option<u64>, u64, bool, bool) {
    let mut parser = Parser::with_max_event_bytes(limit);
    let mut events = Vec::new();
    let mut failed = false;
    for chunk in chunks {
        if parser.feed(chunk, |e| events.push(e.into())).is_err() {
            failed = true;
            break;
        }
    }
    let (string, buffer) = (
        parser.last_event_id().to_owned(),
        parser.last_event_id_buffer().to_owned(),
    );
    let (retry, comments) = (parser.retry_ms(), parser.comments());
    let discarded = !failed && parser.finish();
    (events, string, buffer, retry, comments, discarded, failed)
}

proptest::proptest! {
    #[test]
    fn any_split_of_a_stream_yields_the_same_events(
        stream in sse_streams(),
        cuts in proptest::collection::vec(0usize..1024, 0..8),
        limit in proptest::prop_oneof![proptest::strategy::Just(DEFAULT_MAX_EVENT_BYTES), 8usize..64],
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([stream.len()]) {
            chunks.push(&stream[from..to]);
            from = to;
        }
        let whole = outcome(&[&stream], limit);
        proptest::prop_assert_eq!(&outcome(&chunks, limit), &whole, "chunks {:?}", chunks);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        proptest::prop_assert_eq!(&outcome(&bytes, limit), &whole, "byte by byte");
    }
}
