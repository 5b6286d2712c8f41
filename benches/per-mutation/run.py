"""The scheduled-job-per-mutation benchmark (issue 13): a table appended one row at a time with
Python `deltalake`, and `makoto attest` run after every append into one warehouse. Prints the
wall time of each attest run, then medians over windows of runs, so the trend over the life of a
warehouse shows.

    python benches/per-mutation/run.py MAKOTO_BINARY[,MAKOTO_BINARY...] DIR RUNS [WINDOW [RETENTIONS]]

With several binaries (comma-separated) each gets its own table and warehouse under DIR, and
their runs are interleaved (append and attest with the first, then with the second, ...), so a
comparison is not skewed by the load of a shared machine changing between two series.

RETENTIONS (comma-separated, one per binary, `-` for makoto's own) sets the system tables'
`delta.logRetentionDuration` after each series' first run, as an operator would: the same binary
twice with two retentions shows what the retention does to the trend without waiting for it to
pass at its real length (an hour).

DIR gets the tables, a key pair and the warehouses (all recreated). Needs `deltalake` and
`pyarrow` in the Python that runs it.
"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def main() -> None:
    binaries, root, runs = sys.argv[1].split(","), Path(sys.argv[2]), int(sys.argv[3])
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    retentions = sys.argv[5].split(",") if len(sys.argv) > 5 else ["-"] * len(binaries)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run([binaries[0], "keygen", str(root / "k")], check=True, capture_output=True)
    dirs = [root / (f"b{i}" if len(binaries) > 1 else "") for i in range(len(binaries))]
    times = [[] for _ in binaries]
    appends = [[] for _ in binaries]
    for i in range(runs):
        for b, binary in enumerate(binaries):
            table, warehouse = dirs[b] / "t", dirs[b] / "wh"
            batch = pa.table({"id": [i], "v": [f"row {i}"]})
            s = time.perf_counter()
            write_deltalake(str(table), batch, mode="append")
            appends[b].append(time.perf_counter() - s)
            s = time.perf_counter()
            subprocess.run(
                [binary, "attest", str(table), "--warehouse", str(warehouse), "--key",
                 str(root / "k.key"), "--json"],
                check=True, capture_output=True,
            )
            times[b].append(time.perf_counter() - s)
            if i == 0 and retentions[b] != "-":
                for t in ("attestations", "files"):
                    DeltaTable(str(warehouse / "system/makoto" / t)).alter.set_table_properties(
                        {"delta.logRetentionDuration": retentions[b]})
    print(f"runs {runs}, window {window}: median attest ms (median append ms)")
    names = [Path(b).name + ("" if r == "-" else f" ({r})") for b, r in zip(binaries, retentions)]
    print(" " * 20 + "".join(f"{n:>24}" for n in names))
    for a in range(0, runs, window):
        cells = []
        for b in range(len(binaries)):
            w, p = times[b][a:a + window], appends[b][a:a + window]
            cells.append(f"{statistics.median(w) * 1000:7.1f} ms ({statistics.median(p) * 1000:5.1f} ms)")
        last = min(a + window, runs)
        print(f"runs {a + 1:>6}-{last:<6}  " + "".join(f"{c:>24}" for c in cells))
    for b, d in enumerate(dirs):
        warehouse = d / "wh"
        files = {t: sum(1 for _ in (warehouse / "system/makoto" / t).rglob("*.parquet"))
                 for t in ("attestations", "files")}
        logs = {t: sum(1 for _ in (warehouse / "system/makoto" / t / "_delta_log").glob("*"))
                for t in ("attestations", "files")}
        print(f"{names[b]}: system tables: parquet files {files}, "
              f"_delta_log entries {logs}")


if __name__ == "__main__":
    main()
