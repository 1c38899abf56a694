#!/usr/bin/env bash
# Run one petrel-load scenario against petrel, Prosody, ejabberd and the bare relay,
# each server pinned to SERVER_CPUS and the generator to LOAD_CPUS, and print one table.
#
#   loadtest/compare.sh                       # max, 1000 users, 10 s, all targets
#   SCENARIO=chat USERS=5000 INTERVAL_MS=1000 loadtest/compare.sh
#   TARGETS="relay prosody" loadtest/compare.sh
#   SCENARIO=muc ROOMS=50 OCCUPANTS=100 loadtest/compare.sh       # XEP-0045 rooms, 1 msg/s each
#   SCENARIO=muc ROOMS=5 OCCUPANTS=20 CLOSED=1 TARGETS="prosody ejabberd" loadtest/compare.sh
#   SCENARIO=pep CONTACTS=1000 TARGETS="petrel prosody ejabberd" loadtest/compare.sh  # PEP fan-out
#
# Environment (defaults):
#   SCENARIO=max USERS=1000 DURATION=10 WINDOW=16 INTERVAL_MS=20000 PASSWORD=password
#   DOMAIN=localhost SERVER_CPUS=0 LOAD_CPUS=1 MECH=PLAIN EXTRA="" (more petrel-load args)
#   TARGETS="relay petrel petrel-s2 prosody ejabberd"
#   PETREL_CONFIG=<petrel.toml> (default: one written under OUT) PETREL_PORT=25400
#   PETREL_EXTRA (TOML lines added to the generated petrel config, e.g. $'[shards]\nring_depth = 256')
#   targets petrel (1 shard on SERVER_CPUS) and petrel-sN (N shards on SERVER_CPUS_N, default 0-(N-1))
#   RELAY_PORT=25300; Prosody and ejabberd ports: see peers/*.sh (15222, 25222)
#   muc: ROOMS=10 OCCUPANTS=10 (USERS becomes ROOMS x OCCUPANTS), MSG_RATE=1 (messages/s per
#   occupant) or CLOSED=1 (closed loop), PETREL_MUC='[modules.muc]' (added to the generated
#   petrel config); prints occupant deliveries/s side by side and the ratios between targets
#   pep: CONTACTS=1000 (USERS becomes CONTACTS + 1), PUB_RATE=0 (items/s; 0 = closed loop with
#   WINDOW items in flight), PETREL_PEP (modules added to the generated petrel config); prints
#   notifications/s side by side and the ratios between targets; PEP_SEED=1 writes the mutual
#   subscriptions of Prosody and petrel (generated config) into their storage first, PEP_SEED=0
#   leaves all of it to the scenario's setup over the wire (slow on both; ejabberd always is)
# Results: one JSON report per target under OUT=/tmp/petrel-compare (removed before the target
# runs, so a target that did not run leaves none), and for max, chat, muc and pep an SVG chart per
# target (OUT/TARGET.svg) and of all targets side by side (OUT/compare.svg).
# A target whose server does not start (its port already taken, the process exits, or nothing
# listens within 20 s) is reported as FAILED TO START with the reason, gets no row of figures,
# and makes the script exit with status 4.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
PETREL=${PETREL:-$ROOT/target/release/petrel}
SCENARIO=${SCENARIO:-max}
USERS=${USERS:-1000}
DURATION=${DURATION:-10}
WINDOW=${WINDOW:-16}
# Slow servers need time to drain a closed loop's in-flight window before "lost" is counted.
GRACE=${GRACE:-10}
INTERVAL_MS=${INTERVAL_MS:-20000}
PASSWORD=${PASSWORD:-password}
DOMAIN=${DOMAIN:-localhost}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
MECH=${MECH:-PLAIN}
EXTRA=${EXTRA:-}
TARGETS=${TARGETS:-relay petrel petrel-s2 prosody ejabberd}
# Below the ephemeral range (32768-60999): 35222 was once taken by one of the relay run's client sockets.
PETREL_PORT=${PETREL_PORT:-25400}
RELAY_PORT=${RELAY_PORT:-25300}
OUT=${OUT:-/tmp/petrel-compare}
ROOMS=${ROOMS:-10}
OCCUPANTS=${OCCUPANTS:-10}
MSG_RATE=${MSG_RATE:-1}
CLOSED=${CLOSED:-0}
PETREL_MUC=${PETREL_MUC:-[modules.muc]}
CONTACTS=${CONTACTS:-1000}
PUB_RATE=${PUB_RATE:-0}
PEP_SEED=${PEP_SEED:-1}
PETREL_PEP=${PETREL_PEP:-$'[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.pep]'}
declare -a SCENARIO_ARGS=()
if [ "$SCENARIO" = muc ]; then
    USERS=$((ROOMS * OCCUPANTS))
    SCENARIO_ARGS=(--rooms "$ROOMS" --occupants "$OCCUPANTS" --msg-rate "$MSG_RATE")
    [ "$CLOSED" = 1 ] && SCENARIO_ARGS+=(--closed)
