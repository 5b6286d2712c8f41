"""Fixtures of the Python package's tests: tables written by Python writers, keys, and the
`makoto` command the wheel installed (the suite runs against the installed wheel, never the
source tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import makoto


def makoto_command() -> str:
    """The `makoto` console script installed beside this interpreter by the wheel."""
    exe = Path(sys.executable).parent / "makoto"
    if exe.exists():
        return str(exe)
    found = shutil.which("makoto")
    assert found, "the wheel's `makoto` command is not installed"
    return found


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_") and k != "RUST_LOG"}
    proc = subprocess.run(
        [makoto_command(), *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"makoto {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def orders_batch(first: int, n: int, region: str) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(first, first + n), pa.int64()),
            "region": pa.array([region] * n),
            "amount": pa.array([float(i) * 1.5 for i in range(first, first + n)]),
        }
    )


def write_orders(path: Path) -> Path:
    """Create, two appends, a delete: four commits by the `deltalake` package, partitioned."""
    write_deltalake(str(path), orders_batch(0, 10, "eu"), partition_by=["region"])
    write_deltalake(str(path), orders_batch(10, 10, "us"), mode="append")
    write_deltalake(str(path), orders_batch(20, 5, "eu"), mode="append")
    DeltaTable(str(path)).delete("id < 3")
    return path


@pytest.fixture
def keys(tmp_path: Path) -> makoto.KeyPair:
    return makoto.keygen(tmp_path / "keys" / "producer")


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    return write_orders(tmp_path / "orders")


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "warehouse"
