#!/usr/bin/env bash
# A chaos soak outside CI: rounds of random faults (leader/follower kill,
# leader pause, leader/follower partition, a slowed follower) under a write
# and read load on a 3-member cluster of real cfgnode processes. With -netns
# (root), each member runs in a network namespace of its own, and the
# partitions are real: a member cut off from its peers both ways, one that
# cannot send to them, one that cannot hear them, a leader cut from its
# clients. Both draw disk stalls (a member's fsyncs delayed 300 ms, by
# strace). Each round checks that no
# acknowledged write is lost, that the history is linearizable (porcupine),
# that a watching client misses nothing, and that writes resumed within 2 s;
# a failed round says which check failed, with its numbers, and keeps its
# history and data in the keep folder for offline re-checking. Each round
# reads only what it wrote and compacts etcd behind it, so the soak runs in
# time that does not grow round after round (about 5 s a round). It ends
# with a summary by fault: rounds, operations, acknowledged, lost,
# linearizable, watch violations, recovery p50/p99/max, seed and commit.
#
# With -for DURATION (Go's: 90m) it starts no round after that long, and
# ends with the summary of the rounds it ran: an unattended soak in bounded
# time.
#
#   scripts/chaos.sh [-rounds N] [-for DURATION] [-keep DIR] [-seed S] [-netns]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=20 keep=./chaos-failed seed=0 netns=false duration=0
while [ $# -gt 0 ]; do
  case $1 in
  -rounds) rounds=$2; shift 2 ;;
  -keep) keep=$2; shift 2 ;;
  -seed) seed=$2; shift 2 ;;
  -netns) netns=true; shift ;;
  -for) duration=$2; shift 2 ;;
  *) echo "usage: $0 [-rounds N] [-for DURATION] [-keep DIR] [-seed S] [-netns]" >&2; exit 2 ;;
  esac
done
mkdir -p "$keep"
keep=$(cd "$keep" && pwd)
go test ./integration -run '^TestChaos$' -count=1 -v -timeout "$((rounds * 30 + 300))s" \
  -args -chaos.rounds "$rounds" -chaos.keep "$keep" -chaos.seed "$seed" -chaos.netns="$netns" -chaos.for "$duration" | grep --line-buffered -E '^(chaos:|  |--- |ok|FAIL|\s+chaos_test.go)'
