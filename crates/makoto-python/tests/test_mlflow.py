"""makoto.mlflow with a local MLflow tracking store (SQLite, no server)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import mlflow
import pytest
from deltalake import DeltaTable, write_deltalake

import makoto
import makoto.mlflow as mm
from conftest import orders_batch, write_orders


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> mlflow.tracking.MlflowClient:
    monkeypatch.chdir(tmp_path)  # artifacts go to ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.tracking.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_log_dbom_and_verify_run(
    tmp_path: Path, tracking: mlflow.tracking.MlflowClient, keys: makoto.KeyPair
) -> None:
    wh = tmp_path / "wh"
    orders = write_orders(tmp_path / "orders")
    features = write_orders(tmp_path / "features")
    attested = makoto.attest(orders, warehouse=wh, key=keys.private_key)
    makoto.attest(features, warehouse=wh, key=keys.private_key)

    with mlflow.start_run() as run:
        first = mm.log_dbom(orders, warehouse=wh, key=keys.private_key)
        second = mm.log_dbom(features, warehouse=wh, key=keys.private_key, version=2)
    assert (first.index, second.index) == (0, 1)
    assert first.version == 3 and second.version == 2
    assert first.attestation_digest == attested.versions[3].attestation_digest
    assert first.state_digest == attested.versions[3].state_digest

    tags = tracking.get_run(run.info.run_id).data.tags
    assert tags["makoto.dataset.0.version"] == "3"
    assert tags["makoto.dataset.1.table"].endswith("/features")
    # The artifact is the signed DBOM: its envelope names our key and its dataset this version.
    local = tracking.download_artifacts(run.info.run_id, first.artifact, str(tmp_path / "dl"))
    envelope = json.loads(Path(local).read_text())
    assert envelope["signatures"][0]["keyid"] == keys.keyid
    doc = json.loads(base64.b64decode(envelope["payload"]))
    assert doc["dataset"]["subject"].endswith("/orders@v3")

    result = mm.verify_run(run.info.run_id, trust=keys.public_key)
    assert result.ok and [d.ok for d in result.datasets] == [True, True]

    # New commits to a logged table do not change what the run used.
    write_deltalake(str(orders), orders_batch(500, 3, "us"), mode="append")
    makoto.attest(orders, warehouse=wh, key=keys.private_key)
    assert mm.verify_run(run.info.run_id, trust=keys.public_key).ok

    # A byte changed in a file of the version the run trained on: that dataset is named.
    victim = Path(DeltaTable(str(features), version=2).file_uris()[0].removeprefix("file://"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    result = mm.verify_run(run.info.run_id, trust=keys.public_key)
    assert not result.ok
    (failed,) = result.failed()
    assert failed.dataset.table.endswith("/features") and failed.dataset.version == 2
    assert failed.reason.startswith("failed")

    # Another key does not verify the datasets.
    other = makoto.keygen(tmp_path / "other")
    assert not mm.verify_run(run.info.run_id, trust=other.public_key).ok


def test_log_dbom_needs_a_run_and_an_attested_table(
    tmp_path: Path, tracking: mlflow.tracking.MlflowClient, keys: makoto.KeyPair
) -> None:
    orders = write_orders(tmp_path / "orders")
    makoto.attest(orders, warehouse=tmp_path / "wh", key=keys.private_key)
    with pytest.raises(RuntimeError, match="active MLflow run"):
        mm.log_dbom(orders, warehouse=tmp_path / "wh", key=keys.private_key)
    other = write_orders(tmp_path / "other")
    with mlflow.start_run() as run:
        with pytest.raises(makoto.MakotoError):
            mm.log_dbom(other, warehouse=tmp_path / "wh", key=keys.private_key)
    assert not mm.verify_run(run.info.run_id, trust=keys.public_key).ok  # logged nothing
