#!/usr/bin/env bash
# Starts N `chordal node` processes on 127.0.0.1 (memory store, R = 3),
# waits until the ring is whole and settled, runs `chordal bench kv`
# against all of their HTTP APIs, and stops them.
#
#   cargo build --release -p chordal-cli
#   scripts/bench-cluster.sh N [bench kv flags...]
#   scripts/bench-cluster.sh 100 --concurrency 1,32 --keys 20000 --json
#
# Settled means: a walk of the ring from the first node finds all N
# processes and no problem (every successor points back, every range has
# its R copies), and then 35 s more, for fingers to be refreshed and the
# handoff window (30 s after a range grows, reads also ask the replicas)
# to close. Needs `curl` and `python3` (to read the ring walk).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:?usage: scripts/bench-cluster.sh N [bench kv flags...]}
shift
BIN=${CHORDAL_BIN:-target/release/chordal}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

seed=""
apis=()
for i in $(seq 1 "$N"); do
    args=(node --listen 127.0.0.1:0 --api 127.0.0.1:0)
    [ -n "$seed" ] && args+=(--join "$seed")
    "$BIN" "${args[@]}" >"$WORK/$i.out" 2>"$WORK/$i.err" &
    PIDS+=($!)
    for _ in $(seq 1 300); do [ -s "$WORK/$i.out" ] && break; sleep 0.1; done
    line=$(head -1 "$WORK/$i.out")
    [ -n "$line" ] || { echo "node $i printed no address line" >&2; exit 1; }
    [ -z "$seed" ] && seed=$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$line")
    apis+=("$(sed -E 's/.*"api":"([^"]+)".*/\1/' <<<"$line")")
done
echo "started $N nodes; waiting for the ring to settle..." >&2

whole() {
    curl -s "http://${apis[0]}/v1/ring" | python3 -c '
import json, sys
ring = json.load(sys.stdin)
addrs = {n["addr"] for n in ring["nodes"]}
sys.exit(0 if len(addrs) == int(sys.argv[1]) and not ring["problems"] else 1)
' "$N"
}
for _ in $(seq 1 600); do
    whole && break
    sleep 1
done
whole || { echo "the ring did not settle" >&2; exit 1; }
sleep 35
echo "settled; benchmarking" >&2

targets=$(IFS=,; echo "${apis[*]}")
"$BIN" bench kv --target "$targets" "$@"
