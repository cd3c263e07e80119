#!/usr/bin/env bash
# Agent benchmark (docs/benchmarks.md, "Agent API and memory"): a real vandrad on 127.0.0.1
# with a throwaway PKI, its memory (VmRSS/VmHWM) with 0 and then N registered VMs, the
# import time per VM, then API latency under concurrent load from vandra-load (GET /v1/host,
# /v1/vms, /v1/vms/<id>, round robin), first with as many clients as the agent has server
# threads, then with --concurrency clients. Prints numbers; asserts nothing.
#
#   tools/bench-agent.sh [--build DIR] [--vms N] [--concurrency N] [--baseline N]
#                        [--duration-s S] [--vandrad PATH]
#
# Needs a Release build of vandra, vandrad and vandra-load in DIR (default build-h2):
#   cmake -S . -B build-h2 -G Ninja -DCMAKE_BUILD_TYPE=Release -DVANDRA_BENCH=ON -DVANDRA_SANITIZE=OFF
#   ninja -C build-h2 vandra vandrad vandra-load
# No VM is started (no QEMU); imports use a 16 MiB blank disk. Everything lives in a temp
# folder that is removed on exit, and the agent is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build-h2
VMS=50
CONCURRENCY=200
BASELINE=8     # cpp-httplib's default server pool on this host: max(8, cores - 1) threads
DURATION=20
VANDRAD_OVERRIDE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --vms) VMS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --baseline) BASELINE=$2; shift 2 ;;   # 0: skip the baseline run
    --duration-s) DURATION=$2; shift 2 ;;
    --vandrad) VANDRAD_OVERRIDE=$2; shift 2 ;;  # another agent binary, to compare builds
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench-agent: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

VANDRA=$BUILD/apps/vandra/vandra
VANDRAD=${VANDRAD_OVERRIDE:-$BUILD/apps/vandrad/vandrad}
LOAD=$BUILD/apps/vandra-load/vandra-load
for b in "$VANDRA" "$VANDRAD" "$LOAD"; do
  if [[ ! -x $b ]]; then
    echo "bench-agent: $b is missing: ninja -C $BUILD vandra vandrad vandra-load" >&2
    exit 2
  fi
done
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
if [[ $build_type != Release ]]; then
  echo "bench-agent: warning: $BUILD is a '${build_type:-unknown}' build, not Release" >&2
fi

