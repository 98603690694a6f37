#!/usr/bin/env bash
# Starts N `chordal node` processes on 127.0.0.1 (memory store, R = 3),
# waits until the ring is whole and settled, runs `chordal bench kv`
# against all of their HTTP APIs, and stops them.
#
#   cargo build --release -p chordal-cli
#   scripts/bench-cluster.sh N [bench kv flags...]
#   scripts/bench-cluster.sh 100 --concurrency 1,32 --keys 20000 --json
#   CHORDAL_BENCH_WRAP="perf record -a -g -o perf.data --" scripts/bench-cluster.sh 100 ...
#   scripts/bench-cluster.sh 100 idle 30   # no load: CPU and RSS per process
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
# The nodes inherit CHORDAL_* variables: CHORDAL_THREADS=0 gives each a
# worker per core (the default is one thread), CHORDAL_ROUTING=chord
# routes by fingers only.
# The benchmark client may be another build than the nodes (an A/B of
# node builds with one client): CHORDAL_BENCH_BIN.
BENCH_BIN=${CHORDAL_BENCH_BIN:-$BIN}
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
peers=()
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
    peers+=("$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$line")")
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

# `scripts/bench-cluster.sh N idle SECONDS`: no load; the CPU and memory
# the N settled processes use over SECONDS (the issue-16 idle check).
if [ "${1:-}" = idle ]; then
    secs=${2:-30}
    python3 - "$secs" "${PIDS[@]}" <<'PY'
import json, os, sys, time
secs, pids = float(sys.argv[1]), sys.argv[2:]
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / tick
def rss_kib():
    total = 0
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total
c0, t0 = cpu(), time.time()
time.sleep(secs)
c1, t1 = cpu(), time.time()
n = len(pids)
out = {"bench": "idle-processes", "processes": n, "seconds": round(t1 - t0, 1),
       "cpu_percent_of_one_core_per_process": round(100 * (c1 - c0) / (t1 - t0) / n, 3),
       "cpu_percent_of_one_core_total": round(100 * (c1 - c0) / (t1 - t0), 1),
       "rss_kib_per_process": round(rss_kib() / n)}
print(json.dumps(out))
PY
    exit 0
fi

# `--via client` (the native client, straight to each key's owner over
# the peer protocol) takes the peer addresses; HTTP the APIs.
targets=$(IFS=,; echo "${apis[*]}")
for a in "$@"; do
    [ "$a" = client ] && targets=$(IFS=,; echo "${peers[*]}")
done
# CHORDAL_BENCH_WRAP: a command prefix for the benchmark, e.g.
# "perf record -a -g -o perf.data --" to profile every process during it.
${CHORDAL_BENCH_WRAP:-} "$BENCH_BIN" bench kv --target "$targets" "$@"
