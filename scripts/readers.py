#!/usr/bin/env python3
"""Cross-check a Makoto warehouse with readers that share no code with makoto.

Reads `system.makoto.attestations` and `system.makoto.files` twice, with the Python
`deltalake` package and with DuckDB's Delta extension (the `delta_scan` table function, loaded
offline from the PyPI package `duckdb-ext-delta`), and checks that:

* both readers see the same number of rows in both tables, the same set of
  (table_uri, version, attestation_digest) and the same envelopes, and the same file rows;
* for every table on a local `file://` path, `commit_file_digest` is the SHA-256 of the
  commit file `_delta_log/<version:020>.json` as stored;
* every data, change-data and deletion-vector file that still exists locally has the
  `sha256` (and, for `add`/`cdc`, the size) its files row records;
* each version's files rows, ordered by `ordinal`, give that version's `changes_digest`
  (docs/digests.md section 7);
* `attestation_digest` is the SHA-256 of the envelope payload, every DSSE envelope verifies
  with `securesystemslib` under the given Ed25519 public key, and the signed statement agrees
  with its row (subject digest = `state_digest`, subject name, version, commit file digest,
  changes digest).

    python3 scripts/readers.py --warehouse DIR --public-key demo.pub [--json]

Exit status: 0 when everything agrees, 1 on any mismatch (one line per mismatch, naming
the table, version and file), 2 when the check could not run (missing package, missing
table, unreadable key, DuckDB extension not loadable).

Install the readers with `pip install -r scripts/readers-requirements.txt`.
"""

import argparse
import base64
import collections
import hashlib
import json
import os
import pathlib
import sys
import urllib.parse
import urllib.request

ATTESTATIONS = "system/makoto/attestations"
FILES = "system/makoto/files"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_LINES = 50  # mismatch lines printed in text mode (all of them are in --json)


class CannotRun(Exception):
    """The check could not be carried out (exit status 2)."""


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def local_path(uri):
    """The local filesystem path of a file:// URI (or a plain path), else None."""
    if "://" not in uri:
        return pathlib.Path(uri)
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return pathlib.Path(urllib.request.url2pathname(parsed.path))


def table_location(warehouse, name):
    """Location of a warehouse table as a string both readers accept, and its local path."""
    if "://" in warehouse and not warehouse.startswith("file://"):
        return f"{warehouse.rstrip('/')}/{name}", None
    root = local_path(warehouse)
    path = (root / name).resolve()
    if not (path / "_delta_log").is_dir():
        raise CannotRun(f"table {path} not found (no _delta_log/ there)")
    return str(path), path


# --- the two readers -------------------------------------------------------------------

ATT_COLUMNS = ["table_uri", "version", "attestation_digest", "envelope"]
FILE_COLUMNS = ["table_uri", "version", "ordinal", "action", "path", "sha256"]


def read_deltalake(location):
    import deltalake

    return deltalake.DeltaTable(location).to_pyarrow_table().to_pylist()


def duckdb_extension_dir():
    """The extension directory laid out by the `duckdb-ext-delta` wheel.

    The wheel ships no Python code, only
    `site-packages/duckdb_ext/extensions/v<duckdb version>/<platform>/delta.duckdb_extension`,
    which is DuckDB's own extension-directory layout: pointing `extension_directory` at
    `.../duckdb_ext/extensions` makes `LOAD delta` find it without any download.
    """
    import importlib.metadata

    try:
        files = importlib.metadata.files("duckdb-ext-delta") or []
    except importlib.metadata.PackageNotFoundError:
        raise CannotRun("the PyPI package duckdb-ext-delta is not installed") from None
    for f in files:
        if f.name == "delta.duckdb_extension":
            ext = pathlib.Path(f.locate()).resolve()
            return ext, ext.parents[2]
    raise CannotRun("duckdb-ext-delta ships no delta.duckdb_extension")


def duckdb_connect():
    import duckdb

    ext, ext_dir = duckdb_extension_dir()
    con = duckdb.connect(
        config={
            # Never reach for extensions.duckdb.org: everything is loaded from the wheel.
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
            "extension_directory": str(ext_dir),
        }
    )
    try:
        con.execute("LOAD delta")
    except Exception as e:
        raise CannotRun(
            f"DuckDB {duckdb.__version__} cannot load the Delta extension {ext}: {e} "
            "(duckdb and duckdb-ext-delta versions must match)"
        ) from None
    return con


