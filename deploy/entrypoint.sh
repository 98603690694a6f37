#!/bin/sh
# The container's entry point: `chordal node` with the addresses a
# Kubernetes StatefulSet (or docker compose) gives it, then `exec`, so that
# the node is PID 1 and a SIGTERM starts its graceful leave.
#
# Everything `chordal node` reads from CHORDAL_* variables passes through;
# arguments are handed to `chordal node` as they are (e.g. --config FILE).
#
# Variables of this script (beyond chordal's own CHORDAL_*):
#   CHORDAL_PEER_PORT   peer-protocol port (default 7000)
#   CHORDAL_API_PORT    HTTP API port (default 8000)
#   CHORDAL_SEED_API    HOST:PORT of the seeds' APIs, probed with `chordal
#                       health` before the first start of ordinal 0
#   CHORDAL_TLS_SOURCE  a directory holding ca.crt and, per pod,
#                       POD_NAME.crt and POD_NAME.key (one Secret for the
#                       whole StatefulSet); this pod's pair becomes
#                       CHORDAL_TLS_DIR
#   CHORDAL_TLS_RUN_DIR where this pod's pair is copied (default
#                       /run/chordal/tls, a memory volume)
#   POD_NAME            the pod's name; its ordinal is what follows the last -
#   POD_IP              the pod's address, advertised to the peers
set -eu

: "${CHORDAL_PEER_PORT:=7000}"
: "${CHORDAL_API_PORT:=8000}"
: "${CHORDAL_DATA_DIR:=/var/lib/chordal}"
# Listen on every address of the container, advertise the one peers reach.
: "${CHORDAL_LISTEN:=0.0.0.0:$CHORDAL_PEER_PORT}"
: "${CHORDAL_API:=0.0.0.0:$CHORDAL_API_PORT}"
if [ -z "${CHORDAL_ADVERTISE:-}" ] && [ -n "${POD_IP:-}" ]; then
    CHORDAL_ADVERTISE="$POD_IP:$CHORDAL_PEER_PORT"
fi
export CHORDAL_DATA_DIR CHORDAL_LISTEN CHORDAL_API
if [ -n "${CHORDAL_ADVERTISE:-}" ]; then
    export CHORDAL_ADVERTISE
fi

# One certificate per pod, from one Secret.
if [ -n "${CHORDAL_TLS_SOURCE:-}" ]; then
    : "${POD_NAME:?CHORDAL_TLS_SOURCE needs POD_NAME}"
    tls_dir="${CHORDAL_TLS_RUN_DIR:-/run/chordal/tls}"
    mkdir -p "$tls_dir"
    cp "$CHORDAL_TLS_SOURCE/ca.crt" "$tls_dir/ca.crt"
    cp "$CHORDAL_TLS_SOURCE/$POD_NAME.crt" "$tls_dir/node.crt"
    cp "$CHORDAL_TLS_SOURCE/$POD_NAME.key" "$tls_dir/node.key"
    chmod 600 "$tls_dir/node.key"
    CHORDAL_TLS_DIR="$tls_dir"
    export CHORDAL_TLS_DIR
fi

# Who creates the ring: ordinal 0, and only when no member answers at the
# seeds (its first start, or after every pod was down). Every other
# ordinal only joins, so that two rings never form by accident.
ordinal="${POD_NAME:+${POD_NAME##*-}}"
if [ -n "${CHORDAL_JOIN:-}" ] && [ "$ordinal" = "0" ]; then
    if [ -z "${CHORDAL_SEED_API:-}" ] || ! chordal health --node "$CHORDAL_SEED_API" >/dev/null 2>&1; then
        echo "entrypoint: no member answers at ${CHORDAL_SEED_API:-(no CHORDAL_SEED_API)}: $POD_NAME creates the ring" >&2
        unset CHORDAL_JOIN
    fi
fi

exec chordal node "$@"
