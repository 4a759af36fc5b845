#!/usr/bin/env bash
# meshd setup: installs what the project needs on a Debian machine (as root),
# builds everything, and runs the main job (the handshake demo).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

DEBIAN_PACKAGES=(
  build-essential pkg-config   # C toolchain for ring and libcrux
  iproute2 nftables iperf3     # namespaces, link impairment, bandwidth tests
  iputils-ping procps          # ping, ps/pkill in end-to-end tests
  valgrind linux-perf          # instruction counts and profiles (scripts/handshake-cost.sh)
)

if command -v apt-get >/dev/null; then
  say "installing Debian packages: ${DEBIAN_PACKAGES[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup needs root for apt-get; re-run as root (sudo bash scripts/setup.sh)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null
else
  echo "warning: no apt-get; install these yourself: ${DEBIAN_PACKAGES[*]}" >&2
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found. Install Rust (stable, 1.85 or newer) with rustup: https://rustup.rs" >&2
  exit 1
fi

say "fetching Rust dependencies"
cargo fetch --locked

say "building (release)"
cargo build --release --locked --workspace

say "running the handshake demo"
./target/release/mesh-harness handshake-demo
