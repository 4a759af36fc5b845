#!/usr/bin/env bash
# Runs the proto micro-benchmarks RUNS times (default 3) pinned to one CPU and
# prints, per benchmark, the median of the runs' criterion median estimates
# with min and max. Used for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CPU=${CPU:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo bench -p meshd-proto --bench proto --no-run >/dev/null 2>&1
rm -rf target/criterion
for i in $(seq 1 "$RUNS"); do
  rm -rf target/criterion
  taskset -c "$CPU" cargo bench -p meshd-proto --bench proto -- --warm-up-time 2 --measurement-time 5 >/dev/null 2>&1
  mkdir -p "$OUT/$i"
  find target/criterion -path '*/new/estimates.json' | while read -r f; do
    name=$(echo "$f" | sed 's|target/criterion/||; s|/new/estimates.json||')
    mkdir -p "$OUT/$i/$(dirname "$name")"
    cp "$f" "$OUT/$i/$name.json"
  done
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
names = sorted({os.path.relpath(os.path.join(d, f), os.path.join(out, "1"))[:-5]
                for d, _, fs in os.walk(os.path.join(out, "1")) for f in fs})
print(f"{'benchmark':<45} {'median':>12} {'min':>12} {'max':>12}  per second (median)")
for n in names:
    v = [json.load(open(os.path.join(out, str(i), n + ".json")))["median"]["point_estimate"] for i in range(1, runs + 1)]
    med = statistics.median(v)
    rate = 1e9 / med
    extra = f"{rate:,.0f}/s"
    if "transport_1400" in n:
        extra = f"{1400 * rate / 1e9:.2f} GB/s"
    def fmt(ns):
        return f"{ns/1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"
    print(f"{n:<45} {fmt(med):>12} {fmt(min(v)):>12} {fmt(max(v)):>12}  {extra}")
PY
