#!/usr/bin/env bash
# Federation benchmark: 1:1 messages between users of two servers over s2s, for two pairs of
# servers in the same run, and the ratios between them.
#
#   petrel            petrel (a.example, 1 shard) <-> petrel (b.example, 1 shard)
#   prosody-ejabberd  Prosody (a.example) <-> ejabberd (b.example), Debian's packages
#
# Server A runs pinned to A_CPUS, server B to B_CPUS; petrel-load logs user k of A in to A and
# user k of B in to B (`--server-b`), and every message crosses the s2s link, replies included
# (see loadtest/README.md, "Two servers"). Both servers resolve each other through a DNS server
# run here (tests/interop/dns.py, dnslib: SRV `_xmpp-server._tcp` + A records on loopback).
# Certificates are self-signed on both sides of both pairs: the s2s streams use STARTTLS and
# authenticate with dialback (XEP-0220). PETREL_TRUST=ca gives the two petrels certificates of one
# test CA instead (openssl), which both trust (SASL EXTERNAL).
#
#   loadtest/s2s_compare.sh                                   # max, 200 users (100 per server)
#   ROUNDS=3 loadtest/s2s_compare.sh                          # three rounds, pairs alternating
#   SCENARIO=chat USERS=2000 INTERVAL_MS=1000 loadtest/s2s_compare.sh
#   PAIRS=prosody-ejabberd loadtest/s2s_compare.sh
#
# Environment (defaults):
#   PAIRS="petrel prosody-ejabberd" ROUNDS=1 SCENARIO=max (or chat) USERS=200 (sessions in all,
#   half on each server: accounts user1..user(USERS/2) on both) DURATION=10 WINDOW=16 GRACE=10
#   INTERVAL_MS=20000 PASSWORD=password MECH=PLAIN EXTRA="" (more petrel-load args)
#   DOMAIN_A=a.example DOMAIN_B=b.example (not .test: libunbound answers NXDOMAIN for it itself)
#   A_CPUS=0 B_CPUS=1 LOAD_CPUS=0,1 (one generator executor per listed CPU; on a 2-core machine
#   each core then runs one server and half the generator)
#   PETREL_TRUST=self-signed|ca  PETREL_EXTRA="" (lines appended to both generated petrel configs)
#   PETREL_S2S="" (lines in both petrels' [s2s] table, e.g. "max_queue = 20000"; empty keeps
#   petrel's defaults: `max` starts with USERS/2 x WINDOW messages towards the other server at
#   once, 8000 with USERS=1000, and the defaults, 10000 stanzas / 16 MiB per remote domain and
#   64 MiB per shard, hold it; past them petrel bounces <resource-constraint/>)
#   DNS_PYTHON=<repo>/target/interop-venv/bin/python (dnslib 0.9.26 is installed into that venv
#   when missing)
# Results: OUT=/tmp/petrel-s2s-compare/PAIR.ROUND.{txt,json,rc} (removed before each run, so a
# failed run never shows an older result), server logs under OUT/PAIR/.
# Exit status: 0 when every run measured with nothing lost, else 1.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
LOAD=${PETREL_LOAD:-$ROOT/target/release/petrel-load}
PETREL=${PETREL:-$ROOT/target/release/petrel}
PAIRS=${PAIRS:-petrel prosody-ejabberd}
ROUNDS=${ROUNDS:-1}
SCENARIO=${SCENARIO:-max}
USERS=${USERS:-200}
DURATION=${DURATION:-10}
WINDOW=${WINDOW:-16}
GRACE=${GRACE:-10}
INTERVAL_MS=${INTERVAL_MS:-20000}
PASSWORD=${PASSWORD:-password}
MECH=${MECH:-PLAIN}
EXTRA=${EXTRA:-}
DOMAIN_A=${DOMAIN_A:-a.example}
DOMAIN_B=${DOMAIN_B:-b.example}
A_CPUS=${A_CPUS:-0}
B_CPUS=${B_CPUS:-1}
LOAD_CPUS=${LOAD_CPUS:-0,1}
PETREL_TRUST=${PETREL_TRUST:-self-signed}
PETREL_EXTRA=${PETREL_EXTRA:-}
PETREL_S2S=${PETREL_S2S:-}
DNS_PYTHON=${DNS_PYTHON:-$ROOT/target/interop-venv/bin/python}
OUT=${OUT:-/tmp/petrel-s2s-compare}
ACCOUNTS=$((USERS / 2))
export PASSWORD PETREL_LOAD=$LOAD
mkdir -p "$OUT"

