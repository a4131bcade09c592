#!/usr/bin/env bash
# Benchmarks the writes the gateway replicates by effect (SPOP, XADD *, INCRBYFLOAT)
# beside plain SET: direct Redis, and the gateway with 1 and 3 backends, measured in
# the same run. Through 3 backends the others' writes wait one primary round trip at
# each of these commands; the table shows what that costs.
# Usage: bench/effects.sh [requests]   (prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server
apt_need redis-tools redis-benchmark
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster

declare -a RPORT
for i in 0 1 2; do
  RPORT[$i]=$(free_port)
  redis-server --port "${RPORT[$i]}" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning --dir "$OUT" > /dev/null &
  pids+=("$!")
  wait_port "${RPORT[$i]}"
done
gateway() { # $1 = backends; sets GW_PORT
  local servers="127.0.0.1:${RPORT[0]}"
  for ((i = 1; i < $1; i++)); do servers+=",127.0.0.1:${RPORT[$i]}"; done
  GW_PORT=$(free_port)
  DYNODE_SERVERS="$servers" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=ERROR \
    "$OUT/dynode-broadcaster" > "$OUT/effects-gw-$1.log" 2>&1 &
  pids+=("$!")
  wait_port "$GW_PORT"
  sleep 0.3 # the backends' handshake
}
gateway 1; GW1=$GW_PORT
gateway 3; GW3=$GW_PORT

rps() { # port pipeline command...
  local port=$1 p=$2; shift 2
  redis-benchmark -h 127.0.0.1 -p "$port" -n "$N" -c 50 -P "$p" --csv "$@" 2>/dev/null | awk -F'","' 'NR>1 {gsub(/"/,"",$2); print $2}'
}
fill() { # port: a set of 2N members for SPOP to pop
  redis-cli -p "$1" EVAL "for i = 1, tonumber(ARGV[1]) do redis.call('SADD', KEYS[1], i) end" 1 pset $((2 * N)) > /dev/null
}
echo "| target | -P | SET | SPOP | XADD * | INCRBYFLOAT |"
echo "|---|---|---|---|---|---|"
for P in 1 16; do
  for t in "redis (direct):${RPORT[0]}" "dynode, 1 backend:$GW1" "dynode, 3 backends:$GW3"; do
    name=${t%%:*} port=${t##*:}
    redis-cli -p "$port" FLUSHALL > /dev/null
    fill "$port"
    set=$(rps "$port" "$P" SET k v)
    spop=$(rps "$port" "$P" SPOP pset)
    xadd=$(rps "$port" "$P" XADD s '*' f v)
    incr=$(rps "$port" "$P" INCRBYFLOAT f 0.1)
    printf '| %s | %s | %.0f | %.0f | %.0f | %.0f |\n' "$name" "$P" "$set" "$spop" "$xadd" "$incr"
  done
done
