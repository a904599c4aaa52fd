#!/usr/bin/env bash
# Archive figures, one run: fortress (release, 4 shards, sync always) shipping
# to an S3 API server (moto's server mode, from PyPI) on loopback.
# Usage: bench/archive.sh [SECONDS] [SCALE]   (defaults: 20 s TPC-B runs, scale 5)
#
# 1. `pgbench -i -s SCALE` with shipping held back (--ship-interval 1h), then
#    one `fortress dr replicate`: shipping throughput (WAL bytes read and
#    bytes put, per second).
# 2. TPC-B (8 clients, -M prepared) for SECONDS with --ship-interval 1s,
#    sampling the archive's recovery point (now - consistent_through) every
#    250 ms: p50/p99/max; and the same run on a server without an archive:
#    the tps ratio.
# 3. `fortress restore --from s3://... --latest`: restore speed.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
SCALE=${2:-5}
PGBIN=${FORTRESS_PG_BIN:-/usr/lib/postgresql/15/bin}
command -v moto_server >/dev/null || { echo "moto_server missing (pip install 'moto[server]')" >&2; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/fortress
WORK=$(mktemp -d)
. bench/lib.sh
S3_PORT=$(free_port); F_PORT=$(free_port); A_PORT=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

moto_server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
wait_port "$S3_PORT"
AUTH="Authorization: AWS4-HMAC-SHA256 Credential=bench/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
curl -s -f -X PUT -H "$AUTH" "http://127.0.0.1:$S3_PORT/bench" >/dev/null
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
URL=${FORTRESS_BENCH_ARCHIVE:-s3://bench/fortress}   # e.g. file:///tmp/arch to leave S3 out

serve() { # data dir, extra args...
    local dir=$1; shift
    "$BIN" serve --data-dir "$dir" --listen "127.0.0.1:$F_PORT" --admin-listen "127.0.0.1:$A_PORT" \
        --shards 4 --sync always "$@" >>"$dir.log" 2>&1 &
    FPID=$!
    PIDS+=($FPID)
    wait_port "$F_PORT"
}
stop() { kill "$FPID"; wait "$FPID" 2>/dev/null || true; }
pgb() { "$PGBIN/pgbench" -h 127.0.0.1 -p "$F_PORT" -U postgres "$@" postgres; }
dr() { curl -s -f -X "$1" "http://127.0.0.1:$A_PORT/api/v1/dr/$2"; }

echo "machine: $(nproc) cores; pgbench scale $SCALE; TPC-B 8 clients -M prepared ${DURATION} s"
# 1. Shipping throughput.
serve "$WORK/a" --archive "s3=$URL" --ship-interval 1h
pgb -i -q -s "$SCALE" >"$WORK/init.log" 2>&1
WAL=$(du -sb "$WORK"/a/shard-*/wal "$WORK/a/coordinator" | awk '{ s += $1 } END { print s }')
T0=$(date +%s.%N)
dr POST replicate >"$WORK/replicated.json"
T1=$(date +%s.%N)
python3 - "$WORK/replicated.json" "$WAL" "$T0" "$T1" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["archives"][0]
wal, secs = int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3])
lag = sum(l["lag_records"] for l in a["logs"])
print(f"shipping: {wal/1e6:.1f} MB of WAL on disk -> {a['shipped_bytes']/1e6:.1f} MB put in {a['shipped_objects']} objects "
      f"in {secs:.2f} s: {wal/1e6/secs:.1f} MB/s of WAL ({a['shipped_bytes']/1e6/secs:.1f} MB/s put); lag after: {lag} records")
PY
stop

# 2. TPC-B with an archive shipping every second, sampling its recovery point.
serve "$WORK/a" --archive "s3=$URL" --ship-interval 1s
python3 - "$A_PORT" "$DURATION" >"$WORK/rpo" <<'PY' &
import datetime, json, sys, time, urllib.request
port, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
while time.time() < end:
    a = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/dr/status"))["archives"][0]
    t = a["consistent_through"]
    if t:
        now = datetime.datetime.now(datetime.timezone.utc)
        print((now - datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))).total_seconds(), flush=True)
    time.sleep(0.25)
PY
SAMPLER=$!
pgb -c 8 -j 2 -M prepared -T "$DURATION" >"$WORK/tpcb-archive.log" 2>&1
wait "$SAMPLER"
dr POST replicate >/dev/null
stop
serve "$WORK/b"
pgb -i -q -s "$SCALE" >/dev/null 2>&1
pgb -c 8 -j 2 -M prepared -T "$DURATION" >"$WORK/tpcb-none.log" 2>&1
stop
python3 - "$WORK/rpo" "$WORK/tpcb-archive.log" "$WORK/tpcb-none.log" <<'PY'
import re, sys, statistics
rpo = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
tps = lambda f: float(re.search(r"tps = ([0-9.]+)", open(f).read()).group(1))
a, n = tps(sys.argv[2]), tps(sys.argv[3])
q = lambda p: rpo[min(len(rpo) - 1, int(p * len(rpo)))]
print(f"recovery point of the archive under TPC-B ({len(rpo)} samples): p50 {q(0.5):.2f} s, p99 {q(0.99):.2f} s, max {rpo[-1]:.2f} s")
print(f"TPC-B: {n:.0f} tps without an archive, {a:.0f} tps shipping every second: ratio {a/n:.2f}")
PY

# 3. Restore from the archive alone.
T0=$(date +%s.%N)
"$BIN" restore --from "$URL" --to "$WORK/restored" --latest >"$WORK/restore.out" 2>"$WORK/restore.err"
T1=$(date +%s.%N)
ROWS=$(grep -o '[0-9]* WAL records' "$WORK/restore.out" | awk '{ print $1 }')
python3 -c "print(f'restore --from the archive --latest: {float($T1) - float($T0):.2f} s for $ROWS WAL records ({$ROWS / (float($T1) - float($T0)):.0f} records/s), {$(du -sb "$WORK/restored" | cut -f1) / 1e6:.0f} MB restored')"
