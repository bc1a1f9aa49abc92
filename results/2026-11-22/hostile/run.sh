#!/bin/bash
# Hostile clients against a separate release rt-server (server/examples/hostile.rs): WebSocket
# frames announcing 1 TiB, endless continuation fragments and ping floods from 1,000 sockets
# each; 10,000 SSE streams that never read while 2,000 events of 1 KiB are published; 11,000
# streams against a limit of 1,000; 10,000 slowloris heads; 20 POSTs announcing 1 GiB. Prints the server's RSS before, peak and after, and its
# close/drop/reject counters.
# Usage (repository root, after `cargo build --release -p rt-server --example hostile -p rt-server`):
#   results/2026-11-22/hostile/run.sh > results/2026-11-22/hostile/figures.txt
set -u
ulimit -n 20000
run() {
  target/release/rt-server --listen 127.0.0.1:8090 "$@" > /dev/null 2>&1 &
  spid=$!
  sleep 1
}
stop() { kill -TERM $spid; wait $spid; }
run
for attack in huge-frame continuation ping-flood; do
  echo "\$ hostile 127.0.0.1:8090 <pid> $attack 1000"
  target/release/examples/hostile 127.0.0.1:8090 $spid $attack 1000
done
echo "\$ hostile 127.0.0.1:8090 <pid> huge-post 20"
target/release/examples/hostile 127.0.0.1:8090 $spid huge-post 20
stop
run
echo "\$ hostile 127.0.0.1:8090 <pid> nonreading 10000"
target/release/examples/hostile 127.0.0.1:8090 $spid nonreading 10000
echo "\$ hostile 127.0.0.1:8090 <pid> slowloris 10000   # --header-timeout-secs 15 (default)"
target/release/examples/hostile 127.0.0.1:8090 $spid slowloris 10000
stop
run --max-connections 1000
echo "\$ rt-server --max-connections 1000; hostile 127.0.0.1:8090 <pid> over-limit 11000"
target/release/examples/hostile 127.0.0.1:8090 $spid over-limit 11000
stop
