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

# Every target runs at once; each round measures them in turn, the order rotating
# from round to round (as bench/run.sh does), so a slow spell falls on a whole round.
add_target "redis (direct)" "${RPORT[0]}" - "${RPID[0]}"
add_target "twemproxy" "$TWEM_PORT" "$TWEM_PID" "${RPID[0]}"

start_gw() { # BINARY N: sets GW_PORT GW_PID
  local servers="127.0.0.1:${RPORT[0]}"
  for ((i = 1; i < $2; i++)); do servers+=",127.0.0.1:${RPORT[$i]}"; done
  GW_PORT=$(free_port)
  DYNODE_SERVERS="$servers" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=ERROR "$1" >> "$OUT/values-gw.log" 2>&1 &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
}
: > "$OUT/values-gw.log"
declare -a BIG_NAME BIG_PORT BIG_PID # the 3-backend gateways, for the 64 MiB value
for gw in "${GATEWAYS[@]}"; do
  name=${gw%%=*} bin=${gw#*=}
  for nb in 1 3; do
    start_gw "$bin" "$nb"
    add_target "$name, $nb backend(s)" "$GW_PORT" "$GW_PID" "${RPID[*]:0:$nb}"
    if [ "$nb" = 3 ]; then BIG_NAME+=("$name"); BIG_PORT+=("$GW_PORT"); BIG_PID+=("$GW_PID"); fi
  done
done
sleep 0.3 # the backends' handshakes


rows="$OUT/values-rows.tsv"
: > "$rows"
# bench TARGET SIZE ROUND: one line per test, prefixed with the target's index.
bench() {
  local t=$1 size=$2 round=$3 name=${TNAME[$1]} port=${TPORT[$1]} proxy=${TPROXY[$1]} n
  local -a backends
  read -r -a backends <<< "${TBACKENDS[$1]}"
  n=$(requests "$size")
  for test in set get; do
    local p0 b0 m0 p1 b1 m1 rps p50 p99
    p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b0=$(cpu_ticks "${backends[@]}"); m0=$(machine_ticks)
    read -r rps p50 p99 < <(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$n" -c "$CLIENTS" -P "$PIPELINE" -d "$size" --csv 2>/dev/null \
      | awk -F, 'NR>1 {gsub(/"/,""); print $2, $5, $7}')
    p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b1=$(cpu_ticks "${backends[@]}"); m1=$(machine_ticks)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$name" "$size" "$test" "$rps" "$(us_per_op $((p1 - p0)) "$n")" \
      "$(us_per_op $((b1 - b0)) "$n")" "$p50" "$p99" "$(busy_pct "$m0" "$m1")" >> "$rows"
    echo "  $name $size $test round $round: $rps ops/s" >&2
  done
}

for size in 16384 102400 1048576; do
  for round in $(seq "$ROUNDS"); do
    for t in $(rotated "$round" "${!TNAME[@]}"); do bench "$t" "$size" "$round"; done
  done
done
results="$OUT/values.tsv" # in target order, each target's rounds in the order they ran
sort -s -n -k1,1 "$rows" | cut -f2- > "$results"

big="$OUT/bigvalue.tsv"
printf 'redis (direct)\t%s\n' "$("$OUT/bigvalue" -addr "127.0.0.1:${RPORT[0]}")" > "$big"
sleep 2 # let the benchmark's memory settle before the baseline
for i in "${!BIG_NAME[@]}"; do
  printf '%s, 3 backends\t%s\n' "${BIG_NAME[$i]}" "$("$OUT/bigvalue" -addr "127.0.0.1:${BIG_PORT[$i]}" -pid "${BIG_PID[$i]}")" >> "$big"
done

{
  python3 bench/valuetable.py "$results" "redis (direct)" \
    "redis-benchmark -c $CLIENTS -P $PIPELINE -d SIZE, median of $ROUNDS interleaved rounds (ratios: medians of the per-round ratios); loopback; CPU = user+system microseconds per operation of the proxy and of the redis-servers"
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
