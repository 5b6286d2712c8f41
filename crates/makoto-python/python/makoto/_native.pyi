# Stubs of the extension module (crates/makoto-python/src/lib.rs). The documented API is in
# makoto/__init__.py; these functions return the CLI's `--json` shapes as plain objects.
from os import PathLike
from typing import Any, Mapping, Sequence

__version__: str

class MakotoError(Exception):
    kind: str
    table: str | None
    version: int | None
    path: str | None

class VerificationFailed(MakotoError): ...
class UnattestedInput(MakotoError): ...
class StorageError(MakotoError): ...
class InvalidKey(MakotoError): ...

def keygen(prefix: str, algorithm: str = "ed25519") -> dict[str, str]: ...
def attest(
    table: str,
    *,
    warehouse: str,
    key: str | None = None,
    to_version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    batch_mib: int | None = None,
    parallelism: int | None = None,
    tsa: str | None = None,
    identity: str | None = None,
) -> dict[str, Any]: ...
def verify(
    table: str,
    *,
    warehouse: str,
    trust: str,
    version: int | None = None,
    timestamp: str | None = None,
    log_only: bool = False,
    allow_unsigned: bool = False,
    since_last: bool = False,
    key: str | None = None,
    record: bool = True,
    reader_check: str = "delta-rs",
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    parallelism: int | None = None,
) -> dict[str, Any]: ...
def check(
    table: str,
    *,
    warehouse: str,
    trust: str,
    version: int | None = None,
    min_level: int = 2,
    upstream: bool = False,
    log_only: bool = False,
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]: ...
def dbom(
    table: str,
    *,
    warehouse: str,
    key: str | None = None,
    trust: str | None = None,
    version: int | None = None,
    log_only: bool = False,
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    tsa: str | None = None,
) -> tuple[dict[str, Any], str | None]: ...
def head(
    *,
    warehouse: str,
    key: str,
    storage_options: Mapping[str, str] | None = None,
    tsa: str | None = None,
) -> tuple[str, list[dict[str, Any]]]: ...
def sql(
    query: str,
    *,
    warehouse: str,
    tables: Sequence[str] | None = None,
    trust: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Any: ...
def run_cli(argv: Sequence[str]) -> int: ...

class PendingTransform:
    @property
    def output_before(self) -> int | None: ...
    def inputs(self) -> list[dict[str, Any]]: ...
    def output_now(self) -> int | None: ...
    def commit(self) -> dict[str, Any]: ...

def begin_transform(
    name: str,
    *,
    inputs: Mapping[str, str],
    output: str,
    warehouse: str,
    key: str,
    trust: str | None = None,
    description: str | None = None,
    log_only: bool = False,
    allow_unattested: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> PendingTransform: ...

def kafka_headers(
    topic: str, partition: int, value: bytes, offset: int, window_records: int
) -> list[tuple[str, bytes]]: ...
def kafka_next_offset(brokers: str, topic: str, partition: int) -> int: ...

def prove(
    table: str,
    *,
    warehouse: str,
    file: str | None = None,
    version: int | None = None,
    record: tuple[int, int] | None = None,
    attested_as: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> bytes: ...
def verify_proof(proof: bytes, trust: str) -> tuple[bool, str, dict[str, Any] | None]: ...

class KafkaWindows:
    def __init__(self, brokers: str, attested_as: str, trust: str | PathLike[str]) -> None: ...
    def reload(self) -> int: ...
    def check(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
        headers: list[tuple[str, bytes | None]],
    ) -> tuple[str, str | None, int | None, bool, str]: ...
