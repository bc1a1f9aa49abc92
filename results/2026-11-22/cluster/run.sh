#!/bin/bash
# 10,000 SSE subscribers of /sse/notifications on one rt-server vs spread round-robin over
# three rt-servers sharing a Redis backplane (--redis-url), at the same broadcast rates; the
# publisher posts to the first instance. Prints loadgen's table per run, then one summary line:
# delivery p50/p99 (from summary.csv), target memory per connection (sum over the instances of
# peak RSS minus RSS before, from /proc, per connection), Redis CPU (% of one core over the
# run) and peak RSS.
# Usage (repository root, after `cargo build --release -p loadgen -p rt-server`; Debian's
# redis-server on PATH): results/2026-11-22/cluster/run.sh > results/2026-11-22/cluster/figures.txt
set -u
here=results/2026-11-22/cluster
rates=${RATES:-"1 5 10 20"}
ulimit -n 20000
rss() { awk '/VmRSS/{print $2}' /proc/$1/status 2>/dev/null || echo 0; }
ticks() { awk '{print $14+$15}' /proc/$1/stat 2>/dev/null || echo 0; }

scenario() { # rate, targets (TOML list)
  cat <<TOML
name = "cluster-10k"
description = "10,000 SSE subscribers spread over the given instances, one broadcast publisher"
thresholds = ["lost == 0", "gaps == 0"]

[run]
warmup = "2s"
duration = "20s"
time_limit = "3m"

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
targets = $2
TOML
}

run() { # label, instances, rate
  local label=$1 n=$2 rate=$3 pids=() urls=() redis_pid=""
  local redis_port=16379
  if [ "$n" -gt 1 ]; then
    redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no > /dev/null 2>&1 &
    redis_pid=$!
    sleep 0.5
  fi
  for i in $(seq 1 "$n"); do
    local port=$((8100 + i))
    local extra=()
    [ "$n" -gt 1 ] && extra=(--redis-url "redis://127.0.0.1:$redis_port")
    target/release/rt-server --listen 127.0.0.1:$port --client-queue 1024 "${extra[@]}" > /dev/null 2>&1 &
    pids+=($!)
    urls+=("\"http://127.0.0.1:$port\"")
  done
  sleep 1
  local before=0
  for p in "${pids[@]}"; do before=$((before + $(rss $p))); done
  local list
  list="[$(IFS=,; echo "${urls[*]}")]"
  scenario "$rate" "$list" > $here/$label.toml
  local peak_file
  peak_file=$(mktemp)
  ( peak=0; rpeak=0
    while true; do
      sum=0; for p in "${pids[@]}"; do sum=$((sum + $(rss $p))); done
      [ $sum -gt $peak ] && peak=$sum
      if [ -n "$redis_pid" ]; then r=$(rss $redis_pid); [ $r -gt $rpeak ] && rpeak=$r; fi
      echo "$peak $rpeak" > $peak_file
      sleep 1
    done ) &
  local sampler=$!
  local rt0=0
  [ -n "$redis_pid" ] && rt0=$(ticks $redis_pid)
  local t0=$(date +%s.%N)
  echo "\$ loadgen run $here/$label.toml --target http://127.0.0.1:8101 --quiet --out $here/$label"
  target/release/loadgen run $here/$label.toml --target http://127.0.0.1:8101 --quiet --out $here/$label
  local t1=$(date +%s.%N)
  local rt1=0
  [ -n "$redis_pid" ] && rt1=$(ticks $redis_pid)
  kill $sampler; wait $sampler 2>/dev/null
  read peak rpeak < $peak_file; rm -f $peak_file
  local p50 p99
  p50=$(awk -F, '$1=="delivery"{print $5}' $here/$label/summary.csv)
  p99=$(awk -F, '$1=="delivery"{print $7}' $here/$label/summary.csv)
  local redis_cpu="-"
  [ -n "$redis_pid" ] && redis_cpu=$(echo "($rt1 - $rt0) / ($t1 - $t0)" | bc -l | xargs printf "%.1f%%")
  printf "SUMMARY %s instances=%s rate=%s/s delivery_p50=%.1fms p99=%.1fms target_kib_per_conn=%.1f redis_cpu=%s redis_peak_rss=%sKiB\n" \
    "$label" "$n" "$rate" "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)" \
    "$(echo "($peak - $before) / 10000" | bc -l)" "$redis_cpu" "${rpeak:-0}"
  for p in "${pids[@]}"; do kill -TERM $p; done
  wait "${pids[@]}" 2>/dev/null
  [ -n "$redis_pid" ] && { kill $redis_pid; wait $redis_pid 2>/dev/null; }
  sleep 1
}

for rate in $rates; do
  run "one-$rate" 1 "$rate"
  run "three-$rate" 3 "$rate"
done
