#!/usr/bin/env bash
# protocol=memcache: memcslap (50 threads, one request at a time each) against direct
# memcached, twemproxy (nutcracker) in front of memcached, and the gateway with 1, 2
# and 3 memcached backends, all in the same run on loopback. Prints one table:
# median ops/s of the rounds, ratios to direct and to twemproxy, and CPU
# microseconds per operation of the proxy and of the memcached processes. Then the
# same targets (gateway: 1 and 3 backends) with values of 16 KiB, 100 KiB and 1 MiB
# (bench/mcload, 10 connections, one request in flight each): a second table.
# Called by bench/run.sh; runs alone too. Needs memcached, memcslap
# (libmemcached-tools) and nutcracker; installs them when missing.
# Usage: bench/memcache.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=50
PER_THREAD=${BENCH_MEMCACHE_PER_THREAD:-2000}
N=$((THREADS * PER_THREAD))
OUT=bench/out
mkdir -p "$OUT"
source bench/lib.sh
apt_need memcached memcached
apt_need libmemcached-tools memcslap
apt_need nutcracker nutcracker
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/mcload" ./bench/mcload

declare -a MPORT MPID
for i in 0 1 2; do
  MPORT[$i]=$(free_port)
  memcached -l 127.0.0.1 -p "${MPORT[$i]}" -U 0 -m 256 -I 2m -u "$(id -un)" &
  MPID[$i]=$!; pids+=("${MPID[$i]}")
  wait_port "${MPORT[$i]}"
done

start_twemproxy nutcracker-mc "${MPORT[0]}"

# Every target runs at once; each round measures them in turn, the order rotating
# from round to round (as bench/run.sh does), so a slow spell falls on a whole round.
add_target "memcached (direct)" "${MPORT[0]}" - "${MPID[0]}"
add_target "twemproxy" "$TWEM_PORT" "$TWEM_PID" "${MPID[0]}"
servers="127.0.0.1:${MPORT[0]}"
for nb in 1 2 3; do
  [ "$nb" -gt 1 ] && servers+=",127.0.0.1:${MPORT[$((nb - 1))]}"
  GW_PORT=$(free_port)
  DYNODE_PROTOCOL=memcache DYNODE_SERVERS="$servers" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=WARN \
    "$OUT/dynode-broadcaster" &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
  add_target "dynode, $nb backend(s)" "$GW_PORT" "$GW_PID" "${MPID[*]:0:$nb}"
done
sleep 0.3 # the backends' handshakes

rows="$OUT/memcache-rows.tsv"
: > "$rows"
# bench TARGET ROUND: memcslap's set and get, one line each, prefixed with the
# target's index.
bench() {
  local t=$1 round=$2 name=${TNAME[$1]} port=${TPORT[$1]} proxy=${TPROXY[$1]}
  local -a backends
  read -r -a backends <<< "${TBACKENDS[$1]}"
  for test in set get; do
    local p0 b0 p1 b1 secs
    p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b0=$(cpu_ticks "${backends[@]}")
    # get first loads its keys with sets; only the timed phase counts as ops/s,
    # the CPU of both phases is divided by the operations of both.
    secs=$(memcslap --servers="127.0.0.1:$port" --concurrency=$THREADS --execute-number="$PER_THREAD" --test=$test 2>&1 \
      | awk '/^Time to (set|get)/ {print $(NF-1)}')
    p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b1=$(cpu_ticks "${backends[@]}")
    local ops=$N
    [ "$test" = get ] && ops=$((2 * N))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$name" "$test" "$(awk -v n="$N" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')" \
      "$(us_per_op $((p1 - p0)) "$ops")" "$(us_per_op $((b1 - b0)) "$ops")" >> "$rows"
    echo "  $name $test round $round: $secs s" >&2
  done
}

vrows="$OUT/memcache-values-rows.tsv"
: > "$vrows"
# mcvalue TARGET SIZE ROUND: a value-size row per test (bench/mcload), prefixed with
# the target's index.
mcvalue() {
  local t=$1 size=$2 round=$3 name=${TNAME[$1]} port=${TPORT[$1]} proxy=${TPROXY[$1]}
  local -a backends
  read -r -a backends <<< "${TBACKENDS[$1]}"
  local n=20000
  [ "$size" = 102400 ] && n=5000
  [ "$size" = 1048576 ] && n=600
  for test in set get; do
    local p0 b0 m0 p1 b1 m1 rps p50 p99
    p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b0=$(cpu_ticks "${backends[@]}"); m0=$(machine_ticks)
    read -r rps p50 p99 < <("$OUT/mcload" -addr "127.0.0.1:$port" -test $test -size $size -clients 10 -n $n)
    p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b1=$(cpu_ticks "${backends[@]}"); m1=$(machine_ticks)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$name" "$size" "$test" "$rps" "$(us_per_op $((p1 - p0)) "$n")" \
      "$(us_per_op $((b1 - b0)) "$n")" "$p50" "$p99" "$(busy_pct "$m0" "$m1")" >> "$vrows"
    echo "  $name $size $test round $round: $rps ops/s" >&2
  done
}

for round in $(seq "$ROUNDS"); do
  for t in $(rotated "$round" 0 1 2 3 4); do bench "$t" "$round"; done
done
for size in 16384 102400 1048576; do
  for round in $(seq "$ROUNDS"); do
    for t in $(rotated "$round" 0 1 2 4); do mcvalue "$t" "$size" "$round"; done # not 2 backends
  done
done
# In target order, each target's rounds in the order they ran.
results="$OUT/memcache.tsv" values="$OUT/memcache-values.tsv"
sort -s -n -k1,1 "$rows" | cut -f2- > "$results"
sort -s -n -k1,1 "$vrows" | cut -f2- > "$values"

python3 - "$results" "$N" "$THREADS" "$ROUNDS" <<'PY' | tee "$OUT/memcache-results.md"
import sys, statistics, collections, os
path, n, threads, rounds = sys.argv[1:]
rows, order = collections.defaultdict(list), []
for line in open(path):
    name, test, rps, pcpu, bcpu = line.rstrip("\n").split("\t")
    if (name, test) not in rows: order.append((name, test))
    rows[(name, test)].append((float(rps), float(pcpu), float(bcpu)))
med = lambda key, i: statistics.median(r[i] for r in rows[key])
ratio = lambda key, other: statistics.median(a[0] / b[0] for a, b in zip(rows[key], rows[other]))
print(f"memcslap --concurrency {threads}, {n} keys, median of {rounds} interleaved rounds (ratios: medians of the per-round ratios); {os.cpu_count()} CPUs, loopback; CPU = user+system microseconds per operation\n")
print("| target | test | ops/s | vs direct | vs twemproxy | proxy CPU us/op | memcached CPU us/op |")
print("|---|---|---|---|---|---|---|")
for key in order:
    name, test = key
    rps = med(key, 0)
    pcpu = "-" if name.startswith("memcached") else f"{med(key, 1):.2f}"
    print(f"| {name} | {test} | {rps:,.0f} | {ratio(key, ('memcached (direct)', test)):.2f} | {ratio(key, ('twemproxy', test)):.2f} | {pcpu} | {med(key, 2):.2f} |")
PY

echo
python3 bench/valuetable.py "$values" "memcached (direct)" \
  "bench/mcload, 10 connections with one request in flight each, median of $ROUNDS interleaved rounds (ratios: medians of the per-round ratios); CPU = user+system microseconds per operation of the proxy and of the memcached processes" \
  | tee "$OUT/memcache-values.md"
