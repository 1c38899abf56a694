#!/usr/bin/env bash
# The cluster's loss test: petrel-load `soak` (chat with XEP-0198; reconnect, resume or log in
# again) across the NODES nodes of a petrel cluster on NATS, sharing one PostgreSQL store, while one
# node after the other is SIGKILLed every KILL_EVERY seconds and restarted DOWN seconds later. A user logs in to node
# u mod NODES; when its node is down it moves on to the next one (petrel-load --nodes). At the end
# petrel-load counts: every message a server acknowledged must have been delivered exactly once
# (live, resumed, or from offline storage); it exits 1 otherwise.
#
#   loadtest/cluster_soak.sh 1                     # 1 minute, debug binaries (built if missing)
#   BIN=target/release loadtest/cluster_soak.sh 5
#   DURATION=30 KILL_EVERY=10 USERS=60 loadtest/cluster_soak.sh
#
# Needs Debian's nats-server and a PostgreSQL server: PETREL_TEST_PG (as .ci/pg.sh exports it, the
# URL of a superuser connection); without it, and as root, the script starts a throwaway one with
# .ci/pg.sh. A database of its own is created for the run and dropped at the end.
#
# Environment: NODES (default 3), USERS (default 150), INTERVAL_MS (default 1000), KILL_EVERY (s,
# default 15), DOWN (s a killed node stays down, default 3), CUT (mean s between a client's own cuts, 0 = none, default 10),
# ELSEWHERE (1: after its own cut a client resumes on the next node, XEP-0198 across nodes; 0: on
# the same node; default 1), SHARDS per node
# (default 1), GRACE (s per settling stage, default 60), JSON (report copy), BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
MINUTES=${1:-1}
BIN=${BIN:-$ROOT/target/debug}
NODES=${NODES:-3}
USERS=${USERS:-150}
INTERVAL_MS=${INTERVAL_MS:-1000}
KILL_EVERY=${KILL_EVERY:-15}
DOWN=${DOWN:-3}
CUT=${CUT:-10}
ELSEWHERE=${ELSEWHERE:-1}
elsewhere=()
[ "$ELSEWHERE" = 1 ] && elsewhere=(--resume-elsewhere)
SHARDS=${SHARDS:-1}
GRACE=${GRACE:-60}
PETREL=${PETREL:-$BIN/petrel}
LOAD=${LOAD:-$BIN/petrel-load}
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS" ] || { echo "cluster_soak: no nats-server (apt-get install nats-server)" >&2; exit 3; }
[ -x "$PETREL" ] && [ -x "$LOAD" ] || (cd "$ROOT" && cargo build -p petrel -p petrel-load)

dir=$(mktemp -d)
chmod 755 "$dir"
JSON=${JSON:-$dir/soak.json}
declare -a node_pid=()
nats_pid=""
load_pid=""
own_pg=""
db=""
cleanup() {
    [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
    for p in "${node_pid[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null || true
    if [ -n "$db" ]; then psql -q "$PETREL_TEST_PG" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; fi
    if [ -n "$own_pg" ]; then pg_stop; fi
    rm -rf "$dir"
}
trap cleanup EXIT

if [ -z "${PETREL_TEST_PG:-}" ]; then
    # shellcheck source=.ci/pg.sh
    . "$ROOT/.ci/pg.sh"
    pg_start >/dev/null
    own_pg=1
fi
db="petrel_cluster_soak_$$"
psql -q "$PETREL_TEST_PG" -c "CREATE DATABASE $db" >/dev/null
# The same server and options, another database: the URL's path names it.
store_url=$(echo "$PETREL_TEST_PG" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$db#")

nats_port=$(free_port)
"$NATS" -a 127.0.0.1 -p "$nats_port" >"$dir/nats.log" 2>&1 &
nats_pid=$!
wait_port "$nats_port" || { echo "cluster_soak: nats-server did not start" >&2; exit 1; }

declare -a port=()
for i in $(seq 0 $((NODES - 1))); do
    mkdir -p "$dir/n$i"
    port[$i]=$(free_port)
    petrel_config "$dir/n$i" "${port[$i]}"
    cat >> "$dir/n$i/petrel.toml" <<CONF
[store]
backend = "postgres"
url = "$store_url"
[cluster]
node = "n$i"
nats = ["nats://127.0.0.1:$nats_port"]
heartbeat_ms = 200
failure_timeout_ms = 1500
[modules.roster]
[modules.presence]
[modules.offline]
max_per_user = 10000
[modules.stream_management]
[modules.carbons]
[modules.csi]
[modules.ping]
[modules.disco]
CONF
done
"$PETREL" user add-range --count "$USERS" localhost soak-pass --config "$dir/n0/petrel.toml" >/dev/null

start_node() {
    local i=$1
    "$PETREL" serve --config "$dir/n$i/petrel.toml" --shards "$SHARDS" --allow-oversubscribe \
        >>"$dir/n$i/petrel.log" 2>&1 &
    node_pid[$i]=$!
    if ! wait_port "${port[$i]}"; then
        echo "cluster_soak: node n$i did not listen on ${port[$i]}" >&2
        tail -20 "$dir/n$i/petrel.log" >&2
        exit 1
    fi
}
for i in $(seq 0 $((NODES - 1))); do start_node "$i"; done
nodes=$(for i in $(seq 0 $((NODES - 1))); do printf '127.0.0.1:%s,' "${port[$i]}"; done)
nodes=${nodes%,}
# Let the members find each other before the users log in.
sleep 2

duration=${DURATION:-$((MINUTES * 60))}
load_t0=$(date +%s.%N)
"$LOAD" soak --nodes "$nodes" --domain localhost --users "$USERS" --password soak-pass \
    --mech PLAIN --cores 1 --interval-ms "$INTERVAL_MS" --duration "$duration" --grace "$GRACE" \
    --cut-interval "$CUT" "${elsewhere[@]}" --login-timeout 10 --json "$JSON" --quiet &
load_pid=$!

# Kill node (k - 1) mod NODES at k KILL_EVERY seconds, k = 1, 2, ..., and restart it DOWN seconds
# later (its users fail over to the next node meanwhile).
kills=0
kill_log=""
start=$(date +%s.%N)
for k in $(seq $(( (duration - 1) / KILL_EVERY ))); do
    sleep "$(awk "BEGIN { d = $start + $k * $KILL_EVERY - $(date +%s.%N); print (d > 0 ? d : 0) }")"
    kill -0 "$load_pid" 2>/dev/null || break
    i=$(( (k - 1) % NODES ))
    kill -KILL "${node_pid[$i]}"
    kill_log="$kill_log n$i@$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $load_t0 }")"
    { wait "${node_pid[$i]}"; } 2>/dev/null || true
    kills=$((kills + 1))
    sleep "$DOWN"
    start_node "$i"
done

status=0
wait "$load_pid" || status=$?
load_pid=""
echo "cluster_soak: ${duration} s, $NODES nodes over NATS on one PostgreSQL store, $kills SIGKILLs (every ${KILL_EVERY}s, each node down ${DOWN}s), $USERS users, one message per ${INTERVAL_MS} ms each, client cuts every ~${CUT}s (resumed on the next node: $ELSEWHERE)"
echo "cluster_soak: SIGKILLs (node@s since petrel-load started):$kill_log"
for i in $(seq 0 $((NODES - 1))); do
    if grep -q "panicked" "$dir/n$i/petrel.log"; then
        echo "cluster_soak: node n$i panicked:" >&2
        grep -m5 -A5 "panicked" "$dir/n$i/petrel.log" >&2
        status=1
    fi
done
exit "$status"
