"""makoto.kafka against a real broker (Tansu, started by scripts/kafka-server as the Rust
Kafka tests do): the Python producer's records are accepted by `makoto kafka attest/verify`,
and the consumer surfaces a record whose value does not match its hash header."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import makoto
from makoto.kafka import MakotoConsumer, MakotoProducer
from conftest import run_cli

REPO = Path(__file__).resolve().parents[3]
WINDOW = 10


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("broker")
    env = {**os.environ, "MAKOTO_KAFKA_WATCH_PID": str(os.getpid())}
    started = subprocess.run(
        [str(REPO / "scripts/kafka-server"), str(state)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert started.returncode == 0, f"scripts/kafka-server: {started.stderr}"
    lines = dict(l.split("=", 1) for l in started.stdout.split() if "=" in l)
    try:
        yield lines["KAFKA_BROKERS"]
    finally:
        subprocess.run([str(REPO / "scripts/kafka-server"), "--stop", str(state)], timeout=60)


def create_topic(brokers: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(name, num_partitions=1)]).values():
        future.result(timeout=30)


def consume_all(brokers: str, topic: str, n: int, consumer: MakotoConsumer) -> list:
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    while len(out) < n:
        msg = consumer.poll(30)
        assert msg is not None, f"only {len(out)} of {n} records came back"
        assert msg.error() is None, msg.error()
        out.append(msg)
    return out


def value(i: int) -> bytes:
    return json.dumps({"sensor": "s0", "seq": i, "temp": 20 + i % 7}).encode()


def test_python_producer_records_attest_and_verify(brokers: str, tmp_path: Path) -> None:
    topic = "py-ticks"
    create_topic(brokers, topic)
    producer = MakotoProducer(
        {"bootstrap.servers": brokers}, topic, partition=0, window_records=WINDOW
    )
    assert producer.next_offset == 0
    predicted = [producer.produce(value(i), key=f"k{i}".encode()) for i in range(25)]
    producer.flush()
    assert predicted == list(range(25))

    consumer = MakotoConsumer(
        {"bootstrap.servers": brokers, "group.id": "py-check", "enable.auto.commit": False}
    )
    records = consume_all(brokers, topic, 25, consumer)
    for msg in records:
        headers = dict(msg.headers())
        # Independently: hex SHA-256 of the value, and offset // window, both ASCII.
        assert headers["makoto.content_hash"] == hashlib.sha256(msg.value()).hexdigest().encode()
        assert headers["makoto.window_id"] == str(msg.offset() // WINDOW).encode()
        assert headers["makoto.signature"] == (
            f"kafka://{topic}/0#window/records={WINDOW}/{msg.offset() // WINDOW}".encode()
        )
    assert consumer.checked == 25 and consumer.mismatches == [] and consumer.unhashed == 0

    key = makoto.keygen(tmp_path / "k")
    wh = tmp_path / "wh"
    attest = run_cli(
        "kafka", "attest", "--brokers", brokers, "--topic", topic, "--window-records",
        str(WINDOW), "--key", key.private_key, "--warehouse", str(wh), "--json",
    )
    published = json.loads(attest.stdout)["published"]
    assert len(published) == 2  # complete windows: offsets 0..10 and 10..20
    verify = run_cli(
        "kafka", "verify", "--brokers", brokers, "--topic", topic, "--trust", key.public_key,
        "--json",
    )
    assert json.loads(verify.stdout)["windowsChecked"] == 2

    # A second producer resumes at the partition's end.
    again = MakotoProducer({"bootstrap.servers": brokers}, topic, window_records=WINDOW)
    assert again.next_offset == 25

    # A record whose value does not match its hash header: the consumer names it, and
    # `makoto kafka verify` (which also checks headers) fails.
    forger = Producer({"bootstrap.servers": brokers})
    forger.produce(
        topic, value=b"forged", partition=0,
        headers=[("makoto.content_hash", hashlib.sha256(b"genuine").hexdigest().encode()),
                 ("makoto.window_id", b"2")],
    )
    forger.flush(30)
    consumer.assign([TopicPartition(topic, 0, 25)])
    msg = consumer.poll(30)
    assert msg is not None and msg.value() == b"forged"
    (mismatch,) = consumer.mismatches
    assert (mismatch.topic, mismatch.partition, mismatch.offset) == (topic, 0, 25)
    assert mismatch.actual == hashlib.sha256(b"forged").hexdigest()
    consumer.close()
    failed = run_cli(
        "kafka", "verify", "--brokers", brokers, "--topic", topic, "--trust", key.public_key,
        check=False,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr


def test_a_second_writer_is_detected(brokers: str) -> None:
    topic = "py-shared"
    create_topic(brokers, topic)
    producer = MakotoProducer({"bootstrap.servers": brokers}, topic, window_records=WINDOW)
    other = Producer({"bootstrap.servers": brokers})
    other.produce(topic, value=b"someone else", partition=0)
    other.flush(30)
    producer.produce(value(0))
    with pytest.raises(makoto.MakotoError, match="predicted at offset 0 was written at offset 1"):
        producer.flush()


def test_the_consumer_checks_records_against_their_signed_windows(
    brokers: str, tmp_path: Path
) -> None:
    """A topic of plain records (no makoto headers) attested with ``--headers optional``: the
    consumer verifies each record once its window is published, keeps the rest pending until
    ``recheck()``, and names a record that never will verify."""
    topic = "py-plain"
    create_topic(brokers, topic)
    plain = Producer({"bootstrap.servers": brokers})
    for i in range(WINDOW + 3):
        plain.produce(topic, value=value(i), key=f"k{i}".encode(), partition=0)
    plain.flush(30)
    key = makoto.keygen(tmp_path / "k")
    attest = lambda: run_cli(  # noqa: E731
        "kafka", "attest", "--brokers", brokers, "--topic", topic, "--window-records",
        str(WINDOW), "--key", key.private_key, "--headers", "optional", "--json",
    )
    assert len(json.loads(attest().stdout)["published"]) == 1

    failures = []
    consumer = MakotoConsumer(
        {"bootstrap.servers": brokers, "group.id": "py-windows", "enable.auto.commit": False},
        trust=key.public_key,
        on_failure=failures.append,
    )
    consume_all(brokers, topic, WINDOW + 3, consumer)
    assert (consumer.verified, consumer.pending, consumer.failures) == (WINDOW, 3, [])
    assert consumer.unhashed == WINDOW + 3

    # The second window fills and is attested: the pending records verify on recheck.
    for i in range(WINDOW + 3, 2 * WINDOW):
        plain.produce(topic, value=value(i), key=f"k{i}".encode(), partition=0)
    # A copy of record 2 with its key rewritten lands at offset 20, in window 2.
    plain.produce(topic, value=value(2), key=b"rewritten", partition=0)
    plain.flush(30)
    assert len(json.loads(attest().stdout)["published"]) == 1
    consume_all_from = TopicPartition(topic, 0, WINDOW + 3)
    consumer.assign([consume_all_from])
    for _ in range(WINDOW - 3 + 1):
        msg = consumer.poll(30)
        assert msg is not None and msg.error() is None
    assert consumer.recheck() == 1  # offset 20: its window is not complete yet
    assert consumer.verified == 2 * WINDOW and failures == []

    # A consumer of a mirror that rewrote a key: checked against the source's windows, the
    # record fails as altered and is named.
    mirror = "py-plain-mirror"
    create_topic(brokers, mirror)
    source = MakotoConsumer(
        {"bootstrap.servers": brokers, "group.id": "py-copy", "enable.auto.commit": False}
    )
    copy = Producer({"bootstrap.servers": brokers})
    for msg in consume_all(brokers, topic, WINDOW, source):
        k = b"other" if msg.offset() == 4 else msg.key()
        copy.produce(
            mirror, value=msg.value(), key=k, partition=0, timestamp=msg.timestamp()[1],
            headers=msg.headers(),
        )
    copy.flush(30)
    checker = MakotoConsumer(
        {"bootstrap.servers": brokers, "group.id": "py-mirror", "enable.auto.commit": False},
        trust=key.public_key, attested_as=topic,
    )
    consume_all(brokers, mirror, WINDOW, checker)
    assert checker.verified == WINDOW - 1
    (failure,) = checker.failures
    assert (failure.topic, failure.offset, failure.kind, failure.window) == (
        mirror, 4, "record-altered", 0,
    )
    for c in (consumer, source, checker):
        c.close()