fi
if [ "$SCENARIO" = pep ]; then
    USERS=$((CONTACTS + 1))
    SCENARIO_ARGS=(--contacts "$CONTACTS" --pub-rate "$PUB_RATE")
fi
export DOMAIN PASSWORD PETREL_LOAD=$LOAD
mkdir -p "$OUT"

[ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release -p petrel-load) || exit 3

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# Nothing accepts on loopback port $1 (else a server we start would fail to bind, and the run would
# measure whatever holds the port).
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
# started PID PORT: the server we started as PID is alive and accepts on PORT within 20 s; else
# WHY says what went wrong.
started() {
    for _ in $(seq 200); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1" 2>/dev/null
            WHY="the server exited (status $?) before listening on port $2"
            return 1
        fi
        (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return 0
        sleep 0.1
    done
    WHY="nothing listened on port $2 within 20 s"
    return 1
}
declare -a FAILED=()
# failed TARGET REASON: the target's server did not start; it gets no figures, only this reason.
failed() {
    echo "$2" > "$OUT/$1.failed"
    FAILED+=("$1")
    echo "$1: FAILED TO START: $2" >&2
}
# Charts for the timed scenarios (the others have no per-second samples).
CHARTS=0
case $SCENARIO in max | chat | muc | pep) CHARTS=1 ;; esac

# run_load TARGET PORT PID [extra args...]
run_load() {
    local target=$1 port=$2 pid=$3; shift 3
    local args=("$SCENARIO" --server "127.0.0.1:$port" --domain "$DOMAIN" --users "$USERS"
        --password "$PASSWORD" --duration "$DURATION" --window "$WINDOW" --interval-ms "$INTERVAL_MS"
        --cpus "$LOAD_CPUS" --mech "$MECH" --grace "$GRACE" --quiet --json "$OUT/$target.json"
        "${SCENARIO_ARGS[@]}")
    [ "$CHARTS" = 1 ] && args+=(--chart "$OUT/$target.svg")
    # idle: RSS per session; max: the server's CPU over the measured phase (msgs per CPU-second).
    { [ "$SCENARIO" = idle ] || [ "$SCENARIO" = max ] || [ "$SCENARIO" = chat ]; } && [ -n "$pid" ] && args+=(--server-pid "$pid")
    # shellcheck disable=SC2086
    "$LOAD" "${args[@]}" "$@" $EXTRA > "$OUT/$target.txt" 2>&1
    echo "$?" > "$OUT/$target.rc"
}

