#!/usr/bin/env bash
# Chaos soak: petrel-load `soak` (chat traffic with XEP-0198, reconnect, resume or log in again)
# against a petrel that is SIGKILLed and restarted on the same port and data dir every KILL_EVERY
# seconds for MINUTES minutes. At the end petrel-load counts: every message the server acknowledged
# must have been delivered exactly once (live, resumed, or from offline storage); it exits 1 otherwise.
#
#   loadtest/soak.sh 10                     # 10 minutes, debug binaries (built if missing)
#   BIN=target/release loadtest/soak.sh 5   # release binaries
#   KILL_EVERY=15 USERS=100 INTERVAL_MS=500 CUT=10 loadtest/soak.sh 1
#   DURATION=30 KILL_EVERY=10 loadtest/soak.sh        # DURATION (seconds) overrides MINUTES
#
# Environment: USERS (default 200), INTERVAL_MS (ms between two messages of one user, default 1000),
# KILL_EVERY (s, default 20), CUT (mean s between a client's own connection cuts, resumed; 0 = none,
# default 10), SHARDS (default 2), GRACE (s per settling stage at the end, default 60), JSON (write
# the report there too), BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/loadtest/lib.sh"
MINUTES=${1:-1}
BIN=${BIN:-$ROOT/target/debug}
USERS=${USERS:-200}
INTERVAL_MS=${INTERVAL_MS:-1000}
KILL_EVERY=${KILL_EVERY:-20}
CUT=${CUT:-10}
SHARDS=${SHARDS:-2}
GRACE=${GRACE:-60}
PETREL="$BIN/petrel"
LOAD="$BIN/petrel-load"
[ -x "$PETREL" ] && [ -x "$LOAD" ] || (cd "$ROOT" && cargo build -p petrel -p petrel-load)

dir=$(mktemp -d)
JSON=${JSON:-$dir/soak.json}
petrel_pid=""
load_pid=""
cleanup() {
    [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
    [ -n "$petrel_pid" ] && kill "$petrel_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(free_port)
petrel_config "$dir" "$port"
# The default module set (as in petrel.toml), offline storage roomy enough for a user offline a while.
cat >> "$dir/petrel.toml" <<CONF
[modules.roster]
[modules.presence]
[modules.offline]
max_per_user = 10000
[modules.blocking]
[modules.private]
[modules.vcard]
[modules.ping]
[modules.version]
[modules.time]
[modules.last]
[modules.csi]
[modules.carbons]
[modules.stream_management]
[modules.disco]
CONF
"$PETREL" user add-range --count "$USERS" localhost soak-pass --config "$dir/petrel.toml" >/dev/null

start_petrel() {
    "$PETREL" serve --config "$dir/petrel.toml" --shards "$SHARDS" --allow-oversubscribe \
        >>"$dir/petrel.log" 2>&1 &
    petrel_pid=$!
    if ! wait_port "$port"; then
        echo "soak: petrel did not listen on $port after a restart" >&2
        tail -20 "$dir/petrel.log" >&2
        exit 1
    fi
}

duration=${DURATION:-$((MINUTES * 60))}
start_petrel
load_t0=$(date +%s.%N)
"$LOAD" soak --server "127.0.0.1:$port" --domain localhost --users "$USERS" --password soak-pass \
    --mech PLAIN --cores 1 --interval-ms "$INTERVAL_MS" --duration "$duration" --grace "$GRACE" \
    --cut-interval "$CUT" --login-timeout 10 --json "$JSON" --quiet &
load_pid=$!

# Kill and restart at KILL_EVERY, 2 KILL_EVERY, ... seconds, all before the soak stops sending (with
# MINUTES*60 a multiple of KILL_EVERY, the last kill leaves KILL_EVERY seconds of traffic after it).
kills=0
kill_times=""
start=$(date +%s.%N)
for k in $(seq $(( (duration - 1) / KILL_EVERY ))); do
    sleep "$(awk "BEGIN { d = $start + $k * $KILL_EVERY - $(date +%s.%N); print (d > 0 ? d : 0) }")"
    kill -0 "$load_pid" 2>/dev/null || break
    kill -KILL "$petrel_pid"
    kill_times="$kill_times $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $load_t0 }")"
    { wait "$petrel_pid"; } 2>/dev/null || true  # braces: bash's "Killed" notice goes to /dev/null too
    kills=$((kills + 1))
    start_petrel
done

status=0
wait "$load_pid" || status=$?
load_pid=""
echo "soak: ${duration} s, petrel SIGKILLed and restarted $kills times (every ${KILL_EVERY}s), $USERS users, one message per ${INTERVAL_MS} ms each, client cuts every ~${CUT}s"
echo "soak: SIGKILLs at (s since petrel-load started):$kill_times"
if grep -q "panicked" "$dir/petrel.log"; then
    echo "soak: petrel panicked:" >&2
    grep -m5 -A5 "panicked" "$dir/petrel.log" >&2
    status=1
fi
kill -TERM "$petrel_pid"
wait "$petrel_pid" 2>/dev/null || true
petrel_pid=""
exit "$status"
