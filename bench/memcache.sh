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

results="$OUT/memcache.tsv"
: > "$results"
# bench NAME PORT PROXY_PID BACKEND_PIDS...
bench() {
  local name=$1 port=$2 proxy=$3; shift 3
  for round in $(seq "$ROUNDS"); do
    for test in set get; do
      local p0 b0 p1 b1 secs
      p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b0=$(cpu_ticks "$@")
      # get first loads its keys with sets; only the timed phase counts as ops/s,
      # the CPU of both phases is divided by the operations of both.
      secs=$(memcslap --servers="127.0.0.1:$port" --concurrency=$THREADS --execute-number="$PER_THREAD" --test=$test 2>&1 \
        | awk '/^Time to (set|get)/ {print $(NF-1)}')
      p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b1=$(cpu_ticks "$@")
      local ops=$N
      [ "$test" = get ] && ops=$((2 * N))
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$test" "$(awk -v n="$N" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')" \
        "$(us_per_op $((p1 - p0)) "$ops")" "$(us_per_op $((b1 - b0)) "$ops")" >> "$results"
      echo "  $name $test round $round: $secs s" >&2
    done
  done
}

values="$OUT/memcache-values.tsv"
: > "$values"
# mcvalues NAME PORT PROXY_PID: the value-size rows (bench/mcload).
mcvalues() {
  local name=$1 port=$2 proxy=$3
  for size in 16384 102400 1048576; do
    local n=20000
    [ "$size" = 102400 ] && n=5000
    [ "$size" = 1048576 ] && n=600
    for round in $(seq "$ROUNDS"); do
      for test in set get; do
        local p0 p1 rps p50 p99
        p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy")
        read -r rps p50 p99 < <("$OUT/mcload" -addr "127.0.0.1:$port" -test $test -size $size -clients 10 -n $n)
        p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$size" "$test" "$rps" "$(us_per_op $((p1 - p0)) "$n")" "$p50" "$p99" >> "$values"
        echo "  $name $size $test round $round: $rps ops/s" >&2
      done
    done
  done
}

bench "memcached (direct)" "${MPORT[0]}" - "${MPID[0]}"
bench "twemproxy" "$TWEM_PORT" "$TWEM_PID" "${MPID[0]}"
mcvalues "memcached (direct)" "${MPORT[0]}" -
mcvalues "twemproxy" "$TWEM_PORT" "$TWEM_PID"
servers="127.0.0.1:${MPORT[0]}"
for nb in 1 2 3; do
  [ "$nb" -gt 1 ] && servers+=",127.0.0.1:${MPORT[$((nb - 1))]}"
  GW_PORT=$(free_port)
  DYNODE_PROTOCOL=memcache DYNODE_SERVERS="$servers" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=WARN \
    "$OUT/dynode-broadcaster" &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
  bench "dynode, $nb backend(s)" "$GW_PORT" "$GW_PID" "${MPID[@]:0:$nb}"
  [ "$nb" != 2 ] && mcvalues "dynode, $nb backend(s)" "$GW_PORT" "$GW_PID"
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
done

python3 - "$results" "$N" "$THREADS" "$ROUNDS" <<'PY' | tee "$OUT/memcache-results.md"
import sys, statistics, collections, os
path, n, threads, rounds = sys.argv[1:]
rows, order = collections.defaultdict(list), []
for line in open(path):
    name, test, rps, pcpu, bcpu = line.rstrip("\n").split("\t")
    if (name, test) not in rows: order.append((name, test))
    rows[(name, test)].append((float(rps), float(pcpu), float(bcpu)))
med = lambda key, i: statistics.median(r[i] for r in rows[key])
print(f"memcslap --concurrency {threads}, {n} keys, median of {rounds} rounds; {os.cpu_count()} CPUs, loopback; CPU = user+system microseconds per operation\n")
print("| target | test | ops/s | vs direct | vs twemproxy | proxy CPU us/op | memcached CPU us/op |")
print("|---|---|---|---|---|---|---|")
for key in order:
    name, test = key
    rps = med(key, 0)
    pcpu = "-" if name.startswith("memcached") else f"{med(key, 1):.2f}"
    print(f"| {name} | {test} | {rps:,.0f} | {rps/med(('memcached (direct)', test), 0):.2f} | {rps/med(('twemproxy', test), 0):.2f} | {pcpu} | {med(key, 2):.2f} |")
PY

echo
python3 bench/valuetable.py "$values" "memcached (direct)" \
  "bench/mcload, 10 connections with one request in flight each, median of $ROUNDS rounds; CPU = proxy user+system microseconds per operation" \
  | tee "$OUT/memcache-values.md"
