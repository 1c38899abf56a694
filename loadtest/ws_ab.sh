#!/usr/bin/env bash
# `max` against one petrel over TCP and over WebSocket (RFC 7395, its HTTP port), alternating, in one
# run: the ratio of WebSocket to TCP 1:1 throughput (docs/BENCHMARKS.md, "WebSocket").
#
#   loadtest/ws_ab.sh                     # 3 rounds of 10 s each way, 1 shard
#
# Environment: ROUNDS=3 DURATION=10 USERS=1000 WINDOW=16 SHARDS=1 SERVER_CPUS=0 LOAD_CPUS=1
#   MECH=PLAIN PETREL_PORT=35222 HTTP_PORT=35280 OUT=/tmp/petrel-ws-ab
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/loadtest/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
USERS=${USERS:-1000}
WINDOW=${WINDOW:-16}
SHARDS=${SHARDS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
MECH=${MECH:-PLAIN}
PETREL_PORT=${PETREL_PORT:-35222}
HTTP_PORT=${HTTP_PORT:-35280}
OUT=${OUT:-/tmp/petrel-ws-ab}
PETREL=${PETREL:-$ROOT/target/release/petrel}
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
[ -x "$PETREL" ] && [ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release -p petrel -p petrel-load)
rm -rf "$OUT"
mkdir -p "$OUT"
petrel_config "$OUT" "$PETREL_PORT" "$HTTP_PORT"
echo "[modules.ping]" >> "$OUT/petrel.toml"
"$PETREL" user add-range --count "$USERS" localhost password --config "$OUT/petrel.toml" >/dev/null
taskset -c "$SERVER_CPUS" "$PETREL" serve --config "$OUT/petrel.toml" --shards "$SHARDS" \
    --allow-oversubscribe > "$OUT/petrel.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_port "$PETREL_PORT"
wait_port "$HTTP_PORT"
declare -a tcp=() ws=()
for r in $(seq "$ROUNDS"); do
    for mode in tcp ws; do
        port=$PETREL_PORT; [ "$mode" = ws ] && port=$HTTP_PORT
        "$LOAD" max --transport "$mode" --server "127.0.0.1:$port" --domain localhost \
            --users "$USERS" --password password --duration "$DURATION" --window "$WINDOW" \
            --cpus "$LOAD_CPUS" --mech "$MECH" --quiet > "$OUT/$mode-$r.txt" 2>&1 || true
        v=$(awk '$1 == "message" { printf "%d", $2 }' "$OUT/$mode-$r.txt")
        lost=$(awk '$1 == "message" { print $NF }' "$OUT/$mode-$r.txt")
        echo "round $r $mode: ${v:-?} msg/s, lost ${lost:-?}" >&2
        if [ "$mode" = tcp ]; then tcp+=("${v:-0}"); else ws+=("${v:-0}"); fi
    done
done
sum() { local s=0; for x in "$@"; do s=$((s + x)); done; echo "$s"; }
st=$(sum "${tcp[@]}"); sw=$(sum "${ws[@]}")
echo "tcp: ${tcp[*]} msg/s; websocket: ${ws[*]} msg/s"
awk -v a="$sw" -v b="$st" 'BEGIN { if (b > 0) printf "websocket/tcp = %.2f (mean of each)\n", a / b }'
