#!/usr/bin/env bash
# Failover figures: fortress (release, 4 shards, sync always) with a
# standby sharing a file:// archive (the write lease), default timings
# (--primary-timeout 5s, --lease-ttl 5s). Each round: pgbench TPC-B at 8
# clients on the primary, kill -9 of the primary after 5 s, then: the time
# from the kill to the first write the standby accepts (measured by a
# client), the RTO the standby recorded (detection to first write), and
# the lost transactions and RPO the old primary reports when restarted.
# Usage: bench/failover.sh [ROUNDS] [MODE]   (defaults: 5 rounds, async; MODE async|sync)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
MODE=${2:-async}
PGBIN=${FORTRESS_PG_BIN:-/usr/lib/postgresql/15/bin}
cargo build --release --quiet
BIN=$PWD/target/release/fortress
WORK=$(mktemp -d)
. bench/lib.sh
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; [ -n "${FORTRESS_BENCH_KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%N; }
get() { python3 -c 'import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$@"; }

echo "machine: $(nproc) cores; mode $MODE; pgbench TPC-B 8 clients -M prepared, kill -9 after 5 s; $ROUNDS rounds"
printf '%-6s %12s %10s %10s %10s\n' round "kill->write" "RTO" "lost txns" "RPO"
for r in $(seq "$ROUNDS"); do
    D="$WORK/$r"; mkdir -p "$D"
    P=$(free_port); PA=$(free_port); R=$(free_port); S=$(free_port); SA=$(free_port)
    ARCH="a=file://$D/arch"
    MODE_ARGS=()
    [ "$MODE" = sync ] && MODE_ARGS=(--standby-mode s1=sync)
    primary() {
        "$BIN" serve --data-dir "$D/p" --listen "127.0.0.1:$P" --admin-listen "127.0.0.1:$PA" \
            --shards 4 --sync always --replication-listen "127.0.0.1:$R" --archive "$ARCH" \
            "${MODE_ARGS[@]}" >>"$D/p.log" 2>&1 &
        PP=$!; PIDS+=($PP); wait_port "$P"
    }
    primary
    "$BIN" standby --data-dir "$D/s" --primary "127.0.0.1:$R" --name s1 --archive "$ARCH" \
        --listen "127.0.0.1:$S" --admin-listen "127.0.0.1:$SA" --shards 4 --sync always >>"$D/s.log" 2>&1 &
    SP=$!; PIDS+=($SP); wait_port "$S"
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$P" -U postgres -i -q -s 1 postgres >"$D/init.log" 2>&1
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$P" -U postgres -c 8 -j 2 -M prepared -T 20 postgres >"$D/run.log" 2>&1 &
    BENCH=$!
    sleep 5
    kill -9 "$PP"; KILLED=$(now)
    wait "$PP" 2>/dev/null || true
    until psql -h 127.0.0.1 -p "$S" -U postgres -q -c "INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (0, 0, 0, 0)" >/dev/null 2>&1; do
        sleep 0.02
    done
    WROTE=$(now)
    wait "$BENCH" 2>/dev/null || true
    for _ in $(seq 100); do
        RTO=$(get "http://127.0.0.1:$SA/api/v1/dr/status" '([f["rto_seconds"] for f in d["failover"]["failovers"] if f["rto_seconds"] is not None] or ["-"])[-1]')
        [ "$RTO" != "-" ] && break; sleep 0.1
    done
    primary
    LOST=$(get "http://127.0.0.1:$PA/api/v1/dr/status" 'd["failover"]["replaced"]["transactions"]')
    RPO=$(get "http://127.0.0.1:$PA/api/v1/dr/status" 'd["failover"]["replaced"]["rpo_seconds"]')
    printf '%-6s %12.2f %10.2f %10s %10s\n' "$r" "$(echo "$WROTE - $KILLED" | bc)" "$RTO" "$LOST" "$RPO"
    kill "$PP" "$SP"; wait "$PP" "$SP" 2>/dev/null || true
done
