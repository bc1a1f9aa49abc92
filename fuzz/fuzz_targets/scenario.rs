//! The scenario loader: any text is a scenario or an error naming what is wrong, never a
//! panic; a valid scenario's plan, plan key and every shard split of it are computed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadgen::scenario::RunShard;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = loadgen::scenario::parse(text, std::path::Path::new("fuzz.toml")) else {
        return;
    };
    let _ = scenario.plan();
    let _ = scenario.plan_key();
    for count in 1..=3 {
        for index in 0..count {
            let shard = RunShard::new(index, count).expect("valid shard");
            if let Ok(share) = scenario.shard(shard) {
                let _ = share.plan();
                assert_eq!(share.whole_plan_key(), scenario.plan_key());
            }
        }
    }
});
