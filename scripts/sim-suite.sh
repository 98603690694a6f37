#!/bin/sh
# Runs every `chordal sim` experiment at 10^4 nodes (failure and the
# Weibull churn at 10^3, the papers' size) and writes each table
# (stdout), its summary line (stderr) and chart into OUT (default
# results/sim). docs/simulator.md shows the results of one such run.
#
#   scripts/sim-suite.sh [OUT]
#
# Needs a release build (`cargo build --release`); about 8 minutes on a
# 2-core machine.
set -eu
out=${1:-results/sim}
bin=${CHORDAL:-target/release/chordal}
mkdir -p "$out"
start=$(date +%s)
run() {
    name=$1
    shift
    echo "== $name: chordal sim $*" >&2
    "$bin" sim "$@" --plot "$out/$name.svg" >"$out/$name.txt" 2>"$out/$name.log"
    tail -n 1 "$out/$name.log" >&2
}
run pathlen pathlen --nodes 16384 --lookups 10000
run balance balance --nodes 10000 --keys 1000000
# The papers' size, to compare with ToN'03 Table II and the slides.
run failure failure --nodes 1000 --lookups 2000 --keys 1000 --replicas 5
run churn churn --nodes 10000 --lookups 1000
run churn-weibull churn --nodes 1000 --lookups 1000 --sessions weibull:0.6
run kv-churn kv-churn --nodes 10000 --replicas 2,3,5 --rate 5 --duration 120 --writes 20
echo "suite: $(($(date +%s) - start)) s" >&2
