#!/usr/bin/env bash
# Many idle sessions on one petrel (issue 15, target 2): IDLE authenticated idle sessions from
# many loopback source addresses, server pings (XEP-0199) every PING_INTERVAL s that each session
# must answer, and a `chat` run among 1 000 other users without, then with, the idle sessions.
#
#   loadtest/many_sessions.sh              # IDLE=18800 (the fd limit here is 20 000 per process)
#
# Environment (defaults): IDLE=18800 CHAT_USERS=1000 CHAT_INTERVAL_MS=100 (10 000 msg/s)
#   CHAT_DURATION=15 PING_INTERVAL=20 HOLD=80 SERVER_CPUS=0 LOAD_CPUS=1 PORT=<a free one>
#   SOURCES=127.0.0.2-127.0.0.40 OUT=/tmp/petrel-many
# Prints one summary; the JSON reports and SVG charts are under OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
PETREL=${PETREL:-$ROOT/target/release/petrel}
IDLE=${IDLE:-18800}
CHAT_USERS=${CHAT_USERS:-1000}
CHAT_INTERVAL_MS=${CHAT_INTERVAL_MS:-100}
CHAT_DURATION=${CHAT_DURATION:-15}
PING_INTERVAL=${PING_INTERVAL:-20}
HOLD=${HOLD:-80}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
PORT=${PORT:-}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.40}
OUT=${OUT:-/tmp/petrel-many}
# The accounts (hashed with 4 096 iterations: a minute and a half for 20 000) are kept between runs.
mkdir -p "$OUT"; rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.svg
. "$ROOT/loadtest/lib.sh"
[ -n "$PORT" ] || PORT=$(free_port)
petrel_config "$OUT" "$PORT"
cat >> "$OUT/petrel.toml" <<CONF
idle_timeout = 3600
[modules.ping]
ping_interval = $PING_INTERVAL
ping_timeout = 10
CONF
total=$((CHAT_USERS + IDLE))
if [ ! -f "$OUT/data/users-$total" ]; then
    "$PETREL" user add-range --count "$total" localhost password --config "$OUT/petrel.toml" >/dev/null
    touch "$OUT/data/users-$total"
fi
echo "fd limit (hard) $(ulimit -Hn); petrel holds at most that many sockets" >&2
taskset -c "$SERVER_CPUS" "$PETREL" serve --config "$OUT/petrel.toml" --shards 1 >"$OUT/petrel.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_port "$PORT" && kill -0 "$pid" || { echo "petrel did not start: $(cat "$OUT/petrel.log")" >&2; exit 1; }
rss() { awk '/VmRSS/ { print $2 }' "/proc/$pid/status"; }
chat() {
    "$LOAD" chat --server "127.0.0.1:$PORT" --users "$CHAT_USERS" --interval-ms "$CHAT_INTERVAL_MS" \
        --duration "$CHAT_DURATION" --cpus "$LOAD_CPUS" --mech PLAIN --quiet --server-pid "$pid" \
        --json "$OUT/$1.json" --chart "$OUT/$1.svg" >"$OUT/$1.txt" 2>&1
}
echo "load $(cut -d' ' -f1-3 /proc/loadavg): chat alone" >&2
chat chat-alone
rss0=$(rss)
echo "load $(cut -d' ' -f1-3 /proc/loadavg): $IDLE idle sessions from $SOURCES" >&2
"$LOAD" idle --server "127.0.0.1:$PORT" --users "$IDLE" --first $((CHAT_USERS + 1)) --source-addrs "$SOURCES" \
    --duration "$HOLD" --keepalive 3600 --cpus "$LOAD_CPUS" --mech PLAIN --server-pid "$pid" --quiet \
    --login-timeout 120 --json "$OUT/idle.json" >"$OUT/idle.txt" 2>&1 &
idle=$!
start=$(date +%s.%N)
for _ in $(seq 1200); do
    n=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
    [ "$n" -ge "$IDLE" ] && break
    sleep 0.5
done
up=$(date +%s.%N)
# Past one server ping of every session before the second chat run.
sleep $((PING_INTERVAL + 5))
echo "load $(cut -d' ' -f1-3 /proc/loadavg): chat beside the idle sessions" >&2
chat chat-beside
rss1=$(rss)
# Kernel memory of all TCP sockets (both ends of every loopback connection), in 4 KiB pages.
sockstat=$(grep '^TCP:' /proc/net/sockstat)
wait "$idle" || true
echo "idle sessions: $IDLE established after $(awk -v a="$start" -v b="$up" 'BEGIN { printf "%.1f", b - a }') s; server RSS ${rss0} KiB before, ${rss1} KiB with them; kernel $sockstat"
python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
i = json.load(open(f"{o}/idle.json"))
print(f"idle: connected {i['connected']}/{i['users']}, login failures {i['login_failed']}, {i['logins_per_s']:.0f} logins/s, "
      f"RSS/session {i['server_rss_per_session'] / 1024:.1f} KiB, errors {i['errors']}, server pings answered {i['pings_answered']}, "
      f"server CPU while idle {100 * (i['server_cpu_cores'] or 0):.1f}%")
for n in ("chat-alone", "chat-beside"):
    c = json.load(open(f"{o}/{n}.json")); l = c["delivery_latency_us"]
    print(f"{n:<12} {c['msgs_per_s']:>8.0f} msg/s  p50 {l['p50'] / 1000:.2f} ms  p99 {l['p99'] / 1000:.2f} ms  p99.9 {l['p999'] / 1000:.2f} ms  lost {c['lost']}  server CPU {100 * (c['server_cpu_cores'] or 0):.0f}%")
PY
"$LOAD" chart --chart "$OUT/chat-side-by-side.svg" "$OUT/chat-alone.json" "$OUT/chat-beside.json"
