#!/usr/bin/env bash
# Login rate per core (docs/BENCHMARKS.md, `connect`; issue 15 target 5): login storms against one
# pinned shard, several builds alternating in one run; for each, logins per second of server CPU
# time (the whole process, /proc/PID/stat, from the first connection to the last login) and wall
# logins/s. Each server start gets one untimed warm-up storm first (its memory grows on the first).
#
#   loadtest/logins.sh                                  # the build in target/release, 3 rounds
#   BUILDS="/tmp/old /tmp/new" loadtest/logins.sh       # directories holding petrel and petrel-load
#
#   MECHS="SCRAM-SHA-256 SCRAM-SHA-256+sasl2" loadtest/logins.sh   # RFC 6120 beside SASL2 + Bind 2
#
# A mechanism written MECH+sasl2 logs in with SASL2 (XEP-0388) and Bind 2 (XEP-0386) instead of
# SASL, stream restart and bind (petrel-load --sasl2).
# Environment: ROUNDS=3 MECHS="PLAIN SCRAM-SHA-256" PLAIN_USERS=3000 SCRAM_USERS=10000
#   ITERATIONS=4096 SERVER_CPU=0 LOAD_CPUS=1 OUT=/tmp/petrel-logins
# SCRAM: the generator keeps ClientKey/ServerKey per (password, salt, iterations) in a cache file
# as a client would (--scram-cache), so it does no PBKDF2 after the warm-up storm.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILDS=${BUILDS:-$ROOT/target/release}
ROUNDS=${ROUNDS:-3}
MECHS=${MECHS:-PLAIN SCRAM-SHA-256}
PLAIN_USERS=${PLAIN_USERS:-3000}
SCRAM_USERS=${SCRAM_USERS:-10000}
ITERATIONS=${ITERATIONS:-4096}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
OUT=${OUT:-/tmp/petrel-logins}
# shellcheck source=lib.sh
. "$ROOT/loadtest/lib.sh"
for b in $BUILDS; do
    [ -x "$b/petrel" ] && [ -x "$b/petrel-load" ] || { echo "$b: no petrel and petrel-load (cargo build --release --workspace)" >&2; exit 3; }
done
rm -rf "$OUT"
mkdir -p "$OUT"
port=$(free_port)
petrel_config "$OUT" "$port"
sed -i "s/^scram_iterations = .*/scram_iterations = $ITERATIONS/" "$OUT/petrel.toml"
chat_modules "$OUT"
most=$(( PLAIN_USERS > SCRAM_USERS ? PLAIN_USERS : SCRAM_USERS ))
# One user store for every build: the first build's `user add-range` writes it.
first=${BUILDS%% *}
"$first/petrel" user add-range --count "$most" localhost password --config "$OUT/petrel.toml" >/dev/null
declare -A per_cpu=() wall=()
for r in $(seq "$ROUNDS"); do
    for mech in $MECHS; do
        users=$PLAIN_USERS
        [ "${mech%+sasl2}" = PLAIN ] || users=$SCRAM_USERS
        flags=()
        [ "${mech%+sasl2}" = "$mech" ] || flags=(--sasl2)
        for b in $BUILDS; do
            key="$b $mech"
            tag="$(basename "$b")-$mech-$r"
            serve_pinned "$b/petrel" "$SERVER_CPU" 1 "$OUT/petrel.toml" "$OUT/server-$tag.log" "$port"
            storm() {
                "$b/petrel-load" connect --server "127.0.0.1:$port" --domain localhost --users "$users" \
                    --password password --cpus "$LOAD_CPUS" --mech "${mech%+sasl2}" --scram-cache "$OUT/scram.cache" \
                    --server-pid "$pid" --quiet --json "$1" "${flags[@]}" > "${1%.json}.txt" 2>&1
            }
            storm "$OUT/warmup-$tag.json" || true
            storm "$OUT/$tag.json" || true
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            ok=$(json_field "$OUT/$tag.json" connected)
            rate=$(json_field "$OUT/$tag.json" logins_per_s)
            cpu=$(json_field "$OUT/$tag.json" login_server_cpu_s)
            if [ "$ok" != "$users" ] || [ -z "$cpu" ]; then
                echo "round $r, $mech, $b: $ok of $users logged in (see $OUT/$tag.txt)" >&2
                exit 1
            fi
            e=$(awk -v n="$users" -v c="$cpu" 'BEGIN { printf "%.0f", n / c }')
            per_cpu[$key]="${per_cpu[$key]:-} $e"
            wall[$key]="${wall[$key]:-} $(printf '%.0f' "$rate")"
            printf 'round %s, %s, %s: %.0f logins/s, %s logins per server CPU-second (load %s)\n' \
                "$r" "$mech" "$b" "$rate" "$e" "$(cut -d' ' -f1 /proc/loadavg)"
        done
    done
done
for mech in $MECHS; do
    for b in $BUILDS; do
        key="$b $mech"
        echo "$mech, $b: logins per server CPU-second${per_cpu[$key]} (median $(median "${per_cpu[$key]}")); wall logins/s${wall[$key]}"
    done
done
