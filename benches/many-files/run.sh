#!/bin/bash
# The issue-13 many-files benchmark (docs/performance.md (f)): attest and verify a table of
# COMMITS commits of FILES small files each, binaries interleaved, beside the anchors measured
# in the same rounds: single-threaded `sha256sum` over the same data files, and Python
# `deltalake` opening the table.
#
#   benches/many-files/run.sh DIR COMMITS FILES ROUNDS LABEL=BINARY ...
#
# DIR gets the table (written by gen.py: FILES files of 1 KiB per commit, no checkpoint), a key
# pair, and one warehouse per binary and round (WAREHOUSES, default DIR, picks where: a tmpfs
# such as /dev/shm keeps the file system's inode allocator out of the figures). Each line gives
# wall time, user and system CPU seconds and peak RSS. PYTHON (default python3) must have
# `deltalake` for the anchor.
set -euo pipefail
dir=$1; commits=$2; files=$3; rounds=$4; shift 4
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
whs=${WAREHOUSES:-$dir}
table="t${commits}x${files}"
mkdir -p "$dir" "$whs" && cd "$dir"
[ -d "$table" ] || "$py" "$here/gen.py" "$table" "$commits" "$files" 1024
first=${1#*=}
[ -f k.key ] || "$first" keygen k >/dev/null
measure() { /usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KB peak RSS" "$@" 2>&1 >/dev/null | tail -1; }
for i in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*}; bin=${spec#*=}; wh="$whs/wh-$label"
    rm -rf "$wh"
    echo "$label attest round$i: $(measure "$bin" attest "$table" --warehouse "$wh" --key k.key)"
    echo "$label state pages round$i: $(find "$wh/system/makoto/state" -name '*.page' | wc -l)"
    echo "$label verify --log-only round$i: $(measure "$bin" verify "$table" --warehouse "$wh" --trust k.pub --no-record --log-only --reader-check skip)"
    echo "$label verify (deep) round$i: $(measure "$bin" verify "$table" --warehouse "$wh" --trust k.pub --no-record --reader-check skip)"
  done
  echo "sha256sum round$i: $(measure sh -c "find '$table' -name '*.parquet' -print0 | xargs -0 sha256sum")"
  echo "python-deltalake file_uris round$i: $(measure "$py" -c "from deltalake import DeltaTable; DeltaTable('$table').file_uris()")"
done
