#!/usr/bin/env bash
# Instructions per complete handshake (both sides), counted by callgrind:
# repeatable on shared cores where wall-clock time is not.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
cargo build -q --release -p meshd-proto --example handshake_cost
BIN=target/release/examples/handshake_cost
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-10s %18s\n' kind "instructions/handshake"
for kind in hybrid kem-free snow-ik; do
  a=$(count "$kind" "$N"); b=$(count "$kind" 0)
  printf '%-10s %18d\n' "$kind" $(( (a - b) / N ))
done
