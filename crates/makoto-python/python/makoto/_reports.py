"""Results of makoto calls as Python objects: the same fields the CLI prints with ``--json``."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from makoto._native import VerificationFailed


@dataclass(frozen=True)
class AttestedVersion:
    """One version a run attested."""

    version: int
    operation: str | None
    predicate_type: str
    state_digest: str
    attestation_digest: str
    files_added: int
    files_removed: int
    data_availability: str
    unavailable_files: list[str]
    baseline_checkpoint: int | None

    @classmethod
    def _from(cls, d: dict[str, Any]) -> AttestedVersion:
        return cls(
            version=d["version"],
            operation=d.get("operation"),
            predicate_type=d["predicateType"],
            state_digest=d["stateDigest"],
            attestation_digest=d["attestationDigest"],
            files_added=d["filesAdded"],
            files_removed=d["filesRemoved"],
            data_availability=d["dataAvailability"],
            unavailable_files=list(d.get("unavailableFiles") or []),
            baseline_checkpoint=d.get("baselineCheckpoint"),
        )


@dataclass(frozen=True)
class AttestReport:
    """What one :func:`makoto.attest` run did."""

    table: str
    table_id: str | None
    warehouse: str
    latest_version: int
    previously_attested: int | None
    attested_through: int | None
    level: str
    keyid: str | None
    files_hashed: int
    bytes_hashed: int
    run_id: str
    versions: list[AttestedVersion]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from(cls, d: dict[str, Any]) -> AttestReport:
        return cls(
            table=d["table"],
            table_id=d.get("tableId"),
            warehouse=d["warehouse"],
            latest_version=d["latestVersion"],
            previously_attested=d.get("previouslyAttested"),
            attested_through=d.get("attestedThrough"),
            level=d["level"],
            keyid=d.get("keyid"),
            files_hashed=d["filesHashed"],
            bytes_hashed=d["bytesHashed"],
            run_id=d["runId"],
            versions=[AttestedVersion._from(v) for v in d["attested"]],
            raw=d,
        )

    def to_dict(self) -> dict[str, Any]:
        """The report exactly as ``makoto attest --json`` prints it."""
        return self.raw

    def to_arrow(self) -> Any:
        """The attested versions as a ``pyarrow.Table``, one row per version."""
        import pyarrow as pa

        rows = [
            {
                "table": self.table,
                "version": v.version,
                "operation": v.operation,
                "predicate_type": v.predicate_type,
                "state_digest": v.state_digest,
                "attestation_digest": v.attestation_digest,
                "files_added": v.files_added,
                "files_removed": v.files_removed,
                "data_availability": v.data_availability,
                "level": self.level,
                "keyid": self.keyid,
                "run_id": self.run_id,
            }
            for v in self.versions
        ]
        schema = pa.schema(
            [
                ("table", pa.string()),
                ("version", pa.int64()),
                ("operation", pa.string()),
                ("predicate_type", pa.string()),
                ("state_digest", pa.string()),
                ("attestation_digest", pa.string()),
                ("files_added", pa.int64()),
                ("files_removed", pa.int64()),
                ("data_availability", pa.string()),
                ("level", pa.string()),
                ("keyid", pa.string()),
                ("run_id", pa.string()),
            ]
        )
        return pa.Table.from_pylist(rows, schema=schema)


@dataclass(frozen=True)
class Finding:
    """One thing verification found."""

    kind: str
    severity: str
    version: int | None
    path: str | None
    row: dict[str, Any] | None
    detail: str

    @classmethod
    def _from(cls, d: dict[str, Any]) -> Finding:
        return cls(
            kind=d["kind"],
            severity=d["severity"],
            version=d.get("version"),
            path=d.get("path"),
            row=d.get("row"),
            detail=d["detail"],
        )


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`makoto.verify`.

    ``verified`` is true only when nothing was found and every part of the version was
    checked; ``outcome`` is ``"verified"``, ``"unverifiable"`` or ``"failed"`` (see
    ``coverage`` for what was checked). ``level`` is the Makoto level the attestation earned
    under the trust given (``"L2"`` needs a trusted key, a trusted time-stamp and the key's
    bound identity), ``None`` when the verification failed.
    """

    table: str
    version: int
    latest_version: int
    mode: str
    outcome: str
    verified: bool
    findings: list[Finding]
    coverage: dict[str, Any]
    level: str | None
    state_digest: str | None
    attestation_digest: str | None
    recorded: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from(cls, d: dict[str, Any]) -> VerifyReport:
        return cls(
            table=d["table"],
            version=d["version"],
            latest_version=d["latestVersion"],
            mode=d["mode"],
            outcome=d["outcome"],
            verified=d["verified"],
            findings=[Finding._from(f) for f in d["findings"]],
            coverage=d["coverage"],
            level=d.get("level"),
            state_digest=d.get("stateDigest"),
            attestation_digest=d.get("attestationDigest"),
            recorded=d.get("recorded", False),
            raw=d,
        )

    def __bool__(self) -> bool:
        return self.verified

    def to_dict(self) -> dict[str, Any]:
        """The report exactly as ``makoto verify --json`` prints it."""
        return self.raw

    def errors(self) -> list[Finding]:
        """The findings of severity ``error``."""
        return [f for f in self.findings if f.severity == "error"]

    def raise_for_findings(self) -> None:
        """Raise :class:`makoto.VerificationFailed` unless the version verified."""
        if self.verified:
            return
        first = self.errors()[:1] or self.findings[:1]
        detail = f": {first[0].kind} {first[0].detail}" if first else ""
        err = VerificationFailed(
            f"{self.table} version {self.version}: {self.outcome}, "
            f"{len(self.errors())} errors, {len(self.findings)} findings{detail}"
        )
        err.kind = self.outcome
        err.table = self.table
        err.version = self.version
        err.path = first[0].path if first else None
        raise err

    def _repr_html_(self) -> str:
        e = html.escape
        head = (
            f"<p><b>{e(self.outcome.upper())}</b> {e(self.table)} at version {self.version} "
            f"({e(self.mode)}): {len(self.findings)} findings</p>"
        )
        if not self.findings:
            return head
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{e('' if v is None else str(v))}</td>"
                for v in (f.severity, f.kind, f.version, f.path, f.detail)
            )
            + "</tr>"
            for f in self.findings
        )
        return (
            head
            + "<table><thead><tr><th>severity</th><th>finding</th><th>version</th>"
            + "<th>file</th><th>detail</th></tr></thead><tbody>"
            + rows
            + "</tbody></table>"
        )


@dataclass(frozen=True)
class CheckReport:
    """The outcome of the gate, :func:`makoto.check`."""

    table: str
    version: int
    min_level: str
    passed: bool
    reasons: list[str]
    checked: list[dict[str, Any]]
    upstream_versions: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from(cls, d: dict[str, Any]) -> CheckReport:
        return cls(
            table=d["table"],
            version=d["version"],
            min_level=d["minLevel"],
            passed=d["passed"],
            reasons=list(d["reasons"]),
            checked=list(d["checked"]),
            upstream_versions=d["upstreamVersions"],
            raw=d,
        )

    def __bool__(self) -> bool:
        return self.passed
