//! The SSE client's chunked-body decoder: any input split anywhere decodes to the same data
//! and the same end (or the same failure) as in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = loadgen::fuzzing::chunked(&[body]);
    let size = usize::from(seed % 9) + 1;
    let pieces: Vec<&[u8]> = body.chunks(size).collect();
    let split = loadgen::fuzzing::chunked(&pieces);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "pieces of {size}"),
        (Err(_), Err(_)) => {}
        _ => panic!("one piece: {whole:?}; pieces of {size}: {split:?}"),
    }
});
