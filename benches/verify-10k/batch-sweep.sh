#!/bin/bash
# The --batch-size sweep of docs/performance.md (b): `makoto attest` of the 10 001-commit table
# into a fresh warehouse per run, one run per size per round (interleaved), beside the Python
# anchor (`deltalake` opening the same table) in every round. Wall time and peak RSS from
# /usr/bin/time.
#
#   benches/verify-10k/batch-sweep.sh DIR MAKOTO ROUNDS SIZE...
#
# DIR gets t10k/ (gen.py) and a key pair; PYTHON (default python3) must have `deltalake`.
# --batch-mib 64 keeps the commit-file bound out of the way, so only --batch-size varies.
set -euo pipefail
dir=$1; bin=$2; rounds=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
mkdir -p "$dir" && cd "$dir"
[ -d t10k ] || "$py" "$here/gen.py" t10k 10000
[ -f k.key ] || "$bin" keygen k >/dev/null
for r in $(seq 1 "$rounds"); do
  for b in "$@"; do
    rm -rf wh-sweep
    /usr/bin/time -f "batch=$b round=$r %e s %M KB" \
      "$bin" attest t10k --warehouse wh-sweep --key k.key --batch-size "$b" --batch-mib 64 >/dev/null
  done
  /usr/bin/time -f "python-deltalake round=$r %e s %M KB" \
    "$py" -c "from deltalake import DeltaTable; DeltaTable('t10k').file_uris()"
done
rm -rf wh-sweep
