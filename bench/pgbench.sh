#!/usr/bin/env bash
# pgbench side by side: PostgreSQL 15 and fortress on this machine, in one run.
# Usage: bench/pgbench.sh [SECONDS] [SCALE]   (defaults: 30 s per run, scale 10)
#
# PostgreSQL 15 runs with its default settings (fsync on) from a fresh initdb
# in a temp dir; fortress runs its release build with 4 shards and
# --sync always. Both get `pgbench -i -s SCALE`, then the select-only (-S)
# and TPC-B-like scripts, each with -M prepared and -M simple, 8 clients and
# 2 threads for SECONDS, twice, interleaved (PostgreSQL first in round 1,
# fortress first in round 2). Prints tps, mean latency, failed transactions
# and p99 latency (from pgbench's per-transaction log) per run, then a table
# of the means and the ratio fortress / PostgreSQL, and fortress's peak RSS.
# Each run also records the CPU time the hypervisor stole (/proc/stat): on a
# shared VM a run with much steal is slower for both servers, and ratios from
# such a run say less.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
SCALE=${2:-10}
CLIENTS=8
THREADS=2
PGBIN=${FORTRESS_PG_BIN:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl pgbench; do
    [ -x "$PGBIN/$tool" ] || { echo "missing $PGBIN/$tool (apt-get install postgresql-15)" >&2; exit 1; }
done
cargo build --release --quiet
BIN=$PWD/target/release/fortress

WORK=$(mktemp -d)
chmod 755 "$WORK"
. bench/lib.sh
PG_PORT=$(free_port)
F_PORT=$(free_port)
# PostgreSQL refuses to run as root: use the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
FPID=
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    if [ -n "$FPID" ]; then kill "$FPID" 2>/dev/null || true; wait "$FPID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$BIN" serve --data-dir "$WORK/fortress" --listen "127.0.0.1:$F_PORT" --admin-listen off --shards 4 --sync always \
    >"$WORK/fortress.log" 2>&1 &
FPID=$!
for _ in $(seq 100); do
    (echo > "/dev/tcp/127.0.0.1/$F_PORT") 2>/dev/null && break
    sleep 0.1
done

pgb() { # target, args...
    local port=$PG_PORT
    [ "$1" = fortress ] && port=$F_PORT
    shift
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres "$@" postgres
}

# Steal and total CPU ticks so far (the first eight fields of /proc/stat's
# cpu line; guest time is already counted in user).
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t }' /proc/stat; }
steal_since() { # steal ticks, total ticks at the start
    read -r steal total < <(cpu_ticks)
    python3 -c "print(f'{100 * ($steal - $1) / max($total - $2, 1):.1f}')"
}

RESULTS=$WORK/results
: >"$RESULTS"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
echo "pgbench: $("$PGBIN/pgbench" --version), scale $SCALE, $CLIENTS clients, $THREADS threads, ${DURATION} s per run"
for target in postgres fortress; do
    start=$(date +%s.%N)
    pgb "$target" -i -q -s "$SCALE" >"$WORK/init-$target.log" 2>&1 \
        || { cat "$WORK/init-$target.log"; exit 1; }
    echo "init $target: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
done

for round in 1 2; do
    order="postgres fortress"
    [ "$round" = 2 ] && order="fortress postgres"
    for script in select-only tpcb-like; do
        for mode in prepared simple; do
            for target in $order; do
                # Per-transaction logs give the latency percentiles.
                logs="$WORK/log-$round-$script-$mode-$target"
                args=(-M "$mode" -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -l --log-prefix="$logs")
                [ "$script" = select-only ] && args+=(-S)
                read -r steal0 total0 < <(cpu_ticks)
                out=$(cd "$WORK" && pgb "$target" "${args[@]}" 2>&1) || { echo "$out"; exit 1; }
                steal=$(steal_since "$steal0" "$total0")
                tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
                lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out")
                failed=$(sed -n 's/^number of failed transactions: [0-9]* (\([0-9.]*\)%).*/\1/p' <<<"$out")
                p99=$(cat "$logs".* | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000 }')
                rm -f "$logs".*
                echo "$round $script $mode $target ${tps:-0} ${lat:-0} ${failed:-0} ${p99:-0} $steal" | tee -a "$RESULTS"
            done
        done
    done
done
PEAK_KIB=$(awk '/VmHWM/ { print $2 }' "/proc/$FPID/status")

python3 - "$RESULTS" "$PEAK_KIB" <<'EOF'
import sys
from collections import defaultdict
runs = defaultdict(list)
steals = []
for line in open(sys.argv[1]):
    _, script, mode, target, tps, lat, failed, p99, steal = line.split()
    runs[(script, mode, target)].append((float(tps), float(lat), float(failed), float(p99)))
    steals.append(float(steal))
mean = lambda xs: sum(xs) / len(xs)
print()
print("| workload | mode | PostgreSQL tps | fortress tps | ratio | PostgreSQL mean / p99 ms | fortress mean / p99 ms | fortress failed % |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for script in ("select-only", "tpcb-like"):
    for mode in ("prepared", "simple"):
        pg = runs[(script, mode, "postgres")]
        fo = runs[(script, mode, "fortress")]
        pg_tps, fo_tps = mean([r[0] for r in pg]), mean([r[0] for r in fo])
        ratio = fo_tps / pg_tps if pg_tps else float("nan")
        print(f"| {script} | {mode} | {pg_tps:.0f} | {fo_tps:.0f} | {ratio:.2f}x "
              f"| {mean([r[1] for r in pg]):.3f} / {mean([r[3] for r in pg]):.3f} "
              f"| {mean([r[1] for r in fo]):.3f} / {mean([r[3] for r in fo]):.3f} "
              f"| {mean([r[2] for r in fo]):.1f} |")
print()
print(f"fortress peak RSS: {int(sys.argv[2]) / 1024:.0f} MiB")
print(f"CPU stolen by the hypervisor during the runs: mean {mean(steals):.1f}%, max {max(steals):.1f}%")
EOF
