"""Python pipelines: makoto.transform / transform_step, and the gate over their lineage."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

import makoto
from conftest import orders_batch, run_cli


def totals_of(table: pa.Table) -> pa.Table:
    return table.group_by("region").aggregate([("amount", "sum")]).sort_by("region")


def statement(warehouse: Path, table_uri_suffix: str, version: int) -> dict:
    rows = DeltaTable(str(warehouse / "system/makoto/attestations")).to_pyarrow_table().to_pylist()
    (row,) = [
        r for r in rows if r["table_uri"].rstrip("/").endswith(table_uri_suffix) and r["version"] == version
    ]
    return {**row, "statement": json.loads(base64.b64decode(json.loads(row["envelope"])["payload"]))}


def flip_a_byte(table: Path) -> None:
    victim = Path(DeltaTable(str(table)).file_uris()[0].removeprefix("file://"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))


def test_inputs_are_pinned_and_the_output_is_attested_with_them(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    attested = makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    out = tmp_path / "totals"
    with makoto.transform(
        "totals", inputs={"orders": orders}, output=out, warehouse=warehouse, key=keys.private_key
    ) as t:
        assert t.version("orders") == 3
        assert t.inputs["orders"]["attestationDigest"] == attested.versions[3].attestation_digest
        # Another writer appends to the input meanwhile: the block still reads version 3.
        write_deltalake(str(orders), orders_batch(100, 5, "us"), mode="append")
        pinned = t.table("orders")
        assert pinned.version() == 3
        write_deltalake(str(out), totals_of(pinned.to_pyarrow_table()))
        write_deltalake(str(out), totals_of(pinned.to_pyarrow_table()), mode="overwrite")
    assert t.report is not None
    assert [v.version for v in t.report.versions] == [0, 1]
    for version in (0, 1):
        s = statement(warehouse, "totals", version)
        transform = s["statement"]["predicate"]["transform"]
        assert transform["type"] == "https://makoto.dev/transforms/pipeline"
        assert transform["name"] == "totals"
        assert transform["parameters"]["inputPolicy"] == "require-verified"
        names = [i["name"] for i in s["statement"]["predicate"]["inputs"]]
        assert any(n.endswith("orders@v3") for n in names), names
    # The gate follows the lineage it recorded.
    # Signed without time-stamps: L1, so the gate is asked for L1 (levels are tested elsewhere).
    assert makoto.check(
        out, warehouse=warehouse, trust=keys.public_key, upstream=True, min_level=1
    ).passed
    cli = run_cli(
        "check",
        str(out),
        "--warehouse",
        str(warehouse),
        "--trust",
        keys.public_key,
        "--upstream",
        "--min-level",
        "1",
    )
    assert cli.stdout.startswith("PASS")


def test_a_tampered_input_is_refused_and_nothing_is_written(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    flip_a_byte(orders)
    out = tmp_path / "totals"
    ran = False
    with pytest.raises(makoto.UnattestedInput) as e:
        with makoto.transform(
            "totals", inputs={"orders": orders}, output=out, warehouse=warehouse, key=keys.private_key
        ):
            ran = True
    assert not ran
    assert e.value.path == "orders" and e.value.version == 3
    assert "orders" in str(e.value)
    assert not out.exists()


def test_an_exception_in_the_block_attests_nothing_and_says_so(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    out = tmp_path / "totals"
    before = DeltaTable(str(warehouse / "system/makoto/attestations")).to_pyarrow_table().num_rows
    with pytest.warns(makoto.NothingAttested, match="nothing was attested.*0..0"):
        with pytest.raises(ZeroDivisionError):
            with makoto.transform(
                "totals", inputs={"orders": orders}, output=out, warehouse=warehouse,
                key=keys.private_key,
            ) as t:
                write_deltalake(str(out), totals_of(t.table("orders").to_pyarrow_table()))
                _ = 1 / 0
    rows = DeltaTable(str(warehouse / "system/makoto/attestations")).to_pyarrow_table()
    assert rows.num_rows == before
    assert not any("totals" in u for u in rows.column("table_uri").to_pylist())


def test_a_block_that_writes_nothing_is_an_error(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    with pytest.raises(makoto.MakotoError, match="wrote no commit"):
        with makoto.transform(
            "noop", inputs={"orders": orders}, output=tmp_path / "out", warehouse=warehouse,
            key=keys.private_key,
        ):
            pass


def test_two_hops_upstream_tamper_fails_expect_attestation(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    totals, report = tmp_path / "totals", tmp_path / "report"

    @makoto.transform_step(
        inputs={"orders": orders}, output=totals, warehouse=warehouse, key=keys.private_key
    )
    def make_totals(t: makoto.Transform) -> None:
        """Sum of amount per region."""
        write_deltalake(str(totals), totals_of(t.table("orders").to_pyarrow_table()))

    @makoto.transform_step(
        "report", inputs={"totals": totals}, output=report, warehouse=warehouse,
        key=keys.private_key,
    )
    def make_report(t: makoto.Transform) -> None:
        data = t.table("totals").to_pyarrow_table()
        write_deltalake(str(report), data.filter(pc.greater(data["amount_sum"], 0)))

    make_totals()
    make_report()
    s = statement(warehouse, "totals", 0)
    assert s["statement"]["predicate"]["transform"]["parameters"]["description"] == (
        "Sum of amount per region."
    )
    gate = {"warehouse": warehouse, "trust": keys.public_key, "min_level": 1}
    assert makoto.expect_attestation(report, **gate)

    flip_a_byte(orders)  # two hops upstream of `report`
    assert makoto.verify(report, warehouse=warehouse, trust=keys.public_key).verified
    assert not makoto.expect_attestation(report, **gate)
    assert makoto.expect_attestation(report, upstream=False, **gate)
    with pytest.raises(makoto.UnattestedInput, match="fails the gate"):
        makoto.require_attestation(report, **gate)
