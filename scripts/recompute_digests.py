#!/usr/bin/env python3
"""Recompute every Makoto digest of a Delta table from its raw _delta_log and files.

A second implementation of docs/digests.md that shares no code with makoto: it replays the
JSON commits from version 0, hashes the files each commit adds, and prints one JSON object
per version with the commit file digest, the actions digest, the changes digest and the
state digest (root of the state tree). The test suite compares its output with the
attestation rows.

    python3 scripts/recompute_digests.py TABLE_DIR
"""

import decimal
import hashlib
import json
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


def main():
    table = pathlib.Path(sys.argv[1])
    log = table / "_delta_log"
    live = {}  # key -> (entry dict)
    file_sha = {}
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
        print(json.dumps({
            "version": version,
            "commitFileDigest": sha256(raw),
            "commitDigest": sha256(canon),
            "changesDigest": sha256(canonical(changes).encode("utf-8")),
            "stateDigest": root(leaves).hex(),
            "liveFiles": len(live),
        }))
        version += 1


if __name__ == "__main__":
    main()