if [ $((USERS % 2)) != 0 ]; then echo "USERS must be even (user k on each server)" >&2; exit 3; fi
case $SCENARIO in max | chat) ;; *) echo "SCENARIO must be max or chat" >&2; exit 3 ;; esac
[ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release -p petrel-load) || exit 3

# The DNS server's Python: a venv with dnslib (the interop tests' venv when it is there).
dns_python() {
    "$DNS_PYTHON" -c 'import dnslib' 2>/dev/null && return 0
    if [ ! -x "$DNS_PYTHON" ]; then
        python3 -m venv "$(dirname "$(dirname "$DNS_PYTHON")")" || return 1
    fi
    "$DNS_PYTHON" -m pip install -q dnslib==0.9.26 && "$DNS_PYTHON" -c 'import dnslib'
}
dns_python || { echo "no Python with dnslib at $DNS_PYTHON (and installing it failed)" >&2; exit 3; }

# Things started for the current pair, stopped by stop_all (also on exit).
declare -a PIDS=() SERVER_PIDS=()
STOPS=()
stop_all() {
    local s p
    for s in "${STOPS[@]}"; do eval "$s" >/dev/null 2>&1; done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=(); STOPS=()
}
trap stop_all EXIT

# start_dns DIR A_S2S_PORT B_S2S_PORT [A_TARGET]: serve both domains' SRV and A records (the SRV
# target of A's domain is A_TARGET, default the domain itself); sets DNS_PORT.
start_dns() {
    local dir=$1 a=$2 b=$3 a_target=${4:-$DOMAIN_A.}
    DNS_PORT=$(free_port)
    "$DNS_PYTHON" "$ROOT/tests/interop/dns.py" --port "$DNS_PORT" \
        --record "_xmpp-server._tcp.$DOMAIN_A. 60 IN SRV 0 5 $a $a_target" \
        --record "$DOMAIN_A. 60 IN A 127.0.0.1" \
        --record "127.0.0.1. 60 IN A 127.0.0.1" \
        --record "_xmpp-server._tcp.$DOMAIN_B. 60 IN SRV 0 5 $b $DOMAIN_B." \
        --record "$DOMAIN_B. 60 IN A 127.0.0.1" >"$dir/dns.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do grep -q READY "$dir/dns.out" && return 0; sleep 0.1; done
    echo "the DNS server did not start: $(tail -3 "$dir/dns.out")" >&2
    return 1
}

# petrel_s2s_config DIR DOMAIN C2S S2S: a benchmark petrel serving DOMAIN with federation on.
petrel_s2s_config() {
    local dir=$1 domain=$2 c2s=$3 s2s=$4 tls=''
    mkdir -p "$dir"
    if [ "$PETREL_TRUST" = ca ]; then
        tls="cafile = \"$OUT/ca/ca.crt\"
certfile = \"$dir/$domain.crt\"
keyfile = \"$dir/$domain.key\""
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$domain" -keyout "$dir/$domain.key" \
            -out "$dir/$domain.csr" 2>/dev/null &&
            printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$domain" >"$dir/ext" &&
            openssl x509 -req -in "$dir/$domain.csr" -CA "$OUT/ca/ca.crt" -CAkey "$OUT/ca/ca.key" \
                -CAcreateserial -days 30 -extfile "$dir/ext" -out "$dir/$domain.crt" 2>/dev/null || return 1
    fi
    cat >"$dir/petrel.toml" <<CONF
# Written by loadtest/s2s_compare.sh: a benchmark instance, not a production config.
[general]
hosts = ["$domain"]
data_dir = "$dir/data"
loglevel = "warn"
[auth]
scram_iterations = 4096
[[listen.c2s]]
port = $c2s
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true
idle_timeout = 3600
[[listen.s2s]]
port = $s2s
ip_address = "127.0.0.1"
[s2s]
nameservers = ["127.0.0.1:$DNS_PORT"]
connect_timeout = 10
$PETREL_S2S
$tls
[modules.ping]
$PETREL_EXTRA
CONF
}

# start_petrel NAME DOMAIN CPUS C2S S2S: configure, add the accounts, start; fails loudly.
start_petrel() {
    local name=$1 domain=$2 cpus=$3 c2s=$4 s2s=$5 dir=$PAIR_DIR/$1
    petrel_s2s_config "$dir" "$domain" "$c2s" "$s2s" || return 1
    "$PETREL" user add-range --count "$ACCOUNTS" "$domain" "$PASSWORD" --config "$dir/petrel.toml" \
        >"$dir/users.out" 2>&1 || { echo "$name: adding accounts failed: $(tail -3 "$dir/users.out")" >&2; return 1; }
    taskset -c "$cpus" "$PETREL" serve --config "$dir/petrel.toml" --shards 1 >"$dir/petrel.log" 2>&1 &
    PIDS+=($!)
    SERVER_PIDS+=($!)
    if ! wait_port "$c2s" || ! wait_port "$s2s"; then
        echo "$name ($domain) did not start: $(tail -5 "$dir/petrel.log")" >&2
        return 1
    fi
}

