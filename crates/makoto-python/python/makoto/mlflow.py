"""MLflow: embed the signed DBOM of each training table in the run, and re-verify them later
(install ``makoto-delta[mlflow]``).

:func:`log_dbom` logs, to the active run, the DBOM of a table version signed with your key (an
artifact under ``makoto/dbom/``) and tags naming the table, version, state digest, attestation
digest and warehouse. :func:`verify_run` reads those tags back and verifies every dataset the
run logged against the warehouse, reporting each one that no longer matches.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import makoto
from makoto._reports import VerifyReport

TAG_PREFIX = "makoto.dataset"
_FIELDS = ("table", "version", "state_digest", "attestation_digest", "warehouse", "artifact")


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as e:  # pragma: no cover - exercised without the extra
        raise ImportError("makoto.mlflow needs MLflow: pip install 'makoto-delta[mlflow]'") from e
    return mlflow


@dataclass(frozen=True)
class LoggedDataset:
    """A table version a run logged with :func:`log_dbom` (its tags)."""

    index: int
    table: str
    version: int
    state_digest: str
    attestation_digest: str
    warehouse: str
    artifact: str


def _datasets(tags: Mapping[str, str]) -> list[LoggedDataset]:
    found: dict[int, dict[str, str]] = {}
    pattern = re.compile(rf"^{re.escape(TAG_PREFIX)}\.(\d+)\.([a-z_]+)$")
    for key, value in tags.items():
        m = pattern.match(key)
        if m and m.group(2) in _FIELDS:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    out = []
    for i, f in sorted(found.items()):
        if set(_FIELDS) - f.keys():
            continue
        out.append(
            LoggedDataset(
                index=i,
                table=f["table"],
                version=int(f["version"]),
                state_digest=f["state_digest"],
                attestation_digest=f["attestation_digest"],
                warehouse=f["warehouse"],
                artifact=f["artifact"],
            )
        )
    return out


def log_dbom(
    table: str | os.PathLike[str],
    *,
    warehouse: str | os.PathLike[str],
    key: str | os.PathLike[str],
    trust: str | os.PathLike[str] | None = None,
    version: int | None = None,
    log_only: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> LoggedDataset:
    """Log the signed DBOM of ``table`` at ``version`` (default: latest attested) to the active
    MLflow run, verified first against ``trust`` (default: the public half of ``key``).

    The artifact is the DSSE envelope (``makoto/dbom/<name>-v<version>.dbom.json``); the tags
    are ``makoto.dataset.<n>.{table,version,state_digest,attestation_digest,warehouse,artifact}``
    with ``n`` counting the datasets the run logged. Raises :class:`makoto.VerificationFailed`
    when the version does not verify, and ``RuntimeError`` without an active run.
    """
    mlflow = _mlflow()
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("makoto.mlflow.log_dbom needs an active MLflow run (mlflow.start_run())")
    dbom = makoto.dbom(
        table, warehouse=warehouse, key=key, trust=trust, version=version, log_only=log_only,
        storage_options=storage_options,
    )
    dataset = dbom.document["dataset"]
    if dbom.document.get("verification", {}).get("chainVerified") is False:
        raise makoto.VerificationFailed(f"{dataset['subject']}: the DBOM's chain did not verify")
    client = mlflow.tracking.MlflowClient()
    tags = client.get_run(run.info.run_id).data.tags
    index = max((d.index for d in _datasets(tags)), default=-1) + 1
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset["name"])) or "table"
    artifact_dir = "makoto/dbom"
    file_name = f"{index:03}-{name}-v{dataset['version']}.dbom.json"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file_name
        path.write_text(str(dbom.envelope) + "\n")
        mlflow.log_artifact(str(path), artifact_path=artifact_dir)
    logged = LoggedDataset(
        index=index,
        table=str(dataset["uri"]),
        version=int(dataset["version"]),
        state_digest=str(dataset["digest"]["sha256"]),
        attestation_digest=str(dataset["attestationRef"]).rsplit(":", 1)[-1],
        warehouse=os.fspath(warehouse),
        artifact=f"{artifact_dir}/{file_name}",
    )
    mlflow.set_tags(
        {f"{TAG_PREFIX}.{index}.{f}": str(getattr(logged, f)) for f in _FIELDS}
    )
    return logged


@dataclass(frozen=True)
class DatasetCheck:
    """One logged dataset, verified again."""

    dataset: LoggedDataset
    ok: bool
    reason: str
    report: VerifyReport | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RunVerification:
    """The datasets of a run and whether each still matches what the run logged."""

    run_id: str
    datasets: list[DatasetCheck]

    @property
    def ok(self) -> bool:
        return bool(self.datasets) and all(d.ok for d in self.datasets)

    def failed(self) -> list[DatasetCheck]:
        return [d for d in self.datasets if not d.ok]

    def __bool__(self) -> bool:
        return self.ok


def verify_run(
    run_id: str,
    *,
    warehouse: str | os.PathLike[str] | None = None,
    trust: str | os.PathLike[str],
    log_only: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> RunVerification:
    """Verify every dataset run ``run_id`` logged with :func:`log_dbom`: each table version
    must still verify against ``trust`` and have the attestation and state digest the run
    recorded. ``warehouse`` overrides the one each dataset was logged with. A run that logged
    no dataset is not ok."""
    mlflow = _mlflow()
    tags = mlflow.tracking.MlflowClient().get_run(run_id).data.tags
    checks = []
    for d in _datasets(tags):
        try:
            report = makoto.verify(
                d.table, warehouse=warehouse if warehouse is not None else d.warehouse,
                trust=trust, version=d.version, log_only=log_only, record=False,
                storage_options=storage_options,
            )
        except makoto.MakotoError as e:
            checks.append(DatasetCheck(d, False, f"cannot verify: {e}"))
            continue
        if not report.verified:
            first = report.errors()[:1] or report.findings[:1]
            detail = f": {first[0].kind} {first[0].path or ''} {first[0].detail}" if first else ""
            checks.append(DatasetCheck(d, False, f"{report.outcome}{detail}", report))
        elif report.attestation_digest != d.attestation_digest:
            checks.append(DatasetCheck(
                d, False,
                f"attested as {report.attestation_digest}, the run logged {d.attestation_digest}",
                report,
            ))
        elif report.state_digest != d.state_digest:
            checks.append(DatasetCheck(
                d, False, f"state {report.state_digest}, the run logged {d.state_digest}", report
            ))
        else:
            checks.append(DatasetCheck(d, True, "verified", report))
    return RunVerification(run_id=run_id, datasets=checks)


__all__ = [
    "DatasetCheck",
    "LoggedDataset",
    "RunVerification",
    "log_dbom",
    "verify_run",
]
