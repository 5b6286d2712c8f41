#!/usr/bin/env python3
"""Python API overhead against the CLI (docs/performance.md (g)).

    benches/python-overhead/run.py MAKOTO_BINARY PYTHON DIR [ROUNDS]

MAKOTO_BINARY is a release `makoto`; PYTHON an interpreter with the release wheel of the same
commit installed (and `deltalake` for the anchor). DIR gets t10k/ (benches/verify-10k/gen.py:
10,001 one-file commits, no checkpoint) and a key. Each round, interleaved: attest into a new
warehouse, then log-only verify without recording, by
  cli      the binary;
  py-call  makoto.attest / makoto.verify, timed inside Python around the call alone;
  py-proc  `python -c "import makoto; makoto.attest(...)"`, the whole process (start, import);
  wheel    the wheel's `makoto` console script;
and the anchor: Python deltalake opening the table (DeltaTable(p).file_uris()).
Prints every run and the medians with the overhead of each form over the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def in_python(python: str, code: str) -> float:
    """Runs `code` in a fresh interpreter; it prints the seconds it measured."""
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    binary, python, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    if not Path("t10k").is_dir():
        subprocess.run([python, str(HERE.parent / "verify-10k/gen.py"), "t10k", "10000"], check=True)
    if not Path("k.key").exists():
        subprocess.run([binary, "keygen", "k"], check=True, stdout=subprocess.DEVNULL)
    wheel_cli = str(Path(python).parent / "makoto")
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)
        print(f"{name:<24} {seconds:7.3f}s", flush=True)

    for i in range(rounds):
        for form in ("cli", "py-call", "py-proc", "wheel"):
            wh = f"wh-{form}-{i}"
            shutil.rmtree(wh, ignore_errors=True)
            attest = ["attest", "t10k", "--warehouse", wh, "--key", "k.key"]
            verify = ["verify", "t10k", "--warehouse", wh, "--trust", "k.pub", "--log-only", "--no-record"]
            if form == "cli":
                record("attest cli", timed([binary, *attest]))
                record("verify cli", timed([binary, *verify]))
            elif form == "wheel":
                record("attest wheel", timed([wheel_cli, *attest]))
                record("verify wheel", timed([wheel_cli, *verify]))
            elif form == "py-proc":
                record("attest py-proc", timed([python, "-c",
                    f"import makoto; makoto.attest('t10k', warehouse='{wh}', key='k.key')"]))
                record("verify py-proc", timed([python, "-c",
                    f"import makoto; makoto.verify('t10k', warehouse='{wh}', trust='k.pub', log_only=True, record=False)"]))
            else:
                record("attest py-call", in_python(python,
                    "import time, makoto\nt=time.perf_counter()\n"
                    f"makoto.attest('t10k', warehouse='{wh}', key='k.key')\nprint(time.perf_counter()-t)"))
                record("verify py-call", in_python(python,
                    "import time, makoto\nt=time.perf_counter()\n"
                    f"r=makoto.verify('t10k', warehouse='{wh}', trust='k.pub', log_only=True, record=False)\n"
                    "assert r.verified\nprint(time.perf_counter()-t)"))
            shutil.rmtree(wh, ignore_errors=True)
        record("anchor deltalake open", timed([python, "-c",
            "from deltalake import DeltaTable; DeltaTable('t10k').file_uris()"]))
    medians = {k: statistics.median(v) for k, v in results.items()}
    print("\nmedians over", rounds, "rounds:")
    for k, v in medians.items():
        base = medians.get(f"{k.split()[0]} cli")
        extra = f"  ({(v / base - 1) * 100:+.1f}% vs cli)" if base and not k.endswith("cli") and not k.startswith("anchor") else ""
        print(f"  {k:<24} {v:7.3f}s{extra}")
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
