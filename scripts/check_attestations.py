#!/usr/bin/env python3
"""Independent check of a Makoto warehouse with tools that share no code with makoto.

Reads system.makoto.attestations and system.makoto.files with the Python `deltalake`
package, verifies every DSSE envelope with `securesystemslib` against the given public key
(the key id is recomputed here as the hex SHA-256 of the raw Ed25519 key), checks that each
row matches its signed statement and that each table's chain is unbroken, and, with
--schemas, validates every statement with `jsonschema` against the Makoto structured schemas.

Prints a JSON summary; exits 0 when everything checks out, 1 otherwise.

    python3 scripts/check_attestations.py WAREHOUSE PUBKEY.pub [--schemas DIR] [--table URI]
"""

import argparse
import hashlib
import json
import pathlib
import sys

import deltalake
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def load_key(path):
    pub = serialization.load_pem_public_key(pathlib.Path(path).read_bytes())
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = hashlib.sha256(raw).hexdigest()
    return keyid, SSlibKey.from_crypto(pub, keyid=keyid, scheme="ed25519")


def schema_validator(schema_dir):
    import jsonschema
    from referencing import Registry, Resource

    root = pathlib.Path(schema_dir)
    resources = []
    for p in list((root / "makoto.dev").rglob("*.json")) + [root / "in-toto" / "statement-v1.json"]:
        doc = json.loads(p.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    registry = Registry().with_resources(resources)
    statement = json.loads((root / "in-toto" / "statement-v1.json").read_text())
    return jsonschema.Draft202012Validator(
        statement, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("warehouse")
    ap.add_argument("pubkey")
    ap.add_argument("--schemas")
    ap.add_argument("--table")
    args = ap.parse_args()

    keyid, key = load_key(args.pubkey)
    validator = schema_validator(args.schemas) if args.schemas else None
    wh = args.warehouse.rstrip("/")
    att = deltalake.DeltaTable(f"{wh}/system/makoto/attestations").to_pyarrow_table().to_pylist()
    files = deltalake.DeltaTable(f"{wh}/system/makoto/files").to_pyarrow_table().to_pylist()
    if args.table:
        att = [r for r in att if r["table_uri"] == args.table]
        files = [r for r in files if r["table_uri"] == args.table]

    errors = []
    verified = schema_valid = 0
    by_table = {}
    for row in att:
        where = f'{row["table_uri"]}@v{row["version"]}'
        by_table.setdefault(row["table_uri"], []).append(row)
        env = Envelope.from_dict(json.loads(row["envelope"]))
        if row["keyid"] != keyid:
            errors.append(f"{where}: keyid column {row['keyid']} is not the given key {keyid}")
            continue
        try:
            env.verify([key], 1)
            verified += 1
        except Exception as e:  # securesystemslib raises VerificationError
            errors.append(f"{where}: signature does not verify: {e}")
            continue
        if hashlib.sha256(env.payload).hexdigest() != row["attestation_digest"]:
            errors.append(f"{where}: attestation_digest is not the SHA-256 of the payload")
        statement = json.loads(env.payload)
        subject = statement["subject"][0]
        if subject["digest"]["sha256"] != row["state_digest"] or subject["name"] != row["subject"]:
            errors.append(f"{where}: subject does not match the row")
        if statement["predicate"]["delta"]["version"] != row["version"]:
            errors.append(f"{where}: statement version differs")
        if validator is not None:
            problems = [e.message for e in validator.iter_errors(statement)]
            if problems:
                errors.append(f"{where}: schema: {problems[0]}")
            else:
                schema_valid += 1
    for uri, rows in by_table.items():
        rows.sort(key=lambda r: r["version"])
        previous = None
        for i, row in enumerate(rows):
            if row["version"] != rows[0]["version"] + i:
                errors.append(f"{uri}: versions not contiguous at {row['version']}")
            if row["previous_attestation_digest"] != previous:
                errors.append(f"{uri}@v{row['version']}: chain broken")
            previous = row["attestation_digest"]

    summary = {
        "attestationRows": len(att),
        "fileRows": len(files),
        "tables": len(by_table),
        "signaturesVerified": verified,
        "schemaValid": schema_valid,
        "keyid": keyid,
        "errors": errors,
    }
    print(json.dumps(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
