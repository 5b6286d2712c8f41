#!/bin/bash
# `makoto` under heaptrack with the PID kept, for `bench.py`, which signals the service and reads
# its /proc (heaptrack's own launcher runs it as a child). Use it as bench.py's MAKOTO:
#
#   MAKOTO_BIN=target/release/makoto HEAPTRACK_OUT=/tmp/serve.zst \
#     python3 benches/serve/bench.py benches/serve/heaptrack.sh DIR --seconds 1800 ...
#
# heaptrack_print -f "$HEAPTRACK_OUT" (-M FILE for massif snapshots over time) reads the profile.
set -euo pipefail
bin=${MAKOTO_BIN:?set MAKOTO_BIN to the makoto binary}
out=${HEAPTRACK_OUT:?set HEAPTRACK_OUT to the profile to write (.zst)}
lib=${HEAPTRACK_LIB:-/usr/lib/heaptrack}
fifo=$(mktemp -u /tmp/heaptrack-serve.XXXXXX)
mkfifo "$fifo"
("$lib/libexec/heaptrack_interpret" < "$fifo" | zstd -q -c > "$out"; rm -f "$fifo") &
exec env LD_PRELOAD="$lib/libheaptrack_preload.so" DUMP_HEAPTRACK_OUTPUT="$fifo" "$bin" "$@"
