//! Stream windows over Delta appends: roots recomputed here from the Parquet files with an
//! independent record encoding and RFC 6962 tree, the chain, exactly-once continuation,
//! record proofs, and tampering localized to a window and position.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::concat_batches;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use makoto_delta::{FindingKind, Location, StorageOptions};
use rstest::rstest;
use serde_json::Value;

use crate::support::*;

/// v0 create, v1..=v3 appends of 10 rows (ids 0..30), v4 a delete (not part of the stream),
/// v5 an append of 10 rows (ids 100..110).
pub(crate) async fn stream_table(dir: &Path) -> PathBuf {
    let path = dir.join("ticks");
    let mut t = makoto_testkit::SampleTable::create(&path).await.unwrap();
    for i in 0..3 {
        t.append(makoto_testkit::rows(i * 10..i * 10 + 10, "emea").unwrap())
            .await
            .unwrap();
    }
    t.delete("id = 3").await.unwrap();
    t.append(makoto_testkit::rows(100..110, "amer").unwrap())
        .await
        .unwrap();
    path
}

fn log_lines(table: &Path, v: u64) -> Vec<Value> {
    std::fs::read_to_string(table.join(format!("_delta_log/{v:020}.json")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records of the stream, encoded here without makoto: for this schema the canonical
/// JSON is the sorted-key object with integral floats written without a fraction.
fn independent_records(table: &Path, latest: u64) -> Vec<((u64, u64), Vec<u8>)> {
    let mut out = Vec::new();
    for v in 0..=latest {
        let lines = log_lines(table, v);
        let removes = lines.iter().any(|l| l["remove"]["dataChange"] == true);
        let adds: Vec<&Value> = lines
            .iter()
            .filter(|l| l["add"]["dataChange"] == true)
            .collect();
        if removes || adds.is_empty() {
            continue;
        }
        let mut index = 0;
        for add in adds {
            let path = percent_encoding::percent_decode_str(add["add"]["path"].as_str().unwrap())
                .decode_utf8()
                .unwrap()
                .into_owned();
            let region = add["add"]["partitionValues"]["region"].as_str().unwrap();
            let file = std::fs::File::open(table.join(&path)).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let b = batch.unwrap();
                let ids = column::<Int64Array>(&b, "id");
                let names = b.column_by_name("name").unwrap();
                let amounts = column::<Float64Array>(&b, "amount");
                for r in 0..b.num_rows() {
                    let name =
                        deltalake::arrow::util::display::array_value_to_string(names, r).unwrap();
                    let a = amounts.value(r);
                    let amount = if a.fract() == 0.0 {
                        format!("{}", a as i64)
                    } else {
                        format!("{a}")
                    };
                    let json = format!(
                        r#"{{"amount":{amount},"id":{},"name":"{name}","region":"{region}"}}"#,
                        ids.value(r)
                    );
                    out.push(((v, index), json.into_bytes()));
                    index += 1;
                }
            }
        }
    }
    out
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

fn windows_cli(table: &Path, wh: &Path, key: &str, spec: &str) -> Value {
    let out = makoto(&[
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--key",
        key,
        "--windows",
        spec,
        "--json",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

async fn store(wh: &Path) -> makoto_delta::AttestationStore {
    makoto_delta::AttestationStore::open_existing(
        Location::existing(wh.to_str().unwrap()).unwrap(),
        StorageOptions::default(),
    )
    .await
    .unwrap()
}

/// Commits of thousands of rows are hashed batch by batch on several threads: the windows
/// must still be the independent tree over the records in order, also across a window that
/// ends inside a commit and inside a decoded batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_over_large_commits_match_an_independent_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("big");
    let mut t = makoto_testkit::SampleTable::create(&table).await.unwrap();
    t.append(makoto_testkit::rows(0..10, "emea").unwrap())
        .await
        .unwrap();
    t.append(makoto_testkit::rows(10..10_010, "amer").unwrap())
        .await
        .unwrap();
    let wh = tmp.path().join("wh");
    let (key, public) = keyfiles(tmp.path());
    let summary = windows_cli(&table, &wh, &key, "records=2500");
    assert_eq!(summary["windows"]["closed"].as_array().unwrap().len(), 4);
    assert_eq!(summary["windows"]["openRecords"], 10);

    let records = independent_records(&table, 2);
    assert_eq!(records.len(), 10_010);
    let rows = store(&wh)
        .await
        .window_rows(&table_uri(&table))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for (w, row) in rows.iter().enumerate() {
        let chunk = &records[w * 2500..(w + 1) * 2500];
        let leaves: Vec<[u8; 32]> = chunk.iter().map(|(_, b)| rfc6962_leaf(b)).collect();
        assert_eq!(row.merkle_root.to_hex(), hex::encode(rfc6962_root(&leaves)));
        assert_eq!((row.first_version, row.first_index), chunk[0].0);
        assert_eq!((row.last_version, row.last_index), chunk[2499].0);
    }
    // Verification recomputes every window the same way.
    let report = verify_cli(&table, &wh, &public);
    assert_eq!(report["outcome"], "verified", "{report}");
    assert_eq!(report["findings"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_over_appends_match_an_independent_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let table = stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    let (key, public) = keyfiles(tmp.path());
    let summary = windows_cli(&table, &wh, &key, "records=7");
    // 40 appended records (the delete's rewrite is not part of the stream): 5 windows of 7,
    // 5 records left open.
    assert_eq!(summary["windows"]["closed"].as_array().unwrap().len(), 5);
    assert_eq!(summary["windows"]["openRecords"], 5);

    let records = independent_records(&table, 5);
    assert_eq!(records.len(), 40);
    let rows = store(&wh)
        .await
        .window_rows(&table_uri(&table))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let validator = SchemaValidator::new();
    for (w, row) in rows.iter().enumerate() {
        let chunk = &records[w * 7..w * 7 + 7];
        let leaves: Vec<[u8; 32]> = chunk.iter().map(|(_, b)| rfc6962_leaf(b)).collect();
        assert_eq!(
            row.merkle_root.to_hex(),
            hex::encode(rfc6962_root(&leaves)),
            "window {}",
            w + 1
        );
        assert_eq!(row.leaf_count, 7);
        assert_eq!((row.first_version, row.first_index), chunk[0].0);
        assert_eq!((row.last_version, row.last_index), chunk[6].0);
        assert_eq!(row.sequence, w as u64 + 1);
        let env: Value = serde_json::from_str(&row.envelope).unwrap();
        use base64::Engine;
        let st: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(env["payload"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            validator.errors(&st).is_empty(),
            "{:?}",
            validator.errors(&st)
        );
        assert_eq!(st["predicateType"], "https://makoto.dev/stream-window/v1");
        let chain = &st["predicate"]["integrity"]["chain"];
        assert_eq!(chain["chainLength"], w as u64 + 1);
        if w > 0 {
            assert_eq!(chain["previousWindowId"], rows[w - 1].window_id.as_str());
            assert_eq!(
                chain["previousMerkleRoot"],
                rows[w - 1].merkle_root.to_hex()
            );
        } else {
            assert!(chain.get("previousWindowId").is_none());
        }
    }

    // Exactly once: nothing new. Then an append closes the open window and continues the chain.
    assert_eq!(
        windows_cli(&table, &wh, &key, "records=7")["windows"]["closed"],
        serde_json::json!([])
    );
    let mut t = makoto_testkit::SampleTable::open(&table).await.unwrap();
    t.append(makoto_testkit::rows(200..204, "apac").unwrap())
        .await
        .unwrap();
    let more = windows_cli(&table, &wh, &key, "records=7");
    assert_eq!(more["windows"]["closed"].as_array().unwrap().len(), 1);
    assert_eq!(more["windows"]["closed"][0]["sequence"], 6);
    let records = independent_records(&table, 6);
    let leaves: Vec<[u8; 32]> = records[35..42]
        .iter()
        .map(|(_, b)| rfc6962_leaf(b))
        .collect();
    assert_eq!(
        more["windows"]["closed"][0]["merkleRoot"],
        hex::encode(rfc6962_root(&leaves))
    );

    // Deep verify checks the windows; a record proof verifies offline, a doctored one does not.
    let report = verify_cli(&table, &wh, &public);
    assert_eq!(report["outcome"], "verified", "{report}");
    assert_eq!(report["windowsChecked"], 6);
    let proof = tmp.path().join("proof.json");
    let out = makoto(&[
        "prove",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--record",
        "2:4",
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let ok = makoto(&["verify-proof", proof.to_str().unwrap(), "--trust", &public]);
    assert_eq!(ok.code, Some(0), "{}", ok.stdout);
    assert!(ok.stdout.contains("record 4 of version 2"), "{}", ok.stdout);
    let written = std::fs::read(&proof).unwrap();
    let mut p: Value = serde_json::from_slice(&written).unwrap();
    // The file is the proof's canonical JSON and one newline.
    let mut canonical = makoto_core::canonical::to_vec(&p);
    canonical.push(b'\n');
    assert_eq!(written, canonical);
    assert_eq!(p["format"], "makoto-record-proof/2");
    // Record (2, 4) is stream record 14, the first of window 3.
    assert_eq!(p["position"], 0);
    assert_eq!(
        p["record"].as_str().unwrap().as_bytes(),
        records[14].1.as_slice()
    );
    p["record"] = Value::String(
        p["record"]
            .as_str()
            .unwrap()
            .replace("\"id\":14", "\"id\":15"),
    );
    std::fs::write(&proof, serde_json::to_vec(&p).unwrap()).unwrap();
    let bad = makoto(&["verify-proof", proof.to_str().unwrap(), "--trust", &public]);
    assert_eq!(bad.code, Some(1), "{}", bad.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_and_commit_windows_close_at_commit_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let table = stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    let (key, _) = keyfiles(tmp.path());
    let by_commits = windows_cli(&table, &wh, &key, "commits=2");
    // Append commits v1, v2, v3, v5: two windows of two commits (20 records each).
    let closed = by_commits["windows"]["closed"].as_array().unwrap();
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0]["leafCount"], 20);
    assert_eq!(closed[1]["first"]["version"], 3);
    assert_eq!(closed[1]["last"]["version"], 5);
    // A 100-year window (epoch-aligned: the next boundary is in 2069) holds everything; it stays open.
    let by_day = windows_cli(&table, &wh, &key, "duration=36500d");
    assert_eq!(by_day["windows"]["closed"], serde_json::json!([]));
    assert_eq!(by_day["windows"]["openRecords"], 40);
    let bad = makoto(&[
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--windows",
        "rows=5",
    ]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("--windows"), "{}", bad.stderr);
}

enum Tamper {
    Alter,
    Insert,
    Drop,
    Swap,
}

/// Rewrites the data file appended at v2 with record 1 changed as `how` says.
fn tamper_v2(table: &Path, how: &Tamper) {
    let add = log_lines(table, 2)
        .into_iter()
        .find(|l| l["add"].is_object())
        .unwrap();
    let path = table.join(
        percent_encoding::percent_decode_str(add["add"]["path"].as_str().unwrap())
            .decode_utf8()
            .unwrap()
            .as_ref(),
    );
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let schema = batches[0].schema();
    let b = concat_batches(&schema, &batches).unwrap();
    let with_id = |row: &RecordBatch, id: i64| {
        let mut cols: Vec<Arc<dyn Array>> = row.columns().to_vec();
        let i = schema.index_of("id").unwrap();
        cols[i] = Arc::new(Int64Array::from(vec![id]));
        if let Ok(n) = schema.index_of("name")
            && row.column(n).as_any().is::<StringArray>()
        {
            cols[n] = Arc::new(StringArray::from(vec!["injected"]));
        }
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    };
    let n = b.num_rows();
    let parts: Vec<RecordBatch> = match how {
        Tamper::Alter => vec![
            b.slice(0, 1),
            with_id(&b.slice(1, 1), 9999),
            b.slice(2, n - 2),
        ],
        Tamper::Insert => vec![
            b.slice(0, 1),
            with_id(&b.slice(0, 1), 5555),
            b.slice(1, n - 1),
        ],
        Tamper::Drop => vec![b.slice(0, 1), b.slice(2, n - 2)],
        Tamper::Swap => vec![
            b.slice(0, 1),
            b.slice(2, 1),
            b.slice(1, 1),
            b.slice(3, n - 3),
        ],
    };
    let out = concat_batches(&schema, &parts).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&out).unwrap();
    w.close().unwrap();
}

/// Trust files that date the key: a window is dated by its own signing time
/// (`predicate.delta.attestedAt`), so genuine windows and record proofs verify while the key
/// is valid, and fail when it was revoked, expired or not yet valid when they were signed.
#[rstest]
#[case::valid_from_and_until(
    r#""validFrom":"2020-01-01T00:00:00Z","validUntil":"2100-01-01T00:00:00Z""#,
    None
)]
#[case::revoked_later(r#""revokedAt":"2100-01-01T00:00:00Z""#, None)]
#[case::all_three(
    r#""validFrom":"2020-01-01T00:00:00Z","validUntil":"2100-01-01T00:00:00Z","revokedAt":"2099-01-01T00:00:00Z""#,
    None
)]
#[case::revoked_before_signing(r#""revokedAt":"2021-01-01T00:00:00Z""#, Some("revoked"))]
#[case::expired_before_signing(r#""validUntil":"2021-01-01T00:00:00Z""#, Some("expired"))]
#[case::not_yet_valid(r#""validFrom":"2100-01-01T00:00:00Z""#, Some("valid only from"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_record_proofs_are_dated_by_their_signing_time(
    #[case] dates: &str,
    #[case] refused: Option<&str>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let table = stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    let (key, public) = keyfiles(tmp.path());
    windows_cli(&table, &wh, &key, "records=7");
    let pem = std::fs::read_to_string(&public).unwrap();
    let trust = tmp.path().join("trust.json");
    std::fs::write(
        &trust,
        format!(
            r#"{{"keys":[{{"name":"attestor","publicKey":{},{dates}}}]}}"#,
            serde_json::to_string(&pem).unwrap()
        ),
    )
    .unwrap();
    let trust = trust.to_str().unwrap();
    let report = verify_cli(&table, &wh, trust);
    let untrusted: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "window-untrusted")
        .map(|f| f["detail"].as_str().unwrap())
        .collect();
    let proof = tmp.path().join("proof.json");
    let out = makoto(&[
        "prove",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--record",
        "2:5",
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let checked = makoto(&["verify-proof", proof.to_str().unwrap(), "--trust", trust]);
    match refused {
        None => {
            assert_eq!(report["outcome"], "verified", "{report}");
            assert_eq!(report["windowsChecked"], 5);
            assert!(untrusted.is_empty(), "{untrusted:?}");
            assert_eq!(checked.code, Some(0), "{}", checked.stdout);
            assert!(
                checked
                    .stdout
                    .contains("record 5 of version 2 is record 1 of 7")
            );
        }
        Some(reason) => {
            assert_eq!(report["outcome"], "failed");
            assert_eq!(untrusted.len(), 5, "{report}");
            assert!(
                untrusted.iter().all(|d| d.contains(reason)),
                "{untrusted:?}"
            );
            assert_eq!(checked.code, Some(1), "{}", checked.stdout);
            assert!(checked.stdout.contains(reason), "{}", checked.stdout);
        }
    }
}

/// Record (v2, 1) is stream record 11: window 2 of records=7 (records 7..=13), position 4.
#[rstest]
#[case::altered(Tamper::Alter, FindingKind::WindowRecordAltered)]
#[case::inserted(Tamper::Insert, FindingKind::WindowRecordInserted)]
#[case::dropped(Tamper::Drop, FindingKind::WindowRecordDropped)]
#[case::reordered(Tamper::Swap, FindingKind::WindowRecordsReordered)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_records_are_named_by_window_and_position(
    #[case] how: Tamper,
    #[case] kind: FindingKind,
) {
    let tmp = tempfile::tempdir().unwrap();
    let table = stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    let (key, public) = keyfiles(tmp.path());
    windows_cli(&table, &wh, &key, "records=7");
    tamper_v2(&table, &how);
    let report = verify_cli(&table, &wh, &public);
    let window = format!("{}#window/records=7/2", table_uri(&table));
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["kind"] == kind.code()
            && f["detail"].as_str().unwrap().contains(&window)
            && f["detail"].as_str().unwrap().contains("position 4 of 7")),
        "{report}"
    );
    assert_eq!(report["outcome"], "failed");
}

fn verify_cli(table: &Path, wh: &Path, public: &str) -> Value {
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
    assert!(matches!(out.code, Some(0 | 1)), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// A window whose data file is gone cannot be rechecked: reported, and verification still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_data_is_gone_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let table = stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    let (key, public) = keyfiles(tmp.path());
    windows_cli(&table, &wh, &key, "records=7");
    let add = log_lines(&table, 2)
        .into_iter()
        .find(|l| l["add"].is_object())
        .unwrap();
    let path = percent_encoding::percent_decode_str(add["add"]["path"].as_str().unwrap())
        .decode_utf8()
        .unwrap()
        .into_owned();
    std::fs::remove_file(table.join(&path)).unwrap();
    let report = verify_cli(&table, &wh, &public);
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["kind"] == "data-unavailable"
            && f["detail"]
                .as_str()
                .unwrap()
                .contains("#window/records=7/2")),
        "{report}"
    );
    // The file was live: the per-commit check says it was deleted.
    assert!(
        findings.iter().any(|f| f["kind"] == "data-file-missing"),
        "{report}"
    );
    assert_eq!(report["outcome"], "failed");
}
