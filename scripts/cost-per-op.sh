#!/usr/bin/env bash
# Where the work goes per Redis operation on a Chordal ring: a ring of
# NODES `chordal node` processes (R = 3, memory store) on this machine,
# redis-benchmark against the first node (keys spread over KEYS names),
# and the node processes' counters over each run divided by the
# operations run.
#
#   scripts/cost-per-op.sh [REQUESTS] [CLIENTS] [PIPELINE]   # defaults 100000 50 1
#
# Per test (TESTS, default get,set,incr), two runs (CLUSTER=1: through
# redis-benchmark --cluster):
#   1. plain: CPU µs per op (utime + stime of every node process, from
#      /proc) and context switches per op (voluntary + involuntary, every
#      thread), with redis-benchmark's requests per second;
#   2. under `perf stat` (root: tracepoints and uprobes): system calls,
#      wake-ups the nodes' threads made (sched_wakeup fires in the waker),
#      and allocations (uprobes on the allocator's entry points: the
#      binary's mimalloc `mi_{malloc,zalloc,realloc}_aligned`, and libc's
#      malloc/calloc/realloc for what C code and a build without mimalloc
#      allocate; only with ALLOCS=1, see below), per op. The uprobes slow
#      the run, which is why CPU is taken from the plain run.
# LOAD=N fills the store and lets the ring run before the tests (see
# below), IDLE=S measures its idle CPU then: the measure for background
# work, e.g. `LOAD=300000 IDLE=60 CLUSTER=1 PERF=0 TESTS=set
# scripts/cost-per-op.sh 500000`.
# Prints one CSV line per test: test,rps,cpu_us,ctxsw,syscalls,wakeups,allocs.
# Needs Debian's redis-tools and linux-perf, and a release build:
#   cargo build --release -p chordal-cli
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
C=${2:-50}
P=${3:-1}
NODES=${NODES:-3}
TESTS=${TESTS:-get,set,incr}
# Keys spread over KEYS random names (redis-benchmark -r), so that every
# run mixes keys the first node owns with keys it forwards: with one key,
# which node owns it (random at each start) decides the figures.
KEYS=${KEYS:-100000}
BIN=${CHORDAL_BIN:-target/release/chordal}
# Extra flags for every node (e.g. NODE_ARGS="--threads 0"); PERF=0 skips
# the second, counting run (no root needed, half the time).
read -r -a NODE_EXTRA <<<"${NODE_ARGS:-}"
PERF=${PERF:-1}
# CLUSTER=1: redis-benchmark --cluster, which asks CLUSTER NODES and sends
# each key to its slot's owner (no forward), as Redis Cluster clients do.
CLUSTER_FLAG=()
if [ "${CLUSTER:-0}" = 1 ]; then CLUSTER_FLAG=(--cluster); fi
LIBC=${LIBC:-/lib/x86_64-linux-gnu/libc.so.6}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
for tool in redis-benchmark redis-cli perf "$BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

# The ring, as scripts/bench-redis.sh starts it, but with ids evenly
# spaced (i * 2^160 / NODES): with random ids the first node's share of
# the keys — which it answers without a forward — changed from run to
# run (one ring forwarded 17 % of SETs, the next 2/3), and with it the
# figures, by up to 2x.
even_id() { python3 -c "print(format($1 * (1 << 160) // $NODES, '040x'))"; }
seed=""
RESP_PORT=""
for i in $(seq 1 "$NODES"); do
    args=(node --listen 127.0.0.1:0 --api 127.0.0.1:0 --resp 127.0.0.1:0 --id "$(even_id $((i - 1)))" "${NODE_EXTRA[@]}")
    [ -n "$seed" ] && args+=(--join "$seed")
    "$BIN" "${args[@]}" >"$WORK/node-$i.out" 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 1 100); do [ -s "$WORK/node-$i.out" ] && break; sleep 0.1; done
    line=$(head -1 "$WORK/node-$i.out")
    if [ -z "$seed" ]; then
        seed=$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$line")
        RESP_PORT=$(sed -E 's/.*"resp":"[^"]*:([0-9]+)".*/\1/' <<<"$line")
    fi
done
# Steady state: successor lists full, terms granted, the handoff window
# (30 s after a range grew) over.
sleep 35
redis-cli -p "$RESP_PORT" set warm 1 >/dev/null

