#!/bin/bash
# usage: BIN=dir pstat.sh NAME: fanout-10k-10, rt-server pinned to core 0, loadgen to core 1; from t=7 s,
# 10 s of system calls and context switches of both processes (perf stat), and the events delivered meanwhile.
set -u
cd /work/main
ulimit -n 20000
name=$1
out=results/2026-11-22/send-runtime/pstat/$name
rm -rf $out
taskset -c 0 $BIN/rt-server --listen 127.0.0.1:8080 --client-queue 4096 > /dev/null 2>&1 &
spid=$!
sleep 1
taskset -c 1 $BIN/loadgen run results/bench/fanout-10k-10.toml --target http://127.0.0.1:8080 --quiet --out $out > $out.txt 2>&1 &
lpid=$!
sleep 7
perf stat -e syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,context-switches -p $spid -o $out.server.stat -- sleep 10 &
perf stat -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,context-switches -p $lpid -o $out.loadgen.stat -- sleep 10
wait $lpid
kill -TERM $spid; wait $spid
ev=$(awk -F, 'NR>1 && $1>=7.5 && $1<=17.0 {s+=$3} END {print s}' $out/timeseries.csv)
echo "$name: events delivered in the 10 s window (timeseries, t=7.5..17 s): $ev" >> $out.txt
