#!/usr/bin/env bash
# Chordal's Redis protocol against Redis itself, in one run on this
# machine, with the same redis-benchmark flags for every target:
#   - a Redis server (one process, no persistence);
#   - a Redis Cluster of 3 masters (no replicas, no persistence),
#     benchmarked with redis-benchmark --cluster;
#   - Chordal rings of 3 and 6 `chordal node` processes (R = 3, memory
#     store), redis-benchmark talking to one node, which coordinates.
# Everything listens on 127.0.0.1 and is stopped at the end.
#
# Needs Debian's redis-server and redis-tools, and a release build:
#   cargo build --release -p chordal-cli
#   scripts/bench-redis.sh [REQUESTS] [CLIENTS] [ROUNDS]   # defaults 100000 50 3
# TESTS (redis-benchmark's -t, default set,get,incr; e.g.
# TESTS=hset,sadd,zadd,lpush,lpop) and RINGS (the Chordal ring sizes,
# default "3 6") choose what runs.
# Every (target, pipeline) is run ROUNDS times, interleaved with nothing
# else; prints one CSV line per run, then the median run of each
# (target, pipeline, test) by requests per second: rps and p50 (ms).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
C=${2:-50}
ROUNDS=${3:-3}
TESTS=${TESTS:-set,get,incr}
RINGS=${RINGS:-3 6}
BIN=${CHORDAL_BIN:-target/release/chordal}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in redis-server redis-cli redis-benchmark "$BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

wait_port() { # PORT: until something answers PING there
    for _ in $(seq 1 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    exit 1
}

redis_server() { # PORT [extra args]
    local port=$1
    shift
    mkdir -p "$WORK/$port"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK/$port" --daemonize no "$@" >"$WORK/$port.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
}

# One benchmark: TARGET PIPELINE PORT [extra redis-benchmark flags]
bench() {
    local target=$1 pipeline=$2 port=$3
    shift 3
    redis-benchmark -h 127.0.0.1 -p "$port" -t "$TESTS" -n "$N" -c "$C" \
        -P "$pipeline" --csv "$@" 2>/dev/null | tr -d '"' |
        awk -F, -v t="$target" -v p="$pipeline" -v tests="$TESTS" '
            BEGIN { n = split(toupper(tests), want, ","); for (i = 1; i <= n; i++) ok[want[i]] = 1 }
            ($1 in ok) { print t "," p "," $1 "," $2 "," $5 }'
}

RUNS="$WORK/runs.csv"
rounds() { # TARGET PORT [extra flags]: every pipeline depth, ROUNDS times
    local target=$1 port=$2
    shift 2
    for _ in $(seq 1 "$ROUNDS"); do
        for p in 1 16; do bench "$target" "$p" "$port" "$@" | tee -a "$RUNS"; done
    done
}

echo "target,pipeline,test,rps,p50_ms"

redis_server 7379
rounds redis 7379

for port in 7381 7382 7383; do
    redis_server "$port" --cluster-enabled yes --cluster-config-file "$WORK/nodes-$port.conf"
done
redis-cli --cluster create 127.0.0.1:7381 127.0.0.1:7382 127.0.0.1:7383 \
    --cluster-replicas 0 --cluster-yes >/dev/null
for port in 7381 7382 7383; do
    until redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; do sleep 0.2; done
done
# Every master has learned the slot map (a first run right after the
# create was seen at a tenth of the throughput).
sleep 3
rounds redis-cluster-3 7381 --cluster

# Starts a ring of NODES `chordal node` processes; sets RING_PIDS and
# RESP_PORT (the first node's). Not in a subshell: the pids must reach
# the cleanup.
chordal_ring() {
    local n=$1 seed="" line
    RING_PIDS=()
    RESP_PORT=""
    for i in $(seq 1 "$n"); do
        local args=(node --listen 127.0.0.1:0 --api 127.0.0.1:0 --resp 127.0.0.1:0)
        [ -n "$seed" ] && args+=(--join "$seed")
        "$BIN" "${args[@]}" >"$WORK/chordal-$n-$i.out" 2>/dev/null &
        PIDS+=($!)
        RING_PIDS+=($!)
        for _ in $(seq 1 100); do [ -s "$WORK/chordal-$n-$i.out" ] && break; sleep 0.1; done
        line=$(head -1 "$WORK/chordal-$n-$i.out")
        if [ -z "$seed" ]; then
            seed=$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$line")
            RESP_PORT=$(sed -E 's/.*"resp":"[^"]*:([0-9]+)".*/\1/' <<<"$line")
        fi
    done
    # Let successor lists fill (R = 3 needs two successors), fingers
    # settle, and the handoff window pass (for 30 s after its range grew a
    # new owner also reads its replicas: design §5): a ring in steady state.
    sleep 35
}

for n in $RINGS; do
    chordal_ring "$n"
    wait_port "$RESP_PORT"
    rounds "chordal-$n" "$RESP_PORT"
    kill "${RING_PIDS[@]}"
    wait "${RING_PIDS[@]}" 2>/dev/null || true
done

echo
echo "# median of $ROUNDS runs"
echo "target,pipeline,test,rps,p50_ms"
sort -t, -k1,1 -k2,2n -k3,3 -k4,4n "$RUNS" | awk -F, '
    { key = $1 "," $2 "," $3; rows[key, ++n[key]] = $0; if (!(key in seen)) { seen[key] = 1; order[++k] = key } }
    END { for (i = 1; i <= k; i++) { key = order[i]; print rows[key, int((n[key] + 1) / 2)] } }'
