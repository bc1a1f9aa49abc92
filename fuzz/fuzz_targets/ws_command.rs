//! WebSocket commands (rooms, pub/sub, chat): any sequence of text messages (one per line of
//! the input) is handled without a panic, each message answered or acted on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let messages: Vec<&str> = text.split('\n').take(64).collect();
    let _ = server::fuzzing::ws_session(&messages);
});