TMP=$(mktemp -d /tmp/vandra-bench-agent.XXXXXX)
AGENT_PID=""
cleanup() {
  if [[ -n $AGENT_PID ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$AGENT_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- PKI, package -----------------------------------------------------------------------
"$VANDRA" pki init --dir "$TMP/pki" --name "bench CA" --days 2 >/dev/null
"$VANDRA" pki issue --dir "$TMP/pki" --name agent --role server --ip 127.0.0.1 --days 2 >/dev/null
"$VANDRA" pki issue --dir "$TMP/pki" --name op --role client --days 2 >/dev/null
TLS=(--ca "$TMP/pki/ca.crt" --cert "$TMP/pki/op.crt" --key "$TMP/pki/op.key")

truncate -s 16M "$TMP/disk1.raw"
cat >"$TMP/vmspec.json" <<EOF
{
  "ovf_version": "1.0",
  "virtual_systems": [
    {
      "id": "bench", "name": "bench", "vcpus": 1, "memory_mib": 64, "firmware": "bios",
      "os": {"cim_id": 101, "family": "linux", "description": "blank disk for the agent benchmark"},
      "controllers": [{"id": "virtio0", "kind": "virtio", "model": "virtio-blk"}],
      "disks": [{"id": "disk1", "capacity_bytes": 16777216, "format": "raw", "controller": "virtio0", "unit": 0}],
      "nics": [{"network": "bench", "model": "virtio"}]
    }
  ],
  "networks": [{"name": "bench", "description": "benchmark network"}]
}
EOF
"$VANDRA" ovf export --spec "$TMP/vmspec.json" --disk "disk1=$TMP/disk1.raw" -o "$TMP/bench.ova" >/dev/null

# --- agent ------------------------------------------------------------------------------
"$VANDRAD" --state-dir "$TMP/state" --listen 127.0.0.1 --port 0 --port-file "$TMP/port" \
  --tls-ca "$TMP/pki/ca.crt" --tls-cert "$TMP/pki/agent.crt" --tls-key "$TMP/pki/agent.key" \
  --capacity-vcpus 1024 --capacity-memory-mib 1048576 --capacity-disk-gib 1024 \
  --reserved-memory-mib 0 --accel tcg 2>"$TMP/vandrad.log" &
AGENT_PID=$!
for _ in $(seq 300); do
  [[ -s $TMP/port ]] && break
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "bench-agent: vandrad exited:" >&2; cat "$TMP/vandrad.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s $TMP/port ]] || { echo "bench-agent: vandrad wrote no port file in 30 s" >&2; exit 1; }
AGENT=127.0.0.1:$(cat "$TMP/port")

# VmRSS, VmHWM in MiB and the thread count of the agent.
mem() {
  awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} /^Threads:/ {t = $2}
       END {printf "VmRSS %.1f MiB  VmHWM %.1f MiB  threads %d", r / 1024, h / 1024, t}' "/proc/$AGENT_PID/status"
}
# TCP connections dropped because a listen queue was full (host-wide counters of this network
# namespace: TcpExt ListenOverflows and ListenDrops).
listen_drops() {
  awk '/^TcpExt:/ {if (!n) {for (i = 1; i <= NF; i++) k[i] = $i; n = 1} else for (i = 1; i <= NF; i++) v[k[i]] = $i}
       END {print v["ListenOverflows"] + 0, v["ListenDrops"] + 0}' /proc/net/netstat
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$AGENT_PID/status"; }
# Nearest-rank percentile $1 of the numbers on stdin.
pct() { sort -n | awk -v p="$1" '{v[NR] = $1} END {r = int(p * NR / 100); if (r < p * NR / 100) r++; if (r < 1) r = 1; print v[r]}'; }

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "== agent $AGENT (pid $AGENT_PID, $VANDRAD, ${build_type:-unknown} build)"
echo "memory at start, 0 VMs:       $(mem)"
: >"$TMP/get_ms"
for _ in $(seq 10); do
  t0=$(date +%s%N)
  "$VANDRA" vm host --agent "$AGENT" "${TLS[@]}" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000)) >>"$TMP/get_ms"
done
echo "10 x 'vandra vm host' (CLI process + handshake + GET /v1/host), ms: p50 $(pct 50 <"$TMP/get_ms")"
echo "memory after those, 0 VMs:   $(mem)"
rss0=$(rss_kib)

# --- N imports through the CLI (one process and one TLS handshake each) -------------------
: >"$TMP/import_ms"
steps=""
for i in $(seq -w 1 "$VMS"); do
  t0=$(date +%s%N)
  "$VANDRA" vm import --agent "$AGENT" "${TLS[@]}" "vm-$i" "$TMP/bench.ova" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000)) >>"$TMP/import_ms"
  if ((10#$i % 10 == 0)); then
    rss_now=$(rss_kib)
    steps+=" $((10#$i)):$(awk '{printf "%.1f", $1 / 1024}' <<<"$rss_now")"
    [[ -n ${rss10:-} ]] || rss10=$rss_now
  fi
done
rss1=$(rss_kib)
echo "memory with $VMS VMs:           $(mem)"
echo "VmRSS MiB every 10 VMs:      ${steps# }"
echo "per VM:                       $(awk -v a="$rss0" -v b="$rss1" -v n="$VMS" 'BEGIN {printf "%.1f KiB", (b - a) / n}') (0 to $VMS VMs, after the first requests)$(
  [[ -n ${rss10:-} && $VMS -gt 10 ]] && awk -v a="$rss10" -v b="$rss1" -v n="$((VMS - 10))" 'BEGIN {printf ", %.1f KiB (10 to %d VMs)", (b - a) / n, n + 10}')"
echo "import time per VM (CLI, ms): p50 $(pct 50 <"$TMP/import_ms")  max $(sort -n "$TMP/import_ms" | tail -1)  (first $(head -1 "$TMP/import_ms"))"

# --- load ---------------------------------------------------------------------------------
PATHS=(--path /v1/host --path /v1/vms --path "/v1/vms/vm-$(printf '%0*d' ${#VMS} 1)")
run_load() {
  echo
  echo "== vandra-load --concurrency $1 --duration-s $DURATION ${PATHS[*]}"
  rc=0
  read -r overflows0 drops0 < <(listen_drops)
  "$LOAD" --agent "$AGENT" "${TLS[@]}" --concurrency "$1" --duration-s "$DURATION" "${PATHS[@]}" || rc=$?
  [[ $rc -eq 0 ]] || echo "(vandra-load exit $rc)"
  read -r overflows1 drops1 < <(listen_drops)
  echo "listen queue overflows during the run: $((overflows1 - overflows0)) (drops $((drops1 - drops0)))"
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "bench-agent: vandrad died under load:" >&2; cat "$TMP/vandrad.log" >&2; exit 1; }
  echo "memory after the run:         $(mem)"
}
if [[ $BASELINE -gt 0 ]]; then
  run_load "$BASELINE"
fi
run_load "$CONCURRENCY"
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $(grep -cv "listening on" "$TMP/vandrad.log") -gt 0 ]]; then
  echo "== vandrad stderr (other than the listening line):"
  grep -v "listening on" "$TMP/vandrad.log" | tail -20
fi
