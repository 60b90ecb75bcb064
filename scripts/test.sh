#!/usr/bin/env bash
# Runs the whole test suite: vet, then every package's tests with the race
# detector (unit tests, real embedded etcd members, real cfgnode processes).
# Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
# The external-mode test runs Debian's etcd 3.4 (package etcd-server).
if ! [ -x /usr/bin/etcd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  else
    echo "the external-etcd test needs Debian's etcd-server: sudo apt-get install etcd-server" >&2
    exit 1
  fi
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...
