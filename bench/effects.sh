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

start_redis_servers 3
gateway() { start_gateway_on "$1" "$OUT/effects-gw-$1.log"; } # $1 = backends; sets GW_PORT, GW_PID
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
