#!/bin/bash
# 10,000 SSE subscribers of /sse/notifications on one bundled server vs three sharing a Redis
# that loadgen spawns ([server] instances = 3, redis = "spawn"), at the same broadcast rates;
# connections spread round-robin, the publisher on the first instance. loadgen starts and
# measures everything itself: the target's memory and CPU are sums over the instances, the
# spawned redis-server's RSS and CPU are in counters.csv. One SUMMARY line per run.
# Usage (repository root, after `cargo build --release -p loadgen`; Debian's redis-server on
# PATH): [RATES="1 2 5 10"] [INSTANCES="1 3"] [REPEAT=-rep2] results/2026-11-22/cluster-loadgen/run.sh > results/2026-11-22/cluster-loadgen/figures.txt
# (REPEAT is appended to each run's name, so a repeat does not overwrite the first runs.)
set -u
here=results/2026-11-22/cluster-loadgen
rates=${RATES:-"1 2 5 10"}
instances=${INSTANCES:-"1 3"}
repeat=${REPEAT:-}
ulimit -n 20000

scenario() { # rate, instances
  local server="client_queue = 1024"
  [ "$2" -gt 1 ] && server="$server
instances = $2
redis = \"spawn\""
  cat <<TOML
name = "cluster-10k"
description = "10,000 SSE subscribers over $2 bundled instance(s), one broadcast publisher"
thresholds = ["lost == 0", "gaps == 0"]

[run]
warmup = "2s"
duration = "20s"
time_limit = "3m"

[server]
$server

[[publishers]]
name = "news"
protocol = "http"
path = "/sse/notifications"
rate = $1

[[clients]]
name = "sse"
protocol = "sse"
path = "/sse/notifications"
count = 10000
arrival_rate = 5000
events = ["notification"]
expect = "publisher:news"
TOML
}

counter() { awk -F, -v n="$2" '$1==n{print $2}' "$1/counters.csv"; }

for rate in $rates; do
  for n in $instances; do
    label="i$n-r$rate$repeat"
    scenario "$rate" "$n" > $here/$label.toml
    echo "\$ loadgen run $here/$label.toml --quiet --out $here/$label"
    target/release/loadgen run $here/$label.toml --quiet --out $here/$label
    p50=$(awk -F, '$1=="delivery"{print $5}' $here/$label/summary.csv)
    p99=$(awk -F, '$1=="delivery"{print $7}' $here/$label/summary.csv)
    printf "SUMMARY %s instances=%s rate=%s/s delivery_p50=%.1fms p99=%.1fms target_bytes_per_conn=%s target_cpu=%s%% loadgen_cpu=%s%% redis_cpu=%s%% redis_rss=%s\n" \
      "$label" "$n" "$rate" "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)" \
      "$(counter $here/$label server_bytes_per_connection)" "$(counter $here/$label server_cpu_percent)" \
      "$(counter $here/$label loadgen_cpu_percent)" "$(counter $here/$label redis_cpu_percent)" \
      "$(counter $here/$label redis_rss_plateau_bytes)"
    sleep 2
  done
done
