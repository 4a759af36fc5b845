#!/usr/bin/env bash
# Data-plane benchmark: two hosts in network namespaces joined by a veth,
# each pinned to its own CPU with everything it runs (meshd, iperf3, the
# ping tools; PIN=0 pins nothing, QUEUES="1 2" measures meshd with each
# tun.queues value). Measures, over the raw veth and through meshd in the same run:
# TCP throughput (iperf3, 1 and 4 streams), closed-loop UDP ping-pong and
# ICMP ping round trips (p50/p99), and meshd CPU seconds per GB carried.
# RUNS runs (default 3); prints median [min-max] and the meshd/raw ratio.
# BEFORE=DIR also measures the meshd binary in DIR (another build, e.g. the
# commit before a change: git worktree add /tmp/before REV && cargo build
# --release there) in every run, beside this tree's, as "meshd-before".
# Bounded: every tool has a duration or a count; namespaces are removed on
# exit, also on Ctrl-C. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-10}
PP=${PP:-10000}
P=mshbench
[ "$(id -u)" = 0 ] || { echo "bench-dataplane: needs root (network namespaces)" >&2; exit 1; }
bash scripts/deps.sh
cargo build -q --release -p meshd -p meshctl -p mesh-harness
BIN=$PWD/target/release
DIR=$(mktemp -d)
cleanup() {
  for ns in $P-a $P-b; do
    for pid in $(ip netns pids $ns 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  ip netns del $P-a 2>/dev/null || true
  ip netns del $P-b 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
ip netns del $P-a 2>/dev/null || true
ip netns del $P-b 2>/dev/null || true

ip netns add $P-a; ip netns add $P-b
ip link add ${P}va type veth peer name ${P}vb
ip link set ${P}va netns $P-a; ip link set ${P}vb netns $P-b
for h in a b; do
  n=$([ $h = a ] && echo 1 || echo 2)
  ip -n $P-$h link set ${P}v$h name eth0
  ip -n $P-$h addr add 198.18.0.$n/24 dev eth0
  ip -n $P-$h link set eth0 up; ip -n $P-$h link set lo up
done
cd "$DIR"
"$BIN/meshctl" ca init --name bench >/dev/null
"$BIN/meshctl" cert issue --name a --ip 100.64.0.1/10 >/dev/null
"$BIN/meshctl" cert issue --name b --ip 100.64.0.2/10 >/dev/null
for h in a b; do
  n=$([ $h = a ] && echo 1 || echo 2); o=$([ $h = a ] && echo b || echo a); m=$((3 - n))
  cat > $h.toml <<CFG
[node]
certificate = "$h.crt"
private-key = "$h.key"
ca-certificate = "ca.crt"
[listen]
address = "198.18.0.$n:51820"
[admin]
socket = "$DIR/$h.sock"
[log]
level = "warn"
[policy]
state-dir = "$DIR/$h-state"
[[peer]]
certificate = "$o.crt"
endpoint = "198.18.0.$m:51820"
CFG
done
# PIN=1 (default): each namespace on its own CPU, so each meshd has one core
# and one worker. PIN=0: nothing pinned, every process may use both cores.
# QUEUES: the tun.queues values to measure, one meshd per value, in the
# same run (e.g. PIN=0 QUEUES="1 2" compares one worker with two).
PIN=${PIN:-1}
QUEUES=${QUEUES:-0}
# What each run measures: queues:binary, this tree's meshd and, with BEFORE,
# the other build's, alternating.
VARIANTS=""
for q in $QUEUES; do
  VARIANTS="$VARIANTS $q:$BIN/meshd"
  if [ -n "${BEFORE:-}" ]; then
    [ -x "$BEFORE/meshd" ] || { echo "bench-dataplane: BEFORE=$BEFORE has no meshd binary" >&2; exit 1; }
    VARIANTS="$VARIANTS $q:$BEFORE/meshd"
  fi
done
cpu() { [ "$1" = a ] && echo 0 || echo 1; }
inns() {
  local h=$1; shift
  if [ "$PIN" = 1 ]; then ip netns exec $P-$h taskset -c "$(cpu $h)" "$@"; else ip netns exec $P-$h "$@"; fi
}
start_meshd() { # queues [meshd binary]
  local meshd=${2:-$BIN/meshd}
  for h in a b; do
    sed -i -E '/^queues = /d; s/^\[tun\]$/[tun]\nqueues = '"$1"'/' $h.toml
    grep -q '^\[tun\]' $h.toml || printf '[tun]\nqueues = %s\n' "$1" >> $h.toml
    # Started directly, not through inns, so $! is meshd's own PID.
    if [ "$PIN" = 1 ]; then
      ip netns exec $P-$h taskset -c "$(cpu $h)" "$meshd" --config $h.toml >/dev/null 2>$h.log &
    else
      ip netns exec $P-$h "$meshd" --config $h.toml >/dev/null 2>$h.log &
    fi
    echo $! > $h.pid
  done
  for _ in $(seq 50); do [ -S a.sock ] && [ -S b.sock ] && break; sleep 0.1; done
  inns a ping -c 3 -i 0.2 -W 2 100.64.0.2 >/dev/null || { echo "overlay not up"; cat a.log b.log; exit 1; }
}
stop_meshd() {
  for h in a b; do kill "$(cat $h.pid)" 2>/dev/null || true; done
  for h in a b; do while kill -0 "$(cat $h.pid)" 2>/dev/null; do sleep 0.05; done; done
}

cpu_ticks() { awk '{print $14 + $15}' /proc/"$(cat "$DIR/$1.pid")"/stat; }
CLK=$(getconf CLK_TCK)
inns b iperf3 -s -p 5201 >/dev/null 2>&1 &
inns b "$BIN/mesh-harness" udp-echo --listen 0.0.0.0:7000 --idle-secs 600 >/dev/null 2>&1 &
sleep 0.5

iperf() { # target streams -> Gbit/s
  inns a iperf3 -c "$1" -P "$2" -t "$SECS" -J | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
pingpong() { # target -> "p50 p99" in microseconds
  inns a "$BIN/mesh-harness" udp-ping --to "$1:7000" --count "$PP" | sed -E 's/.*p50_us=([0-9.]+) p99_us=([0-9.]+).*/\1 \2/'
}
icmp() { # target -> "p50 p99" in microseconds (200 pings, 5 ms apart)
  inns a ping -q -c 200 -i 0.005 "$1" >/dev/null 2>&1 || true
  inns a ping -c 200 -i 0.005 "$1" | sed -nE 's/.*time=([0-9.]+) ms.*/\1/p' | sort -n |
    awk '{v[NR]=$1*1000} END {printf "%.1f %.1f\n", v[int(NR*0.5)], v[int(NR*0.99)]}'
}

: > results.txt
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  echo "tcp1 raw $(iperf 198.18.0.2 1)" >> results.txt
  echo "tcp4 raw $(iperf 198.18.0.2 4)" >> results.txt
  read -r p50 p99 <<<"$(pingpong 198.18.0.2)"; echo "udp_rtt_p50 raw $p50" >> results.txt; echo "udp_rtt_p99 raw $p99" >> results.txt
  read -r p50 p99 <<<"$(icmp 198.18.0.2)"; echo "icmp_rtt_p50 raw $p50" >> results.txt; echo "icmp_rtt_p99 raw $p99" >> results.txt
  for variant in $VARIANTS; do
    q=${variant%%:*}; bin=${variant#*:}
    m=meshd; [ "$QUEUES" = 0 ] || m="meshd-q$q"
    [ "$bin" = "$BIN/meshd" ] || m="$m-before"
    start_meshd "$q" "$bin"
    t0=$(( $(cpu_ticks a) + $(cpu_ticks b) ))
    out=$(inns a iperf3 -c 100.64.0.2 -t "$SECS" -J)
    t1=$(( $(cpu_ticks a) + $(cpu_ticks b) ))
    gbps=$(echo "$out" | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    bytes=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
    echo "tcp1 $m $gbps" >> results.txt
    echo "cpu_s_per_gb $m $(python3 -c "print('%.3f' % (($t1-$t0)/$CLK/($bytes/1e9)))")" >> results.txt
    echo "tcp4 $m $(iperf 100.64.0.2 4)" >> results.txt
    read -r p50 p99 <<<"$(pingpong 100.64.0.2)"; echo "udp_rtt_p50 $m $p50" >> results.txt; echo "udp_rtt_p99 $m $p99" >> results.txt
    read -r p50 p99 <<<"$(icmp 100.64.0.2)"; echo "icmp_rtt_p50 $m $p50" >> results.txt; echo "icmp_rtt_p99 $m $p99" >> results.txt
    stop_meshd
  done
done

python3 - results.txt <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    k, side, v = line.split()
    rows.setdefault(k, {}).setdefault(side, []).append(float(v))
units = {"tcp1": "Gbit/s", "tcp4": "Gbit/s", "cpu_s_per_gb": "CPU s/GB",
         "udp_rtt_p50": "µs", "udp_rtt_p99": "µs", "icmp_rtt_p50": "µs", "icmp_rtt_p99": "µs"}
def f(v): return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
sides = sorted({side for r in rows.values() for side in r if side != "raw"})
print(f"{'metric':<14} {'unit':<9} {'raw veth':<26} " + " ".join(f"{s:<26} {'ratio':<6}" for s in sides))
for k in ["tcp1", "tcp4", "udp_rtt_p50", "udp_rtt_p99", "icmp_rtt_p50", "icmp_rtt_p99", "cpu_s_per_gb"]:
    r = rows.get(k, {})
    raw = r.get("raw")
    cols = []
    for s in sides:
        m = r.get(s)
        ratio = f"{statistics.median(m)/statistics.median(raw):.3f}" if raw and m else ""
        cols.append(f"{f(m) if m else '-':<26} {ratio:<6}")
    print(f"{k:<14} {units[k]:<9} {f(raw) if raw else '-':<26} " + " ".join(cols))
PY