# start_pair PAIR: DNS and both servers with their accounts; non-zero (and a message) on failure.
start_pair() {
    local a_c2s a_s2s b_c2s b_s2s
    a_c2s=$(free_port); a_s2s=$(free_port); b_c2s=$(free_port); b_s2s=$(free_port)
    # ejabberd 23.01 looks SRV records up through its inetrc's nameserver but the target's address
    # through the OS resolver (net:getaddrinfo), which knows nothing of the test domains: Prosody's
    # SRV record names the numeric target 127.0.0.1 (resolved without DNS) for it.
    local target=''
    [ "$1" = prosody-ejabberd ] && target=127.0.0.1.
    start_dns "$PAIR_DIR" "$a_s2s" "$b_s2s" $target || return 1
    A_PORT=$a_c2s; B_PORT=$b_c2s
    case $1 in
    petrel)
        [ -x "$PETREL" ] || { echo "no petrel binary at $PETREL (cargo build --release -p petrel)" >&2; return 1; }
        if [ "$PETREL_TRUST" = ca ] && [ ! -f "$OUT/ca/ca.crt" ]; then
            mkdir -p "$OUT/ca"
            openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=petrel-load federation test CA" \
                -keyout "$OUT/ca/ca.key" -out "$OUT/ca/ca.crt" 2>/dev/null || return 1
        fi
        SERVER_PIDS=()
        start_petrel petrel-a "$DOMAIN_A" "$A_CPUS" "$a_c2s" "$a_s2s" &&
            start_petrel petrel-b "$DOMAIN_B" "$B_CPUS" "$b_c2s" "$b_s2s"
        ;;
    prosody-ejabberd)
        local env_a=(PEER_DIR="$PAIR_DIR/prosody" PORT="$a_c2s" S2S_PORT="$a_s2s" DNS_PORT="$DNS_PORT"
            DOMAIN="$DOMAIN_A" PROSODY_CPUS="$A_CPUS")
        local env_b=(PEER_DIR="$PAIR_DIR/ejabberd" PORT="$b_c2s" S2S_PORT="$b_s2s" DNS_PORT="$DNS_PORT"
            DOMAIN="$DOMAIN_B" EJABBERD_CPUS="$B_CPUS")
        "$ROOT/loadtest/peers/prosody.sh" install >/dev/null && "$ROOT/loadtest/peers/ejabberd.sh" install >/dev/null ||
            return 1
        STOPS+=("env ${env_a[*]} $ROOT/loadtest/peers/prosody.sh stop")
        env "${env_a[@]}" "$ROOT/loadtest/peers/prosody.sh" start >&2 || return 1
        env "${env_a[@]}" "$ROOT/loadtest/peers/prosody.sh" register "$ACCOUNTS" >/dev/null || return 1
        STOPS+=("env ${env_b[*]} $ROOT/loadtest/peers/ejabberd.sh stop")
        env "${env_b[@]}" "$ROOT/loadtest/peers/ejabberd.sh" start >&2 || return 1
        env "${env_b[@]}" "$ROOT/loadtest/peers/ejabberd.sh" register "$ACCOUNTS" >"$PAIR_DIR/register.out" 2>&1 ||
            { echo "ejabberd: registering $ACCOUNTS accounts failed: $(tail -5 "$PAIR_DIR/register.out")" >&2; return 1; }
        SERVER_PIDS=("$(env "${env_a[@]}" "$ROOT/loadtest/peers/prosody.sh" pid)"
            "$(env "${env_b[@]}" "$ROOT/loadtest/peers/ejabberd.sh" pid)")
        ;;
    *) echo "unknown pair $1" >&2; return 1 ;;
    esac
}

