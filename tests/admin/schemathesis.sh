#!/usr/bin/env bash
# schemathesis (every check, see schemathesis.toml) against a live server's
# own /api/v1/openapi.json: no 5xx, every response as the document says,
# auth enforced. Usage: tests/admin/schemathesis.sh path/to/fortress
set -euo pipefail
bin=$(realpath "${1:-target/debug/fortress}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(port)
admin_port=$(port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
FORTRESS_ADMIN_TOKEN=$token "$bin" serve --data-dir "$work/data" \
    --listen "127.0.0.1:$pg_port" --admin-listen "127.0.0.1:$admin_port" \
    --archive "local=file://$work/archive" \
    >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$admin_port/api/v1/health', timeout=1)" 2>/dev/null && break
    sleep 0.1
done
# Run from the scratch directory: schemathesis keeps a cache where it runs.
(cd "$work" && schemathesis --config-file "$here/schemathesis.toml" run \
    "http://127.0.0.1:$admin_port/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --max-examples 200 --workers 1 --seed 1)
# The server outlived it, never panicked, and never logged the token.
kill -0 $server
if grep -q 'panicked' "$work/server.log"; then cat "$work/server.log"; exit 1; fi
if grep -q "$token" "$work/server.log"; then echo "the token reached the log"; exit 1; fi
echo "schemathesis: no issues; the server is still up"
