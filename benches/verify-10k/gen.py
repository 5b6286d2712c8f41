import json, os, sys
d = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
os.makedirs(d + "/_delta_log", exist_ok=True)
SCHEMA = '{"type":"struct","fields":[{"name":"payload","type":"binary","nullable":true,"metadata":{}}]}'
ts = 1700000000000
def wc(v, acts):
    with open(f"{d}/_delta_log/{v:020}.json", "w") as f:
        for a in acts: f.write(json.dumps(a, separators=(",", ":")) + "\n")
wc(0, [{"commitInfo": {"timestamp": ts, "operation": "CREATE TABLE", "engineInfo": "makoto-testkit/synthetic"}},
       {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
       {"metaData": {"id": "00000000-0000-4000-8000-000000000001", "format": {"provider": "parquet", "options": {}},
        "schemaString": SCHEMA, "partitionColumns": [], "configuration": {}, "createdTime": ts}}])
for v in range(1, N + 1):
    name = f"part-{v:06}.parquet"
    with open(f"{d}/{name}", "wb") as f: f.write(os.urandom(1024))
    t = ts + v
    acts = [{"commitInfo": {"timestamp": t, "operation": "WRITE", "engineInfo": "makoto-testkit/synthetic"}},
            {"add": {"path": name, "partitionValues": {}, "size": 1024, "modificationTime": t, "dataChange": True, "stats": "{\"numRecords\":1}"}}]
    if v % 10 == 0 and v > 10:
        acts.append({"remove": {"path": f"part-{v-10:06}.parquet", "deletionTimestamp": t, "dataChange": True, "size": 1024}})
    wc(v, acts)