declare -a DONE=()
for t in $TARGETS; do
    # A fresh start: nothing of an earlier run may stand in for this one's figures.
    rm -f "$OUT/$t.json" "$OUT/$t.txt" "$OUT/$t.rc" "$OUT/$t.failed" "$OUT/$t.svg"
    case $t in
    relay)
        if [ "$SCENARIO" != max ]; then echo "relay: only the max scenario applies" >&2; continue; fi
        if ! port_free "$RELAY_PORT"; then failed relay "port $RELAY_PORT is already in use"; continue; fi
        taskset -c "$SERVER_CPUS" "$LOAD" relay-server --listen "127.0.0.1:$RELAY_PORT" 2>"$OUT/relay.log" &
        rpid=$!
        if started "$rpid" "$RELAY_PORT"; then
            run_load relay "$RELAY_PORT" "$rpid" --relay
        else
            failed relay "$WHY (see $OUT/relay.log)"
        fi
        kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null
        ;;
    petrel|petrel-s*)
        # petrel = 1 shard on SERVER_CPUS; petrel-sN = N shards on SERVER_CPUS_N (default "0-(N-1)").
        shards=1; cpus=$SERVER_CPUS
        if [ "$t" != petrel ]; then
            shards=${t#petrel-s}
            var="SERVER_CPUS_$shards"; cpus=${!var:-0-$((shards - 1))}
        fi
        if [ ! -x "$PETREL" ]; then (cd "$ROOT" && cargo build --release -p petrel) || continue; fi
        config=${PETREL_CONFIG:-$OUT/petrel.toml}
        if [ -z "${PETREL_CONFIG:-}" ]; then
            cat > "$config" <<CONF
[general]
hosts = ["$DOMAIN"]
data_dir = "$OUT/petrel-data"
loglevel = "warn"
[auth]
scram_iterations = 4096
[[listen.c2s]]
port = $PETREL_PORT
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true
idle_timeout = 3600
[modules.ping]
CONF
            [ "$SCENARIO" = muc ] && printf '%s\n' "$PETREL_MUC" >> "$config"
            [ "$SCENARIO" = pep ] && printf '%s\n' "$PETREL_PEP" >> "$config"
            [ -n "${PETREL_EXTRA:-}" ] && printf '%s\n' "$PETREL_EXTRA" >> "$config"
        fi
        "$PETREL" user add-range --count "$USERS" "$DOMAIN" "$PASSWORD" --config "$config" >/dev/null 2>&1
        # pep: the mutual subscriptions written into the store like the accounts (generated config
        # only, SQLite), unless PEP_SEED=0: over the wire petrel takes about a second per contact.
        if [ "$SCENARIO" = pep ] && [ -z "${PETREL_CONFIG:-}" ] && [ "$PEP_SEED" = 1 ]; then
            python3 - "$OUT/petrel-data/petrel.sqlite3" "$CONTACTS" "$DOMAIN" <<'PY'
import sqlite3, sys
db, n, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db)
pub = f"user1@{d}"
rows = [(u, k) for i in range(2, n + 2) for (u, k) in ((pub, f"user{i}@{d}"), (f"user{i}@{d}", pub))]
c.executemany('INSERT OR REPLACE INTO roster_items ("user", contact, sub_to, sub_from, in_roster) VALUES (?, ?, 1, 1, 1)', rows)
c.executemany('INSERT INTO roster_version ("user", ver) VALUES (?, 1) ON CONFLICT("user") DO UPDATE SET ver = ver + 1',
              [(u,) for u in {u for u, _ in rows}])
