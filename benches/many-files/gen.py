# A table of COMMITS commits of FILES data files each: benches/many-files/gen.py DIR COMMITS FILES [SIZE]
import json, os, sys
d = sys.argv[1]; C = int(sys.argv[2]); F = int(sys.argv[3]); S = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
os.makedirs(d + "/_delta_log", exist_ok=True)
SCHEMA = '{"type":"struct","fields":[{"name":"payload","type":"binary","nullable":true,"metadata":{}}]}'
ts = 1700000000000
def wc(v, acts):
    with open(f"{d}/_delta_log/{v:020}.json", "w") as f:
        for a in acts: f.write(json.dumps(a, separators=(",", ":")) + "\n")
wc(0, [{"commitInfo": {"timestamp": ts, "operation": "CREATE TABLE", "engineInfo": "makoto-testkit/synthetic"}},
       {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
       {"metaData": {"id": "00000000-0000-4000-8000-000000000002", "format": {"provider": "parquet", "options": {}},
        "schemaString": SCHEMA, "partitionColumns": [], "configuration": {}, "createdTime": ts}}])
for v in range(1, C + 1):
    t = ts + v
    acts = [{"commitInfo": {"timestamp": t, "operation": "WRITE", "engineInfo": "makoto-testkit/synthetic"}}]
    for i in range(F):
        name = f"part-{v:05}-{i:07}.parquet"
        with open(f"{d}/{name}", "wb") as f: f.write(os.urandom(S))
        acts.append({"add": {"path": name, "partitionValues": {}, "size": S, "modificationTime": t, "dataChange": True, "stats": "{\"numRecords\":1}"}})
    wc(v, acts)
