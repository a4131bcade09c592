#!/usr/bin/env bash
# Measures one client's unpipelined SET and GET latency through twemproxy, the
# gateway (1 backend) and direct Redis, in alternating rounds, with exact
# percentiles from every request (bench/latency; redis-benchmark's own percentiles
# are histogram steps of 16 us at this scale).
# Usage: bench/latency.sh [ROUNDS]   (default 7; prints Markdown tables)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server
apt_need nutcracker nutcracker
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/latency" ./bench/latency

start_redis_servers 1
start_twemproxy nut-latency "${RPORT[0]}" redis
GW_PORT=$(free_port)
DYNODE_SERVERS="127.0.0.1:${RPORT[0]}" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=ERROR \
  "$OUT/dynode-broadcaster" > "$OUT/latency-gw.log" 2>&1 &
pids+=("$!"); wait_port "$GW_PORT"
"$OUT/latency" -targets "twemproxy=127.0.0.1:$TWEM_PORT,dynode=127.0.0.1:$GW_PORT,redis (direct)=127.0.0.1:${RPORT[0]}" \
  -rounds "${1:-7}" -n 20000
