#!/bin/bash
# WebSocket runs at 10,000 and 19,000 connections against a separate rt-server; after each,
# the server's close reasons for /ws/pubsub from its /metrics.
# Usage (repository root, after `cargo build --release -p loadgen -p rt-server`):
#   results/2026-11-22/ws-closes/run.sh
set -u
here=results/2026-11-22/ws-closes
ulimit -n 20000
for bench in ${@:-ws-10k ws-19k}; do
  [ -f results/bench/$bench.toml ] || continue
  target/release/rt-server --listen 127.0.0.1:8090 --client-queue 256 > /dev/null 2>&1 &
  spid=$!
  sleep 1
  {
    echo "\$ loadgen run results/bench/$bench.toml --target http://127.0.0.1:8090 --quiet --out $here/$bench"
    target/release/loadgen run results/bench/$bench.toml --target http://127.0.0.1:8090 --quiet --out $here/$bench
    echo "exit $?"
    sleep 2
    echo "\$ curl -s http://127.0.0.1:8090/metrics | grep 'rt_connections_closed_total{scenario=\"pubsub\"'"
    curl -s http://127.0.0.1:8090/metrics | grep 'rt_connections_closed_total{scenario="pubsub"' | grep -v ' 0$'
  } > $here/$bench.txt 2>&1
  kill -TERM $spid; wait $spid
done
