# Helpers shared by the benchmark scripts (sourced, not run).

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

cpu_ticks() { # utime+stime of the given pids, in clock ticks
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

# machine_ticks: the clock ticks all CPUs spent busy so far and those they had in all
# (/proc/stat; time stolen by the hypervisor counts in neither).
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

# busy_pct "BUSY0 TOTAL0" "BUSY1 TOTAL1": the percentage of the CPUs' time that was
# busy between two machine_ticks, all processes together: near 100, the machine is
# what bounds the rate, not any one process.
busy_pct() { echo "$1 $2" | awk '{printf "%.0f", ($4 > $2) ? 100 * ($3 - $1) / ($4 - $2) : 0}'; }

# us_per_op TICKS OPS: CPU microseconds per operation.
us_per_op() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN{printf "%.2f", t/hz*1e6/n}'; }

# The targets of an interleaved benchmark, by index: name, port, proxy pid ("-" for
# none) and the backend servers' pids (space-separated). add_target NAME PORT PROXY
# BACKEND_PIDS adds one.
declare -a TNAME TPORT TPROXY TBACKENDS
add_target() { TNAME+=("$1"); TPORT+=("$2"); TPROXY+=("$3"); TBACKENDS+=("$4"); }

# rotated ROUND INDEX...: the indexes rotated by ROUND, the order in which a round of
# interleaved measurements takes its targets (so no target always runs first, or
# always right after the same one).
rotated() {
  local round=$1; shift
  local -a ts=("$@")
  for ((k = 0; k < ${#ts[@]}; k++)); do echo "${ts[$(((k + round) % ${#ts[@]}))]}"; done
}

# apt_need PACKAGE COMMAND...: installs PACKAGE when one of the commands is missing.
apt_need() {
  local pkg=$1; shift
  for c in "$@"; do
    if ! command -v "$c" >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
      return
    fi
  done
}

# start_redis_servers N: N redis-servers without persistence; sets RPORT[0..N-1].
start_redis_servers() {
  declare -g -a RPORT
  for ((i = 0; i < $1; i++)); do
    RPORT[$i]=$(free_port)
    redis-server --port "${RPORT[$i]}" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning --dir "$OUT" > /dev/null &
    pids+=("$!")
    wait_port "${RPORT[$i]}"
  done
}

# start_gateway_on N LOG: the gateway in front of the first N of RPORT, logging to
# LOG at ERROR; sets GW_PORT and GW_PID.
start_gateway_on() {
  local servers="127.0.0.1:${RPORT[0]}"
  for ((i = 1; i < $1; i++)); do servers+=",127.0.0.1:${RPORT[$i]}"; done
  start_gateway_at "$servers" "$2"
}

# start_gateway_at SERVERS LOG: the gateway in front of SERVERS (comma-separated
# addresses), logging to LOG at ERROR; sets GW_PORT and GW_PID.
start_gateway_at() {
  GW_PORT=$(free_port)
  DYNODE_SERVERS="$1" DYNODE_HOST=127.0.0.1 DYNODE_PORT=$GW_PORT DYNODE_LOG_LEVEL=ERROR \
    "$OUT/dynode-broadcaster" > "$2" 2>&1 &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
  sleep 0.3 # the backends' handshake
}

# write_set_pipe FILE: 200,000 SETs in RESP (keys k:0..k:199999, 10-byte values), as
# redis-cli --pipe reads them.
write_set_pipe() {
  python3 -c '
import sys
w = sys.stdout.write
for i in range(200000):
    k = "k:%d" % i
    w("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$10\r\nvalue%05d\r\n" % (len(k), k, i % 100000))
' > "$1"
}

# peak_rss_while PID OUTFILE CMD...: runs CMD (its standard output to OUTFILE) and
# prints the peak RSS of PID in MiB meanwhile (sampled every 100 ms).
peak_rss_while() {
  local pid=$1 outfile=$2; shift 2
  "$@" > "$outfile" 2>/dev/null &
  local load=$! peak=0 r
  while kill -0 "$load" 2>/dev/null; do
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.1
  done
  wait "$load" || true
  awk -v k="$peak" 'BEGIN{printf "%.1f", k/1024}'
}

# start_twemproxy NAME SERVER_PORT [redis]: nutcracker (one server connection, like the
# gateway's one pipeline per backend) in front of the server at SERVER_PORT, speaking
# Redis when the third argument is "redis", else memcached; its config and log are
# $OUT/NAME.yml and $OUT/NAME.log. Sets TWEM_PORT and TWEM_PID.
start_twemproxy() {
  TWEM_PORT=$(free_port)
  {
    echo "bench:"
    echo "  listen: 127.0.0.1:${TWEM_PORT}"
    [ "${3:-}" = redis ] && echo "  redis: true"
    echo "  hash: fnv1a_64"
    echo "  distribution: ketama"
    echo "  auto_eject_hosts: false"
    echo "  server_connections: 1"
    echo "  servers:"
    echo "   - 127.0.0.1:$2:1"
  } > "$OUT/$1.yml"
  nutcracker -c "$OUT/$1.yml" -o "$OUT/$1.log" -s "$(free_port)" &
  TWEM_PID=$!; pids+=("$TWEM_PID")
  wait_port "$TWEM_PORT"
}
