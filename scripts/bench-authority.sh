#!/usr/bin/env bash
# The steady-state cost of authority: a 3-node ring (R = 3,
# memory store, RESP) with and without `--authority`, redis-benchmark
# SET/GET/INCR against one node, the two rings interleaved round by
# round. Prints one CSV line per run, then the median of each (ring,
# test): requests per second, p50 (ms) and the three nodes' CPU time
# per request (µs, user + system from /proc: steadier than throughput
# on a shared box).
#
#   cargo build --release -p chordal-cli
#   scripts/bench-authority.sh [REQUESTS] [CLIENTS] [ROUNDS]   # 50000 50 5
#
# With CHORDAL_BIN_BEFORE set to another build's binary, the two rings
# are that build ("before") and this one ("after"), both with authority:
# a change measured against the commit before it, interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
C=${2:-50}
ROUNDS=${3:-5}
KEYSPACE=${KEYSPACE:-10000} # redis-benchmark -r: keys the tests spread over
BIN=${CHORDAL_BIN:-target/release/chordal}
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
for tool in redis-cli redis-benchmark "$BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

wait_port() { # PORT: until something answers PING there
    for _ in $(seq 1 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nothing answers on $1" >&2
    exit 1
}

TICK=$(getconf CLK_TCK)
cpu_ticks() { # PID...: user + system clock ticks of these processes
    local t=0
    for p in "$@"; do
        # Fields after the command's closing parenthesis: utime is the
        # 12th, stime the 13th.
        local f
        read -r -a f <<<"$(sed 's/.*) //' "/proc/$p/stat")"
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}

declare -A RING_PIDS
ring() { # NAME BIN BASE EXTRA...: three nodes on ports BASE.., RESP on BASE+10..
    local name=$1 bin=$2 base=$3
    shift 3
    for i in 0 1 2; do
        local join=()
        [ "$i" -gt 0 ] && join=(--join "127.0.0.1:$base")
        "$bin" node --listen "127.0.0.1:$((base + i))" --api 127.0.0.1:0 \
            --resp "127.0.0.1:$((base + 10 + i))" "${join[@]}" "$@" >/dev/null 2>&1 &
        PIDS+=($!)
        RING_PIDS[$name]+="$! "
        sleep 0.3
    done
    wait_port $((base + 10))
}

if [ -n "${CHORDAL_BIN_BEFORE:-}" ]; then
    RINGS=(before after)
    ring before "$CHORDAL_BIN_BEFORE" 17100 --authority
    ring after "$BIN" 17200 --authority
else
    RINGS=(plain authority)
    ring plain "$BIN" 17100 --authority=false
    ring authority "$BIN" 17200 --authority
fi
# Let the successor lists fill and the terms settle.
sleep 5
for p in 17110 17210; do
    until redis-cli -p $p incr warmup >/dev/null 2>&1; do sleep 0.2; done
done

echo "ring,round,test,rps,p50_ms,cpu_us_per_op"
for r in $(seq 1 "$ROUNDS"); do
    for test in set get incr; do
        for target in "${RINGS[0]}:17110" "${RINGS[1]}:17210"; do
            name=${target%%:*}
            port=${target##*:}
            # shellcheck disable=SC2086 # a list of pids
            t0=$(cpu_ticks ${RING_PIDS[$name]})
            line=$(redis-benchmark -p "$port" -n "$N" -c "$C" -t "$test" -r "$KEYSPACE" --csv 2>/dev/null |
                tail -n +2 | tr -d '"')
            # shellcheck disable=SC2086
            t1=$(cpu_ticks ${RING_PIDS[$name]})
            echo "$line" | awk -F, -v n="$name" -v r="$r" -v ticks=$((t1 - t0)) -v hz="$TICK" -v reqs="$N" \
                '{printf "%s,%s,%s,%s,%s,%.1f\n", n, r, $1, $2, $6, ticks * 1e6 / hz / reqs}'
        done
    done
done | tee /tmp/bench-authority.csv
echo
echo "median of $ROUNDS rounds: ring,test,rps,p50_ms,cpu_us_per_op"
for ring in "${RINGS[@]}"; do
    for test in SET GET INCR; do
        rows=$(grep "^$ring,[0-9]*,$test," /tmp/bench-authority.csv)
        n=$(echo "$rows" | wc -l)
        mid=$(((n + 1) / 2))
        rps=$(echo "$rows" | cut -d, -f4 | sort -n | sed -n "${mid}p")
        p50=$(echo "$rows" | cut -d, -f5 | sort -n | sed -n "${mid}p")
        cpu=$(echo "$rows" | cut -d, -f6 | sort -n | sed -n "${mid}p")
        echo "$ring,$test,$rps,$p50,$cpu"
    done
done