def read_duckdb(con, location, columns):
    cols = ", ".join(f'"{c}"' for c in columns)
    cur = con.execute(f"SELECT {cols} FROM delta_scan(?)", [location])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


# --- checks ----------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.mismatches = []
        self.counts = collections.Counter()

    def fail(self, where, what):
        self.mismatches.append(f"{where}: {what}")


def where(row, path=None):
    w = f"{row['table_uri']}@v{row['version']}"
    return f"{w} {path}" if path else w


def compare_readers(report, name, dl_rows, dd_rows, key):
    report.counts[f"{name}.deltalake"] = len(dl_rows)
    report.counts[f"{name}.duckdb"] = len(dd_rows)
    if len(dl_rows) != len(dd_rows):
        report.fail(name, f"deltalake reads {len(dl_rows)} rows, duckdb {len(dd_rows)}")
    dl = collections.Counter(key(r) for r in dl_rows)
    dd = collections.Counter(key(r) for r in dd_rows)
    for k in sorted(dl - dd, key=repr)[:MAX_LINES]:
        report.fail(f"{name} {k[0]}@v{k[1]}", f"row {k[2:]} read by deltalake, not by duckdb")
    for k in sorted(dd - dl, key=repr)[:MAX_LINES]:
        report.fail(f"{name} {k[0]}@v{k[1]}", f"row {k[2:]} read by duckdb, not by deltalake")


def att_key(r):
    env = r["envelope"]
    env_digest = hashlib.sha256(env.encode()).hexdigest() if env is not None else None
    return (r["table_uri"], r["version"], r["attestation_digest"], env_digest)


def file_key(r):
    return tuple(r[c] for c in FILE_COLUMNS)


