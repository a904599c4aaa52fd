#!/usr/bin/env bash
# Checkpoint, verify, restore and WAL-replay throughput on a release build.
# Usage: bench/checkpoint.sh [ROWS]   (default 500000)
# Loads ROWS rows (id, a text, a number, a date) through COPY, checkpoints
# while the server runs, adds ROWS/5 more rows, then times verify, a restore
# from the checkpoint alone, a restore replaying the WAL after it, and a
# restore from the WAL alone. Prints sizes and MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-500000}
BIN=target/release/fortress
cargo build --release --quiet
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$WORK/data
$BIN serve --data-dir "$DATA" --listen 127.0.0.1:$PORT --admin-listen off >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do psql -h 127.0.0.1 -p $PORT -U bench -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
PSQL="psql -X -q -h 127.0.0.1 -p $PORT -U bench"
$PSQL -c "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), day date)"
rows() { awk -v from="$1" -v n="$2" 'BEGIN { for (i = from; i < from + n; i++)
    printf "%d\titem-%d-%s\t%d.%02d\t2026-%02d-%02d\n", i, i, substr("abcdefghijklmnopqrstuvwxyz", i % 26 + 1, 10), i % 10000, i % 100, i % 12 + 1, i % 28 + 1 }'; }
mb() { du -sb "$1" | awk '{ printf "%.1f", $1 / 1e6 }'; }
secs() { python3 -c "import time; print(time.time())"; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):.1f}')"; }

t0=$(secs); rows 0 "$ROWS" | $PSQL -c "COPY items FROM STDIN"; t1=$(secs)
echo "loaded $ROWS rows in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
t0=$(secs); $BIN checkpoint create --data-dir "$DATA"; t1=$(secs)
CKPT=$(ls "$DATA/checkpoints" | tail -1)
CK_MB=$(mb "$DATA/checkpoints/$CKPT")
echo "checkpoint: $CK_MB MB on disk in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
rows "$ROWS" $((ROWS / 5)) | $PSQL -c "COPY items FROM STDIN"
$PSQL -c "UPDATE items SET price = price + 1 WHERE id < $((ROWS / 10))"
kill $SERVER; wait $SERVER 2>/dev/null || true
SLED=$(for d in "$DATA"/shard-*/db; do du -sb "$d"; done | awk '{ s += $1 } END { printf "%.1f", s / 1e6 }')
WAL=$(for d in "$DATA"/shard-*/wal; do du -sb "$d"; done | awk '{ s += $1 } END { printf "%.1f", s / 1e6 }')
echo "data: sled $SLED MB, WAL $WAL MB (all of it, before and after the checkpoint)"
$BIN checkpoint list --data-dir "$DATA"
t0=$(secs); $BIN checkpoint verify --data-dir "$DATA"; t1=$(secs)
echo "verify: $(rate "$CK_MB" "$t0" "$t1") MB/s of checkpoint"
t0=$(secs); $BIN restore --data-dir "$DATA" --to "$WORK/r1"; t1=$(secs)
echo "restore from the checkpoint alone: $(rate "$CK_MB" "$t0" "$t1") MB/s of checkpoint, $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
t0=$(secs); $BIN restore --data-dir "$DATA" --to "$WORK/r2" --latest; t1=$(secs)
echo "restore from the checkpoint + WAL after it: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
mkdir -p "$WORK/none"
t0=$(secs); $BIN restore --data-dir "$DATA" --checkpoint-dir "$WORK/none" --to "$WORK/r3" --latest; t1=$(secs)
echo "restore replaying the whole WAL: $(rate "$WAL" "$t0" "$t1") MB/s of WAL, $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
