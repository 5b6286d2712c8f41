#!/usr/bin/env bash
# Attest throughput with and without an RFC 3161 TSA (docs/performance.md (h)).
#   benches/tsa/run.sh MAKOTO TABLE WORKDIR [ROUNDS]
# TABLE is attested ROUNDS times into a fresh warehouse each way, alternating; the TSA is
# scripts/tsa-server (OpenSSL) on 127.0.0.1. Prints each run's seconds and the medians.
set -euo pipefail
makoto="$1" table="$2" work="$3" rounds="${4:-3}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work" && mkdir -p "$work"
"$makoto" keygen "$work/k" >/dev/null
python3 "$here/scripts/tsa-server" init "$work/tsa"
exec 3> >(python3 "$here/scripts/tsa-server" serve "$work/tsa" --port 8399 >"$work/tsa.log")
sleep 1  # wait for the server to bind before the first run (setup, not a measurement)
url=http://127.0.0.1:8399/
run() { # name, extra args...
  local name="$1"; shift
  rm -rf "$work/wh"
  local t0 t1
  t0=$(date +%s.%N)
  "$makoto" attest "$table" --warehouse "$work/wh" --key "$work/k.key" --json "$@" >"$work/$name.json"
  t1=$(date +%s.%N)
  echo "$name $(echo "$t1 - $t0" | bc)"
}
for _ in $(seq "$rounds"); do
  run plain
  run tsa --tsa "$url"
done | tee "$work/times"
for name in plain tsa; do
  printf '%s median %s s\n' "$name" "$(grep "^$name " "$work/times" | cut -d' ' -f2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
# openssl ts numbers its tokens from the serial file (hex, starting at 01).
echo "TSA tokens issued over all $rounds time-stamped runs: $(( 0x$(cat "$work/tsa/serial") - 1 ))"
exec 3>&-
