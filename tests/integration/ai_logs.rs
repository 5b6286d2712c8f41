//! AI platform logs on Delta (docs/ai-controls.md): a model-serving inference table in the
//! documented shape, a guardrail-decision table and a judge-evaluation table, written by
//! delta-rs, attested with hourly stream windows, a PII redaction (UPDATE of the request
//! payload) attested as the transform it is, the auditors' SQL, and the signed AI bill of
//! materials checked offline and doctored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use deltalake::DeltaTableBuilder;
use deltalake::arrow::array::{
    Array, Float64Array, Int32Array, Int64Array, MapBuilder, RecordBatch, StringArray,
    StringBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use serde_json::Value;

use crate::support::*;

/// 2026-03-01T00:00:00Z in ms.
const T0: i64 = 1_772_323_200_000;
const HOUR: i64 = 3_600_000;
const ENDPOINT: &str = "fraud-detector";

fn url(path: &Path) -> url::Url {
    std::fs::create_dir_all(path).unwrap();
    url::Url::from_directory_path(std::fs::canonicalize(path).unwrap()).unwrap()
}

/// Appends `batch` (creating the table on first use), then stamps the new commit's
/// `commitInfo.timestamp` with `at_ms`: the traffic of several hours is written in a second,
/// and each commit gets the time its writer would have given it, before anything attests it.
async fn append(path: &Path, batch: RecordBatch, at_ms: i64) -> u64 {
    let mut table = DeltaTableBuilder::from_url(url(path))
        .unwrap()
        .build()
        .unwrap();
    let _ = table.load().await;
    let table = table
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap();
    let version = table.version().unwrap();
    stamp(path, version, at_ms);
    version
}

fn stamp(path: &Path, version: u64, at_ms: i64) {
    let file = path.join(format!("_delta_log/{version:020}.json"));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Some(ci) = v.get_mut("commitInfo") {
                ci["timestamp"] = at_ms.into();
            }
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
}

/// `n` requests of hour `h`, request `k` at minute `10 * k`; requests of hours 0 and 2 carry
/// an e-mail address (PII) in the payload.
fn inference_batch(h: i64, first: usize, n: usize) -> RecordBatch {
    let ids: Vec<String> = (first..first + n).map(|k| format!("req-{h}-{k}")).collect();
    let ts: Vec<i64> = (first..first + n)
        .map(|k| T0 + h * HOUR + k as i64 * 600_000)
        .collect();
    let requests: Vec<String> = (first..first + n)
        .map(|k| match h % 2 {
            0 => format!(r#"{{"inputs":[{{"amount":{k}.5,"email":"user{k}@example.com"}}]}}"#),
            _ => format!(r#"{{"inputs":[{{"amount":{k}.5}}]}}"#),
        })
        .collect();
    let mut meta = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for _ in 0..n {
        for (k, v) in [
            ("endpoint_name", ENDPOINT),
            ("model_name", "fraud_detector"),
            ("model_version", "3"),
        ] {
            meta.keys().append_value(k);
            meta.values().append_value(v);
        }
        meta.append(true).unwrap();
    }
    let meta = meta.finish();
    let schema = Schema::new(vec![
        Field::new("client_request_id", DataType::Utf8, true),
        Field::new("databricks_request_id", DataType::Utf8, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("execution_time_ms", DataType::Int64, false),
        Field::new("request", DataType::Utf8, true),
        Field::new("response", DataType::Utf8, true),
        Field::new("request_metadata", meta.data_type().clone(), true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("client-{i}"))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Int32Array::from(vec![200; n])),
            Arc::new(Int64Array::from(vec![42; n])),
            Arc::new(StringArray::from(requests)),
            Arc::new(StringArray::from(vec![r#"{"predictions":[0.02]}"#; n])),
            Arc::new(meta),
        ],
    )
    .unwrap()
}

fn guardrail_batch(h: i64) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("guardrail", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("decision", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec![
                format!("req-{h}-0"),
                format!("req-{h}-1"),
            ])),
            Arc::new(Int64Array::from(vec![
                T0 + h * HOUR,
                T0 + h * HOUR + 600_000,
            ])),
            Arc::new(StringArray::from(vec!["pii", "toxicity"])),
            Arc::new(StringArray::from(vec!["input", "output"])),
            Arc::new(StringArray::from(vec![
                if h % 2 == 0 { "redact" } else { "allow" },
                "allow",
            ])),
            Arc::new(Float64Array::from(vec![0.91, 0.03])),
        ],
    )
    .unwrap()
}

fn judge_batch(h: i64) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("judge", DataType::Utf8, false),
        Field::new("judge_model", DataType::Utf8, false),
        Field::new("rating", DataType::Utf8, false),
        Field::new("rationale", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec![format!("req-{h}-0")])),
            Arc::new(Int64Array::from(vec![T0 + h * HOUR + 1_200_000])),
            Arc::new(StringArray::from(vec!["groundedness"])),
            Arc::new(StringArray::from(vec!["judge-llm-2"])),
            Arc::new(StringArray::from(vec!["yes"])),
            Arc::new(StringArray::from(vec!["the score follows from the inputs"])),
        ],
    )
    .unwrap()
}

