#!/bin/bash
# usage: [BIN=dir] syscalls.sh NAME BENCH: perf stat of epoll_wait, recvfrom, writev, futex, context switches of both processes for 10 s from t=8 s
set -u
cd /work/main
ulimit -n 20000
name=$1; bench=$2; shift 2
B=${BIN:-target/release}
out=results/2026-11-22/read-batching/$name; mkdir -p /tmp/prof; rm -rf $out
taskset -c 0 $B/rt-server --listen 127.0.0.1:8080 --client-queue 4096 > $out.server.txt 2>&1 &
spid=$!
sleep 1
env "$@" taskset -c 1 $B/loadgen run ${BENCHFILE:-results/bench/$bench.toml} --target http://127.0.0.1:8080 --quiet --out $out > $out.txt 2>&1 &
lpid=$!
sleep 8
perf stat -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_futex,context-switches,cpu-clock' -p $spid -o $out.server.stat -- sleep 10 &
perf stat -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_futex,context-switches,cpu-clock' -p $lpid -o $out.loadgen.stat -- sleep 10 
wait $lpid
pkill -TERM -x rt-server
sleep 1
grep -E "syscalls|context|cpu-clock" $out.server.stat $out.loadgen.stat
