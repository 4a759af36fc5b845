#!/usr/bin/env bash
# A bounded coverage-guided fuzzing run of every target (cargo-fuzz,
# libFuzzer), one after another on one core, each for its share of the
# time; the inputs that add coverage are merged into fuzz/corpus/<target>.
# Prints one line per target (executions, coverage, crashes) and a total.
#
#   scripts/fuzz-long.sh [MINUTES] [CPU]     # default 50 minutes on CPU 0
#
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
# Builds without a sanitizer (-s none): the fuzzed crates hold no unsafe
# code (the workspace denies it), so AddressSanitizer would find little a
# panic does not, at a sixth of the speed (session: 574 against 3,749
# executions a second here). A crash stops nothing: libFuzzer writes it
# to fuzz/artifacts/<target>/ and this script reports it and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

minutes=${1:-50}
cpu=${2:-0}
# Shares of the time: the deep targets (a completed handshake, a whole
# endpoint, a policy from the input) get the most.
declare -A share=(
    [session]=24 [endpoint]=16 [transport_sequence]=10 [policy_filter]=10
    [bundle]=6 [certificate]=6 [initiation]=6 [response]=6
    [packet_filter]=6 [reassembly]=4 [control]=3 [transport]=3
)
total_share=0
for s in "${share[@]}"; do total_share=$((total_share + s)); done

cargo +nightly fuzz build -s none >/dev/null
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
all=0
crashed=0
printf '%-20s %8s %14s %10s %8s\n' target seconds executions exec/s cov
for t in $(cargo +nightly fuzz list); do
    secs=$((minutes * 60 * ${share[$t]:-3} / total_share))
    mkdir -p "$scratch/$t" "artifacts/$t"
    log="$scratch/$t.log"
    # New inputs go to the scratch directory; the committed corpus seeds it.
    if ! taskset -c "$cpu" cargo +nightly fuzz run -s none "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        crashed=1
        echo "$t: CRASH, see fuzz/artifacts/$t/ and below" >&2
        tail -40 "$log" >&2
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    printf '%-20s %8s %14s %10s %8s\n' "$t" "$secs" "${runs:-0}" "${rate:-0}" "${cov:-0}"
    all=$((all + ${runs:-0}))
    # Keep only what adds coverage to the committed corpus.
    taskset -c "$cpu" cargo +nightly fuzz run -s none "$t" "corpus/$t" "$scratch/$t" -- \
        -merge=1 >"$scratch/$t.merge" 2>&1 || true
done
echo "total executions: $all"
exit "$crashed"
