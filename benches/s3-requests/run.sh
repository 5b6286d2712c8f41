#!/bin/bash
# Object-store requests per makoto run on S3 (issue 13), counted by the server: a Garage node on
# 127.0.0.1 (scripts/garage-server), whose admin API exports api_s3_request_counter per S3
# endpoint. A table is written with Python `deltalake` (not counted), then each scenario's
# requests are the counters' difference around one makoto run.
#
#   benches/s3-requests/run.sh MAKOTO_BINARY DIR [COMMITS]
#
# PYTHON (default python3) must have `deltalake` and `pyarrow`; MAKOTO_GARAGE may name the
# garage binary (see scripts/garage-server).
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); dir=$2; commits=${3:-20}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
"$repo/scripts/garage-server" "$dir/garage" >/dev/null
trap '"$repo/scripts/garage-server" --stop "$dir/garage"' EXIT
set -a; . "$dir/garage/env"; set +a
export AWS_ALLOW_HTTP=true
admin=$(grep -A1 '^\[admin\]' "$dir/garage/garage.toml" | sed -n "s/^api_bind_addr = '\(.*\)'$/\1/p")
base="s3://$MAKOTO_S3_BUCKET"

append() { # append N one-row commits to the table
  "$py" - "$base/t" "$1" <<'PY'
import os, sys, pyarrow as pa
from deltalake import write_deltalake
opts = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
opts.update(AWS_ALLOW_HTTP="true", AWS_S3_ALLOW_UNSAFE_RENAME="true")
for i in range(int(sys.argv[2])):
    write_deltalake(sys.argv[1], pa.table({"id": [i], "v": [f"row {i}"]}), mode="append", storage_options=opts)
PY
}
counters() { curl -s "http://$admin/metrics" | sed -n 's/^api_s3_request_counter{api_endpoint="\([A-Za-z0-9]*\)"} \([0-9]*\)$/\1 \2/p'; }
measure() { # LABEL COMMITS-COVERED -- command...
  local label=$1 n=$2; shift 3
  local before after
  before=$(counters)
  "$@" >/dev/null 2>&1 || true
  after=$(counters)
  python3 - "$label" "$n" "$before" "$after" <<'PY'
import sys
label, n = sys.argv[1], int(sys.argv[2])
parse = lambda s: {l.split()[0]: int(l.split()[1]) for l in s.splitlines() if l.strip()}
b, a = parse(sys.argv[3]), parse(sys.argv[4])
d = {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0)}
kind = lambda k: "GET" if k.startswith("Get") else "PUT" if k.startswith("Put") or k.startswith("Copy") \
    else "LIST" if k.startswith("List") else "HEAD" if k.startswith("Head") else "DELETE" if k.startswith("Delete") else k
g = {}
for k, v in d.items():
    g[kind(k)] = g.get(kind(k), 0) + v
total = sum(g.values())
per = f"  ({total / n:.1f} per commit)" if n else ""
print(f"{label:<38} {' '.join(f'{k} {v}' for k, v in sorted(g.items())):<40} total {total}{per}")
PY
}

"$bin" keygen "$dir/k" >/dev/null
wh="$base/wh"
append "$commits"
measure "attest $commits commits (first run)" "$commits" -- "$bin" attest "$base/t" --warehouse "$wh" --key "$dir/k.key"
measure "attest, nothing new" 0 -- "$bin" attest "$base/t" --warehouse "$wh" --key "$dir/k.key"
append 1
measure "attest 1 new commit" 1 -- "$bin" attest "$base/t" --warehouse "$wh" --key "$dir/k.key"
append 10
measure "attest 10 new commits" 10 -- "$bin" attest "$base/t" --warehouse "$wh" --key "$dir/k.key"
n=$((commits + 11))
measure "verify --log-only --reader-check skip" "$n" -- "$bin" verify "$base/t" --warehouse "$wh" --trust "$dir/k.pub" --no-record --log-only --reader-check skip
measure "verify --log-only" "$n" -- "$bin" verify "$base/t" --warehouse "$wh" --trust "$dir/k.pub" --no-record --log-only
measure "verify (deep)" "$n" -- "$bin" verify "$base/t" --warehouse "$wh" --trust "$dir/k.pub" --no-record
