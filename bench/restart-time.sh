#!/bin/bash
# Fills a store with >= 10M events (16 x 100-event APPENDs), kill -9s the server under load, and
# times the restart until the port answers a READALL of the last event.
set -u
# usage: bench/restart-time.sh [fill-seconds]  (release builds of esdb and esdb-bench first)
cd "$(dirname "$0")/.."
D=$(mktemp -d)
BIN=target/release/esdb
$BIN serve --data-dir $D --listen 127.0.0.1:4470 --http 127.0.0.1:8470 > $D/first.log 2>&1 &
PID=$!; sleep 1
target/release/esdb-bench all --esdb-only --addr 127.0.0.1:4470 --only=append-c16-w1-b100-s100 --duration-secs ${1:-45} --warmup-secs 0 --out-dir $D/bench 2>&1 | grep "^| append" &
BENCH=$!
sleep $(( ${1:-45} + 2 ))
kill -9 $PID; wait $BENCH 2>/dev/null
du -sh $D/default; ls $D/default/raft-log | head
T0=$(date +%s.%N)
$BIN serve --data-dir $D --listen 127.0.0.1:4470 --http 127.0.0.1:8470 > $D/second.log 2>&1 &
PID=$!
for _ in $(seq 1 6000); do grep -q "esdb listening" $D/second.log && break; sleep 0.01; done  # at most 60 s
T1=$(date +%s.%N)
python3 - <<'P'
import socket
s=socket.create_connection(("127.0.0.1",4470)); s.recv(65536)
s.sendall(b"STATS\r\n"); import time; time.sleep(0.2); print(s.recv(65536)[:400])
P
T2=$(date +%s.%N)
echo "restart: listening after $(echo "$T1 - $T0" | bc) s, STATS answered after $(echo "$T2 - $T0" | bc) s"
grep -i "replay\|recovered\|warn" $D/second.log | head -5
kill $PID
rm -rf "$D"
