#!/usr/bin/env bash
# Benchmarks the gateway (1, 2, 3 and 10 backends) against direct Redis and twemproxy
# (nutcracker), all measured in the same run on loopback, and prints one table:
#   median ops/s of 3 rounds, ratio to direct Redis, ratio to twemproxy, CPU
#   microseconds per operation of the proxy process and of the redis-server processes,
#   and redis-benchmark's p50/p95/p99 latencies,
#   also drawn as bench/redis.png (bench/charts).
# Then it measures RSS with 10,000 idle client connections and its peak with 1,000
# clients pipelining 1 KiB values, large values (bench/values.sh), protocol=raw
# throughput (bench/raw.sh), protocol=memcache (bench/memcache.sh), the writes replicated
# by effect (bench/effects.sh) and the client-state workloads (bench/clientstate.sh).
#
# Not part of the test run. Needs redis-server, redis-benchmark (redis-tools) and
# nutcracker; installs them with apt-get when missing. Usage: bench/run.sh [rounds]
# (BENCH_ONLY=redis stops after the Redis table).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${BENCH_REQUESTS:-200000}
CLIENTS=50
OUT="$PWD/bench/out" # absolute: redis-server opens --logfile after chdir to --dir
mkdir -p "$OUT"

source bench/lib.sh
apt_need redis-server redis-server
apt_need redis-tools redis-benchmark
apt_need nutcracker nutcracker
ulimit -n "$(ulimit -Hn)" # 10,000 idle clients need as many descriptors

go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/idleconns" ./bench/idleconns


# Ten redis-servers: the first serves direct, twemproxy and every gateway; the others
# are the extra backends of the 2-, 3- and 10-backend gateways.
declare -a RPORT RPID
for i in $(seq 0 9); do
  RPORT[$i]=$(free_port)
  redis-server --port "${RPORT[$i]}" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning --dir "$OUT" --logfile "$OUT/redis-$i.log" &
  RPID[$i]=$!; pids+=("${RPID[$i]}")
  wait_port "${RPORT[$i]}"
done

start_twemproxy nutcracker "${RPORT[0]}" redis

start_gateway() { # $1 = number of backends; sets GW_PORT GW_PID
  local servers="127.0.0.1:${RPORT[0]}"
  for ((i = 1; i < $1; i++)); do servers+=",127.0.0.1:${RPORT[$i]}"; done
  GW_PORT=$(free_port)
  DYNODE_SERVERS="$servers" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=WARN \
    DYNODE_MAX_CLIENTS=20000 "$OUT/dynode-broadcaster" &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
}

# Every target runs at once. A round measures each of them in turn (the order rotates
# from round to round), so a slow spell on this shared machine falls on every target
# of a round rather than on one target's block of rounds; the table's ratios are
# medians of the per-round ratios.
add_target "redis (direct)" "${RPORT[0]}" - "${RPID[0]}"
add_target "twemproxy" "$TWEM_PORT" "$TWEM_PID" "${RPID[0]}"
for nb in 1 2 3 10; do
  start_gateway "$nb"
  add_target "dynode, $nb backend(s)" "$GW_PORT" "$GW_PID" "${RPID[*]:0:$nb}"
  if [ "$nb" = 1 ]; then GW1_PORT=$GW_PORT GW1_PID=$GW_PID; fi
done
sleep 0.5 # the backends' handshakes

# bench TARGET PIPELINE ROUND: one line per test, prefixed with the target's index
# (the rows are put in target order at the end).
rows="$OUT/rows.tsv"
: > "$rows"
bench() {
  local t=$1 pipeline=$2 round=$3 name=${TNAME[$1]} port=${TPORT[$1]} proxy=${TPROXY[$1]}
  local -a backends
  read -r -a backends <<< "${TBACKENDS[$1]}"
  for test in set get; do
    local p0 b0 m0 p1 b1 m1 rps p50 p95 p99
    p0=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b0=$(cpu_ticks "${backends[@]}"); m0=$(machine_ticks)
    # redis-benchmark's CSV: test, rps, avg, min, p50, p95, p99, max (latencies in ms).
    read -r rps p50 p95 p99 < <(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$N" -c "$CLIENTS" -P "$pipeline" --csv 2>/dev/null \
      | awk -F, 'NR>1 {gsub(/"/,""); print $2, $5, $6, $7}')
    p1=$([ "$proxy" = - ] && echo 0 || cpu_ticks "$proxy"); b1=$(cpu_ticks "${backends[@]}"); m1=$(machine_ticks)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$name" "$pipeline" "$test" "$rps" \
      "$(us_per_op $((p1 - p0)) "$N")" "$(us_per_op $((b1 - b0)) "$N")" "$p50" "$p95" "$p99" "$(busy_pct "$m0" "$m1")" >> "$rows"
    echo "  $name -P $pipeline $test round $round: $rps ops/s" >&2
  done
}

