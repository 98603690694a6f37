#!/usr/bin/env bash
# Redis's own test suite against a running server, one test at a time
# (the Redis data model): a command the server does not know aborts the rest of a
# unit file, so each test runs alone with `--only`. Prints one line per
# test ("ok", "err" or "skip" and its name), then the count per unit.
#
#   scripts/redis-suite.sh REDIS_SRC PORT [UNIT...]
#
# REDIS_SRC: a checkout of redis/redis (its `runtest` and `tests/`);
# PORT: a server on 127.0.0.1 — a Chordal node's `--resp` port, or a
# real `redis-server` to compare with. Units default to those
# counts: type/string type/incr expire type/hash type/set type/zset
# type/list keyspace scan. Tests that need DEBUG, replication, server
# configuration or a restart are skipped by tag, as the suite does for
# an external server, and encodings (listpack, intset…: Redis's memory
# layouts) are not checked (`--ignore-encoding`). Needs tclsh (Debian
# tcl).
#
# runtest's own test server takes ports from --baseport, derived here
# from PORT so that runs against two servers may go at once.
#
#   redis-server --port 6390 --save "" --appendonly no &
#   scripts/redis-suite.sh ~/redis 6390 type/string
#   chordal node --resp 127.0.0.1:6380 &
#   scripts/redis-suite.sh ~/redis 6380 type/string
set -euo pipefail
SRC=${1:?REDIS_SRC}
PORT=${2:?PORT}
shift 2
UNITS=("$@")
[ ${#UNITS[@]} -gt 0 ] || UNITS=(type/string type/incr expire type/hash type/set type/zset type/list keyspace scan)
PER_TEST=${PER_TEST:-60} # seconds a test may take
command -v tclsh >/dev/null || { echo "tclsh is needed (Debian tcl)" >&2; exit 1; }
[ -x "$SRC/runtest" ] || { echo "no runtest in $SRC" >&2; exit 1; }

# A test's name as a regexp of the whole name: the parts the suite fills
# in (`$var`, `${var}`, `[cmd]`) match anything.
name_regexp() {
    python3 -c '
import re, sys
name = sys.argv[1]
parts = re.split(r"(\$\{[^}]*\}|\$[A-Za-z_:]+(?:\([^)]*\))?|\[[^\]]*\])", name)
out = "".join(".*" if i % 2 else re.escape(p) for i, p in enumerate(parts))
print("/^" + out + "$")
' "$1"
}

for unit in "${UNITS[@]}"; do
    file="$SRC/tests/unit/$unit.tcl"
    [ -f "$file" ] || { echo "no unit $unit" >&2; continue; }
    # Test names: `test {name} {` or `test "name" {`.
    mapfile -t names < <(grep -oP '^\s*test\s+(\{\K[^}]*(?=\})|"\K[^"]*(?="))' "$file" | sort -u)
    ok=0
    err=0
    for name in "${names[@]}"; do
        re=$(name_regexp "$name")
        out=$(cd "$SRC" && timeout "$PER_TEST" ./runtest --host 127.0.0.1 --port "$PORT" --singledb \
            --single "unit/$unit" --only "$re" --ignore-encoding \
            --baseport $((20000 + PORT % 10000)) \
            --tags -needs:debug --tags -needs:repl --tags -needs:config-maxmemory \
            --tags -needs:save --tags -needs:reset --tags -needs:latency --tags -external:skip \
            2>&1 | sed 's/\x1b\[[0-9;]*m//g' || true)
        if grep -q '^\[ok\]' <<<"$out" && ! grep -qE '^\[(err|exception)\]' <<<"$out"; then
            echo "ok   $unit: $name"
            ok=$((ok + 1))
        elif grep -qE '^\[(err|exception)\]|^\[TIMEOUT\]|exception' <<<"$out"; then
            echo "err  $unit: $name"
            err=$((err + 1))
        else
            echo "skip $unit: $name"
        fi
    done
    echo "UNIT $unit: $ok passed, $err failed, of ${#names[@]} tests"
done
