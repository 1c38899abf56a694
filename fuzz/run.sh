#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer coverage instrumentation (stable rustc flags only) and runs
# each for SECONDS on its seed corpus. Fails on the first crash, leak or timeout; prints the
# executions of each target.
#
#   fuzz/run.sh SECONDS [TARGET...]      (default: every target)
#
# Environment: FUZZ_PROFILE (cargo profile, default release; CI uses smoke, quicker to build), FUZZ_JOBS (parallel jobs per target, default 1), FUZZ_ARTIFACTS (where crashing
# inputs go, default fuzz/artifacts), FUZZ_KEEP_CORPUS=1 keeps new inputs in fuzz/corpus/ instead of
# a scratch copy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
secs=$1
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(scanner jid sasl config c2s_preauth c2s_bound web_ws web_bosh)
fi

# What `cargo fuzz build --sanitizer none` passes, minus its nightly-only flags: the sancov pass
# with inline 8-bit counters, a PC table and comparison tracing is what libFuzzer's coverage needs.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (they are not linked with
# libFuzzer), as cargo fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
profile=${FUZZ_PROFILE:-release}
cargo build --profile "$profile" --locked --target "$host" "${bins[@]}"

artifacts=${FUZZ_ARTIFACTS:-$PWD/artifacts}
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
    if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
        corpus=$PWD/corpus/$t
    else
        # New inputs go to a scratch copy: the seed corpus in the repository stays small and reviewed.
        corpus=$scratch/$t
        cp -r "corpus/$t" "$corpus"
    fi
    log=$scratch/$t.log
    rc=0
    "$CARGO_TARGET_DIR/$host/$profile/$t" "$corpus" \
        -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/$t-" -print_final_stats=1 \
        ${FUZZ_JOBS:+-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS} >"$log" 2>&1 || rc=$?
    execs=$(awk '/stat::number_of_executed_units:/ {n += $2} END {print n + 0}' "$log")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    if [ "$rc" = 0 ]; then
        echo "fuzz: $t: $execs executions in ${secs} s, ${cov:-no coverage line}, 0 crashes"
    else
        echo "fuzz: $t: FAILED (exit $rc) after $execs executions; input in $artifacts/"
        tail -n 40 "$log"
        status=1
    fi
done
exit "$status"
