"""Kafka clients with makoto headers: drop-in wrappers around ``confluent_kafka`` (install
``makoto-delta[kafka]``).

:class:`MakotoProducer` adds ``makoto.content_hash`` (hex SHA-256 of the value) and
``makoto.window_id`` (offset // window_records) to every record, byte-identical to the Rust
producer's, so ``makoto kafka attest`` and ``makoto kafka verify`` accept its records.
:class:`MakotoConsumer` checks each record's content hash as it is consumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from makoto import _native

CONTENT_HASH_HEADER = "makoto.content_hash"
WINDOW_ID_HEADER = "makoto.window_id"


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
        headers = _native.kafka_headers(bytes(value), offset, self.window_records)

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


class MakotoConsumer:
    """A ``confluent_kafka.Consumer`` that checks each consumed record's content hash.

    :meth:`poll` returns the message as ``confluent_kafka`` does. A record whose value does not
    hash to its ``makoto.content_hash`` header is appended to :attr:`mismatches` (and passed
    to ``on_mismatch``); records without the header are counted in :attr:`unhashed` (headers
    are optional for topics attested with windows alone); :attr:`checked` counts the rest.
    Whether records belong to an attested window is ``makoto kafka verify``'s job.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        on_mismatch: Callable[[HashMismatch], None] | None = None,
    ) -> None:
        self._consumer = _confluent().Consumer(dict(config))
        self._on_mismatch = on_mismatch
        self.mismatches: list[HashMismatch] = []
        self.checked = 0
        self.unhashed = 0

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