def load_key(pem_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from securesystemslib.signer import SSlibKey

    try:
        pub = serialization.load_pem_public_key(pathlib.Path(pem_path).read_bytes())
    except (OSError, ValueError) as e:
        raise CannotRun(f"cannot read the public key {pem_path}: {e}") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise CannotRun(f"{pem_path} is not an Ed25519 public key")
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = hashlib.sha256(raw).hexdigest()  # docs/digests.md section 9
    return keyid, SSlibKey.from_crypto(pub, keyid=keyid, scheme="ed25519")


def check_envelope(report, row, keyid, key):
    """Signature, attestation digest and statement-versus-row checks; returns the statement."""
    from securesystemslib.dsse import Envelope

    w = where(row)
    try:
        env_dict = json.loads(row["envelope"])
        payload = base64.b64decode(env_dict["payload"], validate=True)
        env = Envelope.from_dict(env_dict)
    except Exception as e:
        report.fail(w, f"envelope is not a DSSE envelope: {e}")
        return None
    if hashlib.sha256(payload).hexdigest() != row["attestation_digest"]:
        report.fail(w, "attestation_digest is not the SHA-256 of the envelope payload")
    if env.payload_type != PAYLOAD_TYPE:
        report.fail(w, f"payloadType is {env.payload_type!r}, not {PAYLOAD_TYPE}")
    if not env.signatures:
        report.fail(w, "envelope is unsigned")
    else:
        sig_keyids = sorted(env.signatures)
        if keyid not in sig_keyids:
            report.fail(w, f"no signature by the given key {keyid} (signed by {sig_keyids})")
        else:
            try:
                env.verify([key], 1)
                report.counts["envelopes_verified"] += 1
            except Exception as e:
                report.fail(w, f"signature does not verify under {keyid}: {e}")
    if row.get("keyid") is not None and row["keyid"] != keyid:
        report.fail(w, f"keyid column {row['keyid']} is not the given key {keyid}")

    try:
        statement = json.loads(payload)
        subject = statement["subject"][0]
        delta = statement["predicate"]["delta"]
    except Exception as e:
        report.fail(w, f"payload is not a Makoto in-toto statement: {e}")
        return None
    if "state_digest" in row and subject.get("digest", {}).get("sha256") != row["state_digest"]:
        report.fail(w, "statement subject digest is not the row's state_digest")
    if "subject" in row and subject.get("name") != row["subject"]:
        report.fail(w, "statement subject name is not the row's subject")
    if delta.get("version") != row["version"]:
        report.fail(w, f"statement is for version {delta.get('version')}")
    signed_commit = delta.get("commit", {}).get("digest", {}).get("sha256")
    if signed_commit != row.get("commit_file_digest"):
        report.fail(w, "commit_file_digest differs from the signed delta.commit.digest")
    signed_changes = delta.get("changes", {}).get("digest", {}).get("sha256")
    if "changes_digest" in row and signed_changes != row["changes_digest"]:
        report.fail(w, "changes_digest differs from the signed delta.changes.digest")
    return statement


def check_commit_file(report, row, root):
    name = f"_delta_log/{row['version']:020d}.json"
    path = root / name
    if not path.is_file():
        report.fail(where(row, name), f"commit file {path} is missing")
        return
    if sha256_file(path) != row["commit_file_digest"]:
        report.fail(where(row, name), "SHA-256 of the commit file is not commit_file_digest")
    else:
        report.counts["commit_files_checked"] += 1


def resolve(root, p):
    """A path from the files table (percent-decoded, relative to the table root) on disk."""
    if "://" in p:
        return local_path(p)
    if p.startswith("/"):
        return pathlib.Path(p)
    return root / p


def check_data_files(report, row, root, cache):
    """sha256/size of the data (or cdc) file and of its deletion-vector file, when present."""
    targets = []
    if row.get("sha256") is not None:
        size = row.get("size") if row["action"] in ("add", "cdc") else None
        targets.append((row["path"], resolve(root, row["path"]), row["sha256"], size, "data"))
    if row.get("dv_sha256") is not None and row.get("dv_file"):
        targets.append((row["dv_file"], resolve(root, row["dv_file"]), row["dv_sha256"], None, "dv"))
    for shown, path, expected, size, kind in targets:
        if path is None or not path.is_file():
            report.counts[f"{kind}_files_absent"] += 1
            continue
        if path not in cache:
            cache[path] = (sha256_file(path), path.stat().st_size)
        actual, actual_size = cache[path]
        if actual != expected:
            report.fail(where(row, shown), f"SHA-256 of {path} is not the recorded sha256 ({row['action']})")
        elif size is not None and actual_size != size:
            report.fail(where(row, shown), f"{path} has {actual_size} bytes, the row says {size}")
        else:
            report.counts[f"{kind}_files_checked"] += 1


def canonical(v):
    """Canonical JSON (docs/digests.md section 1) for the values in a changes list."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def change_entry(r):
    dv = None
    if r.get("dv_storage_type") is not None:
        dv = {
            "storageType": r["dv_storage_type"],
            "pathOrInlineDv": r["dv_path_or_inline"],
            "sizeInBytes": r["dv_size_in_bytes"],
            "cardinality": r["dv_cardinality"],
            "uniqueId": r["dv_unique_id"],
            "file": r["dv_file"],
            "sha256": r["dv_sha256"],
        }
        if r.get("dv_offset") is not None:
            dv["offset"] = r["dv_offset"]
    return {
        "action": r["action"],
        "path": r["path"],
        "size": r["size"],
        "sha256": r["sha256"],
        "dataChange": r["data_change"],
        "partitionValues": json.loads(r["partition_values"]),
        "numRecords": r["num_records"],
        "deletionVector": dv,
    }


def check_changes(report, att_row, file_rows):
    """The version's files rows, ordered by ordinal, give its changes_digest."""
    if "changes_digest" not in att_row:
        return
    rows = sorted(file_rows, key=lambda r: r["ordinal"])
    if [r["ordinal"] for r in rows] != list(range(len(rows))):
        report.fail(where(att_row), f"files rows have ordinals {[r['ordinal'] for r in rows]}")
        return
    counts = collections.Counter(r["action"] for r in rows)
    for action, column in (("add", "files_added"), ("remove", "files_removed"), ("cdc", "cdc_files")):
        if column in att_row and att_row[column] != counts[action]:
            report.fail(where(att_row), f"{counts[action]} {action} rows in the files table, {column} = {att_row[column]}")
    try:
        digest = hashlib.sha256(canonical([change_entry(r) for r in rows]).encode()).hexdigest()
    except Exception as e:
        report.fail(where(att_row), f"cannot rebuild the changes list from the files rows: {e}")
        return
    if digest != att_row["changes_digest"]:
        report.fail(where(att_row), "the files rows do not give the row's changes_digest")
    else:
        report.counts["changes_digests_checked"] += 1


def run(args):
    try:
        import deltalake  # noqa: F401
        import duckdb  # noqa: F401
        import pyarrow  # noqa: F401
        import securesystemslib.dsse  # noqa: F401
        import securesystemslib.signer  # noqa: F401
        from cryptography.hazmat.primitives import serialization  # noqa: F401
    except ImportError as e:
        raise CannotRun(f"{e} (pip install -r scripts/readers-requirements.txt)") from None

    keyid, key = load_key(args.public_key)
    att_loc, _ = table_location(args.warehouse, ATTESTATIONS)
    files_loc, _ = table_location(args.warehouse, FILES)

    try:
        att = read_deltalake(att_loc)
        files = read_deltalake(files_loc)
    except Exception as e:
        raise CannotRun(f"deltalake cannot read the warehouse: {e}") from None
    con = duckdb_connect()
    try:
        att_dd = read_duckdb(con, att_loc, ATT_COLUMNS)
        files_dd = read_duckdb(con, files_loc, FILE_COLUMNS)
    except Exception as e:
        raise CannotRun(f"duckdb cannot read the warehouse: {e}") from None
    finally:
        con.close()

    report = Report()
    compare_readers(report, "system.makoto.attestations", att, att_dd, att_key)
    compare_readers(report, "system.makoto.files", files, files_dd, file_key)

    by_version = collections.defaultdict(list)
    for r in files:
        by_version[(r["table_uri"], r["version"])].append(r)
    att_versions = set()
    hash_cache = {}
    for row in sorted(att, key=lambda r: (r["table_uri"], r["version"])):
        att_versions.add((row["table_uri"], row["version"]))
        check_envelope(report, row, keyid, key)
        check_changes(report, row, by_version.get((row["table_uri"], row["version"]), []))
        root = local_path(row["table_uri"])
        if root is None:
            report.counts["remote_attestation_rows"] += 1
            continue
        check_commit_file(report, row, root)
    for k in sorted(set(by_version) - att_versions, key=repr):
        report.fail(f"{k[0]}@v{k[1]}", "files rows without an attestation row")
    for row in sorted(files, key=lambda r: (r["table_uri"], r["version"], r["ordinal"])):
        root = local_path(row["table_uri"])
        if root is not None:
            check_data_files(report, row, root, hash_cache)
    report.counts["tables"] = len({r["table_uri"] for r in att})
    return keyid, report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warehouse", required=True, help="the warehouse directory given to makoto attest")
    ap.add_argument("--public-key", required=True, help="Ed25519 public key, PEM (SPKI), e.g. <demo dir>/demo.pub")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args()

    try:
        keyid, report = run(args)
    except CannotRun as e:
        if args.json:
            print(json.dumps({"ok": False, "error": str(e)}))
        print(f"readers.py: cannot run: {e}", file=sys.stderr)
        return 2

    c = report.counts
    ok = not report.mismatches
    if args.json:
        print(json.dumps({"ok": ok, "keyid": keyid, "counts": dict(sorted(c.items())), "mismatches": report.mismatches}))
    else:
        print(f"readers.py: warehouse {args.warehouse}, key {keyid}")
        print(
            f"  system.makoto.attestations rows: deltalake {c['system.makoto.attestations.deltalake']},"
            f" duckdb {c['system.makoto.attestations.duckdb']} ({c['tables']} tables)"
        )
        print(
            f"  system.makoto.files rows:        deltalake {c['system.makoto.files.deltalake']},"
            f" duckdb {c['system.makoto.files.duckdb']}"
        )
        print(
            f"  digests checked: {c['commit_files_checked']} commit files,"
            f" {c['data_files_checked']} data files ({c['data_files_absent']} no longer on disk),"
            f" {c['dv_files_checked']} deletion-vector files,"
            f" {c['changes_digests_checked']} changes digests"
            + (f"; {c['remote_attestation_rows']} rows of non-local tables" if c["remote_attestation_rows"] else "")
        )
        print(f"  envelopes verified: {c['envelopes_verified']} of {c['system.makoto.attestations.deltalake']}")
        for line in report.mismatches[:MAX_LINES]:
            print(f"MISMATCH {line}")
        if len(report.mismatches) > MAX_LINES:
            print(f"... and {len(report.mismatches) - MAX_LINES} more mismatches")
        print("readers.py: OK" if ok else f"readers.py: FAILED, {len(report.mismatches)} mismatches")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
