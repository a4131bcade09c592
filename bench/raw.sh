#!/usr/bin/env bash
# protocol=raw throughput: a 1 GiB stream from one client to 1, 10 and 100 sink
# backends through the gateway (raw_reply=none), against the same stream sent straight
# to one sink. Prints a table: MiB/s per backend, aggregate MiB/s, gateway CPU ms per
# MiB of client stream. Called by bench/run.sh; runs alone too. Usage: bench/raw.sh [bytes]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1073741824}
OUT=bench/out
mkdir -p "$OUT"
go build -o "$OUT/dynode-broadcaster" ./cmd/dynode-broadcaster
go build -o "$OUT/rawstream" ./bench/rawstream
{
  echo "raw mode: one client streams $((SIZE >> 20)) MiB; loopback sinks; CPU = gateway user+system ms per MiB of client stream"
  echo
  echo "| target | MiB/s per backend | MiB/s all backends | gateway CPU ms/MiB |"
  echo "|---|---|---|---|"
  "$OUT/rawstream" -direct -size "$SIZE"
  for n in 1 10 100; do
    "$OUT/rawstream" -backends "$n" -size "$SIZE" -gateway "$OUT/dynode-broadcaster"
  done
} | tee "$OUT/raw-results.md"
