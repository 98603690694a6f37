#!/usr/bin/env bash
# Interleaved A/B of scripts/cost-per-op.sh: ROUNDS rounds, each running
# every binary once in turn (a fresh ring each time), then the median per
# binary and test of rps, CPU µs per op and context switches per op, and
# the ratio of each binary's medians to the first's.
#
#   scripts/cost-ab.sh ROUNDS BIN_A BIN_B [BIN_C …]
#
# A binary written `cluster:BIN` runs BIN through redis-benchmark
# --cluster (each key sent to its slot's owner): `cost-ab.sh 3 BIN
# cluster:BIN` compares a client that is not cluster-aware with one that is.
# REQUESTS, CLIENTS, PIPELINE (defaults 100000 50 1) go to
# cost-per-op.sh, as do TESTS, NODES, KEYS and NODE_ARGS. Counting runs
# under perf are skipped (PERF=0): the allocations per operation do not
# depend on the machine's noise, one `cost-per-op.sh` run gives them.
# Copy a build aside before building the next one (`cp
# target/release/chordal /tmp/chordal-before`): both must exist at once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=$1
shift
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        # "cluster:BIN": BIN through redis-benchmark --cluster.
        cluster=0
        path=$bin
        if [[ $bin == cluster:* ]]; then cluster=1 path=${bin#cluster:}; fi
        CLUSTER=$cluster PERF=0 CHORDAL_BIN="$path" scripts/cost-per-op.sh "${REQUESTS:-100000}" "${CLIENTS:-50}" "${PIPELINE:-1}" |
            tail -n +2 | sed "s|^|$bin,$r,|" | tee -a "$OUT" >&2
    done
done
# bin,round,test,rps,cpu_us,ctxsw,...
python3 - "$OUT" "$@" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
bins = sys.argv[2:]
tests = sorted({r[2] for r in rows}, key=[r[2] for r in rows].index)
med = {}
for b in bins:
    for t in tests:
        sel = [r for r in rows if r[0] == b and r[2] == t]
        med[b, t] = [statistics.median(float(r[i]) for r in sel) for i in (3, 4, 5)]
print("binary,test,rps,cpu_us,ctxsw,rps_ratio,cpu_ratio")
for b in bins:
    for t in tests:
        rps, cpu, sw = med[b, t]
        base = med[bins[0], t]
        print(f"{b},{t},{rps:.0f},{cpu:.1f},{sw:.2f},{rps / base[0]:.2f},{cpu / base[1]:.2f}")
PY
