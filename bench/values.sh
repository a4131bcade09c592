#!/usr/bin/env bash
# Large values (issue 15): redis-benchmark SET and GET with 16 KiB, 100 KiB and 1 MiB
# values (-c 10) against direct Redis, twemproxy (nutcracker) and the gateway with 1
# and 3 backends, in the same run on loopback; then one 64 MiB SET and GET through
# each gateway (bench/bigvalue): time, the gateway's peak RSS and its RSS 1, 3 and 5
# seconds after.
#
# Prints a Markdown table: median ops/s of the rounds, ratios to direct, to twemproxy
# and (3 backends) to the same gateway's 1-backend figure, proxy CPU per operation.
# BENCH_GATEWAYS="name=binary ..." measures several gateway builds side by side
# (default: this tree's). BENCH_VALUE_CLIENTS and BENCH_VALUE_PIPELINE change the
# load (default 10 clients, unpipelined; 1 and 16: one client pipelining large
# values). Called by bench/run.sh; runs alone too.
# Usage: bench/values.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
CLIENTS=${BENCH_VALUE_CLIENTS:-10}
PIPELINE=${BENCH_VALUE_PIPELINE:-1}
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server
apt_need redis-tools redis-benchmark
apt_need nutcracker nutcracker
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/bigvalue" ./bench/bigvalue
read -r -a GATEWAYS <<< "${BENCH_GATEWAYS:-dynode=$OUT/dynode-broadcaster}"

start_redis_servers 3
RPID=("${pids[@]}")

start_twemproxy nutcracker-values "${RPORT[0]}" redis

# requests SIZE: how many operations a round makes for a value size.
requests() { case $1 in 16384) echo 20000 ;; 102400) echo 5000 ;; *) echo 600 ;; esac; }

results="$OUT/values.tsv"
: > "$results"
# bench NAME PORT PROXY_PID SIZE: one line per test and round.
bench() {
  local name=$1 port=$2 proxy=$3 size=$4 n
  n=$(requests "$size")
  for round in $(seq "$ROUNDS"); do
    for test in set get; do
      local p0 p1 rps p50 p99
      p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy")
      read -r rps p50 p99 < <(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$n" -c "$CLIENTS" -P "$PIPELINE" -d "$size" --csv 2>/dev/null \
        | awk -F, 'NR>1 {gsub(/"/,""); print $2, $5, $7}')
      p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$size" "$test" "$rps" "$(us_per_op $((p1 - p0)) "$n")" "$p50" "$p99" >> "$results"
      echo "  $name $size $test round $round: $rps ops/s" >&2
    done
  done
}

start_gw() { # BINARY N: sets GW_PORT GW_PID
  local servers="127.0.0.1:${RPORT[0]}"
  for ((i = 1; i < $2; i++)); do servers+=",127.0.0.1:${RPORT[$i]}"; done
  GW_PORT=$(free_port)
  DYNODE_SERVERS="$servers" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=ERROR "$1" > "$OUT/values-gw.log" 2>&1 &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
  sleep 0.3
}

big="$OUT/bigvalue.tsv"
: > "$big"
for size in 16384 102400 1048576; do
  bench "redis (direct)" "${RPORT[0]}" - "$size"
  bench "twemproxy" "$TWEM_PORT" "$TWEM_PID" "$size"
done
printf 'redis (direct)\t%s\n' "$("$OUT/bigvalue" -addr "127.0.0.1:${RPORT[0]}")" >> "$big"
for gw in "${GATEWAYS[@]}"; do
  name=${gw%%=*} bin=${gw#*=}
  for nb in 1 3; do
    start_gw "$bin" "$nb"
    for size in 16384 102400 1048576; do bench "$name, $nb backend(s)" "$GW_PORT" "$GW_PID" "$size"; done
    if [ "$nb" = 3 ]; then
      sleep 2 # let the benchmark's memory settle before the baseline
      printf '%s, 3 backends\t%s\n' "$name" "$("$OUT/bigvalue" -addr "127.0.0.1:$GW_PORT" -pid "$GW_PID")" >> "$big"
    fi
    kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
  done
done

{
  python3 bench/valuetable.py "$results" "redis (direct)" \
    "redis-benchmark -c $CLIENTS -P $PIPELINE -d SIZE, median of $ROUNDS rounds; loopback; CPU = proxy user+system microseconds per operation"
  python3 - "$big" <<'PY'
import sys
print("\nOne 64 MiB value (bench/bigvalue): SET then GET; time, and the gateway's RSS (MiB) before, at its peak during each, and 1 / 3 / 5 s after\n")
print("| target | SET s | GET s | RSS before | peak in SET | peak in GET | after 1 s / 3 s / 5 s |")
print("|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    print(f"| {f[0]} | {f[1]} | {f[2]} | {f[3]} | {f[4]} | {f[5]} | {f[6]} / {f[7]} / {f[8]} |")
PY
} | tee "$OUT/values.md"
