#!/usr/bin/env bash
# meshd setup: installs what the project needs on a Debian machine (as root),
# builds everything, and runs the main job (the namespace demo).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

say "checking Debian packages"
bash scripts/deps.sh

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found. Install Rust (stable, 1.85 or newer) with rustup: https://rustup.rs" >&2
  exit 1
fi

say "fetching Rust dependencies"
cargo fetch --locked

say "building (release)"
cargo build --release --locked --workspace

# The reference peer scripts/bench-dataplane.sh measures beside meshd.
if ! command -v boringtun-cli >/dev/null && [ ! -x "$HOME/.cargo/bin/boringtun-cli" ]; then
  say "installing boringtun-cli (a userspace WireGuard, the benchmarks' reference peer)"
  cargo install --locked boringtun-cli || echo "warning: boringtun-cli did not install; the benchmarks will measure meshd without it" >&2
fi

# Coverage-guided fuzzing (scripts/fuzz-long.sh, scripts/fuzz-coverage.sh)
# needs a nightly toolchain; where one is installed, add cargo-fuzz and the
# LLVM tools that read coverage. Nothing else depends on them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  if ! command -v cargo-fuzz >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
    say "installing cargo-fuzz (coverage-guided fuzzing on nightly)"
    cargo install --locked cargo-fuzz || echo "warning: cargo-fuzz did not install; cargo test still replays the fuzz corpora" >&2
  fi
  rustup component add llvm-tools --toolchain nightly >/dev/null 2>&1 ||
    echo "warning: llvm-tools for nightly did not install; scripts/fuzz-coverage.sh needs it" >&2
fi

say "running the demo: 4 hosts in network namespaces with real meshd agents"
./target/release/mesh-harness demo
