#!/usr/bin/env bash
# Standby figures, one run: fortress (release, 4 shards, sync always) under
# pgbench TPC-B (8 clients, -M prepared) with no standby, an async standby
# and a sync standby, interleaved for ROUNDS rounds (median tps of each,
# ratios), and the async standby's replication lag (how old its reads
# are: now - the last cut it applied, sampled every 50 ms) p50/p99/max.
# Usage: bench/standby.sh [SECONDS] [SCALE] [ROUNDS]   (defaults: 15 s, scale 5, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
SCALE=${2:-5}
ROUNDS=${3:-3}
PGBIN=${FORTRESS_PG_BIN:-/usr/lib/postgresql/15/bin}
cargo build --release --quiet
BIN=$PWD/target/release/fortress
WORK=$(mktemp -d)
. bench/lib.sh
P_PORT=$(free_port); R_PORT=$(free_port); S_PORT=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; [ -n "${FORTRESS_BENCH_KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

primary() { # extra args...
    "$BIN" serve --data-dir "$WORK/p" --listen "127.0.0.1:$P_PORT" --admin-listen off \
        --shards 4 --sync always --replication-listen "127.0.0.1:$R_PORT" "$@" >>"$WORK/p.log" 2>&1 &
    PPID_=$!
    PIDS+=($PPID_)
    wait_port "$P_PORT"
}
standby() {
    "$BIN" standby --data-dir "$WORK/s" --primary "127.0.0.1:$R_PORT" --name s1 \
        --listen "127.0.0.1:$S_PORT" --admin-listen off --sync always >>"$WORK/s.log" 2>&1 &
    SPID=$!
    PIDS+=($SPID)
    wait_port "$S_PORT"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
pgb() { "$PGBIN/pgbench" -h 127.0.0.1 -p "$P_PORT" -U postgres "$@" postgres; }
# The standby's lag in seconds, every 50 ms, until the file $1.stop exists.
sample_lag() {
    while [ ! -e "$1.stop" ]; do
        { psql -At -h 127.0.0.1 -p "$S_PORT" -c "SHOW fortress.replication" 2>/dev/null || true; } | cut -d'|' -f7 >>"$1"
        sleep 0.05
    done
}
# Waits until the standby has what the primary has: nothing in flight as
# the primary sees it, and the standby's reads under a second old.
caught_up() {
    for _ in $(seq 600); do
        lag=$(psql -At -h 127.0.0.1 -p "$P_PORT" -c "SHOW fortress.replication" | awk -F'|' '$3 == "streaming" { print $6 }')
        old=$(psql -At -h 127.0.0.1 -p "$S_PORT" -c "SHOW fortress.replication" | awk -F'|' '{ print ($7 < 1) }')
        [ "$lag" = "0" ] && [ "$old" = "1" ] && return
        sleep 0.1
    done
    echo "the standby never caught up" >&2; exit 1
}

echo "machine: $(nproc) cores; pgbench scale $SCALE; TPC-B 8 clients -M prepared ${DURATION} s; $ROUNDS rounds"
primary
pgb -i -q -s "$SCALE" >"$WORK/init.log" 2>&1
standby
caught_up
stop "$SPID"
stop "$PPID_"
for r in $(seq "$ROUNDS"); do
    # No standby connected.
    primary
    pgb -c 8 -j 2 -M prepared -T "$DURATION" >"$WORK/none-$r.log" 2>&1
    stop "$PPID_"
    # An async standby, its lag sampled.
    primary
    standby
    caught_up
    sample_lag "$WORK/lag-$r" &
    SAMPLER=$!
    pgb -c 8 -j 2 -M prepared -T "$DURATION" >"$WORK/async-$r.log" 2>&1
    touch "$WORK/lag-$r.stop"
    wait "$SAMPLER"
    caught_up
    stop "$PPID_"
    # A sync standby: every commit waits for it.
    primary --standby-mode s1=sync --sync-timeout 30s
    caught_up
    pgb -c 8 -j 2 -M prepared -T "$DURATION" >"$WORK/sync-$r.log" 2>&1
    stop "$PPID_"
    stop "$SPID"
done
python3 - "$WORK" "$ROUNDS" <<'PY'
import re, statistics, sys, glob
work, rounds = sys.argv[1], int(sys.argv[2])
tps = lambda f: float(re.search(r"tps = ([0-9.]+)", open(f).read()).group(1))
runs = {m: [tps(f"{work}/{m}-{r}.log") for r in range(1, rounds + 1)] for m in ("none", "async", "sync")}
med = {m: statistics.median(v) for m, v in runs.items()}
for m, v in runs.items():
    print(f"TPC-B {m:5}: median {med[m]:.0f} tps (runs: {', '.join(f'{x:.0f}' for x in v)})")
print(f"ratios: async/none {med['async']/med['none']:.2f}, sync/async {med['sync']/med['async']:.2f}, sync/none {med['sync']/med['none']:.2f}")
lag = sorted(float(x) for f in glob.glob(f"{work}/lag-*") if not f.endswith(".stop") for x in open(f) if x.strip() and x.strip() != "NaN")
q = lambda p: lag[min(len(lag) - 1, int(p * len(lag)))]
print(f"async standby lag under TPC-B ({len(lag)} samples): p50 {q(0.5)*1000:.0f} ms, p99 {q(0.99)*1000:.0f} ms, max {lag[-1]*1000:.0f} ms")
PY
