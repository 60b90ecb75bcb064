#!/usr/bin/env bash
# A chaos soak outside CI: rounds of random faults (leader/follower kill,
# leader pause, leader/follower partition) under a write and read load on a
# 3-member cluster of real cfgnode processes. Each round checks that no
# acknowledged write is lost, that the history is linearizable (porcupine)
# and that a watching client misses nothing. Failed rounds keep their
# history and data in the keep folder for offline re-checking.
#
#   scripts/chaos.sh [-rounds N] [-keep DIR] [-seed S]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=20 keep=./chaos-failed seed=0
while [ $# -gt 0 ]; do
  case $1 in
  -rounds) rounds=$2; shift 2 ;;
  -keep) keep=$2; shift 2 ;;
  -seed) seed=$2; shift 2 ;;
  *) echo "usage: $0 [-rounds N] [-keep DIR] [-seed S]" >&2; exit 2 ;;
  esac
done
mkdir -p "$keep"
keep=$(cd "$keep" && pwd)
go test ./integration -run '^TestChaos$' -count=1 -v -timeout "$((rounds * 60 + 120))s" \
  -args -chaos.rounds "$rounds" -chaos.keep "$keep" -chaos.seed "$seed" | grep -E '^(chaos:|  |--- |ok|FAIL|\s+chaos_test.go)'
