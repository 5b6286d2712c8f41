"""RFC 3161 time-stamps through the API: ``makoto.attest(..., tsa=URL)`` against OpenSSL's TSA
(scripts/tsa-server), checked by ``makoto.verify`` with a trust file that lists the TSA's CA."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import makoto

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running TSA: its URL and its CA certificate."""
    d = tmp_path / "tsa"
    script = str(REPO / "scripts/tsa-server")
    subprocess.run([sys.executable, script, "init", str(d)], check=True, timeout=120)
    proc = subprocess.Popen(
        [sys.executable, script, "serve", str(d)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("listening "), line
    try:
        yield line.removeprefix("listening "), d / "ca.pem"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_attest_with_a_tsa_and_verify_the_time_stamp(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair, tsa: tuple[str, Path]
) -> None:
    url, ca = tsa
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key, tsa=url)
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps(
            {
                "keys": [{"publicKey": Path(keys.public_key).read_text()}],
                "timestampAuthorities": [{"name": "test-tsa", "certificate": ca.read_text()}],
            }
        )
    )
    report = makoto.verify(orders, warehouse=warehouse, trust=trust, log_only=True)
    assert report.outcome == "verified", report.findings
    assert report.level == "L1", "time-stamped, but the key is bound to no identity"
    stamps = report.coverage["timestamps"]
    assert stamps["covered"] is True
    assert stamps["authority"] == "test-tsa"
    assert stamps["anchorVersion"] == 3

    # The bare public key checks no time-stamps, and the report says so.
    plain = makoto.verify(orders, warehouse=warehouse, trust=keys.public_key, log_only=True)
    assert plain.coverage["timestamps"] == {
        "authorities": 0,
        "covered": False,
        "anchorVersion": None,
        "genTime": None,
        "authority": None,
    }


def test_a_tsa_that_is_down_raises_before_anything_is_written(
    orders: Path, warehouse: Path, keys: makoto.KeyPair
) -> None:
    with pytest.raises(makoto.StorageError, match="127.0.0.1:9"):
        makoto.attest(orders, warehouse=warehouse, key=keys.private_key, tsa="http://127.0.0.1:9/")
    assert not warehouse.exists()
    with pytest.raises(makoto.MakotoError, match="signing key"):
        makoto.attest(orders, warehouse=warehouse, tsa="http://127.0.0.1:9/")
    assert not warehouse.exists()


def test_l2_is_earned_with_a_key_a_tsa_and_a_bound_identity(
    tmp_path: Path, orders: Path, warehouse: Path, keys: makoto.KeyPair, tsa: tuple[str, Path]
) -> None:
    url, ca = tsa
    identity = "https://ci.example/jobs/orders-nightly"
    report = makoto.attest(
        orders, warehouse=warehouse, key=keys.private_key, tsa=url, identity=identity
    )
    assert report.level == "L2"
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps(
            {
                "keys": [
                    {"publicKey": Path(keys.public_key).read_text(), "identity": identity}
                ],
                "timestampAuthorities": [{"certificate": ca.read_text()}],
            }
        )
    )
    verified = makoto.verify(orders, warehouse=warehouse, trust=trust, log_only=True)
    assert verified.outcome == "verified", verified.findings
    assert verified.level == "L2"
    assert makoto.check(orders, warehouse=warehouse, trust=trust, log_only=True).passed
    # The bare key proves the signature only: L1, and the default gate (L2) fails.
    assert not makoto.check(orders, warehouse=warehouse, trust=keys.public_key).passed


def test_heads_and_dboms_carry_a_time_stamp(
    orders: Path, warehouse: Path, keys: makoto.KeyPair, tsa: tuple[str, Path]
) -> None:
    url, _ = tsa
    makoto.attest(orders, warehouse=warehouse, key=keys.private_key)
    head = makoto.head(warehouse=warehouse, key=keys.private_key, tsa=url)
    dbom = makoto.dbom(orders, warehouse=warehouse, key=keys.private_key, tsa=url)
    assert dbom.envelope is not None
    for envelope in (head.envelope, dbom.envelope):
        signature = json.loads(envelope)["signatures"][0]
        assert len(signature["timestamp"]) > 100, signature
    # Without a TSA nothing is time-stamped.
    plain = makoto.head(warehouse=warehouse, key=keys.private_key)
    assert "timestamp" not in json.loads(plain.envelope)["signatures"][0]
