#!/usr/bin/env bash
# What SCRAM-SHA-256 and TLS cost, side by side in one run: pgbench -S
# against fortress (release build) and PostgreSQL 15, each as trust over
# plaintext and as SCRAM-SHA-256 over TLS (sslmode=require, TLS 1.3).
# Usage: bench/auth.sh [SECONDS] [ROUNDS]   (defaults: 10 s per run, 3 rounds)
#
# Two modes: `-S -M prepared` on 8 long-lived connections (what TLS costs per
# query), and `-S -C` opening a connection per transaction (what the SCRAM
# exchange and the TLS handshake cost per connection; libpq's PBKDF2 of 4096
# iterations on the client is part of it, as it is for PostgreSQL). fortress
# runs two servers on two data directories (with users, every connection
# authenticates); PostgreSQL one cluster whose pg_hba trusts `postgres`
# without TLS and asks `bench` for SCRAM over TLS. Rounds alternate which
# configuration runs first; prints every run, then medians and the ratio
# SCRAM+TLS / trust for each server.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-3}
PGBIN=${FORTRESS_PG_BIN:-/usr/lib/postgresql/15/bin}
cargo build --release --quiet
BIN=$PWD/target/release/fortress
WORK=$(mktemp -d)
chmod 755 "$WORK"
. bench/lib.sh
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PASSWORD=bench-password-0c41
FPID=
cleanup() {
    [ -n "$FPID" ] && { kill "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null || true; }
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 600 "$WORK/key.pem"

# PostgreSQL: one cluster, trust without TLS for postgres, SCRAM over TLS for bench.
PG_PORT=$(free_port)
mkdir "$WORK/pg"
cp "$WORK/cert.pem" "$WORK/key.pem" "$WORK/pg/"
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
cat >"$WORK/hba" <<HBA
hostnossl all postgres 127.0.0.1/32 trust
hostssl   all bench    127.0.0.1/32 scram-sha-256
local     all postgres              trust
HBA
as_pg cp "$WORK/hba" "$WORK/pg/data/pg_hba.conf"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w -o "-p $PG_PORT -k $WORK/pg \
    -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$WORK/pg/cert.pem \
    -c ssl_key_file=$WORK/pg/key.pem -c password_encryption=scram-sha-256" start >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -c "CREATE ROLE bench LOGIN PASSWORD '$PASSWORD' SUPERUSER" postgres
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -q -s 1 postgres >/dev/null 2>&1

# fortress: one data directory per configuration.
F_PORT=$(free_port)
"$BIN" user add bench --data-dir "$WORK/f-scram" --password-stdin <<<"$PASSWORD" >/dev/null
start_fortress() { # trust|scram
    local dir=$WORK/f-$1 extra=()
    [ "$1" = scram ] && extra=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
    FORTRESS_ADMIN_LISTEN=off "$BIN" serve --data-dir "$dir" --listen "127.0.0.1:$F_PORT" "${extra[@]}" \
        >>"$WORK/fortress-$1.log" 2>&1 &
    FPID=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$F_PORT") 2>/dev/null && break; sleep 0.1; done
}
stop_fortress() { kill "$FPID"; wait "$FPID" 2>/dev/null || true; FPID=; }
for config in trust scram; do
    start_fortress $config
    if [ $config = trust ]; then
        "$PGBIN/pgbench" -h 127.0.0.1 -p "$F_PORT" -U postgres -i -q -s 1 app >/dev/null 2>&1
    else
        PGPASSWORD=$PASSWORD PGSSLMODE=require "$PGBIN/pgbench" -h 127.0.0.1 -p "$F_PORT" -U bench -i -q -s 1 app >/dev/null 2>&1
    fi
    stop_fortress
done

run() { # server config mode -> tps
    local server=$1 config=$2 mode=$3 port user db args
    if [ "$server" = fortress ]; then port=$F_PORT; db=app; else port=$PG_PORT; db=postgres; fi
    if [ "$config" = trust ]; then user=postgres; ssl=disable; else user=bench; ssl=require; fi
    if [ "$mode" = connect ]; then args=(-S -C -c 4 -j 2); else args=(-S -M prepared -c 8 -j 2); fi
    PGPASSWORD=$PASSWORD PGSSLMODE=$ssl "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U "$user" \
        "${args[@]}" -T "$DURATION" "$db" 2>/dev/null | grep -o 'tps = [0-9.]*' | head -1 | cut -d' ' -f3
}
RESULTS=$WORK/results
: >"$RESULTS"
echo "machine: $(nproc) cores; $("$PGBIN/pgbench" --version); ${DURATION} s per run, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="trust scram"; else order="scram trust"; fi
    for config in $order; do
        start_fortress "$config"
        for mode in prepared connect; do
            for server in fortress postgres; do
                tps=$(run $server $config $mode)
                echo "round $round  $server  $config  $mode  tps $tps"
                echo "$server $config $mode $tps" >>"$RESULTS"
            done
        done
        stop_fortress
    done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    server, config, mode, tps = line.split()
    runs.setdefault((server, config, mode), []).append(float(tps))
print()
print(f"{'server':<9} {'mode':<9} {'trust tps':>10} {'scram+tls tps':>14} {'ratio':>6}")
for server in ("fortress", "postgres"):
    for mode in ("prepared", "connect"):
        t = statistics.median(runs[(server, "trust", mode)])
        s = statistics.median(runs[(server, "scram", mode)])
        print(f"{server:<9} {mode:<9} {t:>10.0f} {s:>14.0f} {s / t:>6.2f}")
PY
