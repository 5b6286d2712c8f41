"""Stream-window attestation throughput (issue 17): records per second that `makoto` attests
into windows, for Delta appends and for a Kafka topic, each beside reading the same records
without attesting, in the same run.

    python benches/windows/run.py MAKOTO_BINARY DIR [--records N] [--appends A]
                                  [--window W] [--rounds R] [--no-kafka]

Delta: Python `deltalake` writes an inference-log shaped table (request id, timestamp, endpoint,
status, latency, request and response payloads of about 300 bytes) in A appends of N/A records.
Timed, each R rounds, alternating: reading every record with Python `deltalake`
(`DeltaTable(p).to_pyarrow_table()`: the anchor), `makoto attest` without windows, and
`makoto attest --windows records=W` (each attest into a fresh warehouse).

Kafka: a Tansu broker from scripts/kafka-server, N records produced into a 1-partition topic
per round with `confluent-kafka` (not timed). Timed: a plain `confluent-kafka` consumer reading all N
records (the anchor) and `makoto kafka attest --window-records W --headers optional`
(each round on a fresh warehouse). Each makoto line also gives its peak RSS (the largest
of the rounds, from GNU time, /usr/bin/time). DIR is recreated. Needs `deltalake`, `pyarrow` and
`confluent-kafka` in the Python that runs it (scripts/test's venv has them).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

REPO = Path(__file__).resolve().parents[2]


def inference_rows(start: int, n: int) -> pa.Table:
    ids = range(start, start + n)
    return pa.table({
        "request_id": [f"req-{i:012d}" for i in ids],
        "timestamp_ms": pa.array([1_772_323_200_000 + i * 37 for i in ids], pa.int64()),
        "endpoint": ["chat-prod"] * n,
        "status_code": pa.array([200 if i % 50 else 429 for i in ids], pa.int32()),
        "execution_ms": pa.array([40 + i % 900 for i in ids], pa.int64()),
        "request": [json.dumps({"messages": [{"role": "user", "content": f"question {i} " * 6}]})
                    for i in ids],
        "response": [json.dumps({"choices": [{"message": {"content": f"answer {i} " * 8}}]})
                     for i in ids],
    })


def child(argv: list[str]) -> tuple[float, str, float]:
    """Runs argv; its wall time in seconds, its stdout, and its own peak RSS in MB.

    The RSS comes from GNU time run in between: a child forked straight from this process
    would report this process's peak (Linux keeps the larger maxrss across fork and exec)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *argv]
        s = time.perf_counter()
        done = subprocess.run(wrapped, capture_output=True, text=True)
        seconds = time.perf_counter() - s
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv[:3])} failed ({done.returncode}): "
                     f"{done.stderr.strip()[:300]}")
        peak_kb = int(rss_file.read_text().split()[-1])
    return seconds, done.stdout, peak_kb / 1024


def timed(argv: list[str], rss: list[float]) -> float:
    seconds, _, peak = child(argv)
    rss.append(peak)
    return seconds


def line(name: str, seconds: list[float], records: int, rss: list[float] | None = None) -> str:
    med = statistics.median(seconds)
    runs = " / ".join(f"{s:.2f}" for s in seconds)
    peak = f"  peak RSS {max(rss):.0f} MB" if rss else ""
    return f"{name:<44} {med:7.2f} s  {records / med:>10,.0f} records/s   ({runs}){peak}"


