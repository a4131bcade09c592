#!/usr/bin/env bash
# Benchmarks one client pipelining through a backend that is far away: the backend
# (one redis-server) sits behind bench/slowlink, which adds a latency to each
# direction, as a primary in another zone or region would. Direct Redis (through the
# same link), twemproxy and the gateway are measured in the same run with
# redis-cli --pipe (200,000 SETs, mass insertion) and redis-benchmark -c 1 at
# -P 1, 100 and 1,000. twemproxy does not know ECHO, which redis-cli --pipe sends
# last: its --pipe time is to that point, every SET answered.
# Usage: bench/slowlink.sh [LATENCY_MS...]   (default: 1 20; prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server redis-cli redis-benchmark
apt_need nutcracker nutcracker
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/slowlink" ./bench/slowlink

write_set_pipe "$OUT/pipe.txt"

start_redis_servers 1
echo "| latency each way | target | --pipe 200k SETs/s | -P 1 ops/s | -P 100 ops/s | -P 1000 ops/s |"
echo "|---|---|---|---|---|---|"
lats=("$@")
[ ${#lats[@]} -gt 0 ] || lats=(1 20)
for lat in "${lats[@]}"; do
  link=$(free_port)
  "$OUT/slowlink" -listen "127.0.0.1:$link" -upstream "127.0.0.1:${RPORT[0]}" -latency "${lat}ms" > /dev/null &
  pids+=("$!"); wait_port "$link"
  start_twemproxy "nut-slow-$lat" "$link" redis
  start_gateway_at "127.0.0.1:$link" "$OUT/slowlink-gw-$lat.log"
  for target in "redis (direct) $link" "twemproxy $TWEM_PORT" "dynode $GW_PORT"; do
    port=${target##* } name=${target% *}
    redis-cli -p "$port" FLUSHALL > /dev/null 2>&1 || true
    t0=$(date +%s.%N)
    redis-cli -p "$port" --pipe < "$OUT/pipe.txt" > /dev/null 2>&1 || true
    t1=$(date +%s.%N)
    row="| $lat ms | $name | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 200000 / (b - a) }')"
    for P in 1 100 1000; do
      n=$(( P == 1 ? 2000 / (lat < 10 ? 1 : 20) : 100000 ))
      rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -t set -n "$n" -c 1 -P "$P" --csv 2>/dev/null | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); printf "%.0f", $2 }')
      row+=" | $rps"
    done
    echo "$row |"
  done
done