# run_pair PAIR ROUND: one measured run, its report in OUT/PAIR.ROUND.*.
run_pair() {
    local pair=$1 round=$2 base=$OUT/$1.$2
    rm -f "$base.txt" "$base.json" "$base.rc"
    PAIR_DIR=$OUT/$pair
    rm -rf "$PAIR_DIR"; mkdir -p "$PAIR_DIR"
    if ! start_pair "$pair"; then
        echo "!!! $pair: a server failed to start (logs under $PAIR_DIR); nothing measured !!!" >&2
        echo start-failed >"$base.rc"
        stop_all
        return
    fi
    # shellcheck disable=SC2086
    "$LOAD" "$SCENARIO" --server "127.0.0.1:$A_PORT" --domain "$DOMAIN_A" \
        --server-b "127.0.0.1:$B_PORT" --domain-b "$DOMAIN_B" --users "$USERS" \
        --password "$PASSWORD" --duration "$DURATION" --window "$WINDOW" --interval-ms "$INTERVAL_MS" \
        --cpus "$LOAD_CPUS" --mech "$MECH" --grace "$GRACE" --quiet --json "$base.json" \
        --server-pid "${SERVER_PIDS[0]}" --server-b-pid "${SERVER_PIDS[1]}" $EXTRA \
        >"$base.txt" 2>&1
    local rc=$?
    echo "$rc" >"$base.rc"
    if grep -q 'FEDERATION FAILED' "$base.txt"; then
        echo "!!! $pair: federation failed (no warm-up message crossed both ways); see $base.txt and $PAIR_DIR !!!" >&2
    elif [ "$rc" != 0 ]; then
        echo "!!! $pair round $round: petrel-load exit $rc; see $base.txt !!!" >&2
    fi
    stop_all
}

for round in $(seq "$ROUNDS"); do
    for pair in $PAIRS; do
        echo "== round $round: $pair" >&2
        run_pair "$pair" "$round"
    done
done

echo
echo "$SCENARIO across s2s: $USERS users ($ACCOUNTS on each server), ${DURATION}s, server A ($DOMAIN_A) on CPU $A_CPUS, server B ($DOMAIN_B) on CPU $B_CPUS, generator on CPUs $LOAD_CPUS"
python3 - "$OUT" "$ROUNDS" $PAIRS <<'PY'
import json, statistics, sys
out, rounds, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ok = True
res = {}
print(f"{'pair':<18} {'round':>5} {'exit':>12} {'msg/s':>10} {'p50':>9} {'p99':>9} {'lost':>6} {'warm-up':>8}  CPU (cores) A / B / generator  waiting for a CPU (cores) A / B / generator")
for r in range(1, rounds + 1):
    for p in pairs:
        base = f"{out}/{p}.{r}"
        try:
            rc = open(base + ".rc").read().strip()
        except OSError:
            rc = "?"
        try:
            j = json.load(open(base + ".json"))
        except (OSError, ValueError):
            j = None
        fed = (j or {}).get("federation") or {}
        if rc != "0" or j is None or not fed.get("ok"):
            ok = False
            why = "server start failed" if rc == "start-failed" else ("federation failed" if fed and not fed.get("ok") else "see " + base + ".txt")
            print(f"{p:<18} {r:>5} {rc:>12}  no figures: {why}")
            continue
        l = j["delivery_latency_us"]
        res.setdefault(p, []).append((j["msgs_per_s"], l["p50"] / 1000, l["p99"] / 1000, r))
        cpu = " / ".join("?" if j.get(k) is None else f"{j[k]:.2f}" for k in ("server_cpu_cores", "server_b_cpu_cores", "load_cpu_cores"))
        wait = " / ".join("?" if j.get(k) is None else f"{j[k]:.2f}" for k in ("server_wait_cores", "server_b_wait_cores", "load_wait_cores"))
        print(f"{p:<18} {r:>5} {rc:>12} {j['msgs_per_s']:>10.0f} {l['p50']/1000:>7.1f}ms {l['p99']/1000:>7.1f}ms {j['lost']:>6} {fed['warmup_s']:>7.2f}s  {cpu}  {wait}")
for p, xs in res.items():
    if len(xs) > 1:
        rates = [x[0] for x in xs]
        print(f"{p}: median {statistics.median(rates):.0f} msg/s (min {min(rates):.0f}, max {max(rates):.0f}) over {len(xs)} rounds; "
              f"p50 median {statistics.median(x[1] for x in xs):.1f} ms, p99 median {statistics.median(x[2] for x in xs):.1f} ms")
# Ratios within each round (both pairs measured in the same round).
if len(pairs) == 2:
    a, b = pairs
    for r in range(1, rounds + 1):
        xa = [x for x in res.get(a, []) if x[3] == r]
        xb = [x for x in res.get(b, []) if x[3] == r]
        if xa and xb and xb[0][0] > 0 and xa[0][1] > 0 and xa[0][2] > 0:
            print(f"round {r}: {a} / {b}: {xa[0][0] / xb[0][0]:.2f}x msg/s; p50 {b} / {a} = {xb[0][1] / xa[0][1]:.1f}x, p99 {b} / {a} = {xb[0][2] / xa[0][2]:.1f}x")
sys.exit(0 if ok else 1)
PY
