//! Stamp extraction from message text, as loadgen's connections read it (top-level fields,
//! other names and units, a JSON pointer): never a panic, and the one-pass fast path agrees
//! with reading the parsed JSON tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadgen::scenario::{StampKind, StampSpec};
use wire::{StampFields, TimeUnit};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = |seq: &str, ts: &str, unit, pointer: &str| StampSpec {
        fields: StampFields {
            seq: seq.to_owned(),
            ts: ts.to_owned(),
            unit,
        },
        pointer: pointer.to_owned(),
        kind: StampKind::Json,
    };
    let standard = loadgen::fuzzing::stamp(text, &spec("seq", "ts", TimeUnit::Us, ""));
    let _ = loadgen::fuzzing::stamp(text, &spec("n", "sent_ms", TimeUnit::Ms, ""));
    let _ = loadgen::fuzzing::stamp(text, &spec("seq", "ts", TimeUnit::Ns, "/data/0"));
    let _ = loadgen::fuzzing::stamp(text, &spec("seq", "ts", TimeUnit::Us, "/1"));
    // What the fast path accepts, the JSON tree agrees with, when there is one: a number
    // beyond f64 in a field the fast path skips is valid JSON that serde_json cannot hold in
    // a tree (the first crash this target found; see wire's stamp tests).
    if let (Some(Ok(stamp)), Ok(value)) =
        (standard, serde_json::from_str::<serde_json::Value>(text))
    {
        assert_eq!(StampFields::default().decode_value(&value), Ok(stamp));
    }
});
