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
# The external-mode tests run Debian's etcd 3.4 (package etcd-server), as
# operators who bring their own etcd do; the etcd-auth tests check what a
# service account may do with Debian's etcdctl (etcd-client); the disk-stall
# faults delay a member's fsyncs with strace. Install them once, saying so.
if ! [ -x /usr/bin/etcd ] || ! [ -x /usr/bin/etcdctl ] || ! [ -x /usr/bin/strace ]; then
  echo "scripts/test.sh: the tests need Debian's etcd-server, etcd-client and strace (/usr/bin/etcd, /usr/bin/etcdctl, /usr/bin/strace); installing them with apt-get" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "scripts/test.sh: not root and no sudo: install them yourself (apt-get install etcd-server etcd-client strace), then run this again" >&2
      exit 1
    fi
    sudo="sudo"
    echo "scripts/test.sh: sudo will ask for your password" >&2
  fi
  if ! command -v apt-get >/dev/null; then
    echo "scripts/test.sh: no apt-get: install etcd 3.4 (/usr/bin/etcd, /usr/bin/etcdctl) and strace, then run this again" >&2
    exit 1
  fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server etcd-client strace >/dev/null
  echo "scripts/test.sh: installed $(/usr/bin/etcd --version 2>/dev/null | head -1)" >&2
fi
for tool in curl git; do
  command -v "$tool" >/dev/null || { echo "scripts/test.sh: the tests need $tool" >&2; exit 1; }
done
# OpenFeature's own JavaScript SDK and OFREP provider are the real OFREP
# client of integration/flags_test.go: installed once from the committed
# lock file.
if ! [ -d integration/testdata/ofrep/node_modules/@openfeature/ofrep-provider ]; then
  command -v npm >/dev/null || { echo "scripts/test.sh: the tests need Node.js and npm (OpenFeature's JavaScript OFREP client)" >&2; exit 1; }
  echo "scripts/test.sh: installing OpenFeature's JavaScript SDK and OFREP provider (npm ci --prefix integration/testdata/ofrep)" >&2
  npm ci --prefix integration/testdata/ofrep --no-audit --no-fund >/dev/null
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...
