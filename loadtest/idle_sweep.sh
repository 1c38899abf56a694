#!/usr/bin/env bash
# Memory per idle session (docs/BENCHMARKS.md, `idle`): petrel with `petrel.toml`'s whole module set
# holds N authenticated idle sessions (initial presence sent), for several N, one or more builds
# alternating; prints the RSS growth per session at each N and, per build and transport, the
# least-squares slope of the total growth over N (the cost of one more session, without the fixed
# cost a single N spreads over its sessions) and the fixed part.
#
#   loadtest/idle_sweep.sh                                # this tree's build, plaintext and STARTTLS
#   BUILDS="/tmp/old /tmp/new" loadtest/idle_sweep.sh     # dirs holding petrel and petrel-load
#
# Environment: NS="2500 5000 10000 15000" ROUNDS=2 MODES="plain tls" SERVER_CPU=0 LOAD_CPU=1 HOLD=10
#   MECH=PLAIN (or SCRAM-SHA-256, what clients use: the client does the hashing, not the store
#   threads) BUILDS (default: target/release) OUT=/tmp/petrel-idle-sweep CONFIG=petrel.toml (the module set;
#   give an older build its own tree's file). N + a few hundred must fit the
#   open-file limit (ulimit -n).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILDS=${BUILDS:-$ROOT/target/release}
NS=${NS:-2500 5000 10000 15000}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-plain tls}
# Seconds the sessions stay open before the RSS is read: what quiet sessions give back counts.
HOLD=${HOLD:-10}
MECH=${MECH:-PLAIN}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-/tmp/petrel-idle-sweep}
# shellcheck source=lib.sh
. "$ROOT/loadtest/lib.sh"
rm -rf "$OUT"
mkdir -p "$OUT"
port=$(free_port)
# petrel.toml as shipped, with the benchmark's data dir, ports, log level, iterations and timeout.
sed -e "s#^data_dir = .*#data_dir = \"$OUT/data\"#" -e 's/^loglevel = .*/loglevel = "warn"/' \
    -e 's/^scram_iterations = .*/scram_iterations = 4096/' -e 's/^idle_timeout = 600 /idle_timeout = 3600 /' \
    -e "s/^port = 5222/port = $port/" -e "s/^port = 5280/port = $(free_port)/" \
    -e "s/^port = 5281/port = $(free_port)/" "${CONFIG:-$ROOT/petrel.toml}" > "$OUT/petrel.toml"
results=$OUT/results.txt
: > "$results"
for _ in $(seq "$ROUNDS"); do
    for b in $BUILDS; do
        for mode in $MODES; do
            extra=()
            [ "$mode" = tls ] && extra=(--starttls --insecure)
            for n in $NS; do
                rm -rf "$OUT/data"
                "$b/petrel" user add-range --count "$n" localhost password --config "$OUT/petrel.toml" >/dev/null 2>&1
                serve_pinned "$b/petrel" "$SERVER_CPU" 1 "$OUT/petrel.toml" "$OUT/serve.log" "$port"
                per=$(taskset -c "$LOAD_CPU" "$b/petrel-load" idle --server "127.0.0.1:$port" --domain localhost \
                    --users "$n" --password password --duration "$HOLD" --cpus 1 --mech "$MECH" --scram-cache "$OUT/scram.cache" --server-pid "$pid" \
                    "${extra[@]}" 2>&1 | sed -n 's/^server RSS per session: \([0-9]*\) bytes.*/\1/p')
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                echo "$b $mode $n ${per:-?}" | tee -a "$results"
            done
        done
    done
done
echo
echo "build mode: bytes per added session (slope), fixed MB; per N: bytes per session in each round"
awk '$4 ~ /^[0-9]+$/ {
        k = $1 " " $2; n[k]++; x = $3; y = $3 * $4
        sx[k] += x; sy[k] += y; sxx[k] += x * x; sxy[k] += x * y
        per[k, x] = (per[k, x] == "" ? "" : per[k, x] "/") $4
        if (!((k, x) in seen)) { seen[k, x] = 1; xs[k] = xs[k] " " x }
    }
    END {
        for (k in n) {
            d = n[k] * sxx[k] - sx[k] * sx[k]
            if (d == 0) continue
            slope = (n[k] * sxy[k] - sx[k] * sy[k]) / d
            fixed = (sy[k] - slope * sx[k]) / n[k]
            line = sprintf("%s: %.0f B/session, fixed %.1f MB;", k, slope, fixed / 1e6)
            m = split(xs[k], v, " ")
            for (i = 1; i <= m; i++) line = line sprintf(" %s: %s", v[i], per[k, v[i]])
            print line
        }
    }' "$results"
