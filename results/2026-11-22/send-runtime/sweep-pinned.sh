#!/bin/bash
# Fan-out sweep, pinned ([OUTDIR=dir] [BIN=dir] sweep-pinned.sh RATE...): rt-server pinned to core 0, loadgen to core 1, each under
# /usr/bin/time for its user and system CPU.
set -u
cd /work/main
ulimit -n 20000
for r in "$@"; do
  name=fanout-10k-$r
  out=${OUTDIR:-results/2026-11-22/sweep}/$name
  rm -rf $out
  /usr/bin/time -f "rt-server user %U s, system %S s" taskset -c 0 ${BIN:-target/release}/rt-server --listen 127.0.0.1:8080 --client-queue 4096 > $out.server.txt 2>&1 &
  spid=$!
  sleep 1
  {
    echo '$ /usr/bin/time -f "rt-server user %U s, system %S s" taskset -c 0 rt-server --listen 127.0.0.1:8080 --client-queue 4096 &'
    echo "\$ /usr/bin/time -f \"loadgen user %U s, system %S s\" taskset -c 1 loadgen run results/bench/$name.toml --target http://127.0.0.1:8080 --quiet --out $out"
    echo
  } > $out.txt
  /usr/bin/time -f "loadgen user %U s, system %S s" taskset -c 1 ${BIN:-target/release}/loadgen run results/bench/$name.toml --target http://127.0.0.1:8080 --quiet --out $out >> $out.txt 2>&1
  echo "exit $?" >> $out.txt
  pkill -TERM -x rt-server
  wait $spid
  grep "rt-server user" $out.server.txt >> $out.txt
  rm -f $out.server.txt
done
