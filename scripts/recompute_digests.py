#!/usr/bin/env python3
"""Recompute every Makoto digest of a Delta table from its raw _delta_log and files.

A second implementation of docs/digests.md that shares no code with makoto: it replays the
JSON commits from version 0, hashes the files each commit adds, and prints one JSON object
per version with the commit file digest, the actions digest, the changes digest, the
state digest (root of the state tree) and the reader view (its digest, the root and size of
its file tree and the digests of the four table facts; docs/digests.md §10). The test suite
compares its output with the attestation rows and the signed statements.

    python3 scripts/recompute_digests.py TABLE_DIR
"""

import decimal
import hashlib
import json
import math
import pathlib
import sys
import urllib.parse

# --- Canonical JSON (RFC 8785, integers exact) -------------------------------------------

def _number(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if -(2**63) <= v < 2**64:
            return str(v)
        v = float(v)  # beyond 64 bits: the nearest double, like every non-integer
    return _ecmascript(v)


def _ecmascript(v):
    """ECMAScript Number.prototype.toString for a finite double (the form RFC 8785 uses)."""
    if v == 0:
        return "0"
    if v < 0:
        return "-" + _ecmascript(-v)
    _, digits, exponent = decimal.Decimal(repr(v)).as_tuple()  # shortest round-trip digits
    s = "".join(map(str, digits)).rstrip("0") or "0"
    k = len(s)
    n = exponent + len(digits)  # v = 0.s × 10^n
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    exp = ("+" if e >= 0 else "-") + str(abs(e))
    return (s if k == 1 else s[0] + "." + s[1:]) + "e" + exp


def _string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(v):
    if v is None:
        return "null"
    if isinstance(v, (bool, int, float)):
        return _number(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
    return "{" + ",".join(_string(k) + ":" + canonical(v[k]) for k in keys) + "}"


def sha256(b):
    return hashlib.sha256(b).hexdigest()

# --- Deletion vectors ----------------------------------------------------------------------

Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85_decode(s):
    out = bytearray()
    for i in range(0, len(s), 5):
        n = 0
        for c in s[i:i + 5]:
            n = n * 85 + Z85.index(c)
        out += n.to_bytes(4, "big")
    return bytes(out)


def dv_file(dv):
    if dv["storageType"] == "u":
        p = dv["pathOrInlineDv"]
        prefix, z = p[:-20], p[-20:]
        u = z85_decode(z).hex()
        name = f"deletion_vector_{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}.bin"
        return f"{prefix}/{name}" if prefix else name
    if dv["storageType"] == "p":
        return dv["pathOrInlineDv"]
    return None


def dv_descriptor(dv, **extra):
    """The descriptor's protocol fields (offset only when present), plus extra fields."""
    d = {k: dv[k] for k in ("storageType", "pathOrInlineDv", "sizeInBytes", "cardinality")}
    if dv.get("offset") is not None:
        d["offset"] = dv["offset"]
    d.update(extra)
    return d


def dv_unique_id(dv):
    uid = dv["storageType"] + dv["pathOrInlineDv"]
    return uid + f"@{dv['offset']}" if dv.get("offset") is not None else uid

# --- State tree ----------------------------------------------------------------------------

def bit(key, i):
    return (key[i // 8] >> (7 - i % 8)) & 1


def root(leaves, depth=0):
    if not leaves:
        return bytes(32)
    if len(leaves) == 1:
        return leaves[0][1]
    split = next((i for i, (k, _) in enumerate(leaves) if bit(k, depth)), len(leaves))
    return hashlib.sha256(b"\x01" + root(leaves[:split], depth + 1) + root(leaves[split:], depth + 1)).digest()

# --- Reader view (§10) ---------------------------------------------------------------------

READER_VIEW_ALGORITHM = "makoto-delta-reader-view/1"


def _has_surrogate(s):
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in s)


def _hashable(v):
    """Whether canonical() can write v as §1 prescribes: every number is a finite double or
    an exact 64-bit integer, and no string or key holds a lone surrogate (json.loads turns a
    lone \\udxxx escape into one; a valid pair becomes one code point)."""
    if isinstance(v, bool) or v is None:
        return True
    if isinstance(v, int):
        if -(2**63) <= v < 2**64:
            return True
        try:
            return math.isfinite(float(v))  # beyond 64 bits: read as the nearest double
        except OverflowError:
            return False
    if isinstance(v, float):
        return math.isfinite(v)  # json.loads reads 1e400 as inf
    if isinstance(v, str):
        return not _has_surrogate(v)
    if isinstance(v, list):
        return all(_hashable(x) for x in v)
    return all(not _has_surrogate(k) and _hashable(x) for k, x in v.items())


def _reject_constant(name):
    raise ValueError(f"not JSON: {name}")  # json.loads would accept NaN and ±Infinity


def json_or_string(s):
    """A string the log holds JSON in (stats, schemaString): the parsed value, or the string
    itself when it is not JSON or holds a value §1 cannot write. Anything but a string
    (absent, null) is null: there is no string to read."""
    if not isinstance(s, str):
        return None
    try:
        v = json.loads(s, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return s
    return v if _hashable(v) else s


def file_key(path, dv):
    """The reconciliation key of §6: SHA-256(decoded path ‖ 0x00 ‖ DV unique id)."""
    return hashlib.sha256(path.encode() + b"\x00" + (dv_unique_id(dv) if dv else "").encode()).digest()


def reader_leaf(add):
    """The §10 leaf value of an add action: what a reader is told about the file."""
    return {
        "path": urllib.parse.unquote(add["path"]),
        "size": add["size"],
        "partitionValues": add.get("partitionValues") or {},
        "deletionVector": dv_descriptor(add["deletionVector"]) if add.get("deletionVector") else None,
        "stats": json_or_string(add.get("stats")),
        "tags": add.get("tags") or None,  # absent, null and {} are all null
        "baseRowId": add.get("baseRowId"),
        "defaultRowCommitVersion": add.get("defaultRowCommitVersion"),
        "clusteringProvider": add.get("clusteringProvider"),
    }


def protocol_fact(p):
    """The protocol fact: feature lists sorted, deduplicated, and null when empty or absent."""
    def features(name):
        return sorted(set(p.get(name) or [])) or None

    return {"minReaderVersion": p["minReaderVersion"], "minWriterVersion": p["minWriterVersion"],
            "readerFeatures": features("readerFeatures"), "writerFeatures": features("writerFeatures")}


def metadata_fact(m):
    """The metadata fact: the fields a reader uses, with the protocol's defaults filled in."""
    fmt = m.get("format") or {}
    return {
        "id": m["id"],
        "name": m.get("name"),
        "description": m.get("description"),
        "format": {"provider": fmt.get("provider") or "parquet", "options": fmt.get("options") or {}},
        "schema": json_or_string(m.get("schemaString")),
        "partitionColumns": m.get("partitionColumns") or [],
        "configuration": m.get("configuration") or {},
        "createdTime": m.get("createdTime"),
    }


class ReaderView:
    """The reader view of §10, replayed commit by commit from version 0."""

    def __init__(self):
        self.files = {}         # file key -> leaf value
        self.protocol = None    # protocol fact, or None before the first protocol action
        self.metadata = None    # metadata fact, or None before the first metaData action
        self.domains = {}       # domain -> its last domainMetadata action
        self.txns = {}          # appId -> its last txn action

    def apply(self, actions):
        """One commit: every remove first, then adds and table facts in file order. A line is
        one action; should one hold several, each is applied (cdc, commitInfo and unknown
        actions change nothing)."""
        for a in actions:
            if "remove" in a:
                r = a["remove"]
                self.files.pop(file_key(urllib.parse.unquote(r["path"]), r.get("deletionVector")), None)
        for a in actions:
            if "add" in a:
                x = a["add"]
                self.files[file_key(urllib.parse.unquote(x["path"]), x.get("deletionVector"))] = reader_leaf(x)
            if "metaData" in a:
                self.metadata = metadata_fact(a["metaData"])
            if "protocol" in a:
                self.protocol = protocol_fact(a["protocol"])
            if "txn" in a:
                self.txns[a["txn"]["appId"]] = a["txn"]
            if "domainMetadata" in a:
                self.domains[a["domainMetadata"]["domain"]] = a["domainMetadata"]

    def facts(self):
        """The four table facts as JSON values (§10 "The table facts")."""
        domains = [{"domain": d, "configuration": m["configuration"]}
                   for d, m in sorted(self.domains.items()) if not m.get("removed", False)]
        txns = [{"appId": app, "version": t["version"], "lastUpdated": t.get("lastUpdated")}
                for app, t in sorted(self.txns.items())]
        return {"protocol": self.protocol, "metadata": self.metadata,
                "domainMetadata": domains, "setTransactions": txns}

    def summary(self):
        """The components and the readerViewDigest, as hex."""
        leaves = sorted(
            (k, hashlib.sha256(b"\x00" + canonical(v).encode("utf-8")).digest()) for k, v in self.files.items()
        )
        files_root = root(leaves).hex()
        components = {name: sha256(canonical(v).encode("utf-8")) for name, v in self.facts().items()}
        digest = sha256(canonical({"algorithm": READER_VIEW_ALGORITHM, "files": files_root,
                                   **components}).encode("utf-8"))
        return digest, {"filesRoot": files_root, "filesCount": len(leaves), **components}


def main():
    table = pathlib.Path(sys.argv[1])
    log = table / "_delta_log"
    live = {}  # key -> (entry dict)
    file_sha = {}
    view = ReaderView()
    version = 0

    def hash_file(rel):
        if rel not in file_sha:
            file_sha[rel] = sha256((table / rel).read_bytes())
        return file_sha[rel]

    while (log / f"{version:020}.json").exists():
        raw = (log / f"{version:020}.json").read_bytes()
        actions = [json.loads(l) for l in raw.decode("utf-8").split("\n") if l.strip()]
        canon = "".join(canonical(a) + "\n" for a in actions).encode("utf-8")
        removed = {}
        for a in actions:
            if "remove" in a:
                r = a["remove"]
                path = urllib.parse.unquote(r["path"])
                dv = r.get("deletionVector")
                key = hashlib.sha256(path.encode() + b"\x00" + (dv_unique_id(dv) if dv else "").encode()).digest()
                removed[key] = live.pop(key, None)
        changes = []
        for a in actions:
            if "remove" in a:
                r = a["remove"]
                path = urllib.parse.unquote(r["path"])
                dv = r.get("deletionVector")
                key = hashlib.sha256(path.encode() + b"\x00" + (dv_unique_id(dv) if dv else "").encode()).digest()
                old = removed.get(key)
                dvj = None
                if dv:
                    dvj = dv_descriptor(dv, uniqueId=dv_unique_id(dv), file=dv_file(dv),
                                        sha256=(old["deletionVector"] or {}).get("sha256") if old else None)
                changes.append({"action": "remove", "path": path,
                                "size": r.get("size", old["size"] if old else None),
                                "sha256": old["sha256"] if old else None, "dataChange": r["dataChange"],
                                "partitionValues": {}, "numRecords": None, "deletionVector": dvj})
            elif "add" in a:
                x = a["add"]
                path = urllib.parse.unquote(x["path"])
                digest = hash_file(path)
                dv = x.get("deletionVector")
                uid = dv_unique_id(dv) if dv else ""
                dv_sha = hash_file(dv_file(dv)) if dv and dv_file(dv) else None
                entry = {"path": path, "size": x["size"], "sha256": digest,
                         "deletionVector": None if not dv else {"uniqueId": uid, "sizeInBytes": dv["sizeInBytes"],
                                                                "cardinality": dv["cardinality"], "sha256": dv_sha}}
                live[hashlib.sha256(path.encode() + b"\x00" + uid.encode()).digest()] = entry
                try:
                    records = json.loads(x.get("stats") or "null")["numRecords"]
                except (TypeError, KeyError, ValueError):
                    records = None
                changes.append({"action": "add", "path": path, "size": x["size"], "sha256": digest,
                                "dataChange": x["dataChange"], "partitionValues": x.get("partitionValues", {}),
                                "numRecords": records,
                                "deletionVector": None if not dv else dv_descriptor(dv, uniqueId=uid, file=dv_file(dv), sha256=dv_sha)})
            elif "cdc" in a:
                c = a["cdc"]
                path = urllib.parse.unquote(c["path"])
                changes.append({"action": "cdc", "path": path, "size": c["size"], "sha256": hash_file(path),
                                "dataChange": False, "partitionValues": c.get("partitionValues", {}),
                                "numRecords": None, "deletionVector": None})
        leaves = sorted(
            (k, hashlib.sha256(b"\x00" + canonical(e).encode("utf-8")).digest()) for k, e in live.items()
        )
        view.apply(actions)
        reader_view_digest, reader_view = view.summary()
        print(json.dumps({
            "version": version,
            "commitFileDigest": sha256(raw),
            "commitDigest": sha256(canon),
            "changesDigest": sha256(canonical(changes).encode("utf-8")),
            "stateDigest": root(leaves).hex(),
            "liveFiles": len(live),
            "readerViewDigest": reader_view_digest,
            "readerView": reader_view,
        }))
        version += 1


if __name__ == "__main__":
    main()
