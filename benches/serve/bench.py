#!/usr/bin/env python3
"""`makoto serve` under many tables (docs/performance.md, "makoto serve").

    python3 benches/serve/bench.py MAKOTO WORKDIR [--tables N] [--load-tables M]
        [--rate R] [--seconds S] [--idle-seconds I] [--concurrency C]
        [--rss-every SECONDS] [--system-retention INTERVAL] [--serve-arg=ARG ...]

1. Writes N minimal Delta tables (one commit: protocol, metadata, one 64-byte data file) with
   plain file writes, starts `makoto serve --discover`, and times the initial attestation.
2. Idle cost: CPU time of the service process over I seconds while nothing changes
   (/proc/PID/stat utime+stime), as a share of one core.
3. Load: a writer appends commits (each adds one 64-byte file) to M of the tables, R commits/s
   in all, for S seconds, recording when each commit file was written; a poller reads
   /v1/tables every 50 ms and records when each version is first reported attested. Reports the
   attested commits/s while loaded and the p50/p99/max of commit-to-attested (an upper bound:
   the poll period is added).
4. RSS of the service at each phase (/proc/PID/status VmRSS), and every --rss-every seconds
   during the load (a line `rss T_SECONDS MB` each).

--system-retention sets `delta.logRetentionDuration` and `delta.deletedFileRetentionDuration`
of every system table after the initial attestation, as an operator would (e.g. "interval 5
minutes"), so the service's steady state shows sooner than after makoto's hour. It needs the
`deltalake` package in the Python that runs this.

--serve-arg passes one more argument to `makoto serve` (repeat it for several).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request

PROTOCOL = {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}
SCHEMA = json.dumps(
    {"type": "struct", "fields": [{"name": "id", "type": "long", "nullable": True, "metadata": {}}]}
)


def commit_line(action: dict) -> str:
    return json.dumps(action, separators=(",", ":")) + "\n"


def add(name: str, now_ms: int) -> dict:
    return {
        "add": {
            "path": name,
            "partitionValues": {},
            "size": 64,
            "modificationTime": now_ms,
            "dataChange": True,
        }
    }


def write_commit(table: str, version: int, actions: list[dict]) -> float:
    log = os.path.join(table, "_delta_log")
    path = os.path.join(log, f"{version:020}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(commit_line(a) for a in actions))
    os.link(tmp, path)  # fails if the version exists: a commit is written once
    os.unlink(tmp)
    return time.time()


def make_table(root: str, i: int) -> str:
    t = os.path.join(root, f"t{i:05}")
    os.makedirs(os.path.join(t, "_delta_log"))
    now = int(time.time() * 1000)
    with open(os.path.join(t, "part-0.parquet"), "wb") as f:
        f.write(os.urandom(64))
    meta = {
        "metaData": {
            "id": f"00000000-0000-4000-8000-{i:012}",
            "format": {"provider": "parquet", "options": {}},
            "schemaString": SCHEMA,
            "partitionColumns": [],
            "configuration": {},
            "createdTime": now,
        }
    }
    info = {"commitInfo": {"timestamp": now, "operation": "WRITE"}}
    write_commit(t, 0, [info, PROTOCOL, meta, add("part-0.parquet", now)])
    return t


def get(address: str, path: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{address}{path}", timeout=30) as r:
        return r.read().decode()


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def attested_versions(address: str) -> dict[str, int]:
    out = {}
    for t in json.loads(get(address, "/v1/tables")):
        if t["attestedVersion"] is not None:
            out[t["table"]] = t["attestedVersion"]
    return out


def set_system_retention(warehouse: str, interval: str) -> None:
    from deltalake import DeltaTable

    root = os.path.join(warehouse, "system", "makoto")
    for name in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, name, "_delta_log")):
            for attempt in range(20):
                try:
                    DeltaTable(os.path.join(root, name)).alter.set_table_properties({
                        "delta.logRetentionDuration": interval,
                        "delta.deletedFileRetentionDuration": interval,
                    })
                    break
                except Exception as e:  # a concurrent commit of the service: try again
                    if attempt == 19:
                        raise
                    print(f"retention of {name}: {e}; again", flush=True)
            print(f"system table {name}: retentions {interval}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("makoto")
    p.add_argument("work")
    p.add_argument("--tables", type=int, default=1000)
    p.add_argument("--load-tables", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rss-every", type=float, default=0.0)
    p.add_argument("--system-retention")
    p.add_argument("--serve-arg", action="append", default=[])
    a = p.parse_args()

    subprocess.run(["rm", "-rf", a.work], check=True)
    lake = os.path.join(a.work, "lake")
    os.makedirs(lake)
    t0 = time.time()
    tables = [make_table(lake, i) for i in range(a.tables)]
    print(f"wrote {len(tables)} tables in {time.time() - t0:.1f} s", flush=True)
    subprocess.run([a.makoto, "keygen", os.path.join(a.work, "k")], check=True, capture_output=True)
    err = open(os.path.join(a.work, "serve.log"), "w+")
    serve = subprocess.Popen(
        [a.makoto, "serve", "--warehouse", os.path.join(a.work, "wh"),
         "--key", os.path.join(a.work, "k.key"), "--discover", lake,
         "--listen", "127.0.0.1:0", "--concurrency", str(a.concurrency), *a.serve_arg],
        stderr=err,
    )
    address = None
    while address is None:
        time.sleep(0.05)
        err.seek(0)
        for line in err:
            if line.startswith("makoto serve: listening on http://"):
                address = line.strip().rsplit("/", 1)[1]
    uri = {t: "file://" + os.path.abspath(t) for t in tables}

    # 1. Initial attestation of every table.
    t0 = time.time()
    while True:
        done = attested_versions(address)
        if sum(1 for t in tables if uri[t] in done) == len(tables):
            break
        time.sleep(0.5)
    initial = time.time() - t0
    print(f"initial: {len(tables)} tables attested in {initial:.1f} s "
          f"({len(tables) / initial:.0f} tables/s); RSS {rss_mb(serve.pid):.0f} MB", flush=True)

    if a.system_retention:
        set_system_retention(os.path.join(a.work, "wh"), a.system_retention)

    # 2. Idle cost.
    c0, w0 = cpu_seconds(serve.pid), time.time()
    time.sleep(a.idle_seconds)
    idle = (cpu_seconds(serve.pid) - c0) / (time.time() - w0)
    print(f"idle: {100 * idle:.1f} % of one core watching {len(tables)} attested tables; "
          f"RSS {rss_mb(serve.pid):.0f} MB", flush=True)

    # 3. Load.
    loaded = tables[: a.load_tables]
    versions = {t: 0 for t in loaded}
    written: dict[tuple[str, int], float] = {}
    seen: dict[tuple[str, int], float] = {}
    stop = threading.Event()

    pending: dict[str, list[int]] = {uri[t]: [] for t in loaded}
    by_uri = {uri[t]: t for t in loaded}

    def poll() -> None:
        while True:
            now = time.time()
            for u, v in attested_versions(address).items():
                waiting = pending.get(u)
                while waiting and waiting[0] <= v:
                    seen[(by_uri[u], waiting.pop(0))] = now
            if stop.is_set() and (len(seen) >= len(written) or now - stop_time[0] > 300):
                break
            time.sleep(0.05)

    def sample_rss() -> None:
        t0 = time.time()
        while not stop.wait(a.rss_every):
            print(f"rss {time.time() - t0:.0f} {rss_mb(serve.pid):.0f}", flush=True)

    stop_time = [0.0]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    if a.rss_every > 0:
        threading.Thread(target=sample_rss, daemon=True).start()
    rng = random.Random(7)
    start = time.time()
    n = 0
    while time.time() - start < a.seconds:
        due = start + n / a.rate
        time.sleep(max(0.0, due - time.time()))
        t = rng.choice(loaded)
        versions[t] += 1
        v = versions[t]
        name = f"part-{v}.parquet"
        with open(os.path.join(t, name), "wb") as f:
            f.write(os.urandom(64))
        now_ms = int(time.time() * 1000)
        written[(t, v)] = write_commit(
            t, v, [{"commitInfo": {"timestamp": now_ms, "operation": "WRITE"}}, add(name, now_ms)]
        )
        pending[uri[t]].append(v)
        n += 1
    load_wall = time.time() - start
    stop_time[0] = time.time()
    stop.set()
    poller.join()
    lat = sorted(seen[k] - written[k] for k in written if k in seen)
    missing = len(written) - len(lat)
    in_window = sum(1 for k in written if k in seen and seen[k] <= start + load_wall)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    print(f"load: wrote {n} commits to {len(loaded)} tables in {load_wall:.1f} s "
          f"({n / load_wall:.0f} commits/s); {in_window / load_wall:.0f} commits/s attested during the load; "
          f"commit->attested p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, max {lat[-1] if lat else float('nan'):.2f} s; "
          f"not attested {missing}; RSS {rss_mb(serve.pid):.0f} MB", flush=True)
    metrics = get(address, "/metrics")
    for line in metrics.splitlines():
        if line.startswith(("makoto_attest_latency_seconds_bucket", "makoto_commits_attested_total",
                            "makoto_attest_runs_total", "makoto_attest_errors_total")):
            print("  " + line)
    serve.terminate()
    code = serve.wait(timeout=120)
    print(f"SIGTERM: exit {code}")
    sys.exit(0 if code == 0 and missing == 0 else 1)


if __name__ == "__main__":
    main()
