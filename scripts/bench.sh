#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/BENCHMARKS.md, side by side with raw
# etcd in the same run. Usage: COUNT=5 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# $(date -u +%FT%TZ) $(go version) $(nproc) cores"
go test ./kv -run '^$' -bench BenchmarkWrite -benchtime 2000x -count "${COUNT:-3}"
