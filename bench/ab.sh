#!/usr/bin/env bash
# A/B of two fortress builds under pgbench, alternated rounds.
# Usage: bench/ab.sh NEW_BIN OLD_BIN [SECONDS] [ROUNDS]
# Per round and build: a fresh data directory, `pgbench -i -s 10`, then
# SECONDS each of TPC-B (prepared, simple) and -S (prepared, simple) with 8
# clients; odd rounds run NEW first, even rounds OLD first. Prints one line
# per run: round, build, mode, tps.
set -euo pipefail
NEW=$1
OLD=$2
DURATION=${3:-10}
ROUNDS=${4:-3}
PGBIN=${FORTRESS_PG_BIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="new old"; else order="old new"; fi
    for which in $order; do
        if [ "$which" = new ]; then bin=$NEW; else bin=$OLD; fi
        rm -rf "$WORK/data"
        FORTRESS_ADMIN_LISTEN=off "$bin" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/$which.log" 2>&1 &
        PID=$!
        for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
        "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U fortress -i -s 10 app >/dev/null 2>&1
        for mode in "prepared" "simple" "prepared -S" "simple -S"; do
            # shellcheck disable=SC2086
            tps=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U fortress -c 8 -j 2 -T "$DURATION" -M $mode app 2>/dev/null \
                | grep -o "tps = [0-9.]*" | head -1)
            echo "round$round $which $mode $tps"
        done
        kill "$PID"
        wait "$PID" 2>/dev/null || true
        PID=
    done
done
