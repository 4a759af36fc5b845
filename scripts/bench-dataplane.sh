#!/usr/bin/env bash
# Data-plane benchmark: two hosts in network namespaces joined by a veth,
# each pinned to its own CPU with everything it runs (the tunnel daemon,
# iperf3, the ping tools; PIN=0 pins nothing). In every run it measures the
# raw veth, meshd and, where installed, boringtun (a userspace WireGuard,
# `cargo install boringtun-cli`; BORINGTUN=path or "" to leave it out), one
# after the other, each over the same measurements:
#
#   tcp1, tcp4        iperf3 TCP, 1 and 4 streams, Gbit/s
#   cpu_s_per_gb      the tunnel daemons' CPU seconds (both ends) per GB of tcp1
#   udp_rtt_*         closed-loop UDP ping-pong, idle (path cost), p50/p99 µs
#   loaded_rtt_*      the same beside a single-stream TCP transfer (queueing),
#                     p50/p99/p99.9 µs
#   icmp10_*          ICMP echo every 10 ms (wake-up cost), avg/p99 µs, and the
#                     daemons' CPU time per echo and reply (both ends)
#   udp300_loss_pct   iperf3 UDP, 1,200-byte datagrams paced at 300 Mbit/s
#   udp_max_mbit      the highest of UDP_RATES (Mbit/s) paced with < 0.1 % loss
#
# MEASURE="tcp1 loaded ..." picks measurements (default: all). RUNS runs
# (default 3); prints median [min-max] per side and the side/raw ratio.
# QUEUES="1 2" measures meshd with each tun.queues value. BEFORE=DIR also
# measures the meshd binary in DIR (another build, e.g. the commit before a
# change: git worktree add /tmp/before REV && cargo build --release there)
# in every run, as "meshd-before"; MESHD=path measures that meshd binary
# instead of this tree's. MESHD_EXTRA="[section]\nkey = value"
# appends to both meshd configs.
# Bounded: every tool has a duration or a count; namespaces are removed on
# exit, also on Ctrl-C. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-10}
PP=${PP:-10000}
UDP_RATES=${UDP_RATES:-"100 200 300 600 1000 1500 2000 3000"}
MEASURE=${MEASURE:-"tcp1 tcp4 pingpong loaded icmp10 udp"}
P=mshbench
[ "$(id -u)" = 0 ] || { echo "bench-dataplane: needs root (network namespaces)" >&2; exit 1; }
bash scripts/deps.sh
cargo build -q --release -p meshd -p meshctl -p mesh-harness
BIN=$PWD/target/release
BORINGTUN=${BORINGTUN-$(command -v boringtun-cli || ls "$HOME/.cargo/bin/boringtun-cli" 2>/dev/null || true)}
DIR=
cleanup() {
  for ns in $P-a $P-b; do
    for pid in $(ip netns pids $ns 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  ip netns del $P-a 2>/dev/null || true
  ip netns del $P-b 2>/dev/null || true
  rm -f /var/run/wireguard/${P}a.sock /var/run/wireguard/${P}b.sock
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
cleanup
DIR=$(mktemp -d)

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
  [ -z "${MESHD_EXTRA:-}" ] || printf '%b\n' "$MESHD_EXTRA" >> $h.toml
done
PIN=${PIN:-1}
QUEUES=${QUEUES:-0}
# The tunnels each run measures, as name:queues:binary.
VARIANTS=""
for q in $QUEUES; do
  m=meshd; [ "$QUEUES" = 0 ] || m="meshd-q$q"
  VARIANTS="$VARIANTS $m:$q:${MESHD:-$BIN/meshd}"
  if [ -n "${BEFORE:-}" ]; then
    [ -x "$BEFORE/meshd" ] || { echo "bench-dataplane: BEFORE=$BEFORE has no meshd binary" >&2; exit 1; }
    VARIANTS="$VARIANTS $m-before:$q:$BEFORE/meshd"
  fi
done
[ -z "$BORINGTUN" ] || VARIANTS="$VARIANTS boringtun:0:$BORINGTUN"
cpu() { [ "$1" = a ] && echo 0 || echo 1; }
inns() {
  local h=$1; shift
  if [ "$PIN" = 1 ]; then ip netns exec $P-$h taskset -c "$(cpu $h)" "$@"; else ip netns exec $P-$h "$@"; fi
}
start_meshd() { # queues meshd-binary
  for h in a b; do
    sed -i -E '/^queues = /d; s/^\[tun\]$/[tun]\nqueues = '"$1"'/' $h.toml
    grep -q '^\[tun\]' $h.toml || printf '[tun]\nqueues = %s\n' "$1" >> $h.toml
    # Started directly, not through inns, so $! is meshd's own PID.
    if [ "$PIN" = 1 ]; then
      ip netns exec $P-$h taskset -c "$(cpu $h)" "$2" --config $h.toml >/dev/null 2>$h.log &
    else
      ip netns exec $P-$h "$2" --config $h.toml >/dev/null 2>$h.log &
    fi
    echo $! > $h.pid
  done
  for _ in $(seq 50); do [ -S a.sock ] && [ -S b.sock ] && break; sleep 0.1; done
  TARGET=100.64.0.2
}
# boringtun: one thread per host (as meshd's one worker per pinned CPU),
# keys and peers set through its UAPI socket with wg(8), overlay 100.65.0.0/24.
start_boringtun() { # binary
  for h in a b; do wg genkey > $h.wgkey; wg pubkey < $h.wgkey > $h.wgpub; done
  for h in a b; do
    n=$([ $h = a ] && echo 1 || echo 2); o=$([ $h = a ] && echo b || echo a); m=$((3 - n))
    if [ "$PIN" = 1 ]; then
      WG_SUDO=true ip netns exec $P-$h taskset -c "$(cpu $h)" "$1" --foreground --threads 1 \
        --log "$DIR/$h.bt.log" ${P}$h >/dev/null 2>&1 &
    else
      WG_SUDO=true ip netns exec $P-$h "$1" --foreground --threads 1 --log "$DIR/$h.bt.log" ${P}$h >/dev/null 2>&1 &
    fi
    echo $! > $h.pid
    for _ in $(seq 50); do [ -S /var/run/wireguard/${P}$h.sock ] && break; sleep 0.1; done
    ip netns exec $P-$h wg set ${P}$h private-key $h.wgkey listen-port 51821 \
      peer "$(cat $o.wgpub)" endpoint 198.18.0.$m:51821 allowed-ips 100.65.0.$m/32
    ip -n $P-$h addr add 100.65.0.$n/24 dev ${P}$h
    ip -n $P-$h link set ${P}$h mtu 1420 up
  done
  TARGET=100.65.0.2
}
start_tunnel() { # name:queues:binary
  local v=$1 name=${1%%:*} rest=${1#*:}
  local q=${rest%%:*} bin=${rest#*:}
  case $name in
    boringtun) start_boringtun "$bin" ;;
    *) start_meshd "$q" "$bin" ;;
  esac
  inns a ping -c 3 -i 0.2 -W 2 $TARGET >/dev/null || { echo "$v: overlay not up"; cat ./*.log; exit 1; }
}
stop_tunnel() {
  for h in a b; do kill "$(cat $h.pid)" 2>/dev/null || true; done
  for h in a b; do while kill -0 "$(cat $h.pid)" 2>/dev/null; do sleep 0.05; done; done
  rm -f /var/run/wireguard/${P}a.sock /var/run/wireguard/${P}b.sock
}

cpu_ticks() { awk '{print $14 + $15}' /proc/"$(cat "$DIR/$1.pid")"/stat; }
# CPU time of every thread of a host's daemon, in nanoseconds (schedstat).
cpu_ns() { cat /proc/"$(cat "$DIR/$1.pid")"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }
CLK=$(getconf CLK_TCK)
inns b iperf3 -s -p 5201 >/dev/null 2>&1 &
inns b "$BIN/mesh-harness" udp-echo --listen 0.0.0.0:7000 --idle-secs 3600 >/dev/null 2>&1 &
sleep 0.5

gbps() { python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'; }
wants() { case " $MEASURE " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
emit() { echo "$1 $2 $3" >> results.txt; }
pp() { # target count [secs] -> "p50 p99 p999"
  inns a "$BIN/mesh-harness" udp-ping --to "$1:7000" --count "$2" ${3:+--secs $3} |
    sed -E 's/.*p50_us=([0-9.]+) p99_us=([0-9.]+) p999_us=([0-9.]+).*/\1 \2 \3/'
}
# One side's measurements: name target tunnel(0/1, whether daemons run).
measure() {
  local side=$1 t=$2 tunnel=$3 out t0 t1
  if wants tcp1; then
    [ "$tunnel" = 1 ] && t0=$(( $(cpu_ticks a) + $(cpu_ticks b) ))
    out=$(inns a iperf3 -c "$t" -t "$SECS" -J)
    emit tcp1 "$side" "$(echo "$out" | gbps)"
    if [ "$tunnel" = 1 ]; then
      t1=$(( $(cpu_ticks a) + $(cpu_ticks b) ))
      bytes=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
      emit cpu_s_per_gb "$side" "$(python3 -c "print('%.3f' % (($t1-$t0)/$CLK/($bytes/1e9)))")"
    fi
  fi
  if wants tcp4; then emit tcp4 "$side" "$(inns a iperf3 -c "$t" -P 4 -t "$SECS" -J | gbps)"; fi
  if wants pingpong; then
    read -r p50 p99 _ <<<"$(pp "$t" "$PP")"
    emit udp_rtt_p50 "$side" "$p50"; emit udp_rtt_p99 "$side" "$p99"
  fi
  if wants loaded; then
    # A single TCP stream for SECS + 2 s; round trips in the middle SECS - 1 s.
    inns a iperf3 -c "$t" -t $((SECS + 2)) >/dev/null 2>&1 &
    local ipid=$!
    sleep 1.5
    read -r p50 p99 p999 <<<"$(pp "$t" 1000000 $((SECS - 1)))"
    wait $ipid || true
    emit loaded_rtt_p50 "$side" "$p50"; emit loaded_rtt_p99 "$side" "$p99"; emit loaded_rtt_p999 "$side" "$p999"
  fi
  if wants icmp10; then
    inns a ping -q -c 20 -i 0.01 "$t" >/dev/null 2>&1 || true
    [ "$tunnel" = 1 ] && t0=$(( $(cpu_ns a) + $(cpu_ns b) ))
    inns a ping -c 500 -i 0.01 "$t" | sed -nE 's/.*time=([0-9.]+) ms.*/\1/p' | sort -n |
      awk '{v[NR]=$1*1000; s+=$1*1000} END {printf "%.1f %.1f\n", s/NR, v[int(NR*0.99)]}' > icmp.txt
    read -r avg p99 < icmp.txt
    emit icmp10_avg "$side" "$avg"; emit icmp10_p99 "$side" "$p99"
    if [ "$tunnel" = 1 ]; then
      t1=$(( $(cpu_ns a) + $(cpu_ns b) ))
      emit icmp10_cpu_us "$side" "$(python3 -c "print('%.1f' % (($t1 - $t0) / 1e3 / 500))")"
    fi
  fi
  if wants udp; then
    local best=0 rate loss at300=""
    udp_loss() {
      inns a iperf3 -c "$t" -u -b "${1}M" -l 1200 -w 4M -t 4 -J |
        python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.4f" % s["lost_percent"])'
    }
    # Rates in increasing order until one loses 0.1 % or more; 300 Mbit/s
    # is measured in any case (its loss is a target of its own).
    for rate in $UDP_RATES; do
      loss=$(udp_loss "$rate")
      [ "$rate" = 300 ] && at300=$loss
      if python3 -c "import sys; sys.exit(0 if $loss < 0.1 else 1)"; then best=$rate; else break; fi
    done
    [ -z "$at300" ] && at300=$(udp_loss 300)
    emit udp300_loss_pct "$side" "$at300"
    emit udp_max_mbit "$side" "$best"
  fi
}

: > results.txt
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  measure raw 198.18.0.2 0
  for variant in $VARIANTS; do
    start_tunnel "$variant"
    measure "${variant%%:*}" "$TARGET" 1
    stop_tunnel
  done
done
cp results.txt "${RESULTS:-/tmp/bench-dataplane-results.txt}"

python3 - results.txt <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    k, side, v = line.split()
    rows.setdefault(k, {}).setdefault(side, []).append(float(v))
units = {"tcp1": "Gbit/s", "tcp4": "Gbit/s", "cpu_s_per_gb": "CPU s/GB",
         "udp_rtt_p50": "µs", "udp_rtt_p99": "µs",
         "loaded_rtt_p50": "µs", "loaded_rtt_p99": "µs", "loaded_rtt_p999": "µs",
         "icmp10_avg": "µs", "icmp10_p99": "µs", "icmp10_cpu_us": "µs/ping",
         "udp300_loss_pct": "%", "udp_max_mbit": "Mbit/s"}
def f(v): return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
order = ["raw"] + [s for s in dict.fromkeys(s for r in rows.values() for s in r) if s != "raw"]
print(f"{'metric':<16} {'unit':<9} " + " ".join(f"{s:<26}" for s in order) + "  (ratio to raw)")
for k in units:
    r = rows.get(k)
    if not r:
        continue
    raw = r.get("raw")
    cols = []
    for s in order:
        m = r.get(s)
        ratio = ""
        if s != "raw" and raw and m and statistics.median(raw) > 0:
            ratio = f" ({statistics.median(m)/statistics.median(raw):.2f})"
        cols.append(f"{(f(m) if m else '-') + ratio:<26}")
    print(f"{k:<16} {units[k]:<9} " + " ".join(cols))
PY
