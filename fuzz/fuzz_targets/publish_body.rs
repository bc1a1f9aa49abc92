//! A publish body (`POST /sse/notifications`): refused with a reason or published; what is
//! published is a JSON object whose `seq` and `ts` are non-negative integers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::fuzzing::{Published, publish_body};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match publish_body(text) {
        Published::Refused(reason) => assert!(!reason.is_empty()),
        Published::Event { data, .. } => {
            let value: serde_json::Value = serde_json::from_str(&data).expect("published JSON");
            assert!(value["seq"].as_u64().is_some() && value["ts"].as_u64().is_some());
        }
    }
});
