#!/usr/bin/env bash
# Installs the Debian packages meshd's build, tests and benchmarks need, if
# any is missing. Idempotent and quick when everything is there. Needs root
# (apt-get) only when something must be installed.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config   # C toolchain for ring and libcrux
  iproute2 nftables iperf3     # namespaces, link impairment, bandwidth tests
  iputils-ping procps          # ping, ps in end-to-end tests
  wireguard-tools              # wg: configures boringtun, the reference peer (bench-dataplane.sh, mesh-harness check)
  util-linux                   # taskset: check and the benchmarks pin each host to its own CPU
  valgrind linux-perf          # instruction counts and profiles (scripts/handshake-cost.sh)
  python3                      # benchmark result tables
  systemd                      # systemd-analyze: the unit's sandbox rating (tests/tests/configs.rs)
)
# A command each package provides, to tell quickly whether it is installed.
CHECKS=(gcc pkg-config ip nft iperf3 ping ps wg taskset valgrind perf python3 systemd-analyze)

missing=0
for c in "${CHECKS[@]}"; do
  command -v "$c" >/dev/null 2>&1 || missing=1
done
[ "$missing" = 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "deps: missing tools and no apt-get; install: ${PACKAGES[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages; run as root (sudo bash scripts/deps.sh): ${PACKAGES[*]}" >&2
  exit 1
fi
echo "==> installing Debian packages: ${PACKAGES[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
