#!/bin/bash
# A/B of `makoto attest` builds on one table: each round attests TABLE into a fresh warehouse
# with each binary in turn (interleaved, so a shared machine's load weighs on all alike), then
# runs the Python anchor (`deltalake` opening the same table). Wall time, peak RSS, user and
# system CPU from /usr/bin/time. docs/performance.md quotes its output.
#
#   benches/ab.sh TABLE KEY ROUNDS NAME=BINARY...
#
# The warehouse is made beside TABLE (put both on tmpfs to leave the disk out). PYTHON
# (default python3) must have `deltalake`.
set -euo pipefail
table=$1; key=$2; rounds=$3; shift 3
py=${PYTHON:-python3}
wh="$(dirname "$table")/wh-ab"
for r in $(seq 1 "$rounds"); do
  for nb in "$@"; do
    name=${nb%%=*}; bin=${nb#*=}
    rm -rf "$wh"
    /usr/bin/time -f "$name round=$r %e s %M KB %U user %S sys" \
      "$bin" attest "$table" --warehouse "$wh" --key "$key" >/dev/null
  done
  /usr/bin/time -f "python-deltalake round=$r %e s %M KB %U user %S sys" \
    "$py" -c "import sys; from deltalake import DeltaTable; DeltaTable(sys.argv[1]).file_uris()" "$table"
done
rm -rf "$wh"
