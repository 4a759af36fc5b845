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

say "running the demo: 4 hosts in network namespaces with real meshd agents"
./target/release/mesh-harness demo
