"""The Python API against the same tables and warehouses as the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import makoto
from conftest import run_cli, write_orders

# What differs between two runs over the same commits: the run, the time each row was written
# (also inside the signed statement, as predicate.delta.attestor.attestedAt) and so the digests
# and envelopes that cover it.
RUN_SPECIFIC = {
    "attested_at",
    "run_id",
    "attestation_digest",
    "previous_attestation_digest",
    "envelope",
}


def attestation_rows(warehouse: Path) -> list[dict]:
    rows = DeltaTable(str(warehouse / "system/makoto/attestations")).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["table_uri"], r["version"]))


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    key = makoto.keygen(tmp_path / "k")
    assert Path(key.private_key).exists() and Path(key.public_key).exists()
    assert stat.S_IMODE(os.stat(key.private_key).st_mode) == 0o600
    assert len(key.keyid) == 64 and int(key.keyid, 16) >= 0
    with pytest.raises(makoto.InvalidKey) as e:
        makoto.keygen(tmp_path / "k")
    assert e.value.path == key.private_key
    assert e.value.kind == "key_file"


def test_attest_then_verify(orders: Path, warehouse: Path, keys: makoto.KeyPair) -> None:
    report = makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    assert [v.version for v in report.versions] == [0, 1, 2, 3]
    # Signed, but not time-stamped and naming no identity: L1 (docs/levels.md).
    assert report.level == "L1" and report.keyid == keys.keyid
    assert report.attested_through == 3
    assert report.versions[3].operation == "DELETE"
    table = report.to_arrow()
    assert table.num_rows == 4
    assert table.column("attestation_digest").to_pylist() == [
        v.attestation_digest for v in report.versions
    ]
    # Exactly once: a second run attests nothing.
    again = makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    assert again.versions == [] and again.previously_attested == 3

    result = makoto.verify(orders, warehouse=warehouse, trust=keys.public_key)
    assert result.verified and result.outcome == "verified" and bool(result)
    assert result.version == 3 and result.mode == "deep"
    assert result.findings == []
    assert result.attestation_digest == report.versions[3].attestation_digest
    result.raise_for_findings()
    assert "VERIFIED" in result._repr_html_()


def test_rows_are_the_rows_the_cli_writes(
    tmp_path: Path, orders: Path, keys: makoto.KeyPair
) -> None:
    by_api, by_cli = tmp_path / "wh-api", tmp_path / "wh-cli"
    makoto.attest(orders, warehouse=by_api, key=keys.private_key)
    run_cli("attest", str(orders), "--warehouse", str(by_cli), "--key", keys.private_key)
    api_rows, cli_rows = attestation_rows(by_api), attestation_rows(by_cli)
    assert len(api_rows) == 4
    for a, c in zip(api_rows, cli_rows, strict=True):
        for column in a:
            if column not in RUN_SPECIFIC:
                assert a[column] == c[column], column
        # The statements are the same but for the time they were made, and each envelope
        # verifies independently (DSSE PAE, Ed25519, with the public key file).
        payloads = [statement_without_time(r, keys.public_key) for r in (a, c)]
        assert payloads[0] == payloads[1]
        assert payloads[0]["subject"][0]["digest"]["sha256"] == a["state_digest"]


def statement_without_time(row: dict, public_key: str) -> dict:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    envelope = json.loads(row["envelope"])
    payload = base64.b64decode(envelope["payload"])
    assert hashlib.sha256(payload).hexdigest() == row["attestation_digest"]
    ptype = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    key = load_pem_public_key(Path(public_key).read_bytes())
    key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae)
    statement = json.loads(payload)
    predicate = statement["predicate"]
    del predicate["delta"]["attestor"]["attestedAt"]
    # The chain link names the previous row of the same warehouse, whose digest covers its time.
    previous = predicate["delta"].pop("previousAttestation", None)
    if previous is not None:
        assert previous["digest"]["sha256"] == row["previous_attestation_digest"]
        for i in predicate["inputs"]:
            assert i.pop("attestationRef") is not None
    return statement


def test_verify_report_matches_the_cli_json(
    orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    api = makoto.verify(orders, warehouse=warehouse, trust=keys.public_key, record=False)
    cli = json.loads(
        run_cli(
            "verify", str(orders), "--warehouse", str(warehouse), "--trust", keys.public_key,
            "--no-record", "--json",
        ).stdout
    )
    assert api.to_dict() == cli


def test_a_tampered_data_file_is_a_finding(
    orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    live = DeltaTable(str(orders)).file_uris()
    victim = Path(live[0].removeprefix("file://"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))

    result = makoto.verify(orders, warehouse=warehouse, trust=keys.public_key)
    assert not result.verified and result.outcome == "failed"
    kinds = {f.kind for f in result.errors()}
    assert kinds, result.findings
    with pytest.raises(makoto.VerificationFailed) as e:
        result.raise_for_findings()
    assert e.value.table == result.table and e.value.version == 3
    assert isinstance(e.value, makoto.MakotoError)
    html = result._repr_html_()
    assert "<table>" in html and "FAILED" in html
    # The CLI reaches the same verdict.
    cli = run_cli(
        "verify", str(orders), "--warehouse", str(warehouse), "--trust", keys.public_key,
        "--no-record", check=False,
    )
    assert cli.returncode == 1


def test_untrusted_key_is_not_verified(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    other = makoto.keygen(tmp_path / "other")
    result = makoto.verify(orders, warehouse=warehouse, trust=other.public_key, record=False)
    assert not result.verified


def test_errors_carry_table_and_path(tmp_path: Path, keys: makoto.KeyPair) -> None:
    with pytest.raises(makoto.MakotoError) as e:
        makoto.attest(tmp_path / "nothing-here", warehouse=tmp_path / "wh", key=keys.private_key)
    assert "nothing-here" in str(e.value)
    assert e.value.table is not None or e.value.path is not None
    with pytest.raises(makoto.InvalidKey) as k:
        makoto.attest(tmp_path, warehouse=tmp_path / "wh", key=tmp_path / "missing.key")
    assert k.value.path == str(tmp_path / "missing.key")
    assert not (tmp_path / "wh").exists(), "a failed call wrote to the warehouse"
    with pytest.raises(makoto.MakotoError) as w:
        makoto.verify(tmp_path, warehouse=tmp_path / "no-wh", trust=keys.public_key)
    assert w.value.kind in {"warehouse_not_found", "invalid_location", "not_a_delta_table"}
    with pytest.raises(ValueError):
        makoto.verify(tmp_path, warehouse=tmp_path, trust=keys.public_key, timestamp="yesterday")


def test_unattested_table_raises_unattested_input(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    other = write_orders(tmp_path / "other")
    assert not makoto.expect_attestation(other, warehouse=warehouse, trust=keys.public_key)
    with pytest.raises(makoto.UnattestedInput):
        makoto.require_attestation(other, warehouse=warehouse, trust=keys.public_key)


def test_check_and_expect_attestation(orders: Path, warehouse: Path, keys: makoto.KeyPair) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    # Signed alone is L1: the default gate (L2) fails it and says why.
    strict = makoto.check(orders, warehouse=warehouse, trust=keys.public_key)
    assert not strict.passed and strict.min_level == "L2"
    assert any("below the required L2" in r for r in strict.reasons), strict.reasons
    report = makoto.check(orders, warehouse=warehouse, trust=keys.public_key, min_level=1)
    assert report.passed and report.version == 3 and report.min_level == "L1"
    assert makoto.expect_attestation(orders, warehouse=warehouse, trust=keys.public_key, min_level=1)
    assert not makoto.check(orders, warehouse=warehouse, trust=keys.public_key, min_level=3)


def test_sql_returns_arrow(orders: Path, warehouse: Path, keys: makoto.KeyPair) -> None:
    report = makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    table = makoto.sql(
        "SELECT version, attestation_digest FROM system.makoto.attestations ORDER BY version",
        warehouse=warehouse,
    )
    assert isinstance(table, pa.Table)
    assert table.schema.field("version").type == pa.int64()
    assert table.column("attestation_digest").to_pylist() == [
        v.attestation_digest for v in report.versions
    ]
    empty = makoto.sql(
        "SELECT version FROM system.makoto.attestations WHERE version > 99", warehouse=warehouse
    )
    assert empty.num_rows == 0 and empty.column_names == ["version"]
    counted = makoto.sql(
        "SELECT count(*) AS n, sum(amount) AS total FROM orders",
        warehouse=warehouse,
        tables={"orders": str(orders)},
    )
    expected = DeltaTable(str(orders)).to_pyarrow_table()
    assert counted.column("n").to_pylist() == [expected.num_rows]
    with pytest.raises(makoto.MakotoError) as e:
        makoto.sql("SELECT nope FROM system.makoto.attestations", warehouse=warehouse)
    assert e.value.kind == "sql"


def test_dbom_and_head(orders: Path, warehouse: Path, keys: makoto.KeyPair) -> None:
    report = makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    doc = makoto.dbom(orders, warehouse=warehouse, key=keys.private_key)
    assert doc.envelope is not None
    envelope = json.loads(doc.envelope)
    assert envelope["signatures"][0]["keyid"] == keys.keyid
    assert doc.document == json.loads(
        __import__("base64").b64decode(envelope["payload"])
    )
    h = makoto.head(warehouse=warehouse, key=keys.private_key)
    assert [e["version"] for e in h.entries] == [3]
    assert h.entries[0]["attestationDigest"] == report.versions[3].attestation_digest


def test_a_polars_table(tmp_path: Path, warehouse: Path, keys: makoto.KeyPair) -> None:
    import polars as pl
    path = tmp_path / "polars-table"
    pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).write_delta(str(path))
    pl.DataFrame({"a": [4], "b": ["w"]}).write_delta(str(path), mode="append")
    report = makoto.attest(path, warehouse=warehouse, key=keys.private_key)
    assert [v.version for v in report.versions] == [0, 1]
    assert makoto.verify(path, warehouse=warehouse, trust=keys.public_key).verified


def test_the_console_script_is_the_cli() -> None:
    out = run_cli("--version").stdout
    assert out.startswith("makoto ") and makoto.__version__ in out
    bad = run_cli("verify", check=False)
    assert bad.returncode == 2


def test_prove_and_verify_proof_match_the_cli(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    live = DeltaTable(str(orders)).get_add_actions(flatten=True).column("path").to_pylist()
    file = sorted(live)[0]
    proof = makoto.prove(orders, warehouse=warehouse, file=file, version=3, out=tmp_path / "p.json")
    assert proof.endswith(b"\n") and (tmp_path / "p.json").read_bytes() == proof
    by_cli = run_cli(
        "prove", str(orders), "--warehouse", str(warehouse), "--file", file, "--version", "3"
    ).stdout.encode()
    assert proof == by_cli
    result = makoto.verify_proof(tmp_path / "p.json", trust=keys.public_key)
    assert result.verified and result.report is not None
    assert result.report["version"] == 3 and result.report["keyid"] == keys.keyid
    cli = json.loads(run_cli("verify-proof", str(tmp_path / "p.json"), "--trust", keys.public_key, "--json").stdout)
    assert cli == result.report

    doctored = proof.replace(b'"version":3', b'"version":2')
    assert doctored != proof
    bad = makoto.verify_proof(doctored, trust=keys.public_key)
    assert not bad and bad.report is None and bad.summary
    with pytest.raises(makoto.MakotoError) as e:
        makoto.verify_proof(b"not json", trust=keys.public_key)
    assert e.value.kind == "proof_not_json"
    with pytest.raises(ValueError):
        makoto.prove(orders, warehouse=warehouse, file=file)


CORPUS = Path(__file__).resolve().parents[4] / "shared/delta-corpus/tables"


@pytest.mark.parametrize(
    "name",
    [
        "dv-partitioned-with-checkpoint",  # Spark: deletion vectors, partitions, a checkpoint
        "table-with-columnmapping-mode-name",  # Spark: column mapping
        "multi-part-checkpoint",  # Spark: a multi-part checkpoint
        "cdf-table",  # Spark: change data files
    ],
)
def test_spark_tables_give_the_rows_the_cli_writes(
    tmp_path: Path, keys: makoto.KeyPair, name: str
) -> None:
    table = CORPUS / name / "delta"
    assert table.is_dir(), f"the Delta corpus is expected at {CORPUS}"
    by_api, by_cli = tmp_path / "wh-api", tmp_path / "wh-cli"
    report = makoto.attest(table, warehouse=by_api, key=keys.private_key)
    run_cli("attest", str(table), "--warehouse", str(by_cli), "--key", keys.private_key)
    api_rows, cli_rows = attestation_rows(by_api), attestation_rows(by_cli)
    assert len(api_rows) == len(report.versions) >= 1
    for a, c in zip(api_rows, cli_rows, strict=True):
        for column in a:
            if column not in RUN_SPECIFIC:
                assert a[column] == c[column], (a["version"], column)
        assert statement_without_time(a, keys.public_key) == statement_without_time(
            c, keys.public_key
        )
    assert makoto.verify(table, warehouse=by_api, trust=keys.public_key, record=False).verified
