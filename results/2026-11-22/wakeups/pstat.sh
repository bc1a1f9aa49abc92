#!/bin/bash
set -u
cd /work/main
ulimit -n 20000
name=$1; bench=$2; shift 2
out=results/2026-11-22/wakeups/$name
rm -rf $out
taskset -c 0 target/release/rt-server --listen 127.0.0.1:8080 --client-queue 4096 > $out.server.txt 2>&1 &
spid=$!
sleep 1
env "$@" taskset -c 1 target/release/loadgen run results/bench/$bench.toml --target http://127.0.0.1:8080 --quiet --out $out > $out.txt 2>&1 &
lpid=$!
sleep 7
perf stat -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,context-switches,task-clock -p $lpid -o results/2026-11-22/wakeups/$name.stat -- sleep 10
wait $lpid
pkill -TERM -x rt-server
sleep 1
