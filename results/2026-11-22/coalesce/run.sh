#!/bin/bash
# A stalled subscriber (4 KiB receive buffer, not reading) while 250 notifications of 4,000
# bytes are published, then it drains; strace counts the server's writes to its socket.
set -eu
cd "$(dirname "$0")/../../.."
target/release/rt-server --listen 127.0.0.1:8090 > /dev/null 2>&1 &
sleep 1
strace -f -e trace=writev -p "$(pgrep -x rt-server | head -1)" -o /tmp/coalesce-strace.txt &
sleep 1
python3 results/2026-11-22/coalesce/coalesce.py 8090 250 4000
sleep 0.5
pkill -x strace; pkill -TERM -x rt-server; sleep 0.5
# fd 11 is the subscriber's socket in this run (the first accepted connection after the listener).
python3 - <<'PY'
import re
from collections import Counter
calls = re.findall(r'writev\(11, \[.*?\], (\d+)', open('/tmp/coalesce-strace.txt').read())
print("writev calls to the subscriber:", len(calls))
print("iovecs per call (3 per event chunk):", sorted(Counter(int(n) for n in calls).items()))
PY