def delta(binary: str, root: Path, args: argparse.Namespace) -> None:
    table = root / "inference"
    per = args.records // args.appends
    for a in range(args.appends):
        write_deltalake(str(table), inference_rows(a * per, per), mode="append")
    records = per * args.appends
    key = str(root / "k.key")
    read, plain, windowed, plain_rss, windowed_rss = [], [], [], [], []
    for r in range(args.rounds):
        s = time.perf_counter()
        n = DeltaTable(str(table)).to_pyarrow_table().num_rows
        read.append(time.perf_counter() - s)
        assert n == records, (n, records)
        wh = root / f"wh-plain-{r}"
        plain.append(timed([binary, "attest", str(table), "--warehouse", str(wh), "--key", key],
                           plain_rss))
        wh = root / f"wh-windows-{r}"
        windowed.append(timed([binary, "attest", str(table), "--warehouse", str(wh), "--key",
                               key, "--windows", f"records={args.window}"], windowed_rss))
    print(f"Delta: {records:,} records in {args.appends} appends, window records={args.window}, "
          f"{args.rounds} rounds (seconds per round in brackets)")
    print(line("read with Python deltalake (anchor)", read, records))
    print(line("makoto attest (no windows)", plain, records, plain_rss))
    print(line(f"makoto attest --windows records={args.window}", windowed, records,
               windowed_rss))


def kafka(binary: str, root: Path, args: argparse.Namespace) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    server = root / "kafka"
    out = subprocess.run(["bash", str(REPO / "scripts/kafka-server"), str(server)],
                         check=True, capture_output=True, text=True)
    env = dict(l.split("=", 1) for l in out.stdout.split())
    brokers = env["KAFKA_BROKERS"]
    try:
        # One topic per round: the signed windows of a topic are published to makoto.dbom on
        # the broker, so a second run over the same topic would find them and attest nothing.
        topics = [f"inference-{r}" for r in range(args.rounds)]
        admin = AdminClient({"bootstrap.servers": brokers})
        for t in topics:
            admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result()
        producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
        values = [(row["request_id"], json.dumps(row).encode())
                  for row in inference_rows(0, args.records).to_pylist()]
        for t in topics:
            for k, v in values:
                while True:
                    try:
                        producer.produce(t, key=k, value=v)
                        break
                    except BufferError:  # the local queue is full: let it drain
                        producer.poll(0.1)
                producer.poll(0)
            producer.flush(60)
        del producer, admin, values
        key = str(root / "k.key")
        read, attest, attest_rss = [], [], []
        for r, topic in enumerate(topics):
            s = time.perf_counter()
            consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"anchor-{r}",
                                 "enable.auto.commit": False})
            consumer.assign([TopicPartition(topic, 0, 0)])
            n = 0
            while n < args.records:
                batch = consumer.consume(min(10_000, args.records - n), timeout=5)
                if not batch:
                    break
                n += sum(1 for m in batch if m.error() is None)
            consumer.close()
            read.append(time.perf_counter() - s)
            assert n == args.records, (n, args.records)
            argv = [binary, "kafka", "attest", "--brokers", brokers, "--topic", topic,
                    "--window-records", str(args.window), "--headers", "optional", "--key", key,
                    "--warehouse", str(root / f"wh-kafka-{r}"), "--json"]
            seconds, said, peak = child(argv)
            attest.append(seconds)
            attest_rss.append(peak)
            if r == 0:
                print(f"  makoto kafka attest said: {said.strip()[:300]}")
        print(f"Kafka (Tansu, 1 partition): {args.records:,} records, "
              f"--window-records {args.window}, {args.rounds} rounds")
        print(line("read with a confluent-kafka consumer (anchor)", read, args.records))
        print(line(f"makoto kafka attest --window-records {args.window}", attest, args.records,
                   attest_rss))
    finally:
        subprocess.run(["bash", str(REPO / "scripts/kafka-server"), "--stop", str(server)],
                       capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("dir", type=Path)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--appends", type=int, default=100)
    p.add_argument("--window", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-kafka", action="store_true")
    args = p.parse_args()
    root = args.dir
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run([args.binary, "keygen", str(root / "k")], check=True, capture_output=True)
    print(f"cores: {os.cpu_count()}, binary: {args.binary}")
    delta(args.binary, root, args)
    if not args.no_kafka:
        kafka(args.binary, root, args)


if __name__ == "__main__":
    sys.exit(main())
