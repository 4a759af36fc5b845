#!/usr/bin/env bash
# meshd: every test. This is what CI runs (.ci/run). Needs root: the
# end-to-end tests run real meshd agents in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> cargo build --bins (the end-to-end tests run meshd, meshctl and mesh-harness)"
cargo build --locked --workspace --bins

echo "==> cargo build --release --bins (the flood tests measure the release build)"
cargo build --locked --release --workspace --bins

# Namespace tests skip themselves (one line on stderr) when they cannot
# build namespaces; here that is a failure: CI runs as root and runs them all.
export MESHD_TEST_REQUIRE_NETNS=1

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

echo "==> doc tests"
cargo test --locked --workspace --doc 2>&1 | tee -a "$LOG"

echo "==> cargo test (unit, integration, CLI, namespaces, vectors, fuzz corpora; benches run once each)"
cargo test --locked --workspace --all-targets 2>&1 | tee -a "$LOG"

# One closing line for the whole run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^skipped / { s++ }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s; exit (s > 0) }' "$LOG"
