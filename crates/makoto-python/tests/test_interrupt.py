"""Ctrl-C during a long call: KeyboardInterrupt, promptly, and nothing partial written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

import makoto

COMMITS = 4000


def many_commit_table(path: Path) -> Path:
    """Version 0 by `deltalake`, then COMMITS one-file appends written as commit files."""
    write_deltalake(str(path), pa.table({"x": pa.array([0], pa.int64())}))
    log = path / "_delta_log"
    for v in range(1, COMMITS + 1):
        name = f"part-{v:05}.bin"
        body = f"file {v}\n".encode()
        (path / name).write_bytes(body)
        actions = [
            {"commitInfo": {"timestamp": 1_700_000_000_000 + v, "operation": "WRITE"}},
            {
                "add": {
                    "path": name,
                    "partitionValues": {},
                    "size": len(body),
                    "modificationTime": 1_700_000_000_000 + v,
                    "dataChange": True,
                }
            },
        ]
        (log / f"{v:020}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    return path


def test_ctrl_c_stops_attest_and_leaves_nothing_partial(tmp_path: Path) -> None:
    table = many_commit_table(tmp_path / "t")
    key = makoto.keygen(tmp_path / "k")
    warehouse = tmp_path / "wh"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, makoto\n"
            "try:\n"
            "    makoto.attest(sys.argv[1], warehouse=sys.argv[2], key=sys.argv[3], batch_size=50)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "    sys.exit(42)\n"
            "print('finished', flush=True)\n",
            str(table),
            str(warehouse),
            key.private_key,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the run has committed at least one batch (the warehouse's first rows).
    attestations = warehouse / "system/makoto/attestations/_delta_log"
    deadline = time.monotonic() + 300
    # (Version 0 of the attestations table creates it; rows arrive from version 1.)
    while not (attestations / f"{1:020}.json").exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the attest run never started writing"
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 42, (out, err)
    assert out.strip() == "interrupted", "the run finished before Ctrl-C reached it; raise COMMITS"
    # Promptly: the run stops at its next await point, long before it would have finished.
    assert time.monotonic() - sent < 30

    # Nothing partial: every row written is a whole, verifiable attestation; a new run
    # continues from them and attests each version exactly once.
    rows = DeltaTable(str(warehouse / "system/makoto/attestations")).to_pyarrow_table()
    done = sorted(rows.column("version").to_pylist())
    assert done and done == list(range(len(done))) and len(done) < COMMITS + 1
    report = makoto.attest(table, warehouse=warehouse, key=key.private_key)
    assert report.previously_attested == done[-1]
    assert [v.version for v in report.versions] == list(range(done[-1] + 1, COMMITS + 1))
    result = makoto.verify(table, warehouse=warehouse, trust=key.public_key, log_only=True)
    assert result.verified, result.findings


def test_long_calls_release_the_gil(tmp_path: Path) -> None:
    """Another Python thread keeps running while attest and verify work."""
    import threading

    table = many_commit_table(tmp_path / "t")
    key = makoto.keygen(tmp_path / "k")
    warehouse = tmp_path / "wh"
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        started = ticks
        makoto.attest(table, warehouse=warehouse, key=key.private_key)
        during_attest = ticks - started
        started = ticks
        assert makoto.verify(table, warehouse=warehouse, trust=key.public_key, log_only=True)
        during_verify = ticks - started
    finally:
        done.set()
        counter.join()
    # Holding the GIL for the whole call would leave the counter at (almost) zero.
    assert during_attest > 10_000 and during_verify > 10_000, (during_attest, during_verify)
