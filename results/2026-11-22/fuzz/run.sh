#!/bin/bash
# Every fuzz target for 10 minutes (two at a time on this 2-core machine), each from its
# seeds and whatever corpus earlier runs left; a hang is an input taking over 5 s.
# Usage (from the repository root, after `cargo install cargo-fuzz`):
#   results/2026-11-22/fuzz/run.sh
set -u
out=$PWD/results/2026-11-22/fuzz
cd fuzz
run() {
  mkdir -p corpus/$1
  RUSTC_BOOTSTRAP=1 cargo fuzz run $1 corpus/$1 seeds/$1 -- \
    -max_total_time=600 -timeout=5 -print_final_stats=1 > $out/$1.log 2>&1
  echo "$1 exit $?" >> $out/exits.txt
}
rm -f $out/exits.txt
run sse_parser & run stamp & wait
run chunked & run scenario & wait
run publish_body & run ws_command & wait
# After the stamp fix the `stamp` target ran again alone for 600 s, the same command with its
# log in stamp-after-fix.log (its exit in exits.txt).
