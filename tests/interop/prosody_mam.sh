#!/usr/bin/env bash
# Runs tests/interop/mam.py against a throwaway Prosody (Debian's 0.12 package) with mod_mam, to
# check the script against a server nobody here wrote. Not run by cargo test.
#
#   tests/interop/prosody_mam.sh [extra mam.py args]
#
# Needs `apt-get install prosody` and the venv tests/common/venv.rs builds (target/interop-venv).
# Environment (defaults): PEER_DIR=/tmp/petrel-mam-prosody PORT=15322
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-$HERE/../../target/interop-venv/bin/python}
PEER_DIR=${PEER_DIR:-/tmp/petrel-mam-prosody}
PORT=${PORT:-15322}
PASSWORD=secret-pass
CFG=$PEER_DIR/prosody.cfg.lua

rm -rf "$PEER_DIR"
mkdir -p "$PEER_DIR/data/localhost/accounts" "$PEER_DIR/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$PEER_DIR/certs/localhost.key" -out "$PEER_DIR/certs/localhost.crt" 2>/dev/null
cat > "$CFG" <<CFG
run_as_root = true
pidfile = "$PEER_DIR/prosody.pid"
data_path = "$PEER_DIR/data"
log = { info = "$PEER_DIR/prosody.log" }
c2s_ports = { $PORT }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "mam" }
modules_disabled = { "s2s" }
authentication = "internal_plain"
storage = "internal"
archive_expires_after = "never"
default_archive_policy = true
max_archive_query_results = 250
limits = { c2s = { rate = "10mb/s" } }
ssl = { key = "$PEER_DIR/certs/localhost.key", certificate = "$PEER_DIR/certs/localhost.crt" }
VirtualHost "localhost"
CFG
# Accounts as Prosody's internal_plain storage files (u0 .. u3 with the test password).
for u in u0 u1 u2 u3; do
    printf 'return {\n\t["password"] = "%s";\n};\n' "$PASSWORD" > "$PEER_DIR/data/localhost/accounts/$u.dat"
done

prosody --config "$CFG" -F >"$PEER_DIR/prosody.out" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.1
done
"$PY" "$HERE/mam.py" --port "$PORT" --cert "$PEER_DIR/certs/localhost.crt" --password "$PASSWORD" "$@"
