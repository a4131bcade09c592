#!/usr/bin/env bash
# Soak test: 1,000 clients of mixed load (reads, writes, pipelines, MULTI, a BLPOP
# job queue, pub/sub) with connection churn against the gateway in front of 3
# redis-servers, one secondary restarted empty every minute (auto_resync brings it
# back), sampling the gateway's RSS, goroutines, open fds and ops/s every 10 s.
# Ends by checking every backend is in sync and DEBUG DIGEST is equal on all.
# Writes bench/out/soak/samples.tsv and the chart bench/soak.png, prints a
# Markdown summary (bench/SOAK.md records one run).
# Usage: bench/soak.sh [DURATION]   (Go duration, default 10m; e.g. 2m)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/bench/out"
mkdir -p "$OUT"
source bench/lib.sh
apt_need redis-server redis-server
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/soak-load" ./bench/soak
"$OUT/soak-load" -gateway "$OUT/dynode-broadcaster" -duration "${1:-10m}" -rate "${SOAK_RATE:-10000}" \
  -out "$OUT/soak" -chart bench/soak.png
