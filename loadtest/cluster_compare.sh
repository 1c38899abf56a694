#!/usr/bin/env bash
# Cluster benchmark: 1:1 messages between users on the same node and between users on two nodes
# of a petrel cluster over NATS, in the same run, and the ratio.
#
#   same   user k of a.example and user k of b.example both on node n1
#   cross  user k of a.example on n1, user k of b.example on n2: every message crosses NATS
#
# Both nodes (1 shard each, n1 on CPU N1_CPUS, n2 on N2_CPUS) and Debian's nats-server run during
# both modes; both nodes serve both domains, so nothing uses s2s. petrel-load's two-server mode
# (`--server-b`) logs user k of a.example in to --server and user k of b.example in to --server-b.
#
#   loadtest/cluster_compare.sh                         # max, 200 users, 10 s, both modes
#   ROUNDS=3 SCENARIO=chat USERS=2000 INTERVAL_MS=1000 loadtest/cluster_compare.sh
#
# Environment (defaults): MODES="same cross" ROUNDS=1 SCENARIO=max USERS=200 DURATION=10 WINDOW=16
# GRACE=10 INTERVAL_MS=20000 N1_CPUS=0 N2_CPUS=1 LOAD_CPUS=0,1 OUT=/tmp/petrel-cluster-compare
# Results: OUT/MODE.ROUND.{txt,json,rc}; logs under OUT/n1, OUT/n2, OUT/nats.log.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
PETREL=${PETREL:-$ROOT/target/release/petrel}
MODES=${MODES:-same cross}
ROUNDS=${ROUNDS:-1}
SCENARIO=${SCENARIO:-max}
USERS=${USERS:-200}
DURATION=${DURATION:-10}
WINDOW=${WINDOW:-16}
GRACE=${GRACE:-10}
INTERVAL_MS=${INTERVAL_MS:-20000}
N1_CPUS=${N1_CPUS:-0}
N2_CPUS=${N2_CPUS:-1}
LOAD_CPUS=${LOAD_CPUS:-0,1}
OUT=${OUT:-/tmp/petrel-cluster-compare}
PASSWORD=password
ACCOUNTS=$((USERS / 2))
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS" ] || { echo "no nats-server (apt-get install nats-server)" >&2; exit 3; }
[ -x "$PETREL" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release -p petrel -p petrel-load" >&2; exit 3; }
if [ $((USERS % 2)) != 0 ]; then echo "USERS must be even" >&2; exit 3; fi
rm -rf "$OUT"; mkdir -p "$OUT"

declare -a PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; PIDS=(); }
trap stop_all EXIT

NATS_PORT=$(free_port)
"$NATS" -a 127.0.0.1 -p "$NATS_PORT" >"$OUT/nats.log" 2>&1 &
PIDS+=($!)
NATS_PID=$!
wait_port "$NATS_PORT" || { echo "nats-server did not start" >&2; exit 1; }

# start_node NAME CPUS: configure, add the accounts on both domains, start; sets PORT_NAME, PID_NAME.
start_node() {
    local name=$1 cpus=$2 dir=$OUT/$1 port
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/petrel.toml" <<CONF
# Written by loadtest/cluster_compare.sh: a benchmark node, not a production config.
[general]
hosts = ["a.example", "b.example"]
data_dir = "$dir/data"
loglevel = "warn"
[auth]
scram_iterations = 4096
[[listen.c2s]]
port = $port
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true
idle_timeout = 3600
[modules.ping]
[cluster]
node = "$name"
nats = ["nats://127.0.0.1:$NATS_PORT"]
CONF
    for d in a.example b.example; do
        "$PETREL" user add-range --count "$ACCOUNTS" "$d" "$PASSWORD" --config "$dir/petrel.toml" >>"$dir/users.out" 2>&1 ||
            { echo "$name: adding accounts failed" >&2; return 1; }
    done
    taskset -c "$cpus" "$PETREL" serve --config "$dir/petrel.toml" --shards 1 >"$dir/petrel.log" 2>&1 &
    PIDS+=($!)
    eval "PORT_$name=$port PID_$name=$!"
    wait_port "$port" || { echo "$name did not start: $(tail -5 "$dir/petrel.log")" >&2; return 1; }
}
start_node n1 "$N1_CPUS" && start_node n2 "$N2_CPUS" || exit 1
sleep 2 # both nodes see each other (heartbeats every 500 ms)

for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        base=$OUT/$mode.$round
        if [ "$mode" = same ]; then b_port=$PORT_n1; b_pid=$PID_n1; else b_port=$PORT_n2; b_pid=$PID_n2; fi
        echo "== round $round: $mode (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        # shellcheck disable=SC2086,SC2154
        "$LOAD" "$SCENARIO" --server "127.0.0.1:$PORT_n1" --domain a.example \
            --server-b "127.0.0.1:$b_port" --domain-b b.example --users "$USERS" \
            --password "$PASSWORD" --duration "$DURATION" --window "$WINDOW" --interval-ms "$INTERVAL_MS" \
            --cpus "$LOAD_CPUS" --mech PLAIN --grace "$GRACE" --quiet --json "$base.json" \
            --server-pid "$PID_n1" $([ "$mode" = cross ] && echo --server-b-pid "$b_pid") \
            >"$base.txt" 2>&1
        echo $? >"$base.rc"
        echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$base.txt"
    done
done
NATS_CPU=$(awk '{print ($14+$15)/100}' "/proc/$NATS_PID/stat")

echo
echo "$SCENARIO: $USERS users, ${DURATION}s; n1 on CPU $N1_CPUS, n2 on CPU $N2_CPUS, generator on CPUs $LOAD_CPUS; nats-server used ${NATS_CPU}s of CPU over the whole script"
python3 - "$OUT" "$ROUNDS" $MODES <<'PY'
import json, sys
out, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ok = True
res = {}
print(f"{'mode':<6} {'round':>5} {'exit':>5} {'msg/s':>9} {'p50':>9} {'p99':>9} {'lost':>6}  server CPU cores (n1 + n2)  msg/s per server core")
for r in range(1, rounds + 1):
    for m in modes:
        base = f"{out}/{m}.{r}"
        rc = open(base + ".rc").read().strip()
        try:
            j = json.load(open(base + ".json"))
        except (OSError, ValueError):
            print(f"{m:<6} {r:>5} {rc:>5}  no figures: see {base}.txt"); ok = False; continue
        l = j["delivery_latency_us"]
        cores = (j.get("server_cpu_cores") or 0) + (j.get("server_b_cpu_cores") or 0)
        per = j["msgs_per_s"] / cores if cores else float("nan")
        res[(m, r)] = (j["msgs_per_s"], per, l["p99"] / 1000)
        ok = ok and rc == "0"
        print(f"{m:<6} {r:>5} {rc:>5} {j['msgs_per_s']:>9.0f} {l['p50']/1000:>7.2f}ms {l['p99']/1000:>7.2f}ms {j['lost']:>6}  {cores:>10.2f}  {per:>10.0f}")
for r in range(1, rounds + 1):
    s, c = res.get(("same", r)), res.get(("cross", r))
    if s and c:
        print(f"round {r}: cross / same = {c[0] / s[0]:.2f}x msg/s, {c[1] / s[1]:.2f}x msg/s per server core; p99 {c[2]:.2f} ms vs {s[2]:.2f} ms")
sys.exit(0 if ok else 1)
PY
