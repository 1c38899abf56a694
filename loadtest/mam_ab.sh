#!/usr/bin/env bash
# `max` against petrel with the message archive off and on, alternating, in one run: the ratio of
# archive-on to archive-off throughput (docs/BENCHMARKS.md, "Message archive").
#
#   loadtest/mam_ab.sh                    # SQLite, 3 rounds of 10 s each way
#   BACKEND=postgres loadtest/mam_ab.sh   # a throwaway PostgreSQL cluster (.ci/pg.sh; needs root)
#   PIN=shard loadtest/mam_ab.sh          # petrel started as a user would (see PIN)
#
# Environment: ROUNDS=3 DURATION=10 USERS=1000 SERVER_CPUS=0 LOAD_CPUS=1, PORT=35222 (the c2s port:
# another one when someone else benchmarks on the same machine), PETREL / PETREL_LOAD (binaries), CATCHUP_MIN=1.6 (seconds the store is watched after the load, at least).
# PIN=process (default): the whole server process — shard and store threads — on SERVER_CPUS, the
# worst case (the archive's writes compete with the shard for its one core). PIN=shard: no taskset
# on the server; glommio pins the shard thread to the first CPU and the store threads float (as
# `petrel serve --shards 1` runs on a machine with a core to spare; here they share CPU 1 with the
# generator).
#
# Besides the rates, each round prints the server's CPU per message over the measured phase and
# the archive's catch-up: the store thread may still be committing rows when the load ends (its
# queue absorbs the backlog), so the seconds until it is idle and the CPU it spends meanwhile are
# part of the archive's cost; "all-in" is the server's CPU per message including them, and
# "sustained" the messages of the measured phase per second of the phase plus the catch-up (the
# rate at which messages were both delivered and archived). A run whose archive falls behind
# shows a high rate and a long catch-up: the sustained figures are the ones to compare.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
BACKEND=${BACKEND:-sqlite}
PIN=${PIN:-process}
OUT=${OUT:-/tmp/petrel-mam-ab}
PORT=${PORT:-35222}
USERS=${USERS:-1000}
DURATION=${DURATION:-10}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
CATCHUP_MIN_NS=$(awk -v s="${CATCHUP_MIN:-1.6}" 'BEGIN { printf "%d", s * 1e9 }')
PETREL=${PETREL:-$ROOT/target/release/petrel}
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
[ -x "$PETREL" ] || (cd "$ROOT" && cargo build --release -p petrel)
[ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release -p petrel-load)
rm -rf "$OUT"
mkdir -p "$OUT"
store=""
if [ "$BACKEND" = postgres ]; then
    # shellcheck source=/dev/null
    . "$ROOT/.ci/pg.sh"
    pg_start >&2
    trap pg_stop EXIT
    store="[store]
backend = \"postgres\"
url = \"$PETREL_TEST_PG\"
pool_size = 2"
fi
write_config() { # FILE MODULES
    cat > "$1" <<CONF
[general]
hosts = ["localhost"]
data_dir = "$OUT/data"
loglevel = "warn"
[auth]
scram_iterations = 4096
[[listen.c2s]]
port = $PORT
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true
idle_timeout = 3600
$store
[modules.ping]
$2
CONF
}
write_config "$OUT/off.toml" ""
write_config "$OUT/on.toml" "[modules.mam]"

