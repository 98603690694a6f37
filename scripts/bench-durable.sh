#!/usr/bin/env bash
# Durable writes at three processes, side by side on this machine:
#   - etcd, 3 members (every put committed by Raft to a majority's disk);
#   - Chordal, 3 `chordal node` processes with a data directory each
#     (redb; R = 3, a write acknowledged once a majority holds it on
#     disk);
#   - Chordal, the same with the memory store (what durability costs).
# The same load for each: wrk, 2 threads, CLIENTS connections (default
# 50), SECONDS seconds (default 10) of puts of a 64-byte value to random
# ones of 100,000 keys, through one process's HTTP API (etcd: its v3 JSON
# gateway; Chordal: `PUT /v1/kv/{key}`), which forwards to the leader or
# the key's owner. ROUNDS rounds (default 3), each target once per round;
# prints one CSV line per run, then the median run of each target by
# requests per second: target,rps,p50_ms,p99_ms.
#
#   scripts/bench-durable.sh [SECONDS] [CLIENTS] [ROUNDS]
#
# Data directories go under DIR (default a fresh directory in /var/tmp, on
# a disk rather than a tmpfs). Needs Debian's etcd-server and wrk, and a
# release build: cargo build --release -p chordal-cli
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-10}
C=${2:-50}
ROUNDS=${3:-3}
BIN=${CHORDAL_BIN:-target/release/chordal}
WORK=$(mktemp -d "${DIR:-/var/tmp}/bench-durable.XXXXXX")
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT
for tool in etcd wrk curl "$BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

# wrk's summary: rps, p50 and p99 in ms.
load() { # URL SCRIPT
    wrk -t2 -c"$C" -d"${SECONDS_RUN}s" --latency -s "$2" "$1" | awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        / Non-2xx or 3xx responses:/ { bad = $NF }
        END {
            if (bad > 0) { print "non-2xx answers: " bad > "/dev/stderr" }
            printf "%.0f,%.3f,%.3f\n", rps, p50, p99
        }'
}

etcd_ring() { # three members, fresh data
    local cluster="" i
    for i in 1 2 3; do cluster+="m$i=http://127.0.0.1:${i}2380,"; done
    for i in 1 2 3; do
        rm -rf "$WORK/etcd-$i"
        etcd --name "m$i" --data-dir "$WORK/etcd-$i" \
            --listen-client-urls "http://127.0.0.1:${i}2379" \
            --advertise-client-urls "http://127.0.0.1:${i}2379" \
            --listen-peer-urls "http://127.0.0.1:${i}2380" \
            --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
            --initial-cluster "${cluster%,}" --initial-cluster-state new \
            --log-level error >"$WORK/etcd-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for _ in $(seq 1 100); do
        curl -sf -X POST -d '{"key":"d2FybQ==","value":"MQ=="}' \
            http://127.0.0.1:12379/v3/kv/put >/dev/null && return 0
        sleep 0.2
    done
    echo "etcd did not come up" >&2
    exit 1
}

chordal_ring() { # DURABLE(0|1): three nodes; sets API to the first one's
    # (not printed: in a $(...) subshell the node pids would not reach PIDS)
    local seed="" api="" i args line
    for i in 1 2 3; do
        args=(node --listen 127.0.0.1:0 --api 127.0.0.1:0)
        if [ "$1" = 1 ]; then
            rm -rf "$WORK/chordal-$i"
            args+=(--data-dir "$WORK/chordal-$i")
        fi
        [ -n "$seed" ] && args+=(--join "$seed")
        "$BIN" "${args[@]}" >"$WORK/node-$i.out" 2>/dev/null &
        PIDS+=($!)
        for _ in $(seq 1 100); do [ -s "$WORK/node-$i.out" ] && break; sleep 0.1; done
        line=$(head -1 "$WORK/node-$i.out")
        if [ -z "$seed" ]; then
            seed=$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$line")
            api=$(sed -E 's/.*"api":"([^"]+)".*/\1/' <<<"$line")
        fi
    done
    # Steady state: successor lists full and terms granted.
    for _ in $(seq 1 300); do
        curl -sf -X PUT --data-binary 1 "http://$api/v1/kv/warm" >/dev/null && break
        sleep 0.1
    done
    sleep 5
    API=$api
}

RUNS="$WORK/runs.csv"
echo "target,rps,p50_ms,p99_ms"
for _ in $(seq 1 "$ROUNDS"); do
    etcd_ring
    echo "etcd-3,$(load http://127.0.0.1:12379 scripts/wrk/etcd-put.lua)" | tee -a "$RUNS"
    stop_all
    chordal_ring 1
    echo "chordal-3-redb,$(load "http://$API" scripts/wrk/chordal-put.lua)" | tee -a "$RUNS"
    stop_all
    chordal_ring 0
    echo "chordal-3-memory,$(load "http://$API" scripts/wrk/chordal-put.lua)" | tee -a "$RUNS"
    stop_all
done
echo "median run per target:"
sort -t, -k1,1 -k2,2n "$RUNS" | awk -F, '
    { runs[$1] = runs[$1] "\n" $0; n[$1]++ }
    END {
        for (t in runs) {
            split(substr(runs[t], 2), lines, "\n")
            print lines[int((n[t] + 1) / 2)]
        }
    }' | sort
