#!/bin/bash
# Sharded run across network namespaces (as root): three rt-server instances on 10.78.0.1
# (namespace lgb-1), three loadgen shards on 10.78.0.11, .12, .13 (namespaces lgb-11..13),
# all joined by the bridge br-lgb; each shard holds 15,000 SSE streams (5,000 on each server).
# Then `loadgen merge`. Usage: results/2026-11-22/netns-shards/run.sh (from the repository root,
# after `cargo build --release -p loadgen -p rt-server`).
set -euo pipefail
here=results/2026-11-22/netns-shards
bin=$PWD/target/release
ns() { ip netns exec "$@"; }
cleanup() {
  pkill -TERM -x rt-server 2>/dev/null || true
  sleep 1
  for n in 1 11 12 13; do ip netns del lgb-$n 2>/dev/null || true; done
  ip link del br-lgb 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip link add br-lgb type bridge && ip link set br-lgb up
for n in 1 11 12 13; do
  ip netns add lgb-$n
  ip link add vlgb$n type veth peer name vlgb${n}i
  ip link set vlgb${n}i netns lgb-$n
  ip link set vlgb$n master br-lgb && ip link set vlgb$n up
  ns lgb-$n ip addr add 10.78.0.$n/24 dev vlgb${n}i
  ns lgb-$n ip link set vlgb${n}i up
  ns lgb-$n ip link set lo up
done
rm -rf $here/shard-* $here/merged
for p in 8081 8082 8083; do
  ns lgb-1 bash -c "ulimit -n 20000; exec $bin/rt-server --listen 10.78.0.1:$p --client-queue 4096" \
    > $here/server-$p.log 2>&1 &
done
sleep 1
at=$(( $(date +%s) + 5 ))
for i in 0 1 2; do
  ns lgb-1$((i + 1)) bash -c "ulimit -n 20000; exec /usr/bin/time -f 'shard $i: loadgen user %U s, system %S s, max RSS %M KiB' \
    $bin/loadgen run $here/scenario.toml --shard $i/3 --start-at $at --quiet --out $here/shard-$i" \
    > $here/shard-$i.txt 2>&1 &
done
wait %4 %5 %6 || true
$bin/loadgen merge $here/shard-0 $here/shard-1 $here/shard-2 --out $here/merged > $here/merged.txt 2>&1 || echo "merge exit $?" >> $here/merged.txt
