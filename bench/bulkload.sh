#!/usr/bin/env bash
# Benchmarks what a bulk load costs the other clients and the gateway's memory:
#
#  1. Neighbours: one client's unpipelined GETs (redis-benchmark -c 1) while
#     redis-cli --pipe sends 200,000 SETs after 200,000 to the same target, with the
#     primary on this machine. Direct Redis, twemproxy and the gateway, one after
#     the other, each with its own bulk load.
#  2. Memory: peak RSS while 50 clients pipeline 4,000 SETs each through a primary
#     20 ms away (bench/slowlink), where the gateway's bursts go beyond 1,024
#     commands (session.burstLimit).
#
# Usage: bench/bulkload.sh [ROUNDS]   (default 2; prints Markdown tables)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server redis-cli redis-benchmark
apt_need nutcracker nutcracker
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/slowlink" ./bench/slowlink
ROUNDS=${1:-2}

write_set_pipe "$OUT/pipe.txt"

start_redis_servers 1
start_twemproxy nut-bulk "${RPORT[0]}" redis
start_gateway_on 1 "$OUT/bulkload-gw.log"

echo "One client's GETs while redis-cli --pipe loads 200,000 SETs at a time (ms):"
echo
echo "| target | round | GETs/s | p50 | p95 | p99 | max |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for target in "redis (direct) ${RPORT[0]}" "twemproxy $TWEM_PORT" "dynode $GW_PORT"; do
    port=${target##* } name=${target% *}
    ( for _ in $(seq 20); do redis-cli -p "$port" --pipe < "$OUT/pipe.txt" > /dev/null 2>&1 || true; done ) &
    bulk=$!
    sleep 0.3
    row=$(redis-benchmark -h 127.0.0.1 -p "$port" -t get -n 20000 -c 1 --csv 2>/dev/null |
      awk -F'","' 'NR > 1 { gsub(/"/, "", $8); printf "%.0f | %s | %s | %s | %s", $2, $5, $6, $7, $8 }')
    kill "$bulk" 2> /dev/null || true
    pkill -P "$bulk" redis-cli 2> /dev/null || true
    wait "$bulk" 2> /dev/null || true
    echo "| $name | $r | $row |"
  done
done

link=$(free_port)
"$OUT/slowlink" -listen "127.0.0.1:$link" -upstream "127.0.0.1:${RPORT[0]}" -latency 20ms > /dev/null &
pids+=("$!")
wait_port "$link"
start_twemproxy nut-bulk-far "$link" redis
start_gateway_at "127.0.0.1:$link" "$OUT/bulkload-gw-far.log"

echo
echo "50 clients pipelining 4,000 SETs each (1,000,000 in all) through a primary 20 ms away:"
echo
echo "| target | round | SETs/s | peak RSS MiB |"
echo "|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for target in "twemproxy $TWEM_PORT $TWEM_PID" "dynode $GW_PORT $GW_PID"; do
    read -r name port pid <<< "$target"
    peak=$(peak_rss_while "$pid" "$OUT/bulkload-rb.csv" redis-benchmark -h 127.0.0.1 -p "$port" -t set -n 1000000 -c 50 -P 4000 --csv)
    rps=$(awk -F'","' 'NR > 1 { gsub(/"/, "", $2); printf "%.0f", $2 }' "$OUT/bulkload-rb.csv")
    echo "| $name | $r | $rps | $peak |"
  done
done
