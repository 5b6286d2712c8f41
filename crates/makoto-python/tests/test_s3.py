"""One storage_options dict for `deltalake` and `makoto`, on a real S3 server (Garage on
127.0.0.1, started by scripts/garage-server as the Rust S3 test does)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable, write_deltalake

import makoto
from conftest import orders_batch

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("garage")
    env = {**os.environ, "MAKOTO_GARAGE_WATCH_PID": str(os.getpid())}
    started = subprocess.run(
        [str(REPO / "scripts/garage-server"), str(state)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    if started.returncode == 3 and os.environ.get("MAKOTO_REQUIRE_S3") != "1":
        pytest.skip(f"no garage binary (CI sets MAKOTO_REQUIRE_S3=1): {started.stderr.strip()}")
    assert started.returncode == 0, f"scripts/garage-server: {started.stderr}"
    lines = dict(l.split("=", 1) for l in started.stdout.split() if "=" in l)
    try:
        # The keys the `deltalake` package documents for S3.
        yield {
            "AWS_ENDPOINT_URL": lines["AWS_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": lines["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": lines["AWS_SECRET_ACCESS_KEY"],
            "AWS_REGION": lines["AWS_REGION"],
            "AWS_ALLOW_HTTP": "true",
        }
    finally:
        subprocess.run([str(REPO / "scripts/garage-server"), "--stop", str(state)], timeout=60)


def test_the_same_storage_options_as_deltalake(storage: dict[str, str], tmp_path: Path) -> None:
    table, warehouse = "s3://makoto/py/orders", "s3://makoto/py/warehouse"
    write_deltalake(table, orders_batch(0, 10, "eu"), storage_options=storage)
    write_deltalake(table, orders_batch(10, 5, "us"), mode="append", storage_options=storage)
    key = makoto.keygen(tmp_path / "k")

    report = makoto.attest(table, warehouse=warehouse, key=key.private_key, storage_options=storage)
    assert [v.version for v in report.versions] == [0, 1]
    assert report.table == table
    result = makoto.verify(table, warehouse=warehouse, trust=key.public_key, storage_options=storage)
    assert result.verified, result.findings
    counted = makoto.sql(
        "SELECT count(*) AS n FROM system.makoto.attestations", warehouse=warehouse,
        storage_options=storage,
    )
    assert counted.column("n").to_pylist() == [2]
    # The warehouse is a Delta table the same client reads with the same dict.
    rows = DeltaTable(f"{warehouse}/system/makoto/attestations", storage_options=storage)
    assert rows.to_pyarrow_table().num_rows == 2

    # Without credentials the call fails with a StorageError naming the location, not a crash.
    with pytest.raises(makoto.MakotoError) as e:
        makoto.attest(table, warehouse=warehouse, key=key.private_key,
                      storage_options={**storage, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert "s3://makoto/py" in str(e.value)
    again = makoto.attest(table, warehouse=warehouse, key=key.private_key, storage_options=storage)
    assert again.versions == []
