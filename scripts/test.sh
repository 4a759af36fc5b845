#!/usr/bin/env bash
# meshd: every test. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> cargo build --bins (the end-to-end tests run meshd, meshctl and mesh-harness)"
cargo build --locked --workspace --bins

echo "==> cargo test (unit, integration, CLI, namespaces, vectors, fuzz corpora; benches run once each)"
cargo test --locked --workspace --all-targets

echo "==> doc tests"
cargo test --locked --workspace --doc
