#!/usr/bin/env bash
# Runs a local cfgcluster on loopback: 3 or 5 cfgnode members, each with its
# etcd data and log under one folder (default ./cluster).
#
#   scripts/cluster.sh up [-n 3|5] [-d DIR] [--tls]   build, start, wait until ready
#   scripts/cluster.sh status [-d DIR]                cfgadm cluster status
#   scripts/cluster.sh down [-d DIR]                  stop every member (SIGTERM)
#
# Member i listens on 127.0.0.1: API 7380+i, etcd client 2379+10i, peer 2380+10i.
# Every member is given DIR/cluster.keyring (cfgnode keyring makes it), whose
# key wraps the data keys that seal sensitive values.
# With --tls every hop is TLS with client certificates: the API, etcd's client
# port and its peers, with a development CA and certificates that cfgnode certs
# makes in DIR/certs; cfgadm's context for m0 trusts the CA and presents m0's
# certificate.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
shift || true
n=3
dir=./cluster
tls=""
usage() { echo "usage: $0 up|down|status [-n 3|5] [-d DIR] [--tls]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
  -n) [ $# -ge 2 ] || usage; n=$2; shift 2 ;;
  -d) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
  --tls | -tls) tls=1; shift ;;
  *) usage ;;
  esac
done
case $n in 1|3|5) ;; *) echo "-n must be 1, 3 or 5" >&2; exit 2 ;; esac

# in_use reports whether something listens on 127.0.0.1:$1.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
  mkdir -p "$dir" bin
  go build -o bin/ ./cmd/cfgnode ./cmd/cfgadm
  # Every port must be free before anything starts: a member that cannot
  # bind would fail while the others answer for it.
  for ((i = 0; i < n; i++)); do
    if [ -f "$dir/m$i.pid" ] && kill -0 "$(cat "$dir/m$i.pid")" 2>/dev/null; then continue; fi
    for port in $((7380 + i)) $((2379 + 10 * i)) $((2380 + 10 * i)); do
      if in_use "$port"; then
        echo "port $port (member m$i) is in use: stop what holds it (a cfgnode started by hand? scripts/cluster.sh down?) and try again" >&2
        exit 1
      fi
    done
  done
  dir=$(cd "$dir" && pwd) # cfgadm's context names the certificates by absolute path
  local scheme=http certs="$dir/certs"
  if [ -n "$tls" ]; then
    scheme=https
    if ! [ -f "$certs/ca.pem" ]; then
      bin/cfgnode certs --dir "$certs" --names "$(seq -s, -f 'm%g' 0 $((n - 1)))" >/dev/null
    fi
  fi
  # Every node seals and opens sensitive values with keys this one keyring wraps.
  [ -f "$dir/cluster.keyring" ] || bin/cfgnode keyring "$dir/cluster.keyring" >/dev/null
  local initial=""
  for ((i = 0; i < n; i++)); do
    initial+="${initial:+,}m$i=$scheme://127.0.0.1:$((2380 + 10 * i))"
  done
  for ((i = 0; i < n; i++)); do
    if [ -f "$dir/m$i.pid" ] && kill -0 "$(cat "$dir/m$i.pid")" 2>/dev/null; then
      echo "m$i is running already"; continue
    fi
    local tlsflags=()
    if [ -n "$tls" ]; then
      tlsflags=(--cert-file "$certs/m$i.pem" --key-file "$certs/m$i-key.pem" --trusted-ca-file "$certs/ca.pem" --client-cert-auth
        --peer-cert-file "$certs/m$i.pem" --peer-key-file "$certs/m$i-key.pem" --peer-trusted-ca-file "$certs/ca.pem" --peer-client-cert-auth)
    fi
    bin/cfgnode --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "$scheme://127.0.0.1:$((2379 + 10 * i))" \
      --listen-peer-urls "$scheme://127.0.0.1:$((2380 + 10 * i))" \
      --initial-cluster "$initial" --api-addr "127.0.0.1:$((7380 + i))" \
      --encryption-keyring "$dir/cluster.keyring" \
      "${tlsflags[@]}" --schema examples/schema.yaml >>"$dir/m$i.log" 2>&1 &
    echo $! >"$dir/m$i.pid"
  done
  # Ready means: this member's own node answers ready, under its name.
  for ((i = 0; i < n; i++)); do
    local url="$scheme://127.0.0.1:$((7380 + i))" ok="" curlflags=()
    [ -n "$tls" ] && curlflags=(--cacert "$certs/ca.pem" --cert "$certs/m$i.pem" --key "$certs/m$i-key.pem")
    for _ in $(seq 1 300); do
      if curl -fsS "${curlflags[@]}" "$url/readyz" >/dev/null 2>&1 && [ -f "$dir/m$i/admin.token" ] &&
        curl -fsS "${curlflags[@]}" -H "Authorization: Bearer $(cat "$dir/m$i/admin.token")" "$url/v1/version" 2>/dev/null | grep -q "\"name\":\"m$i\""; then
        ok=1; break
      fi
      kill -0 "$(cat "$dir/m$i.pid")" 2>/dev/null || break
      sleep 0.2
    done
    if [ -z "$ok" ]; then
      echo "m$i is not ready at $url: the end of $dir/m$i.log:" >&2
      tail -5 "$dir/m$i.log" >&2
      exit 1
    fi
  done
  echo "cluster of $n up${tls:+ with TLS on every hop (CA: $certs/ca.pem)}: cfgadm's context m0 (the current one) reaches it; logs, data and admin tokens in $dir"
}

down() {
  for pid in "$dir"/m*.pid; do
    [ -e "$pid" ] || continue
    kill "$(cat "$pid")" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$(cat "$pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pid"
  done
  echo "cluster down (data kept in $dir)"
}

case $cmd in
up) up ;;
down) down ;;
status) bin/cfgadm --context m0 cluster status ;;
*) usage ;;
esac
