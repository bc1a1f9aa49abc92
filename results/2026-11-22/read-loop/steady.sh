#!/bin/bash
# usage: [BIN=dir] [BENCHFILE=file] [PERF=1] [SENV=VAR=value] steady.sh NAME BENCH [env for loadgen]; rt-server pinned to core 0, loadgen to core 1; CPU of both from t=7 s to t=22 s over the events delivered in between
set -u
cd /work/main
ulimit -n 20000
name=$1; bench=$2; shift 2
B=${BIN:-target/release}
out=${OUTDIR:-results/2026-11-22/client-path}/$name; mkdir -p /tmp/prof; rm -rf $out
env ${SENV:-X=1} taskset -c 0 $B/rt-server --listen 127.0.0.1:8080 --client-queue 4096 > $out.server.txt 2>&1 &
spid=$!
sleep 1
env "$@" taskset -c 1 $B/loadgen run ${BENCHFILE:-results/bench/$bench.toml} --target http://127.0.0.1:8080 --quiet --out $out > $out.txt 2>&1 &
lpid=$!
sleep 7
a=($(cut -d' ' -f14,15 /proc/$lpid/stat) $(cut -d' ' -f14,15 /proc/$spid/stat))
if [ -n "${PERF:-}" ]; then
perf record -F 2000 -g -o $out.server.perf -p $spid -- sleep 10 > /dev/null 2>&1 &
perf record -F 2000 -g -o $out.loadgen.perf -p $lpid -- sleep 10 > /dev/null 2>&1 &
fi
sleep 15
b=($(cut -d' ' -f14,15 /proc/$lpid/stat) $(cut -d' ' -f14,15 /proc/$spid/stat))
wait $lpid
echo "exit $?" >> $out.txt
ev=$(awk -F, 'NR>1 && $1>=7.5 && $1<=22.0 {s+=$3} END {print s}' $out/timeseries.csv)
echo "$name: events(15s)=$ev loadgen user/ev $(echo "scale=2; (${b[0]}-${a[0]})*10000/$ev" | bc) us sys/ev $(echo "scale=2; (${b[1]}-${a[1]})*10000/$ev" | bc) us | server user/ev $(echo "scale=2; (${b[2]}-${a[2]})*10000/$ev" | bc) us sys/ev $(echo "scale=2; (${b[3]}-${a[3]})*10000/$ev" | bc) us" | tee -a $out.txt
pkill -TERM -x rt-server
sleep 1
