#!/usr/bin/env bash
# A short smoke of petrel-load against a petrel it starts (run by .ci/run after the tests): a few hundred
# users, a few seconds per scenario, over SCRAM and PLAIN, at --shards 2, max and chat also with --sm.
# Fails on a failed login or a lost message (petrel-load exits non-zero for both), or if petrel does not stop cleanly on SIGTERM.
#
#   loadtest/smoke.sh                 # uses target/debug binaries (built by `cargo test --workspace`)
#   BIN=target/release loadtest/smoke.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/loadtest/lib.sh"
BIN=${BIN:-$ROOT/target/debug}
USERS=${USERS:-200}
PETREL="$BIN/petrel"
LOAD="$BIN/petrel-load"
[ -x "$PETREL" ] && [ -x "$LOAD" ] || (cd "$ROOT" && cargo build -p petrel -p petrel-load)

dir=$(mktemp -d)
petrel_pid=""
relay_pid=""
cleanup() {
    [ -n "$petrel_pid" ] && kill "$petrel_pid" 2>/dev/null || true
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(free_port)
http_port=$(free_port)
petrel_config "$dir" "$port" "$http_port"
cat >> "$dir/petrel.toml" <<CONF
[modules.ping]
[modules.roster]
[modules.presence]
[modules.offline]
[modules.stream_management]
[modules.muc]
[modules.mam]
[modules.caps]
[modules.pep]
CONF
"$PETREL" user add-range --count "$USERS" localhost smoke-pass --config "$dir/petrel.toml"
"$PETREL" serve --config "$dir/petrel.toml" --shards 2 --allow-oversubscribe &
petrel_pid=$!
wait_port "$port"

common=(--server "127.0.0.1:$port" --domain localhost --users "$USERS" --password smoke-pass --cores 1 --quiet)
run() {
    echo "smoke: petrel-load $*"
    "$LOAD" "$@" "${common[@]}"
}
run connect --rate 0 --mech SCRAM-SHA-256
# PEP fan-out: user1 publishes to 20 contacts (subscriptions and caps set up over the wire); early,
# on accounts no other scenario has used yet.
echo "smoke: petrel-load pep --contacts 20"
"$LOAD" pep --contacts 20 --users 21 --server "127.0.0.1:$port" --domain localhost \
    --password smoke-pass --cores 1 --quiet --duration 3 --window 8 --mech PLAIN --setup-timeout 60
run chat --interval-ms 500 --duration 3 --mech SCRAM-SHA-1
run max --duration 3 --window 8 --mech PLAIN
run idle --duration 2 --server-pid "$petrel_pid"
# Group chat: 20 rooms of 10 occupants (USERS must be 200) spread over both shards, closed loop.
# The same 1:1 load over WebSocket (RFC 7395) on the HTTP port.
echo "smoke: petrel-load max --transport ws"
"$LOAD" max --transport ws --server "127.0.0.1:$http_port" --domain localhost --users "$USERS" \
    --password smoke-pass --cores 1 --quiet --duration 3 --window 8 --mech SCRAM-SHA-256
run muc --rooms $((USERS / 10)) --occupants 10 --closed --duration 3 --mech PLAIN
# Stream management last: its sessions stay parked for resumption after the run.
run max --duration 2 --window 8 --mech PLAIN --sm
run chat --interval-ms 500 --duration 2 --mech PLAIN --sm

relay_port=$(free_port)
"$LOAD" relay-server --listen "127.0.0.1:$relay_port" &
relay_pid=$!
wait_port "$relay_port"
echo "smoke: petrel-load max --relay"
"$LOAD" max --relay --server "127.0.0.1:$relay_port" --users "$USERS" --password x --duration 2 --cores 1 --quiet
kill "$relay_pid"; wait "$relay_pid" 2>/dev/null || true; relay_pid=""

kill -TERM "$petrel_pid"
if wait "$petrel_pid"; then
    petrel_pid=""
    echo "smoke: ok"
else
    rc=$?; petrel_pid=""
    echo "smoke: petrel exited with $rc after SIGTERM" >&2
    exit 1
fi
