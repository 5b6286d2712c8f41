"""ECDSA P-256 (ES256) keys beside Ed25519, with signatures and key ids checked independently
with `cryptography`."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from deltalake import DeltaTable

import makoto
from conftest import run_cli

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def keyid_of(public_pem: Path) -> str:
    der = serialization.load_pem_public_key(public_pem.read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = der[-65:] if len(der) == 91 else der[-32:]
    return hashlib.sha256(raw).hexdigest()


def test_p256_keys_attest_and_verify(tmp_path: Path, orders: Path, warehouse: Path) -> None:
    key = makoto.keygen(tmp_path / "p256", algorithm="ecdsa-p256")
    assert key.algorithm == "ecdsa-p256"
    public = serialization.load_pem_public_key(Path(key.public_key).read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert key.keyid == keyid_of(Path(key.public_key))
    private = serialization.load_pem_private_key(Path(key.private_key).read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)

    report = makoto.attest(orders, warehouse=warehouse, key=key.private_key)
    assert report.level == "L1" and report.keyid == key.keyid
    rows = DeltaTable(str(warehouse / "system/makoto/attestations")).to_pyarrow_table().to_pylist()
    assert len(rows) == 4
    for row in rows:
        envelope = json.loads(row["envelope"])
        (signature,) = envelope["signatures"]
        assert signature["keyid"] == key.keyid == row["keyid"]
        payload = base64.b64decode(envelope["payload"])
        ptype = envelope["payloadType"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
        sig = base64.b64decode(signature["sig"])
        public.verify(sig, pae, ec.ECDSA(hashes.SHA256()))  # DER, ES256
        _, s = decode_dss_signature(sig)
        assert s <= P256_ORDER // 2, "low-S"
    result = makoto.verify(orders, warehouse=warehouse, trust=key.public_key)
    assert result.verified, result.findings
    assert run_cli("verify", str(orders), "--warehouse", str(warehouse), "--trust", key.public_key,
                   "--no-record").returncode == 0

    # An Ed25519 key does not verify them; a trust file with both keys does.
    ed = makoto.keygen(tmp_path / "ed")
    assert not makoto.verify(orders, warehouse=warehouse, trust=ed.public_key, record=False).verified
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"keys": [
        {"publicKey": Path(ed.public_key).read_text(), "keyid": ed.keyid},
        {"publicKey": Path(key.public_key).read_text(), "keyid": key.keyid},
    ]}))
    assert makoto.verify(orders, warehouse=warehouse, trust=trust, record=False).verified


def test_the_cli_makes_p256_keys_too(tmp_path: Path) -> None:
    out = json.loads(run_cli("keygen", str(tmp_path / "k"), "--algorithm", "ecdsa-p256", "--json").stdout)
    assert out["algorithm"] == "ecdsa-p256"
    assert out["keyid"] == keyid_of(Path(out["publicKey"]))
    with pytest.raises(ValueError):
        makoto.keygen(tmp_path / "x", algorithm="rsa")
    assert run_cli("keygen", str(tmp_path / "y"), "--algorithm", "rsa", check=False).returncode == 2
