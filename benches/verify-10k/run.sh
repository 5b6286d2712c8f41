#!/bin/bash
# The issue-11 verify benchmark (docs/performance.md (c)): wall time of `makoto verify` on a
# 10 001-commit table with no checkpoint, binaries interleaved, beside the Python anchor.
#
#   benches/verify-10k/run.sh DIR ROUNDS LABEL=BINARY[:EXTRA_FLAG] ...
#
# DIR gets t10k/ (written by gen.py, a Python twin of the testkit's many_commits_table), a key
# pair and one warehouse per binary, each attested by that binary. PYTHON (default python3)
# must have `deltalake` for the anchor.
set -euo pipefail
dir=$1; rounds=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
mkdir -p "$dir" && cd "$dir"
[ -d t10k ] || "$py" "$here/gen.py" t10k 10000
for spec in "$@"; do
  label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}
  [ -f k.key ] || "$bin" keygen k >/dev/null
  [ -d "wh-$label" ] || "$bin" attest t10k --warehouse "wh-$label" --key k.key >/dev/null
done
now() { date +%s.%N; }
for i in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}; extra=${rest#"$bin"}; extra=${extra#:}
    for mode in log-only deep; do
      flag=(); [ "$mode" = log-only ] && flag=(--log-only)
      s=$(now)
      rc=0; "$bin" verify t10k --warehouse "wh-$label" --trust k.pub --no-record "${flag[@]}" $extra >/dev/null 2>&1 || rc=$?
      printf "%s %s round%d rc=%d %.2fs\n" "$label" "$mode" "$i" "$rc" "$(echo "$(now) - $s" | bc)"
    done
  done
  s=$(now); "$py" -c "from deltalake import DeltaTable; DeltaTable('t10k').file_uris()"
  printf "python-deltalake file_uris round%d %.2fs\n" "$i" "$(echo "$(now) - $s" | bc)"
done
