"""Concurrent runs into one warehouse (issue 13, docs/performance.md (d)): ROUNDS rounds, each
appending one row with Python `deltalake` to three tables and then running `makoto attest` on
the three at once into one warehouse. Afterwards every table must verify, and no attestation
row may be there twice (compaction of the system tables happens along the way: 32 small files
pile up after about 11 rounds).

    python benches/concurrent-runs/run.py MAKOTO_BINARY DIR ROUNDS

DIR is recreated. Needs `deltalake` and `pyarrow`. Exits 1 on a failed run, a failed verify or
a duplicate row.
"""

import collections
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def main() -> int:
    binary, root, rounds = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    wh, key = root / "wh", root / "k"
    subprocess.run([binary, "keygen", str(key)], check=True, capture_output=True)
    tables = [root / n for n in ("a", "b", "c")]
    failed = 0
    for i in range(rounds):
        for t in tables:
            write_deltalake(str(t), pa.table({"id": [i], "v": ["x"]}), mode="append")
        runs = [
            subprocess.Popen(
                [binary, "attest", str(t), "--warehouse", str(wh), "--key", f"{key}.key", "--json"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for t in tables
        ]
        for p in runs:
            _, err = p.communicate()
            if p.returncode != 0:
                failed += 1
                print("attest failed:", err.decode()[-300:])
    print("failed runs:", failed)
    bad = 0
    for t in tables:
        r = subprocess.run(
            [binary, "verify", str(t), "--warehouse", str(wh), "--trust", f"{key}.pub",
             "--no-record", "--log-only"],
            capture_output=True, text=True,
        )
        print(t.name, "exit", r.returncode, r.stdout.splitlines()[0][:100] if r.stdout else "")
        bad += r.returncode != 0
    rows = DeltaTable(str(wh / "system/makoto/attestations")).to_pyarrow_table(
        columns=["table_uri", "version"]).to_pylist()
    count = collections.Counter((r["table_uri"], r["version"]) for r in rows)
    duplicates = sum(1 for c in count.values() if c > 1)
    print("rows", len(rows), "duplicates", duplicates)
    for name in ("attestations", "files"):
        print(name, "live files", len(DeltaTable(str(wh / "system/makoto" / name)).file_uris()))
    return 1 if failed or bad or duplicates or len(rows) != 3 * rounds else 0


if __name__ == "__main__":
    sys.exit(main())
