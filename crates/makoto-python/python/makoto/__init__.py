"""Makoto data attestations for Delta Lake.

Attest every commit of a Delta table into a warehouse of signed attestations, verify any
version against them, gate pipelines on them and query them with SQL. The functions mirror the
``makoto`` command (installed with this package) and return Python objects and Arrow data.

>>> import makoto
>>> key = makoto.keygen("keys/producer")                      # doctest: +SKIP
>>> makoto.attest("lake/orders", warehouse="wh", key=key.private_key)  # doctest: +SKIP
>>> makoto.verify("lake/orders", warehouse="wh", trust=key.public_key).raise_for_findings()  # doctest: +SKIP

Storage options are the ``storage_options`` dicts of the ``deltalake`` package (same keys:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``azure_storage_account_name``…); backends also
read the standard ``AWS_*``, ``AZURE_*`` and ``GOOGLE_*`` environment variables.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from makoto import _native
from makoto._native import (
    InvalidKey,
    MakotoError,
    StorageError,
    UnattestedInput,
    VerificationFailed,
)
from makoto._transform import NothingAttested, Transform, transform, transform_step
from makoto._reports import (
    AttestedVersion,
    AttestReport,
    CheckReport,
    Finding,
    VerifyReport,
)

__version__: str = _native.__version__

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "AttestReport",
    "AttestedVersion",
    "CheckReport",
    "Dbom",
    "Finding",
    "Head",
    "InvalidKey",
    "KeyPair",
    "MakotoError",
    "NothingAttested",
    "ProofResult",
    "StorageError",
    "Transform",
    "UnattestedInput",
    "VerificationFailed",
    "VerifyReport",
    "attest",
    "check",
    "dbom",
    "expect_attestation",
    "head",
    "keygen",
    "prove",
    "require_attestation",
    "sql",
    "transform",
    "transform_step",
    "verify",
    "verify_proof",
]


def _path(p: PathLike | None) -> str | None:
    return None if p is None else os.fspath(p)


def _options(storage_options: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if storage_options is None else {str(k): str(v) for k, v in storage_options.items()}


@dataclass(frozen=True)
class KeyPair:
    """A key pair written by :func:`keygen`."""

    keyid: str
    private_key: str
    public_key: str
    algorithm: str = "ed25519"


def keygen(prefix: PathLike, *, algorithm: str = "ed25519") -> KeyPair:
    """Write a new signing key to ``prefix.key`` (PKCS#8 PEM, mode 0600) and its public key to
    ``prefix.pub``; refuses to overwrite either. ``algorithm`` is ``"ed25519"`` or
    ``"ecdsa-p256"`` (ES256). Like ``makoto keygen PREFIX --algorithm A``."""
    d = _native.keygen(os.fspath(prefix), algorithm)
    return KeyPair(
        keyid=d["keyid"],
        private_key=d["privateKey"],
        public_key=d["publicKey"],
        algorithm=d["algorithm"],
    )


def attest(
    table: PathLike,
    *,
    warehouse: PathLike,
    key: PathLike | None = None,
    to_version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    batch_mib: int | None = None,
    parallelism: int | None = None,
    tsa: str | None = None,
    identity: str | None = None,
) -> AttestReport:
    """Attest every commit of ``table`` not yet attested in ``warehouse`` (created when
    missing), signed with ``key`` (unsigned attestations are Makoto L1). Exactly once: a
    second call attests nothing. Like ``makoto attest TABLE --warehouse W --key K``.

    ``tsa`` is an RFC 3161 time-stamp authority URL (``--tsa``): each batch's last signature
    is time-stamped; it needs ``key``, and a TSA that is down raises before anything is
    written. ``identity`` (``--identity``) is named as each statement's collector or executor.
    Attestations are Makoto L2 only with all three (docs/levels.md).

    Raises :class:`StorageError`, :class:`InvalidKey` or :class:`MakotoError` naming the
    table, version and file; nothing partial is written.
    """
    return AttestReport._from(
        _native.attest(
            os.fspath(table),
            warehouse=os.fspath(warehouse),
            key=_path(key),
            to_version=to_version,
            storage_options=_options(storage_options),
            batch_size=batch_size,
            batch_mib=batch_mib,
            parallelism=parallelism,
            tsa=tsa,
            identity=identity,
        )
    )


def verify(
    table: PathLike,
    *,
    warehouse: PathLike,
    trust: PathLike,
    version: int | None = None,
    timestamp: str | _dt.datetime | None = None,
    log_only: bool = False,
    allow_unsigned: bool = False,
    since_last: bool = False,
    key: PathLike | None = None,
    record: bool = True,
    reader_check: str = "delta-rs",
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    parallelism: int | None = None,
) -> VerifyReport:
    """Verify a version of ``table`` (the latest, ``version``, or the one current at
    ``timestamp`` by the signed commit times) against the attestations in ``warehouse`` signed
    by a key in the ``trust`` file. Deep by default (every live data file rehashed);
    ``log_only`` checks the log and attestations only. The verification is recorded in
    ``system.makoto.verifications`` (signed with ``key`` when given) unless ``record=False``.
    Like ``makoto verify``.

    Findings do not raise: inspect ``.verified`` / ``.findings`` or call
    ``.raise_for_findings()``. Raises :class:`MakotoError` when verification cannot run.
    """
    if isinstance(timestamp, _dt.datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware (e.g. datetime.timezone.utc)")
        timestamp = timestamp.isoformat()
    return VerifyReport._from(
        _native.verify(
            os.fspath(table),
            warehouse=os.fspath(warehouse),
            trust=os.fspath(trust),
            version=version,
            timestamp=timestamp,
            log_only=log_only,
            allow_unsigned=allow_unsigned,
            since_last=since_last,
            key=_path(key),
            record=record,
            reader_check=reader_check,
            attested_as=attested_as,
            storage_options=_options(storage_options),
            parallelism=parallelism,
        )
    )


def check(
    table: PathLike,
    *,
    warehouse: PathLike,
    trust: PathLike,
    version: int | None = None,
    min_level: int = 2,
    upstream: bool = False,
    log_only: bool = False,
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> CheckReport:
    """The gate: is the table version attested at ``min_level`` or above with a trusted key,
    and does it verify? With ``upstream``, every table version it was derived from too.
    Like ``makoto check``. The report is falsy when the gate fails."""
    return CheckReport._from(
        _native.check(
            os.fspath(table),
            warehouse=os.fspath(warehouse),
            trust=os.fspath(trust),
            version=version,
            min_level=min_level,
            upstream=upstream,
            log_only=log_only,
            attested_as=attested_as,
            storage_options=_options(storage_options),
        )
    )


def expect_attestation(
    table: PathLike,
    *,
    warehouse: PathLike,
    trust: PathLike,
    min_level: int = 2,
    upstream: bool = True,
    version: int | None = None,
    log_only: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> bool:
    """True when :func:`check` passes; for expectation-style checks (``dlt.expect``). An
    unattested table is ``False``, not an exception; errors that stop the check still raise."""
    try:
        return check(
            table,
            warehouse=warehouse,
            trust=trust,
            version=version,
            min_level=min_level,
            upstream=upstream,
            log_only=log_only,
            storage_options=storage_options,
        ).passed
    except (UnattestedInput, VerificationFailed):
        return False


def require_attestation(
    table: PathLike,
    *,
    warehouse: PathLike,
    trust: PathLike,
    min_level: int = 2,
    upstream: bool = True,
    version: int | None = None,
    log_only: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> CheckReport:
    """Like :func:`expect_attestation`, raising :class:`UnattestedInput` with the gate's
    reasons when it fails; returns the passing report."""
    report = check(
        table,
        warehouse=warehouse,
        trust=trust,
        version=version,
        min_level=min_level,
        upstream=upstream,
        log_only=log_only,
        storage_options=storage_options,
    )
    if not report.passed:
        err = UnattestedInput(
            f"{report.table}@v{report.version} fails the gate: " + "; ".join(report.reasons)
        )
        err.kind = "gate_failed"
        err.table = report.table
        err.version = report.version
        err.path = None
        raise err
    return report


@dataclass(frozen=True)
class Dbom:
    """A table version's DBOM: the document, and its DSSE envelope when signed."""

    document: dict[str, Any]
    envelope: str | None


def dbom(
    table: PathLike,
    *,
    warehouse: PathLike,
    key: PathLike | None = None,
    trust: PathLike | None = None,
    version: int | None = None,
    log_only: bool = False,
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    tsa: str | None = None,
) -> Dbom:
    """The DBOM of a table version (latest by default), verified against ``trust`` (or the
    signing key's own public key) and signed with ``key`` when given; with ``tsa`` (an RFC 3161
    time-stamp authority URL) the signature is also time-stamped. ``key`` is a key file or a
    ``pkcs11:`` URI. Like ``makoto dbom``."""
    document, envelope = _native.dbom(
        os.fspath(table),
        warehouse=os.fspath(warehouse),
        key=_path(key),
        trust=_path(trust),
        version=version,
        log_only=log_only,
        attested_as=attested_as,
        storage_options=_options(storage_options),
        tsa=tsa,
    )
    return Dbom(document=document, envelope=envelope)


@dataclass(frozen=True)
class Head:
    """A signed head: the latest attestation of every table in the warehouse."""

    envelope: str
    entries: list[dict[str, Any]]


def head(
    *,
    warehouse: PathLike,
    key: PathLike,
    storage_options: Mapping[str, str] | None = None,
    tsa: str | None = None,
) -> Head:
    """Sign the warehouse's current head with ``key`` (a key file or a ``pkcs11:`` URI), and
    time-stamp the signature with the RFC 3161 authority ``tsa`` when given. Like
    ``makoto head``."""
    envelope, entries = _native.head(
        warehouse=os.fspath(warehouse),
        key=os.fspath(key),
        storage_options=_options(storage_options),
        tsa=tsa,
    )
    return Head(envelope=envelope, entries=entries)


def prove(
    table: PathLike,
    *,
    warehouse: PathLike,
    file: str | None = None,
    version: int | None = None,
    record: tuple[int, int] | None = None,
    out: PathLike | None = None,
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> bytes:
    """A portable, offline-checkable proof that ``file`` (a path as the log names it) is a live
    file of the table at ``version``, or with ``record=(version, index)`` that the index-th
    record commit ``version`` appended is in an attested stream window. Returns the proof
    file's bytes (canonical JSON and one newline), also written to ``out`` when given. Like
    ``makoto prove``."""
    data = _native.prove(
        os.fspath(table),
        warehouse=os.fspath(warehouse),
        file=file,
        version=version,
        record=record,
        attested_as=attested_as,
        storage_options=_options(storage_options),
    )
    if out is not None:
        with open(os.fspath(out), "wb") as f:
            f.write(data)
    return data


@dataclass(frozen=True)
class ProofResult:
    """The verdict on a proof: ``summary`` says what it proves, or why it does not hold;
    ``report`` is what ``makoto verify-proof --json`` prints for a proof that holds."""

    verified: bool
    summary: str
    report: dict[str, Any] | None

    def __bool__(self) -> bool:
        return self.verified


def verify_proof(proof: bytes | PathLike, *, trust: PathLike) -> ProofResult:
    """Check a proof (its bytes, or the path of a proof file) against the keys in ``trust``,
    offline. A proof that does not hold is a result, not an exception; bytes that are not JSON
    raise :class:`MakotoError`. Like ``makoto verify-proof``."""
    if isinstance(proof, (bytes, bytearray, memoryview)):
        data = bytes(proof)
    else:
        with open(os.fspath(proof), "rb") as f:
            data = f.read()
    verified, summary, report = _native.verify_proof(data, os.fspath(trust))
    return ProofResult(verified=verified, summary=summary, report=report)


def sql(
    query: str,
    *,
    warehouse: PathLike,
    tables: Mapping[str, str] | Sequence[str] | None = None,
    trust: PathLike | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Any:
    """Run a SQL query over ``system.makoto.*`` (attestations, files, verifications, lineage)
    and the user ``tables`` (``{"orders": "s3://…"}`` or ``{"orders": "s3://…@v3"}``, or
    ``NAME=URI`` strings), with ``makoto_lineage`` and ``makoto_verify``. Returns a
    ``pyarrow.Table`` (Arrow C data interface; needs ``pyarrow``). Like ``makoto sql``."""
    if isinstance(tables, Mapping):
        specs: list[str] | None = [f"{name}={uri}" for name, uri in tables.items()]
    elif tables is not None:
        specs = [str(t) for t in tables]
    else:
        specs = None
    return _native.sql(
        query,
        warehouse=os.fspath(warehouse),
        tables=specs,
        trust=_path(trust),
        storage_options=_options(storage_options),
    )
