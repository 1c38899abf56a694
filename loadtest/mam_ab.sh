#!/usr/bin/env bash
# `max` against petrel with the message archive off and on, alternating, in one run: the ratio of
# archive-on to archive-off throughput (docs/BENCHMARKS.md, "Archive").
#
#   loadtest/mam_ab.sh                    # SQLite, 3 rounds of 10 s each way
#   BACKEND=postgres loadtest/mam_ab.sh   # a throwaway PostgreSQL cluster (.ci/pg.sh; needs root)
#
# Environment: ROUNDS=3 DURATION=10 USERS=1000 SERVER_CPUS=0 LOAD_CPUS=1 (as compare.sh), PORT=35222
# (the c2s port: another one when someone else benchmarks on the same machine)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
BACKEND=${BACKEND:-sqlite}
OUT=${OUT:-/tmp/petrel-mam-ab}
export PETREL_PORT=${PORT:-35222}
export USERS=${USERS:-1000} DURATION=${DURATION:-10}
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
port = $PETREL_PORT
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
declare -a off=() on=()
rate() { awk '$1 == "message" { print $2 }' "$1"; }
for r in $(seq "$ROUNDS"); do
    for mode in off on; do
        base=$OUT
        OUT="$base/$mode-$r" PETREL_CONFIG="$base/$mode.toml" TARGETS=petrel \
            bash "$ROOT/loadtest/compare.sh" > "$base/$mode-$r.log" 2>&1 || true
        v=$(rate "$base/$mode-$r/petrel.txt")
        echo "round $r archive $mode: ${v:-?} msg/s" >&2
        if [ "$mode" = off ]; then off+=("${v:-0}"); else on+=("${v:-0}"); fi
    done
done
sum() { local s=0; for x in "$@"; do s=$((s + x)); done; echo "$s"; }
so=$(sum "${off[@]}"); sn=$(sum "${on[@]}")
echo "archive off: ${off[*]} msg/s; on: ${on[*]} msg/s"
awk -v a="$sn" -v b="$so" 'BEGIN { if (b > 0) printf "on/off = %.2f (mean of each)\n", a / b }'