# idle_rss PORT PID: RSS in MiB of PID while 10,000 idle clients are connected to PORT,
# 12 s after the last one connected (the gateway's sessions go dormant after
# client_dormant_after, 10 s by default, and the memory of their goroutines goes back
# to the system half a second later).
idle_rss() {
  "$OUT/idleconns" -addr "127.0.0.1:$1" -n 10000 -hold 14s > "$OUT/idle-$1.out" &
  local idle=$!
  for _ in $(seq 600); do grep -q ready "$OUT/idle-$1.out" 2>/dev/null && break; sleep 0.1; done
  sleep 12
  awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$2/status"
  wait "$idle"
}

# busy_rss PORT PID: peak RSS in MiB of PID while 1,000 clients pipeline 16 SETs and
# then 16 GETs of 1 KiB values each through PORT (sampled every 100 ms).
busy_rss() {
  peak_rss_while "$2" /dev/null redis-benchmark -h 127.0.0.1 -p "$1" -t set,get -n 1000000 -c 1000 -P 16 -d 1024 -q
}

for P in 1 16; do
  for round in $(seq "$ROUNDS"); do
    for t in $(rotated "$round" "${!TNAME[@]}"); do bench "$t" "$P" "$round"; done
  done
done
# raw.tsv: the rows in target order, each target's rounds in the order they ran
# (bench/charts reads it).
results="$OUT/raw.tsv"
sort -s -n -k1,1 "$rows" | cut -f2- > "$results"
GW_IDLE_RSS=$(idle_rss "$GW1_PORT" "$GW1_PID")
TWEM_IDLE_RSS=$(idle_rss "$TWEM_PORT" "$TWEM_PID")
GW_BUSY_RSS=$(busy_rss "$GW1_PORT" "$GW1_PID")
TWEM_BUSY_RSS=$(busy_rss "$TWEM_PORT" "$TWEM_PID")
for p in "${TPROXY[@]:2}"; do kill "$p"; wait "$p" 2>/dev/null || true; done

# Table: medians per (name, pipeline, test); ratios against direct and twemproxy are
# medians of the per-round ratios.
python3 - "$results" "$N" "$CLIENTS" "$ROUNDS" "${GW_IDLE_RSS:-?}" "${TWEM_IDLE_RSS:-?}" "${GW_BUSY_RSS:-?}" "${TWEM_BUSY_RSS:-?}" <<'PY' | tee "$OUT/results.md"
import sys, statistics, collections, platform, os
path, n, clients, rounds, gw_rss, twem_rss, gw_busy, twem_busy = sys.argv[1:]
rows = collections.defaultdict(list)
order = []
for line in open(path):
    name, p, test, rps, pcpu, bcpu, p50, p95, p99, busy = line.rstrip("\n").split("\t")
    key = (name, int(p), test)
    if key not in rows: order.append(key)
    rows[key].append((float(rps), float(pcpu), float(bcpu), float(p50), float(p95), float(p99), float(busy)))
def med(key, i):
    return statistics.median(r[i] for r in rows[key])
def ratio(key, other):  # the median of the per-round ratios of ops/s
    return statistics.median(a[0] / b[0] for a, b in zip(rows[key], rows[other]))
print(f"redis-benchmark -n {n} -c {clients}, median of {rounds} interleaved rounds (ratios: medians of the per-round ratios); {os.cpu_count()} CPUs, loopback; CPU = user+system microseconds per operation; CPUs busy = all processes' share of the machine's CPU time; latency percentiles as redis-benchmark reports them (each the median of the rounds)\n")
print("| target | -P | test | ops/s | vs direct | vs twemproxy | proxy CPU us/op | redis CPU us/op | CPUs busy | p50 / p95 / p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key in order:
    name, p, test = key
    rps = med(key, 0)
    direct = ratio(key, ("redis (direct)", p, test))
    twem = ratio(key, ("twemproxy", p, test))
    pcpu = "-" if name.startswith("redis") else f"{med(key, 1):.2f}"
    print(f"| {name} | {p} | {test.upper()} | {rps:,.0f} | {direct:.2f} | {twem:.2f} | {pcpu} | {med(key, 2):.2f} | {med(key, 6):.0f} % | {med(key, 3):.3f} / {med(key, 4):.3f} / {med(key, 5):.3f} |")
print(f"\nRSS with 10,000 idle client connections: dynode {gw_rss} MiB, twemproxy {twem_rss} MiB")
print(f"Peak RSS with 1,000 clients pipelining 16 SETs or GETs of 1 KiB values: dynode {gw_busy} MiB, twemproxy {twem_busy} MiB")
PY
go run ./bench/charts -in "$results" -out bench/redis.png && echo "chart: bench/redis.png"

[ "${BENCH_ONLY:-}" = redis ] && exit 0 # BENCH_ONLY=redis: the Redis table only
echo
bench/values.sh "$ROUNDS"
echo
bench/raw.sh
echo
bench/memcache.sh "$ROUNDS"
echo
bench/effects.sh
echo
bench/clientstate.sh
