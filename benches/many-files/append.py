# Appends COUNT one-file commits to a table written by gen.py (the incremental case of
# docs/performance.md (f)): benches/many-files/append.py DIR COUNT [SIZE]
import json, os, sys
d = sys.argv[1]; N = int(sys.argv[2]); S = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
log = d + "/_delta_log"
last = max(int(n[:20]) for n in os.listdir(log) if n.endswith(".json") and n[:20].isdigit())
ts = 1700000000000
for v in range(last + 1, last + N + 1):
    t = ts + v
    name = f"part-{v:05}-append.parquet"
    with open(f"{d}/{name}", "wb") as f: f.write(os.urandom(S))
    acts = [{"commitInfo": {"timestamp": t, "operation": "WRITE", "engineInfo": "makoto-testkit/synthetic"}},
            {"add": {"path": name, "partitionValues": {}, "size": S, "modificationTime": t, "dataChange": True, "stats": "{\"numRecords\":1}"}}]
    # Written under a temporary name and renamed: a reader never sees half a commit.
    tmp = f"{log}/.{v:020}.json.tmp"
    with open(tmp, "w") as f:
        for a in acts: f.write(json.dumps(a, separators=(",", ":")) + "\n")
    os.rename(tmp, f"{log}/{v:020}.json")
print(f"appended versions {last + 1}..{last + N}")
