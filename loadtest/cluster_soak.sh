#!/usr/bin/env bash
# Loss test for a cluster: `petrel-load soak --nodes` (XEP-0198, exactly-once ledger) across three
# petrel nodes over NATS on one shared PostgreSQL store, while one node is SIGKILLed and restarted.
# Its users fail over to the live nodes (resume fails there, they log in afresh and fetch offline
# storage); the report counts every acknowledged message delivered, stored and fetched, or lost,
# and duplicates.
#
#   PG_URL="host=/tmp/petrel-pg.X user=postgres dbname=petrel_soak" loadtest/cluster_soak.sh
#
# Environment (defaults): PG_URL (required: an empty database), DURATION=60 USERS=300
# INTERVAL_MS=1000 KILL_AT=20 DOWN=5 (seconds the killed node stays down) GRACE=60 CUT=0 SHARDS=1
# OUT=/tmp/petrel-cluster-soak; release binaries (cargo build --release -p petrel -p petrel-load).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
PETREL=${PETREL:-$ROOT/target/release/petrel}
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
: "${PG_URL:?PG_URL: an empty PostgreSQL database, key=value form}"
DURATION=${DURATION:-60}
USERS=${USERS:-300}
INTERVAL_MS=${INTERVAL_MS:-1000}
KILL_AT=${KILL_AT:-20}
DOWN=${DOWN:-5}
GRACE=${GRACE:-60}
CUT=${CUT:-0}
SHARDS=${SHARDS:-1}
OUT=${OUT:-/tmp/petrel-cluster-soak}
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
rm -rf "$OUT"; mkdir -p "$OUT"

declare -a PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; }
trap stop_all EXIT

NATS_PORT=$(free_port)
"$NATS" -a 127.0.0.1 -p "$NATS_PORT" >"$OUT/nats.log" 2>&1 &
PIDS+=($!)
wait_port "$NATS_PORT" || { echo "nats-server did not start" >&2; exit 1; }

declare -A PORT PID
config() {
    local name=$1 dir=$OUT/$1
    mkdir -p "$dir"
    PORT[$name]=$(free_port)
    petrel_config "$dir" "${PORT[$name]}"
    cat >>"$dir/petrel.toml" <<CONF
[modules.roster]
[modules.presence]
[modules.offline]
max_per_user = 10000
[modules.ping]
[modules.stream_management]
[modules.disco]
[store]
backend = "postgres"
url = "$PG_URL"
pool_size = 2
[cluster]
node = "$name"
nats = ["nats://127.0.0.1:$NATS_PORT"]
CONF
}
start() {
    "$PETREL" serve --config "$OUT/$1/petrel.toml" --shards "$SHARDS" --allow-oversubscribe >>"$OUT/$1/petrel.log" 2>&1 &
    PID[$1]=$!
    PIDS+=($!)
    wait_port "${PORT[$1]}" || { echo "$1 did not start: $(tail -5 "$OUT/$1/petrel.log")" >&2; exit 1; }
}
for n in n1 n2 n3; do config $n; done
"$PETREL" user add-range --count "$USERS" localhost soak-pass --config "$OUT/n1/petrel.toml" >/dev/null || exit 1
for n in n1 n2 n3; do start $n; done
sleep 2

"$LOAD" soak --nodes "127.0.0.1:${PORT[n1]},127.0.0.1:${PORT[n2]},127.0.0.1:${PORT[n3]}" --domain localhost \
    --users "$USERS" --password soak-pass --mech PLAIN --cores 1 --interval-ms "$INTERVAL_MS" \
    --duration "$DURATION" --grace "$GRACE" --cut-interval "$CUT" --login-timeout 10 \
    --json "$OUT/soak.json" --quiet >"$OUT/soak.txt" 2>&1 &
load_pid=$!
sleep "$KILL_AT"
kill -KILL "${PID[n2]}"
echo "n2 SIGKILLed at ${KILL_AT}s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
sleep "$DOWN"
start n2
echo "n2 restarted"
wait "$load_pid"
status=$?
cat "$OUT/soak.txt"
echo "soak exit $status; load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
