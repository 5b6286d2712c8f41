//! Independent tools read and verify what makoto writes: the Python `deltalake` package reads
//! both system tables and `securesystemslib` verifies every DSSE envelope
//! (scripts/check_attestations.py).

use std::path::PathBuf;
use std::process::Command;

use makoto_core::keys::Signer;
use serde_json::Value;

use crate::support::*;

/// The Python interpreter with the test packages, from `MAKOTO_PYTHON` (set by scripts/test)
/// or `python3` if it has them.
pub(crate) fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("MAKOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let ok = Command::new(&candidate)
        .args([
            "-c",
            "import deltalake, securesystemslib, cryptography, jsonschema",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    let reason = format!(
        "{} cannot import deltalake, securesystemslib, cryptography and jsonschema; run scripts/test, which installs them",
        candidate.display()
    );
    if std::env::var("MAKOTO_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

fn write_pub(dir: &std::path::Path, seed: u8) -> PathBuf {
    let p = dir.join(format!("key{seed}.pub"));
    std::fs::write(&p, key(seed).public_key_pem()).unwrap();
    p
}

trait PubPem {
    fn public_key_pem(&self) -> String;
}

impl PubPem for std::sync::Arc<makoto_core::keys::SigningKeyPair> {
    fn public_key_pem(&self) -> String {
        self.public_key().to_spki_pem().unwrap()
    }
}

fn check(py: &std::path::Path, wh: &std::path::Path, pubkey: &std::path::Path) -> (i32, Value) {
    let out = Command::new(py)
        .arg(repo_root().join("scripts/check_attestations.py"))
        .arg(wh)
        .arg(pubkey)
        .arg("--schemas")
        .arg(schema_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} / {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_deltalake_reads_and_securesystemslib_verifies() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let sample = repo_root().join("data/sample/sales");
    let dv = corpus_table("basic-dv-with-checkpoint", tmp.path());
    Run::new(&sample, &wh).run().await.unwrap();
    Run::new(&dv, &wh).run().await.unwrap();
    let expected_rows =
        attestation_rows(&wh, &sample).await.len() + attestation_rows(&wh, &dv).await.len();
    let expected_files = file_rows(&wh, &sample).await.len() + file_rows(&wh, &dv).await.len();

    let (code, v) = check(&py, &wh, &write_pub(tmp.path(), 1));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["attestationRows"], expected_rows);
    assert_eq!(v["fileRows"], expected_files);
    assert_eq!(v["signaturesVerified"], expected_rows);
    assert_eq!(v["schemaValid"], expected_rows);
    assert_eq!(v["tables"], 2);
    assert_eq!(v["keyid"], key(1).keyid().as_str());

    // The same check fails for rows signed by a key it was not given.
    let other = corpus_table("table-with-dv-small", tmp.path());
    let mut run = Run::new(&other, &wh);
    run.key = Some(key(2));
    run.run().await.unwrap();
    let (code, v) = check(&py, &wh, &write_pub(tmp.path(), 1));
    assert_eq!(code, 1, "{v}");
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("table-with-dv-small"))
    );
}

/// scripts/recompute_digests.py is a second implementation of docs/digests.md in plain Python
/// (standard library only). Every digest of every version must agree with the rows, and its
/// reader view (digest and components) with the one the signed statement carries.
#[rstest::rstest]
#[case("sample")]
#[case("table-with-dv-small")]
#[case("cdf-table-with-dv")]
#[case("basic-dv-with-checkpoint")]
#[case("dat-multi_partitioned")]
#[case("cdf-table")]
#[case("v1-multi-part-partitioned-struct-stats-only")]
#[case("app-txn-checkpoint")]
#[case("table_with_liquid_clustering")]
#[case("dv-with-columnmapping")]
#[case("type-widening")]
#[case("compacted-log-files-table")]
#[case("wide-commits")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reimplementation_of_the_digest_spec_agrees(#[case] name: &str) {
    let py = std::env::var_os("MAKOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let tmp = tempfile::tempdir().unwrap();
    let table = match name {
        "sample" => repo_root().join("data/sample/sales"),
        "wide-commits" => wide_commits_table(tmp.path()),
        _ => corpus_table(name, tmp.path()),
    };
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let rows = attestation_rows(&wh, &table).await;
    let out = Command::new(py)
        .arg(repo_root().join("scripts/recompute_digests.py"))
        .arg(&table)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for (row, py) in rows.iter().zip(&lines) {
        assert_eq!(py["version"], row.version);
        assert_eq!(
            py["commitFileDigest"],
            row.commit_file_digest.to_hex(),
            "{name} v{}",
            row.version
        );
        assert_eq!(
            py["commitDigest"],
            row.commit_digest.to_hex(),
            "{name} v{}",
            row.version
        );
        assert_eq!(
            py["changesDigest"],
            row.changes_digest.to_hex(),
            "{name} v{}",
            row.version
        );
        assert_eq!(
            py["stateDigest"],
            row.state_digest.to_hex(),
            "{name} v{}",
            row.version
        );
        assert_eq!(py["liveFiles"], row.live_files, "{name} v{}", row.version);

        // The reader view (docs/digests.md §10): the digest and each component must equal the
        // ones the signed statement carries.
        let statement = statement_of(row);
        let signed = &statement["predicate"]["delta"]["readerView"];
        assert_eq!(
            signed["algorithm"], "makoto-delta-reader-view/1",
            "{name} v{}: {signed}",
            row.version
        );
        // Components first, so that a disagreement names the part that differs.
        let expected = [
            ("filesRoot", &signed["files"]["root"]),
            ("filesCount", &signed["files"]["count"]),
            ("protocol", &signed["protocol"]["sha256"]),
            ("metadata", &signed["metadata"]["sha256"]),
            ("domainMetadata", &signed["domainMetadata"]["sha256"]),
            ("setTransactions", &signed["setTransactions"]["sha256"]),
            ("readerViewDigest", &signed["digest"]["sha256"]),
        ];
        for (component, signed_value) in expected {
            let computed = if component == "readerViewDigest" {
                &py[component]
            } else {
                &py["readerView"][component]
            };
            assert!(
                !signed_value.is_null(),
                "{name} v{}: the statement has no readerView {component}",
                row.version
            );
            assert_eq!(
                computed, signed_value,
                "{name} v{}: readerView {component}",
                row.version
            );
        }
    }
}

/// A table whose commits each carry hundreds of file actions (the attestor applies the state
/// tree and the reader view of such a commit on two threads): 300 adds, then 200 removes and
/// 300 adds (100 of them paths removed in the same commit, with new bytes), then 250 removes.
fn wide_commits_table(dir: &std::path::Path) -> PathBuf {
    let table = dir.join("wide-commits");
    std::fs::create_dir_all(table.join("_delta_log")).unwrap();
    let add = |i: usize, generation: usize| {
        let path = format!("part-{i:04}.parquet");
        let bytes = format!("file {i} generation {generation}");
        std::fs::write(table.join(&path), &bytes).unwrap();
        serde_json::json!({"add": {
            "path": path, "partitionValues": {}, "size": bytes.len(),
            "modificationTime": 1_700_000_000_000u64, "dataChange": true,
            "stats": format!("{{\"numRecords\":{}}}", i + 1),
        }})
    };
    let remove = |i: usize| {
        serde_json::json!({"remove": {
            "path": format!("part-{i:04}.parquet"), "deletionTimestamp": 1_700_000_000_001u64,
            "dataChange": true,
        }})
    };
    let schema =
        r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}"#;
    let mut v0 = vec![
        serde_json::json!({"commitInfo": {"timestamp": 1_700_000_000_000u64, "operation": "WRITE"}}),
        serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        serde_json::json!({"metaData": {
            "id": "00000000-0000-4000-8000-000000000001", "format": {"provider": "parquet", "options": {}},
            "schemaString": schema, "partitionColumns": [], "configuration": {},
            "createdTime": 1_700_000_000_000u64,
        }}),
    ];
    v0.extend((0..300).map(|i| add(i, 0)));
    let mut v1: Vec<Value> = (0..200).map(remove).collect();
    v1.extend((100..200).map(|i| add(i, 1)));
    v1.extend((300..500).map(|i| add(i, 1)));
    let v2: Vec<Value> = (200..450).map(remove).collect();
    for (version, actions) in [v0, v1, v2].into_iter().enumerate() {
        let lines: Vec<String> = actions.iter().map(Value::to_string).collect();
        std::fs::write(
            table.join(format!("_delta_log/{version:020}.json")),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }
    table
}

/// Canonical JSON numbers: the Rust canonicalizer and the Python reimplementation agree on the
/// values where JCS, ECMAScript formatting and the 64-bit integer rule are easy to get wrong.
#[test]
fn canonical_numbers_agree_with_the_python_reimplementation() {
    let py = std::env::var_os("MAKOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let input = r#"[0, -0.0, 1.0, 1.5, -5, 100.0, 0.1, 1e-7, 0.000001, 123.456, 1e20, 1e21, 5e-324,
        1.7976931348623157e308, 9007199254740993, 18446744073709551615, 18446744073709551616,
        -9223372036854775808, 198888884444488888888, {"b": [1, {"a": "é\u0001\n"}], "A": null}]"#;
    let value: Value = serde_json::from_str(input).unwrap();
    let rust = String::from_utf8(makoto_core::canonical::to_vec(&value)).unwrap();
    let script = format!(
        "import importlib.util, json, sys\n\
         spec = importlib.util.spec_from_file_location('r', {:?})\n\
         m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
         sys.stdout.write(m.canonical(json.loads(sys.stdin.read())))",
        repo_root()
            .join("scripts/recompute_digests.py")
            .to_str()
            .unwrap()
    );
    let mut child = Command::new(py)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), rust);
}