# LOAD=N: fill the store first (N SETs over KEYS names), then let the
# ring run 40 s, so that its background passes (sweeps, sync summaries
# and pushes over every record it holds) run during the tests as on a
# ring in service: a fresh ring has little to sweep or sync, and 12 s
# runs on one do not see that work. IDLE=S then reports the nodes' CPU
# over S idle seconds (on stderr, in ms per minute).
if [ "${LOAD:-0}" -gt 0 ]; then
    redis-benchmark -h 127.0.0.1 -p "$RESP_PORT" "${CLUSTER_FLAG[@]}" -t set -n "$LOAD" -c "$C" -r "$KEYS" -q >/dev/null 2>&1
    sleep 40
fi

cpu_ticks() { # CPU clock ticks of every node process so far
    local t=0 p
    for p in "${PIDS[@]}"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
switches() { # context switches of every thread of every node process
    local p
    for p in "${PIDS[@]}"; do cat /proc/"$p"/task/*/status; done |
        awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s }'
}
bench() { # TEST: redis-benchmark's rps
    redis-benchmark -h 127.0.0.1 -p "$RESP_PORT" "${CLUSTER_FLAG[@]}" -t "$1" -n "$N" -c "$C" -P "$P" -r "$KEYS" --csv 2>/dev/null |
        tr -d '"' | awk -F, -v t="$(tr a-z A-Z <<<"$1")" '$1 == t { print $2 }'
}

# Probes for the allocators (removed again at the end), all in the group
# `cpo` so that the counting below finds them whatever the binary's name.
# Only the probes that could be placed are counted (a binary without
# mimalloc has no mi_* functions).
# The probes trap on every allocation: with mimalloc's fast path that
# slows a node enough for SETs to time out and retry, so they are placed
# only with ALLOCS=1 (GET, whose rate they bear, is the use).
ALLOC_EVENTS=()
if [ "$PERF" = 1 ] && [ "${ALLOCS:-0}" = 1 ]; then
    perf probe -q -d "cpo:*" 2>/dev/null || true
    for f in malloc calloc realloc; do
        if perf probe -q -x "$LIBC" --add "cpo:$f=$f" 2>/dev/null; then ALLOC_EVENTS+=("cpo:$f"); fi
    done
    for f in malloc zalloc realloc; do
        if perf probe -q -x "$BIN" --add "cpo:mi_$f=mi_${f}_aligned" 2>/dev/null; then
            ALLOC_EVENTS+=("cpo:mi_$f")
        fi
    done
fi
trap 'perf probe -q -d "cpo:*" 2>/dev/null || true; cleanup' EXIT
TCK=$(getconf CLK_TCK)
pids=$(IFS=,; echo "${PIDS[*]}")
if [ "${IDLE:-0}" -gt 0 ]; then
    i0=$(cpu_ticks)
    sleep "$IDLE"
    i1=$(cpu_ticks)
    echo "idle: $(( (i1 - i0) * 1000 * 60 / TCK / IDLE )) ms CPU per minute" >&2
fi

echo "test,rps,cpu_us,ctxsw,syscalls,wakeups,allocs"
for t in ${TESTS//,/ }; do
    c0=$(cpu_ticks)
    s0=$(switches)
    rps=$(bench "$t")
    c1=$(cpu_ticks)
    s1=$(switches)
    if [ "$PERF" = 1 ]; then
        perf stat -x, -o "$WORK/perf-$t" \
            -e "$(IFS=,; echo "raw_syscalls:sys_enter,sched:sched_wakeup${ALLOC_EVENTS[*]/#/,}" | tr -s ,)" \
            -p "$pids" &
        perf_pid=$!
        sleep 0.5
        bench "$t" >/dev/null
        kill -INT "$perf_pid"
        wait "$perf_pid" 2>/dev/null || true
        count() { awk -F, -v e="$1" '$3 == e { print $1 }' "$WORK/perf-$t"; }
        allocs=0
        for e in "${ALLOC_EVENTS[@]}"; do
            n=$(count "$e")
            allocs=$((allocs + ${n:-0}))
        done
    else
        count() { echo 0; }
        allocs=0
    fi
    awk -v t="$t" -v rps="$rps" -v n="$N" -v tck="$TCK" \
        -v cpu=$((c1 - c0)) -v sw=$((s1 - s0)) \
        -v sys="$(count raw_syscalls:sys_enter)" -v wake="$(count sched:sched_wakeup)" -v al="$allocs" \
        'BEGIN { printf "%s,%s,%.1f,%.2f,%.2f,%.2f,%.1f\n", t, rps, cpu * 1e6 / tck / n, sw / n, sys / n, wake / n, al / n }'
done
