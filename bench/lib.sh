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

# us_per_op TICKS OPS: CPU microseconds per operation.
us_per_op() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN{printf "%.2f", t/hz*1e6/n}'; }

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