# CPU ticks (1/100 s) of process $1, and of its store threads.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
store_ticks() {
    local t s=0
    for t in /proc/"$1"/task/*; do
        grep -q '^petrel-store' "$t/comm" 2>/dev/null && s=$((s + $(awk '{ print $14 + $15 }' "$t/stat")))
    done
    echo "$s"
}

# round MODE N: one run; prints "rate server_cpu_pct catchup_s catchup_ticks".
round() {
    local mode=$1 n=$2 pid lp s prev t0 c0
    local log="$OUT/$mode-$n"
    rm -rf "$OUT/data"
    if [ "$BACKEND" = postgres ]; then
        psql "$PETREL_TEST_PG" -qc "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null
    fi
    "$PETREL" user add-range --count "$USERS" localhost password --config "$OUT/$mode.toml" >/dev/null 2>&1
    if [ "$PIN" = process ]; then
        taskset -c "$SERVER_CPUS" "$PETREL" serve --config "$OUT/$mode.toml" --shards 1 \
            --allow-oversubscribe > "$log.server" 2>&1 &
    else
        "$PETREL" serve --config "$OUT/$mode.toml" --shards 1 > "$log.server" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
    taskset -c "$LOAD_CPUS" "$LOAD" max --server "127.0.0.1:$PORT" --domain localhost \
        --users "$USERS" --password password --duration "$DURATION" --window 16 \
        --cpus "$LOAD_CPUS" --mech PLAIN --quiet --server-pid "$pid" > "$log.txt" 2>&1 || true
    # The archive's catch-up: the store threads' work after the load, until their CPU stops
    # moving (sampled every 0.2 s), watched for at least CATCHUP_MIN seconds: rows wait up to a
    # second (the store's PENDING_WAIT) for their commit, so an idle store thread may still owe
    # the last one. Its length is the store threads' CPU time over that window (on the server's
    # one core they run alone once the load is over): waiting for the timer is not falling behind.
    t0=$(date +%s%N)
    c0=$(ticks "$pid")
    local s0
    s0=$(store_ticks "$pid")
    prev=-1
    while s=$(store_ticks "$pid") && { [ "$s" != "$prev" ] || [ $(($(date +%s%N) - t0)) -lt "$CATCHUP_MIN_NS" ]; }; do
        prev=$s
        sleep 0.2
    done
    local catchup_ns=$(((s - s0) * 10000000))
    local catchup_ticks=$(($(ticks "$pid") - c0))
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    local rate cpu
    rate=$(awk '$1 == "message" { print $2 }' "$log.txt")
    cpu=$(awk '/server CPU over the measured phase/ { sub("%", "", $7); print $7 }' "$log.txt")
    awk -v r="${rate:-0}" -v c="${cpu:-0}" -v ns="$catchup_ns" -v t="$catchup_ticks" \
        'BEGIN { print r, c, ns / 1e9, t }'
}

declare -a off=() on=() soff=() son=()
for r in $(seq "$ROUNDS"); do
    for mode in off on; do
        read -r rate cpu catchup cticks < <(round "$mode" "$r")
        awk -v m="$mode" -v n="$r" -v r="$rate" -v c="$cpu" -v s="$catchup" -v t="$cticks" \
            -v d="$DURATION" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
            us = (r > 0) ? c / 100 / r * 1e6 : 0
            all = (r > 0) ? (c / 100 * d + t / 100) / (r * d) * 1e6 : 0
            printf "round %s archive %-3s: %7d msg/s, server %5.1f%% of a core = %.2f us/msg; catch-up %.1f s (%.2f CPU-s): all-in %.2f us/msg, sustained %d msg/s (load %s)\n", n, m, r, c, us, s, t / 100, all, r * d / (d + s), l
        }' >&2
        sustained=$(awk -v r="$rate" -v s="$catchup" -v d="$DURATION" 'BEGIN { printf "%d", r * d / (d + s) }')
        if [ "$mode" = off ]; then
            off+=("${rate:-0}")
            soff+=("$sustained")
        else
            on+=("${rate:-0}")
            son+=("$sustained")
        fi
    done
done
sum() { local s=0; for x in "$@"; do s=$((s + x)); done; echo "$s"; }
so=$(sum "${off[@]}"); sn=$(sum "${on[@]}")
echo "backend $BACKEND, pin $PIN: archive off: ${off[*]} msg/s; on: ${on[*]} msg/s"
awk -v a="$sn" -v b="$so" 'BEGIN { if (b > 0) printf "on/off = %.2f (mean of each)\n", a / b }'
echo "sustained (archive caught up): off: ${soff[*]} msg/s; on: ${son[*]} msg/s"
awk -v a="$(sum "${son[@]}")" -v b="$(sum "${soff[@]}")" \
    'BEGIN { if (b > 0) printf "sustained on/off = %.2f (mean of each)\n", a / b }'
