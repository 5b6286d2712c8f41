"""The scheduled-job-per-mutation benchmark (issue 13): a table appended one row at a time with
Python `deltalake`, and `makoto attest` run after every append into one warehouse. Prints the
wall time of each attest run, then medians over windows of runs, so the trend over the life of a
warehouse shows.

    python benches/per-mutation/run.py MAKOTO_BINARY DIR RUNS [WINDOW]

DIR gets the table, a key pair and the warehouse (all recreated). Needs `deltalake` and
`pyarrow` in the Python that runs it.
"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake


def main() -> None:
    binary, root, runs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    table, warehouse = root / "t", root / "wh"
    subprocess.run([binary, "keygen", str(root / "k")], check=True, capture_output=True)
    times, appends = [], []
    for i in range(runs):
        batch = pa.table({"id": [i], "v": [f"row {i}"]})
        s = time.perf_counter()
        write_deltalake(str(table), batch, mode="append")
        appends.append(time.perf_counter() - s)
        s = time.perf_counter()
        subprocess.run(
            [binary, "attest", str(table), "--warehouse", str(warehouse), "--key",
             str(root / "k.key"), "--json"],
            check=True, capture_output=True,
        )
        times.append(time.perf_counter() - s)
    print(f"runs {runs}, window {window}: median attest ms (median append ms)")
    for a in range(0, runs, window):
        w, p = times[a:a + window], appends[a:a + window]
        print(f"runs {a + 1:>6}-{a + len(w):<6} {statistics.median(w) * 1000:7.1f} ms"
              f"  ({statistics.median(p) * 1000:5.1f} ms)")
    files = {d: sum(1 for _ in (warehouse / "system/makoto" / d).rglob("*.parquet"))
             for d in ("attestations", "files")}
    logs = {d: sum(1 for _ in (warehouse / "system/makoto" / d / "_delta_log").glob("*"))
            for d in ("attestations", "files")}
    print(f"system tables: parquet files {files}, _delta_log entries {logs}")


if __name__ == "__main__":
    main()
