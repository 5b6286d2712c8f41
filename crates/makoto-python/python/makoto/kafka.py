"""Kafka clients with makoto headers: drop-in wrappers around ``confluent_kafka`` (install
``makoto-delta[kafka]``).

:class:`MakotoProducer` adds ``makoto.content_hash`` (hex SHA-256 of the value),
``makoto.window_id`` (offset // window_records) and ``makoto.signature`` (the subject of the
window statement that will cover the record) to every record, byte-identical to the Rust
producer's, so ``makoto kafka attest`` and ``makoto kafka verify`` accept its records.
:class:`MakotoConsumer` checks each record's content hash as it is consumed and, given trusted
keys, checks each record against its signed window once that window is published.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

from makoto import _native

CONTENT_HASH_HEADER = "makoto.content_hash"
WINDOW_ID_HEADER = "makoto.window_id"
SIGNATURE_HEADER = "makoto.signature"


def _confluent() -> Any:
    try:
        import confluent_kafka
    except ImportError as e:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "makoto.kafka needs confluent-kafka: pip install 'makoto-delta[kafka]'"
        ) from e
    return confluent_kafka


class MakotoProducer:
    """A ``confluent_kafka.Producer`` for one partition of one topic that adds the makoto headers.

    The window id is predicted from the offset each record will get, so this producer must be
    the partition's only writer and sends with idempotence on (records keep their order across
    retries). Every delivered offset is compared with the predicted one; :meth:`flush` raises
    :class:`makoto.MakotoError` if any differed (another writer, or records lost) and names
    the first. ``window_records`` must be the ``--window-records`` the topic is attested with.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        *,
        partition: int = 0,
        window_records: int = 1000,
    ) -> None:
        if window_records < 1:
            raise ValueError("window_records must be at least 1")
        ck = _confluent()
        self.topic = topic
        self.partition = partition
        self.window_records = window_records
        brokers = str(config.get("bootstrap.servers", ""))
        if not brokers:
            raise ValueError("config needs bootstrap.servers")
        self._next = _native.kafka_next_offset(brokers, topic, partition)
        self._producer = ck.Producer({"enable.idempotence": True, **dict(config)})
        self._mismatch: str | None = None

    @property
    def next_offset(self) -> int:
        """The offset the next record will get."""
        return self._next

    def produce(
        self,
        value: bytes,
        key: bytes | None = None,
        *,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> int:
        """Queue one record with the makoto headers; returns its predicted offset."""
        offset = self._next
        headers = _native.kafka_headers(
            self.topic, self.partition, bytes(value), offset, self.window_records
        )

        def delivered(err: Any, msg: Any) -> None:
            if err is None and msg.offset() != offset and self._mismatch is None:
                self._mismatch = (
                    f"kafka topic {self.topic} partition {self.partition}: a record predicted at "
                    f"offset {offset} was written at offset {msg.offset()}; its window header is "
                    "wrong (is another producer writing to this partition?)"
                )
            if err is not None and self._mismatch is None:
                self._mismatch = f"kafka topic {self.topic} partition {self.partition}: {err}"
            if on_delivery is not None:
                on_delivery(err, msg)

        self._producer.produce(
            self.topic,
            value=value,
            key=key,
            partition=self.partition,
            headers=headers,
            on_delivery=delivered,
        )
        self._next += 1
        return offset

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery callbacks (``confluent_kafka.Producer.poll``)."""
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float = 30) -> None:
        """Wait for every queued record; raise if one was not written where predicted."""
        left = self._producer.flush(timeout)
        if left:
            raise _native.MakotoError(
                f"kafka topic {self.topic}: {left} records not delivered within {timeout}s"
            )
        if self._mismatch is not None:
            raise _native.MakotoError(self._mismatch)


@dataclass(frozen=True)
class HashMismatch:
    """A consumed record whose value does not match its ``makoto.content_hash`` header."""

    topic: str
    partition: int
    offset: int
    expected: str
    actual: str


@dataclass(frozen=True)
class RecordFailure:
    """A consumed record that will never verify against its signed window.

    ``kind`` is the finding kind ``makoto kafka verify`` uses (``record-altered``,
    ``record-injected``, ``content-hash-mismatch``, ``window-ref-mismatch``,
    ``window-chain-broken``).
    """

    topic: str
    partition: int
    offset: int
    kind: str
    window: int | None
    detail: str


class MakotoConsumer:
    """A ``confluent_kafka.Consumer`` that checks each consumed record.

    :meth:`poll` returns the message as ``confluent_kafka`` does. A record whose value does not
    hash to its ``makoto.content_hash`` header is appended to :attr:`mismatches` (and passed
    to ``on_mismatch``); records without the header are counted in :attr:`unhashed`;
    :attr:`checked` counts the rest.

    With ``trust`` (a public key or trust file), each record is also checked against the signed
    window that covers it, read from the cluster's ``makoto.dbom`` topic (for the topic
    ``attested_as``, default the record's own topic; a mirror names its source): it is
    *verified* when that window is published and holds exactly this record (key, value,
    timestamp and headers, under the window's signed encoding), *pending* while the window is
    not published yet, and *failed* when it never will verify (appended to :attr:`failures`
    and passed to ``on_failure``). The window's signed header policy decides whether a record
    without makoto headers fails. Call :meth:`recheck` (after ``makoto kafka attest`` has run)
    to check pending records against newly published windows. At most ``max_pending`` records
    wait; older ones are dropped and counted in :attr:`pending_dropped`.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        on_mismatch: Callable[[HashMismatch], None] | None = None,
        trust: str | PathLike[str] | None = None,
        attested_as: str | None = None,
        on_failure: Callable[[RecordFailure], None] | None = None,
        max_pending: int = 100_000,
    ) -> None:
        self._consumer = _confluent().Consumer(dict(config))
        self._brokers = str(dict(config).get("bootstrap.servers", ""))
        self._on_mismatch = on_mismatch
        self._trust = None if trust is None else str(trust)
        self._attested_as = attested_as
        self._on_failure = on_failure
        self._max_pending = max(0, max_pending)
        self._windows: dict[str, Any] = {}
        self._pending: OrderedDict[tuple[str, int, int], tuple[Any, ...]] = OrderedDict()
        self.mismatches: list[HashMismatch] = []
        self.failures: list[RecordFailure] = []
        self.checked = 0
        self.unhashed = 0
        self.verified = 0
        self.pending_dropped = 0

    @property
    def pending(self) -> int:
        """Records waiting for their window to be published."""
        return len(self._pending)

    def subscribe(self, topics: list[str], **kwargs: Any) -> None:
        self._consumer.subscribe(topics, **kwargs)

    def assign(self, partitions: list[Any]) -> None:
        self._consumer.assign(partitions)

    def poll(self, timeout: float = -1) -> Any:
        msg = self._consumer.poll(timeout)
        if msg is not None and msg.error() is None:
            self._check(msg)
        return msg

    def _check(self, msg: Any) -> None:
        self._check_hash(msg)
        if self._trust is not None:
            _, timestamp_ms = msg.timestamp()
            fields = (
                msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                timestamp_ms, [(n, None if v is None else bytes(v)) for n, v in msg.headers() or []],
            )
            self._check_window(fields, first=True)

    def _windows_for(self, topic: str, trust: str) -> Any:
        source = self._attested_as or topic
        if source not in self._windows:
            self._windows[source] = _native.KafkaWindows(self._brokers, source, trust)
        return self._windows[source]

    def _check_window(self, fields: tuple[Any, ...], first: bool) -> str:
        topic, partition, offset, key, value, timestamp_ms, headers = fields
        if self._trust is None:
            raise ValueError("MakotoConsumer checks windows only when given trust=")
        status, kind, window, _headered, detail = self._windows_for(topic, self._trust).check(
            partition, offset, key, value, timestamp_ms, headers
        )
        if status == "verified":
            self.verified += 1
        elif status == "pending":
            if first:
                self._pending[(topic, partition, offset)] = fields
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)
                    self.pending_dropped += 1
        else:
            failure = RecordFailure(topic, partition, offset, kind or "failed", window, detail)
            self.failures.append(failure)
            if self._on_failure is not None:
                self._on_failure(failure)
        return str(status)

    def recheck(self) -> int:
        """Reads the windows published since and checks the pending records again; returns how
        many still wait."""
        for windows in self._windows.values():
            windows.reload()
        for key, fields in list(self._pending.items()):
            if self._check_window(fields, first=False) != "pending":
                del self._pending[key]
        return len(self._pending)

    def _check_hash(self, msg: Any) -> None:
        expected = None
        for name, value in msg.headers() or []:
            if name == CONTENT_HASH_HEADER:
                expected = bytes(value).decode("ascii", "replace")
        if expected is None:
            self.unhashed += 1
            return
        actual = hashlib.sha256(msg.value() or b"").hexdigest()
        self.checked += 1
        if actual != expected:
            m = HashMismatch(msg.topic(), msg.partition(), msg.offset(), expected, actual)
            self.mismatches.append(m)
            if self._on_mismatch is not None:
                self._on_mismatch(m)

    def close(self) -> None:
        self._consumer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)
