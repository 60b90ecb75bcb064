#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/BENCHMARKS.md, each side by side with
# raw etcd (or a bare cache) in the same run. Takes about 5 minutes.
# Usage: COUNT=3 scripts/bench.sh [write|auth|seal|get|propagation|memory|sse|audit|flags|heap]...
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-1}
want=${*:-write auth seal get propagation memory sse audit flags heap}
echo "# $(date -u +%FT%TZ) $(go version) $(nproc) cores"
for w in $want; do
  case $w in
  write) go test ./kv -run '^$' -bench BenchmarkWrite -benchtime 2000x -count "$count" ;;
  auth) go test ./node -run '^$' -bench BenchmarkAuthCost -benchtime 3000x -count "$count" ;;
  seal)
    go test ./seal -run '^$' -bench . -benchmem -count "$count"
    go test ./kv -run '^$' -bench BenchmarkSealedWrite -benchtime 6000x -count "$count"
    go test ./watch -run '^$' -bench BenchmarkGetSealed -benchmem -count "$count" ;;
  get) go test ./watch -run '^$' -bench BenchmarkGet -benchmem -cpu 1,2,4 -count "$count" ;;
  propagation) go test ./watch -run '^$' -bench BenchmarkPropagation -benchtime 300x -count "$count" -timeout 30m ;;
  memory) go test ./watch -run '^$' -bench BenchmarkIdleSubscriberMemory -benchtime 1x -count "$count" ;;
  sse) go test ./node -run '^$' -bench BenchmarkSSEFanout -benchtime 50x -count "$count" ;;
  audit) go test ./kv -run '^$' -bench BenchmarkAuditRead -benchtime 20x -count "$count" ;;
  flags)
    go test ./flags -run '^$' -bench BenchmarkEvaluate -benchmem -cpu 1,2 -count "$count"
    go test ./watch -run '^$' -bench BenchmarkFlag -benchmem -cpu 1,2 -count "$count" ;;
  heap) for n in 200 1400 4000; do go test ./node -run '^$' -bench BenchmarkNodeHeapUnderWrites -benchtime "${n}x" -count "$count"; done ;;
  *) echo "unknown benchmark $w" >&2; exit 2 ;;
  esac
done
