#!/usr/bin/env bash
# Benchmarks client-state workloads: a job queue (5 producers RPUSH, 20 workers
# BLPOP) and PUBLISH fan-out (1 publisher, 10 subscribers): direct Redis, and the
# gateway with 1 and 3 backends, measured in the same run (bench/clientstate).
# Usage: bench/clientstate.sh   (prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/clientstate" ./bench/clientstate

start_redis_servers 3
gateway() { start_gateway_on "$1" "$OUT/clientstate-gw-$1.log"; } # $1 = backends; sets GW_PORT, GW_PID

echo "| target | BLPOP/RPUSH queue jobs/s | vs direct | PUBLISH fan-out deliveries/s | vs direct |"
echo "|---|---|---|---|---|"
read -r dq df < <("$OUT/clientstate" -addr "127.0.0.1:${RPORT[0]}")
echo "| redis (direct) | $dq | 1.00 | $df | 1.00 |"
for nb in 1 3; do
  gateway "$nb"
  read -r q f < <("$OUT/clientstate" -addr "127.0.0.1:$GW_PORT")
  awk -v nb="$nb" -v q="$q" -v f="$f" -v dq="$dq" -v df="$df" \
    'BEGIN { printf "| dynode, %d backend(s) | %d | %.2f | %d | %.2f |\n", nb, q, q/dq, f, f/df }'
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done
