#!/usr/bin/env bash
# Line coverage of the committed fuzz corpora, per source file: every
# target's corpus run once through a coverage build (`cargo fuzz coverage`),
# the profiles merged, and one report over all targets' binaries, so a file
# counts as covered by whichever target reaches it.
#
#   scripts/fuzz-coverage.sh [OUT]     # default fuzz/coverage/report.txt
#
# Needs the nightly toolchain, its llvm-tools component and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
out=${1:-coverage/report.txt}

bin_dir() {
    local host
    host=$(rustc +nightly -vV | sed -n 's/^host: //p')
    echo "target/$host/coverage/$host/release"
}
sysroot=$(rustc +nightly --print sysroot)
tools=$(dirname "$(find "$sysroot" -name llvm-profdata -type f | head -1)")
[ -x "$tools/llvm-profdata" ] || {
    echo "error: llvm-profdata not found under $sysroot; run: rustup component add llvm-tools --toolchain nightly" >&2
    exit 1
}

mkdir -p coverage
objects=()
profiles=()
for t in $(cargo +nightly fuzz list); do
    if ! cargo +nightly fuzz coverage "$t" "corpus/$t" >"coverage/$t.log" 2>&1; then
        echo "error: cargo fuzz coverage $t failed (fuzz/coverage/$t.log):" >&2
        tail -20 "coverage/$t.log" >&2
        exit 1
    fi
    objects+=(-object "$(bin_dir)/$t")
    profiles+=("coverage/$t/coverage.profdata")
done
"$tools/llvm-profdata" merge -sparse "${profiles[@]}" -o coverage/all.profdata
mkdir -p "$(dirname "$out")"
# The project's own sources only (not the standard library or crates.io).
"$tools/llvm-cov" report "${objects[@]}" -instr-profile=coverage/all.profdata \
    -ignore-filename-regex='(/rustc/|\.cargo/registry|/fuzz/fuzz_targets/)' >"$out"
echo "wrote $out"
