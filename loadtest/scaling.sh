#!/usr/bin/env bash
# Scaling efficiency (docs/BENCHMARKS.md, "Scaling"): the same fixed-rate `chat` load against petrel
# at 1 shard and at 2 shards, alternating, in one run; for each, delivered messages per second of
# server CPU time (from the server process's own /proc accounting, via petrel-load --server-pid).
# With 2 shards about half the messages cross shards (a user's home shard is a hash of its JID).
#
#   loadtest/scaling.sh                         # 3 rounds, 1000 users, 20 000 msg/s, 10 s each
#   USERS=1000 INTERVAL_MS=25 loadtest/scaling.sh   # 40 000 msg/s (each user: 1 message / interval)
#
# Environment: ROUNDS=3 DURATION=10 USERS=1000 INTERVAL_MS=50 LOAD_CPUS=1 SCENARIO=chat WINDOW=16
#   EXTRA="" (more petrel-load args, e.g. EXTRA="--burst 16": each user writes 16 messages per interval)
#   CONFIGS="1:0 1:1 2:0-1": shards:CPUs of each server run. On a 2-core machine the generator
#   (LOAD_CPUS) must share a core with the second shard; "1:1" puts one shard on the generator's core
#   too, so the cost of sharing a core with the generator can be told from the cost of a second
#   shard. The figure counts the server's CPU, not the generator's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
PETREL=${PETREL:-$ROOT/target/release/petrel}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
USERS=${USERS:-1000}
INTERVAL_MS=${INTERVAL_MS:-50}
LOAD_CPUS=${LOAD_CPUS:-1}
SCENARIO=${SCENARIO:-chat}
WINDOW=${WINDOW:-16}
CONFIGS=${CONFIGS:-1:0 1:1 2:0-1}
OUT=${OUT:-/tmp/petrel-scaling}
# shellcheck source=lib.sh
. "$ROOT/loadtest/lib.sh"
[ -x "$PETREL" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release --workspace" >&2; exit 3; }
rm -rf "$OUT"
mkdir -p "$OUT"
port=$(free_port)
petrel_config "$OUT" "$port"
chat_modules "$OUT"
"$PETREL" user add-range --count "$USERS" localhost password --config "$OUT/petrel.toml" >/dev/null
declare -A eff=()
for r in $(seq "$ROUNDS"); do
    for c in $CONFIGS; do
        n=${c%%:*}
        cpus=${c#*:}
        serve_pinned "$PETREL" "$cpus" "$n" "$OUT/petrel.toml" "$OUT/server-$c-$r.log" "$port"
        "$LOAD" "$SCENARIO" --server "127.0.0.1:$port" --users "$USERS" --duration "$DURATION" \
            --interval-ms "$INTERVAL_MS" --window "$WINDOW" --cpus "$LOAD_CPUS" --server-pid "$pid" \
            --quiet --json "$OUT/$c-$r.json" ${EXTRA:-} > "$OUT/$c-$r.txt" 2>&1 || true
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        rate=$(json_field "$OUT/$c-$r.json" msgs_per_s)
        cores=$(json_field "$OUT/$c-$r.json" server_cpu_cores)
        p99=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delivery_latency_us"]["p99"])' "$OUT/$c-$r.json")
        e=$(awk -v a="$rate" -v c="$cores" 'BEGIN { if (c > 0) printf "%.0f", a / c; else print 0 }')
        eff[$c]="${eff[$c]:-} $e"
        printf 'round %s, %s shard(s) on CPU %s: %.0f msg/s, server %.2f cores, %s msg per CPU-second, p99 %s us (load %s)\n' \
            "$r" "$n" "$cpus" "$rate" "$cores" "$e" "$p99" "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
first=${CONFIGS%% *}
base=$(median "${eff[$first]}")
for c in $CONFIGS; do
    m=$(median "${eff[$c]}")
    awk -v c="$c" -v l="${eff[$c]}" -v m="$m" -v b="$base" \
        'BEGIN { printf "%s (shards:CPUs): msg per server CPU-second%s; median %d = %.2f of %s\n", c, l, m, (b > 0 ? m / b : 0), "'"$first"'" }'
done
