#!/bin/bash
# scripts/bench-backup.sh KEYS VALUE_BYTES: three redb nodes on loopback
# (peer ports 7900-7902, APIs 8000-8002) loaded with `chordal bench kv`,
# then `chordal backup`, a fresh ring (7950-7952, 8050-8052), and
# `chordal restore` twice (into the empty ring, then over itself). Prints
# each command's JSON summary. Build first: cargo build --release -p chordal-cli
set -e
B=${CHORDAL_BIN:-$(dirname "$0")/../target/release/chordal}
W=$(mktemp -d /tmp/bb.XXXX)
KEYS=$1; SIZE=$2
start_ring() { # $1 = tag, $2 = base port
  $B node --listen 127.0.0.1:$(($2)) --api 127.0.0.1:$(($2+100)) --data-dir $W/$1-0 > $W/$1-0.out 2>/dev/null &
  sleep 0.5
  for i in 1 2; do $B node --listen 127.0.0.1:$(($2+i)) --api 127.0.0.1:$(($2+100+i)) --data-dir $W/$1-$i --join 127.0.0.1:$2 > $W/$1-$i.out 2>/dev/null & done
  sleep 4
}
start_ring a 7900
$B bench kv --target 127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002 --keys $KEYS --value-size $SIZE --concurrency 32 --phases put --json > $W/load.json 2>/dev/null
T0=$(date +%s.%N); $B backup --out $W/b.jsonl --node 127.0.0.1:8000 --json; T1=$(date +%s.%N)
ls -la $W/b.jsonl | awk '{print "file bytes", $5}'
pkill -f "listen 127.0.0.1:790" || true; sleep 1
start_ring b 7950
$B restore --in $W/b.jsonl --node 127.0.0.1:8050 --json
$B restore --in $W/b.jsonl --node 127.0.0.1:8050 --json
pkill -f "listen 127.0.0.1:795" || true; sleep 1
rm -rf $W