c.commit()
PY
        fi
        if ! port_free "$PETREL_PORT"; then failed "$t" "port $PETREL_PORT is already in use"; continue; fi
        taskset -c "$cpus" "$PETREL" serve --config "$config" --shards "$shards" --allow-oversubscribe \
            >"$OUT/$t.log" 2>&1 &
        ppid=$!
        if started "$ppid" "$PETREL_PORT"; then
            run_load "$t" "$PETREL_PORT" "$ppid"
        else
            failed "$t" "$WHY (see $OUT/$t.log)"
        fi
        kill "$ppid" 2>/dev/null; wait "$ppid" 2>/dev/null
        ;;
    prosody)
        "$ROOT/loadtest/peers/prosody.sh" install >/dev/null
        # A Prosody of an earlier run is reused by prosody.sh; anything else on its port is not.
        if ! "$ROOT/loadtest/peers/prosody.sh" pid >/dev/null 2>&1 && ! port_free 15222; then
            failed prosody "port 15222 is already in use"; continue
        fi
        if ! PROSODY_CPUS=$SERVER_CPUS "$ROOT/loadtest/peers/prosody.sh" start >&2; then
            failed prosody "prosody.sh start failed (see /tmp/petrel-peers/prosody/prosody.out)"
            "$ROOT/loadtest/peers/prosody.sh" stop >&2; continue
        fi
        "$ROOT/loadtest/peers/prosody.sh" register "$USERS" >/dev/null &&
            # pep: the mutual subscriptions written like the accounts (over the wire Prosody
            # rewrites the publisher's whole roster file on each of the 4 x CONTACTS changes).
            { [ "$SCENARIO" != pep ] || [ "$PEP_SEED" != 1 ] || "$ROOT/loadtest/peers/prosody.sh" roster "$CONTACTS" >/dev/null; } &&
            run_load prosody 15222 "$("$ROOT/loadtest/peers/prosody.sh" pid)"
        "$ROOT/loadtest/peers/prosody.sh" stop >&2
        ;;
    ejabberd)
        "$ROOT/loadtest/peers/ejabberd.sh" install >/dev/null
        if ! "$ROOT/loadtest/peers/ejabberd.sh" pid >/dev/null 2>&1 && ! port_free 25222; then
            failed ejabberd "port 25222 is already in use"; continue
        fi
        if ! EJABBERD_CPUS=$SERVER_CPUS "$ROOT/loadtest/peers/ejabberd.sh" start >&2; then
            failed ejabberd "ejabberd.sh start failed (see /tmp/petrel-peers/ejabberd/log)"
            "$ROOT/loadtest/peers/ejabberd.sh" stop >&2; continue
        fi
        "$ROOT/loadtest/peers/ejabberd.sh" register "$USERS" >/dev/null
        run_load ejabberd 25222 "$("$ROOT/loadtest/peers/ejabberd.sh" pid)"
        "$ROOT/loadtest/peers/ejabberd.sh" stop >&2
        ;;
    *) echo "unknown target $t" >&2; continue ;;
    esac
    [ -f "$OUT/$t.failed" ] || DONE+=("$t")
done

