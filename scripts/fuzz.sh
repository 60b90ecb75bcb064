#!/usr/bin/env bash
# Fuzzes every parser for a while each. Usage: scripts/fuzz.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-60s}
for f in FuzzParse FuzzParseText; do
  go test ./schema -run '^$' -fuzz "^$f\$" -fuzztime "$t"
done
go test ./api -run '^$' -fuzz '^FuzzReadEvents$' -fuzztime "$t"
go test ./seal -run '^$' -fuzz '^FuzzParseKeyring$' -fuzztime "$t"
go test ./flags -run '^$' -fuzz '^FuzzFlag$' -fuzztime "$t"
go test ./auth -run '^$' -fuzz '^FuzzParse$' -fuzztime "$t"
go test ./node -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$t"