struct Lake {
    inference: PathBuf,
    guardrails: PathBuf,
    judge: PathBuf,
}

/// Hours `hours` of traffic: two inference commits of 3 requests, one guardrail and one judge
/// commit per hour.
async fn traffic(lake: &Lake, hours: std::ops::Range<i64>) {
    for h in hours {
        append(
            &lake.inference,
            inference_batch(h, 0, 3),
            T0 + h * HOUR + 60_000,
        )
        .await;
        append(
            &lake.inference,
            inference_batch(h, 3, 3),
            T0 + h * HOUR + 1_800_000,
        )
        .await;
        append(
            &lake.guardrails,
            guardrail_batch(h),
            T0 + h * HOUR + 120_000,
        )
        .await;
        append(&lake.judge, judge_batch(h), T0 + h * HOUR + 1_900_000).await;
    }
}

fn attest_hourly(table: &Path, wh: &Path, key: &str) -> Value {
    let out = makoto(&[
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--key",
        key,
        "--windows",
        "duration=1h",
        "--json",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn sql(wh: &Path, extra: &[&str], query: &str) -> Vec<Value> {
    let mut args = vec![
        "sql",
        "--warehouse",
        wh.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    args.push(query);
    let out = makoto(&args);
    assert_eq!(out.code, Some(0), "{query}: {}", out.stderr);
    match serde_json::from_str(out.stdout.trim()).unwrap() {
        Value::Array(rows) => rows,
        other => panic!("not rows: {other}"),
    }
}

fn verify_deep(table: &Path, wh: &Path, public: &str) -> (Option<i32>, Value) {
    let out = makoto(&[
        "verify",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--trust",
        public,
        "--no-record",
        "--json",
    ]);
    (
        out.code,
        serde_json::from_str(&out.stdout).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_guardrail_and_judge_logs_are_attested_by_the_hour_and_redactions_stay_transforms()
 {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        inference: dir.path().join("serving/fraud_detector_payload"),
        guardrails: dir.path().join("serving/fraud_detector_guardrails"),
        judge: dir.path().join("serving/fraud_detector_judge"),
    };
    let wh = dir.path().join("wh");
    let (key, public) = keyfiles(dir.path());

    // Hours 0-2, then the attestor runs: hours 0 and 1 are closed, hour 2 is still open.
    traffic(&lake, 0..3).await;
    for t in [&lake.inference, &lake.guardrails, &lake.judge] {
        let run = attest_hourly(t, &wh, &key);
        let closed = run["windows"]["closed"].as_array().unwrap();
        assert_eq!(closed.len(), 2, "{t:?}: {run}");
    }
    // Hour 3 closes hour 2.
    traffic(&lake, 3..4).await;
    for t in [&lake.inference, &lake.guardrails, &lake.judge] {
        let run = attest_hourly(t, &wh, &key);
        let closed = run["windows"]["closed"].as_array().unwrap();
        assert_eq!(closed.len(), 1, "{t:?}: {run}");
        assert_eq!(closed[0]["sequence"], 3);
    }
    let inference_uri = table_uri(&lake.inference);
    let before_redaction = 8; // v0..v7: two commits per hour, hours 0-3

    // The PII redaction: an UPDATE rewriting the payload of every request with an e-mail.
    let mut table = DeltaTableBuilder::from_url(url(&lake.inference))
        .unwrap()
        .build()
        .unwrap();
    table.load().await.unwrap();
    let (table, metrics) = table
        .update()
        .with_predicate("request LIKE '%@%'")
        .with_update("request", "'{\"inputs\":\"[REDACTED]\"}'")
        .await
        .unwrap();
    assert_eq!(metrics.num_updated_rows, 12);
    let redaction = table.version().unwrap();
    assert_eq!(redaction, before_redaction);
    stamp(&lake.inference, redaction, T0 + 3 * HOUR + 3_000_000);
    let run = attest_hourly(&lake.inference, &wh, &key);
    assert_eq!(run["windows"]["closed"], serde_json::json!([]), "{run}");

    // Deep verification: every window recomputed from the files it was cut from; the
    // redaction is an attested UPDATE, not a finding.
    for t in [&lake.inference, &lake.guardrails, &lake.judge] {
        let (code, report) = verify_deep(t, &wh, &public);
        assert_eq!(code, Some(0), "{t:?}: {report}");
        assert_eq!(report["windowsChecked"], 3, "{report}");
    }
    let ops = sql(
        &wh,
        &[],
        &format!(
            "SELECT version, operation, predicate_type FROM system.makoto.attestations \
             WHERE table_uri = '{inference_uri}' AND version = {redaction}"
        ),
    );
    assert_eq!(ops[0]["operation"], "UPDATE");
    assert_eq!(ops[0]["predicate_type"], "https://makoto.dev/transform/v1");

    // Auditor 1: every inference window of the endpoint in March, verified, and by which key.
    let keyid = makoto(&["pubkey", "--key", &key, "--json"]);
    let keyid: Value = serde_json::from_str(&keyid.stdout).unwrap();
    let march = sql(
        &wh,
        &["--trust", &public],
        &format!(
            "SELECT sequence, first_timestamp, last_timestamp, leaf_count, keyid, \
                    makoto_verify(envelope) AS signature \
             FROM system.makoto.windows \
             WHERE table_uri = '{inference_uri}' \
               AND first_timestamp >= TIMESTAMP '2026-03-01T00:00:00Z' \
               AND last_timestamp < TIMESTAMP '2026-04-01T00:00:00Z' \
             ORDER BY sequence"
        ),
    );
    assert_eq!(march.len(), 3);
    for (i, w) in march.iter().enumerate() {
        assert_eq!(w["sequence"], i as u64 + 1);
        assert_eq!(w["leaf_count"], 6);
        assert_eq!(w["signature"], "verified");
        assert_eq!(w["keyid"], keyid["keyid"]);
    }

    // Auditor 2: which window holds a request: rows joined to the commit that added their file
    // (the table read at the version the windows were cut from, before any rewrite).
    let holds = |request: &str| -> Vec<Value> {
        sql(
            &wh,
            &[
                "--table",
                &format!("inf={}@v{}", inference_uri, before_redaction - 1),
                "--file-column",
                "_file",
            ],
            &format!(
                "SELECT w.window_id, f.version \
                 FROM inf i \
                 JOIN system.makoto.files f \
                   ON f.table_uri = '{inference_uri}' AND f.action = 'add' AND f.path = i._file \
                 JOIN system.makoto.windows w \
                   ON w.table_uri = f.table_uri AND w.spec = 'duration=1h' \
                  AND f.version BETWEEN w.first_version AND w.last_version \
                 WHERE i.databricks_request_id = '{request}'"
            ),
        )
    };
    let found = holds("req-1-4");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0]["window_id"],
        format!("{inference_uri}#window/duration=1h/2")
    );
    assert_eq!(found[0]["version"], 3); // hour 1's second commit
    assert!(holds("req-9-9").is_empty());

    // Auditor 3: which redactions touched which windows: the files an UPDATE removed, the
    // commit that had added each, and the window holding that commit.
    let touched = sql(
        &wh,
        &[],
        &format!(
            "SELECT DISTINCT a.version AS redaction, w.sequence \
             FROM system.makoto.attestations a \
             JOIN system.makoto.files r ON r.table_uri = a.table_uri AND r.version = a.version \
                  AND r.action = 'remove' \
             JOIN system.makoto.files ad ON ad.table_uri = r.table_uri AND ad.path = r.path \
                  AND ad.action = 'add' \
             JOIN system.makoto.windows w ON w.table_uri = a.table_uri \
                  AND ad.version BETWEEN w.first_version AND w.last_version \
             WHERE a.table_uri = '{inference_uri}' AND a.operation = 'UPDATE' \
             ORDER BY w.sequence"
        ),
    );
    let windows: Vec<u64> = touched
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(
        windows,
        vec![1, 3],
        "hours 0 and 2 held e-mail addresses: {touched:?}"
    );
    assert!(touched.iter().all(|r| r["redaction"] == redaction));

    aibom_story(dir.path(), &lake, &wh, &key, &public).await;
    purge_story(&lake, &wh, &key, &public).await;
}

/// The redacted originals purged (VACUUM, as a PII deletion requires): the attestor goes on
/// (the vacuum commits attested, the open window kept) and the table still verifies; the two
/// windows whose records the redaction removed say so instead of being recomputed.
async fn purge_story(lake: &Lake, wh: &Path, key: &str, public: &str) {
    let mut t = makoto_testkit::SampleTable::open(&lake.inference)
        .await
        .unwrap();
    assert_eq!(t.vacuum_all().await.unwrap(), 4);
    let run = attest_hourly(&lake.inference, wh, key);
    assert_eq!(run["attested"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(run["windows"]["openRecords"], 6, "{run}");
    let (code, report) = verify_deep(&lake.inference, wh, public);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["outcome"], "verified");
    assert_eq!(report["windowsChecked"], 3);
    assert_eq!(report["windowsPurged"], 2);
    let purged: Vec<(u64, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["version"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        purged,
        vec![
            (1, "window-records-purged".to_owned()),
            (5, "window-records-purged".to_owned())
        ]
    );
    assert!(
        report["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("v8")
    );

    // A window's file deleted without any commit removing it is not explained away.
    let rows = file_rows(wh, &lake.inference).await;
    let hour1 = rows
        .iter()
        .find(|r| r.version == 2 && r.action == makoto_core::attestation::ChangeKind::Add)
        .unwrap();
    std::fs::remove_file(lake.inference.join(&hour1.path)).unwrap();
    let (code, report) = verify_deep(&lake.inference, wh, public);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "failed", "{report:#}");
    let kinds = report["findings"].to_string();
    assert!(kinds.contains("data-unavailable"), "{kinds}");
    assert!(
        !kinds.contains("duration=1h/2: its files were removed"),
        "{kinds}"
    );
}

/// The AIBOM of the model the endpoint serves: a training table version and the three logs.
async fn aibom_story(dir: &Path, lake: &Lake, wh: &Path, key: &str, public: &str) {
    let training = dir.join("features/transactions");
    append(&training, guardrail_batch(7), T0 - 24 * HOUR).await;
    let out = makoto(&[
        "attest",
        training.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--key",
        key,
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let model = dir.join("model.bin");
    std::fs::write(&model, b"weights of fraud_detector v3").unwrap();
    let aibom = dir.join("fraud_detector-3.aibom.json");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "aibom".to_owned(),
            "--model".into(),
            "fraud_detector".into(),
            "--model-version".into(),
            "3".into(),
            "--model-file".into(),
            model.to_str().unwrap().into(),
            "--mlflow-run-id".into(),
            "8f2c1e".into(),
            "--training".into(),
            format!("{}@v0", training.display()),
            "--windows".into(),
            "duration=1h".into(),
            "--from".into(),
            "2026-03-01T00:00:00Z".into(),
            "--to".into(),
            "2026-03-02T00:00:00Z".into(),
            "--warehouse".into(),
            wh.to_str().unwrap().into(),
            "--key".into(),
            key.into(),
            "--out".into(),
            aibom.to_str().unwrap().into(),
        ];
        for t in [&lake.inference, &lake.guardrails, &lake.judge] {
            args.push("--inference".into());
            args.push(t.to_str().unwrap().into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        makoto(&refs)
    };
    let out = build(&[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let check = |path: &Path, trust: &str| {
        let out = makoto(&[
            "verify-aibom",
            path.to_str().unwrap(),
            "--trust",
            trust,
            "--json",
        ]);
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        (out.code, report, out.stderr)
    };
    let (code, report, err) = check(&aibom, public);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(report["trainingChecked"], 1);
    assert_eq!(report["windowsChecked"], 9);
    assert_eq!(report["model"], "urn:makoto:model:fraud_detector@3");

    // What it says, read back: the model digest is the file's, each listing is consecutive.
    let envelope: Value = serde_json::from_str(&std::fs::read_to_string(&aibom).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        sha256_hex(b"weights of fraud_detector v3")
    );
    let p = &statement["predicate"];
    assert_eq!(p["model"]["mlflowRunId"], "8f2c1e");
    assert_eq!(p["training"][0]["version"], 0);
    let tables: BTreeSet<&str> = p["inference"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables.len(), 3);

    // Doctored copies: another trusted key, a changed byte, a window root that its statement
    // does not sign (re-signed with the trusted key), a window dropped from a listing.
    let (_, other_pub) = keyfiles(&dir.join("other"));
    let (code, report, _) = check(&aibom, &other_pub);
    assert_eq!(code, Some(1), "{report}");
    let doctored = |name: &str, edit: &dyn Fn(&mut Value)| -> PathBuf {
        let mut s = statement.clone();
        edit(&mut s);
        let path = dir.join(name);
        let bytes = serde_json::to_vec(&s).unwrap();
        let env = resign(&bytes, key);
        std::fs::write(&path, env).unwrap();
        path
    };
    let root = doctored("root.json", &|s| {
        s["predicate"]["inference"][0]["windows"][1]["merkleRoot"] = "00".repeat(32).into();
    });
    let (code, report, _) = check(&root, public);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["problems"]
            .to_string()
            .contains("window/duration=1h/2"),
        "{report}"
    );
    let dropped = doctored("dropped.json", &|s| {
        s["predicate"]["inference"][0]["windows"]
            .as_array_mut()
            .unwrap()
            .remove(1);
    });
    let (code, report, _) = check(&dropped, public);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["problems"].to_string().contains("consecutive"),
        "{report}"
    );
    let dbom = doctored("dbom.json", &|s| {
        s["predicate"]["training"][0]["stateDigest"] = "11".repeat(32).into();
    });
    let (code, report, _) = check(&dbom, public);
    assert_eq!(code, Some(1), "{report}");
    let mut bytes = std::fs::read(&aibom).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(dir.join("flipped.json"), &bytes).unwrap();
    let (code, _, _) = check(&dir.join("flipped.json"), public);
    assert!(matches!(code, Some(1) | Some(2)));

    // A tampered log is not put in an AIBOM: a data file of hour 1 rewritten.
    let rows = file_rows(wh, &lake.judge).await;
    let victim = rows
        .iter()
        .find(|r| r.version == 1 && r.action == makoto_core::attestation::ChangeKind::Add)
        .unwrap();
    let path = lake.judge.join(&victim.path);
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&path, data).unwrap();
    std::fs::remove_file(&aibom).unwrap();
    let out = build(&[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("fraud_detector_judge"),
        "{}",
        out.stderr
    );
    assert!(
        !aibom.exists(),
        "nothing is written when a table does not verify"
    );
}

/// Signs `payload` as an in-toto statement envelope with the key file `key`.
fn resign(payload: &[u8], key: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(key).unwrap();
    let pair = makoto_core::keys::SigningKeyPair::from_pkcs8_pem(&pem).unwrap();
    makoto_core::dsse::Envelope::sign(
        makoto_core::dsse::IN_TOTO_PAYLOAD_TYPE,
        payload.to_vec(),
        &pair,
    )
    .unwrap()
    .to_json()
    .into_bytes()
}