# rate_of FILE: the run's delivered msgs/s from its JSON report (empty when there is none).
rate_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["msgs_per_s"])' "$1" 2>/dev/null; }
# The side-by-side chart, the targets that did not start, and the exit status.
finish() {
    local reports=()
    for t in "${DONE[@]}"; do [ -f "$OUT/$t.json" ] && reports+=("$OUT/$t.json"); done
    if [ "$CHARTS" = 1 ] && [ ${#reports[@]} -gt 0 ]; then
        "$LOAD" chart --chart "$OUT/compare.svg" "${reports[@]}" && echo "charts: $OUT/compare.svg and $OUT/TARGET.svg"
    fi
    for t in "${FAILED[@]}"; do printf '%-10s FAILED TO START: %s\n' "$t" "$(cat "$OUT/$t.failed")"; done
    [ ${#FAILED[@]} -eq 0 ] || exit 4
    exit 0
}

echo
echo "$SCENARIO, $USERS users, ${DURATION}s, server on CPU $SERVER_CPUS, generator on CPU $LOAD_CPUS"
# One row per target from its JSON report: the figures the muc or pep scenario adds.
fanout_row() {
    python3 - "$SCENARIO" "$1" "$2" "$3" <<'PY'
import json, sys
s, t, rc, path = sys.argv[1:]
try:
    r = json.load(open(path))
except (OSError, ValueError):
    print(f"{t:<10} {rc:<5} (no report)"); sys.exit()
x = r.get(s) or {}
v, l = x.get("verdict") or {}, r["delivery_latency_us"]
ms = lambda us: f"{us / 1000:.1f}ms"
head = f"{t:<10} {rc:<5} {r['msgs_per_s']:>15.0f} {x.get('sent_per_s', x.get('published_per_s', 0)):>9.0f} {ms(l['p50']):>9} {ms(l['p99']):>9} {ms(l['p999']):>9} {v.get('lost', '?'):>8} {v.get('duplicated', '?'):>6}"
if s == "muc":
    print(f"{head} {x.get('joined', '?'):>7}/{r['users']}")
else:
    print(f"{head} {x.get('reached', '?'):>7}/{x.get('contacts', '?')} {x.get('setup_s', 0):>7.1f}s")
PY
}
if [ "$SCENARIO" = muc ]; then
    mode="$MSG_RATE msg/s per occupant"; [ "$CLOSED" = 1 ] && mode="closed loop"
    echo "muc: $ROOMS rooms x $OCCUPANTS occupants, $mode; deliveries = occupant deliveries"
    printf '%-10s %-5s %15s %9s %9s %9s %9s %8s %6s %9s\n' target exit deliveries/s sent/s p50 p99 p99.9 lost dup joined
fi
if [ "$SCENARIO" = pep ]; then
    mode="closed loop, $WINDOW items in flight"; [ "$PUB_RATE" != 0 ] && mode="$PUB_RATE items/s"
    echo "pep: 1 publisher, $CONTACTS contacts (mutual subscription, caps +notify), $mode"
    printf '%-10s %-5s %15s %9s %9s %9s %9s %8s %6s %9s %8s\n' target exit notifications/s items/s p50 p99 p99.9 lost dup reached setup
fi
if [ "$SCENARIO" = muc ] || [ "$SCENARIO" = pep ]; then
    for t in "${DONE[@]}"; do fanout_row "$t" "$(cat "$OUT/$t.rc" 2>/dev/null || echo '?')" "$OUT/$t.json"; done
    # Ratios of deliveries/s between every pair of targets.
    for a in "${DONE[@]}"; do
        for b in "${DONE[@]}"; do
            [ "$a" = "$b" ] && continue
            ra=$(rate_of "$OUT/$a.json")
            rb=$(rate_of "$OUT/$b.json")
            [ -n "$ra" ] && [ -n "$rb" ] && awk -v a="$a" -v b="$b" -v x="$ra" -v y="$rb" -v s="$SCENARIO" \
                'BEGIN { if (y > 0 && x >= y) printf "%s / %s = %.2fx %s/s\n", a, b, x / y, (s == "pep" ? "notifications" : "occupant deliveries") }'
        done
    done
    for t in "${DONE[@]}"; do [ "$(cat "$OUT/$t.rc" 2>/dev/null)" = 0 ] || echo "$t: exit $(cat "$OUT/$t.rc" 2>/dev/null), see $OUT/$t.txt"; done
    finish
fi
printf '%-10s %-8s %s\n' target exit "$(grep -m1 '^what' "$OUT/${DONE[0]:-none}.txt" 2>/dev/null)"
for t in "${DONE[@]}"; do
    rc=$(cat "$OUT/$t.rc" 2>/dev/null || echo '?')
    grep -E '^(login|message) ' "$OUT/$t.txt" | while read -r line; do printf '%-10s %-8s %s\n' "$t" "$rc" "$line"; done
    grep -E '^server ' "$OUT/$t.txt" | sed "s/^/$t: /"
done
if [ -f "$OUT/relay.json" ]; then
    relay=$(rate_of "$OUT/relay.json")
    for t in "${DONE[@]}"; do
        [ "$t" = relay ] && continue
        r=$(rate_of "$OUT/$t.json")
        [ -n "$r" ] && awk -v t="$t" -v r="$r" -v b="$relay" 'BEGIN { if (b > 0) printf "%s reaches %.1f%% of the bare relay\n", t, 100 * r / b }'
    done
fi
finish
