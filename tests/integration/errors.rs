//! Bad input: a clear one-line error naming the thing, exit code 2, nothing written.

use crate::support::*;

fn sample_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let t = dir.join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &t);
    t
}

fn attest_cli(table: &std::path::Path, wh: &std::path::Path, extra: &[&str]) -> ChildOutput {
    let mut args = vec![
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    makoto(&args)
}

fn assert_one_line_error(out: &ChildOutput, needles: &[&str]) {
    assert_eq!(out.code, Some(2), "exit code; stderr: {}", out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {}", out.stderr);
    for n in needles {
        assert!(errors[0].contains(n), "{n:?} not in {:?}", errors[0]);
    }
}

async fn rows_for(wh: &std::path::Path, table: &std::path::Path) -> usize {
    if !wh.join("system/makoto/attestations/_delta_log").exists() {
        return 0;
    }
    attestation_rows(wh, table).await.len()
}

fn add_paths(table: &std::path::Path, version: u64) -> Vec<String> {
    let text =
        std::fs::read_to_string(table.join(format!("_delta_log/{version:020}.json"))).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["add"]["path"].as_str().map(percent_decode))
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_delta_table() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let wh = tmp.path().join("wh");
    let out = attest_cli(&empty, &wh, &[]);
    assert_one_line_error(&out, &["empty", "is not a Delta table"]);
    assert_eq!(rows_for(&wh, &empty).await, 0);

    let missing = tmp.path().join("nope");
    let out = attest_cli(&missing, &wh, &[]);
    assert_one_line_error(&out, &["nope", "does not exist"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_commit_names_version_and_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    // Attest up to v2, then corrupt v5: the run fails and the store keeps exactly v0..v2.
    assert_eq!(
        attest_cli(&table, &wh, &["--to-version", "2"]).code,
        Some(0)
    );
    let c5 = table.join("_delta_log/00000000000000000005.json");
    let mut text = std::fs::read_to_string(&c5).unwrap();
    text.push_str("{\"add\": {\"path\": \n");
    std::fs::write(&c5, text).unwrap();
    let out = attest_cli(&table, &wh, &[]);
    let line = std::fs::read_to_string(&c5)
        .unwrap()
        .lines()
        .count()
        .to_string();
    assert_one_line_error(&out, &["version 5", &format!("line {line}")]);
    assert_eq!(rows_for(&wh, &table).await, 3);
    let files_rows = file_rows(&wh, &table).await;
    assert!(
        files_rows.iter().all(|f| f.version <= 2),
        "no file rows past v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_commit_is_a_log_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    std::fs::remove_file(table.join("_delta_log/00000000000000000004.json")).unwrap();
    let out = attest_cli(&table, &wh, &[]);
    assert_one_line_error(&out, &["version 4 is missing"]);
    assert_eq!(rows_for(&wh, &table).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_file_vacuumed_before_attestation_is_recorded_as_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    // The file written at v1 is rewritten by the DELETE at v3; deleting it simulates VACUUM.
    let path = add_paths(&table, 1).pop().unwrap();
    std::fs::remove_file(table.join(&path)).unwrap();
    let out = attest_cli(&table, &wh, &["--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let by_version = |v: u64| {
        summary["attested"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["version"] == v)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_version(1)["dataAvailability"], "unavailable");
    assert_eq!(by_version(1)["unavailableFiles"], serde_json::json!([path]));
    // Live at v1 and v2, removed at v3: those versions cannot be rechecked, later ones can.
    assert_eq!(by_version(2)["dataAvailability"], "unavailable");
    assert_eq!(by_version(3)["dataAvailability"], "complete");
    assert_eq!(by_version(0)["dataAvailability"], "complete");
    let rows = attestation_rows(&wh, &table).await;
    assert_eq!(rows.len(), 10, "every version is attested");
    let files = file_rows(&wh, &table).await;
    let add = files
        .iter()
        .find(|f| f.version == 1 && f.path == path)
        .unwrap();
    assert_eq!(add.sha256, None, "no digest for bytes that were gone");
    let logged: Vec<serde_json::Value> =
        std::fs::read_to_string(table.join(format!("_delta_log/{:020}.json", 1)))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
    let size = logged
        .iter()
        .find(|v| v["add"]["path"].as_str().map(percent_decode).as_ref() == Some(&path))
        .and_then(|v| v["add"]["size"].as_u64())
        .unwrap();
    assert_eq!(add.size, Some(size), "the log's facts are still attested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_live_data_file_is_not_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    // The file OPTIMIZE writes at v9 is live at the end of the log.
    let path = add_paths(&table, 9).pop().unwrap();
    std::fs::remove_file(table.join(&path)).unwrap();
    let out = attest_cli(&table, &wh, &[]);
    assert_one_line_error(
        &out,
        &["version 9", &path, "deleted while still part of the table"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_data_file_is_a_size_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    let path = add_paths(&table, 2).pop().unwrap();
    let bytes = std::fs::read(table.join(&path)).unwrap();
    std::fs::write(table.join(&path), &bytes[..bytes.len() - 10]).unwrap();
    let out = attest_cli(&table, &wh, &[]);
    assert_one_line_error(
        &out,
        &[
            "version 2",
            &path,
            &format!(
                "{} bytes but the log says {}",
                bytes.len() - 10,
                bytes.len()
            ),
        ],
    );
    assert_eq!(rows_for(&wh, &table).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_reader_feature_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table("catalog-owned-preview", tmp.path());
    let wh = tmp.path().join("wh");
    let out = attest_cli(&table, &wh, &[]);
    assert_one_line_error(&out, &["version 0", "catalogManaged"]);
    assert_eq!(rows_for(&wh, &table).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_beyond_the_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let table = repo_root().join("data/sample/sales");
    let wh = tmp.path().join("wh");
    let out = attest_cli(&table, &wh, &["--to-version", "99"]);
    assert_one_line_error(&out, &["version 99 does not exist (latest is 9)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_refused_without_leaking_them() {
    let tmp = tempfile::tempdir().unwrap();
    let table = repo_root().join("data/sample/sales");
    let wh = tmp.path().join("wh");

    let missing = tmp.path().join("absent.key");
    let out = attest_cli(&table, &wh, &["--key", missing.to_str().unwrap()]);
    assert_one_line_error(&out, &["absent.key", "cannot read"]);

    let prefix = tmp.path().join("k");
    assert_eq!(makoto(&["keygen", prefix.to_str().unwrap()]).code, Some(0));
    let pubk = tmp.path().join("k.pub");
    let out = attest_cli(&table, &wh, &["--key", pubk.to_str().unwrap()]);
    assert_one_line_error(
        &out,
        &[
            "k.pub",
            "not an unencrypted Ed25519 or ECDSA P-256 PKCS#8 PEM private key",
        ],
    );

    let junk = tmp.path().join("junk.key");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUTUFURVJJQUxTRUNSRVQ=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = attest_cli(&table, &wh, &["--key", junk.to_str().unwrap()]);
    assert_one_line_error(&out, &["junk.key"]);
    assert!(
        !out.stderr.contains("U0VDUkVU"),
        "key material leaked: {}",
        out.stderr
    );

    // A real key with loose permissions works but is warned about.
    let key = tmp.path().join("k.key");
    let mut perm = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    std::fs::set_permissions(&key, perm).unwrap();
    let out = attest_cli(
        &table,
        &wh,
        &["--key", key.to_str().unwrap(), "--to-version", "0"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("readable by group or others"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(
            std::fs::read_to_string(&key)
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
        )
    );
    assert_eq!(rows_for(&wh, &table).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_log_under_existing_attestations_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    assert_eq!(
        attest_cli(&table, &wh, &["--to-version", "5"]).code,
        Some(0)
    );
    // Rewrite the attested commit 5 (same actions, different bytes).
    let c5 = table.join("_delta_log/00000000000000000005.json");
    let text = std::fs::read_to_string(&c5).unwrap();
    std::fs::write(&c5, text.replace("\n", "\n\n")).unwrap();
    let out = attest_cli(&table, &wh, &[]);
    assert_one_line_error(&out, &["version 5", "not the one attested"]);
    assert_eq!(rows_for(&wh, &table).await, 6);

    // A table replaced by a shorter history under the same URI.
    let other = tmp.path().join("other");
    copy_dir(&repo_root().join("data/sample/sales"), &other);
    for v in 3..=9 {
        std::fs::remove_file(other.join(format!("_delta_log/{v:020}.json"))).unwrap();
    }
    std::fs::remove_dir_all(&table).unwrap();
    std::fs::rename(&other, &table).unwrap();
    let out = attest_cli(&table, &wh, &[]);
    assert_one_line_error(
        &out,
        &["version 5 is attested but the log ends at version 2"],
    );
}

/// Commands that only read never create a warehouse: pointed at an empty directory (or a
/// path that does not exist) they exit 2 naming it, and leave nothing behind.
#[test]
fn read_only_commands_do_not_create_a_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keyfiles(tmp.path());
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let t = table.to_str().unwrap();
    for missing in [tmp.path().join("empty-wh"), tmp.path().join("no-such-wh")] {
        if missing.ends_with("empty-wh") {
            std::fs::create_dir(&missing).unwrap();
        }
        let w = missing.to_str().unwrap();
        for args in read_only_runs(t, w, &key, &public, "x.parquet", "1") {
            let out = makoto(&args);
            let error = sole_error(&args, &out);
            let uri = url::Url::from_directory_path(&missing).unwrap();
            let uri = uri.as_str().trim_end_matches('/');
            assert!(
                error.contains(w) || error.contains(uri),
                "{args:?}: {error}"
            );
            if missing.exists() {
                assert_eq!(
                    std::fs::read_dir(&missing).unwrap().count(),
                    0,
                    "{args:?} wrote into {w}"
                );
            }
        }
        assert!(missing.ends_with("empty-wh") || !missing.exists());
    }
}

/// Arguments parsed into library types by clap: a malformed one is a usage error (exit 2)
/// naming the option and the expected form, and nothing is written.
#[rstest::rstest]
#[case::record(&["prove", "TABLE", "--warehouse", "WH", "--record", "12"], &["--record", "VERSION:INDEX"])]
#[case::windows(&["attest", "TABLE", "--warehouse", "WH", "--windows", "rows=3"], &["--windows", "records=N"])]
#[case::retention(&["maintain", "--warehouse", "WH", "--retention", "30s"], &["--retention", "at least 1m"])]
#[case::sql_table(&["sql", "--warehouse", "WH", "--table", "no-equals", "SELECT 1"], &["--table", "NAME=URI"])]
#[case::transform_pinned(&["transform", "--sql", "SELECT * FROM s", "--input", "s=TABLE@v1", "--output", "WH/out", "--warehouse", "WH", "--key", "KEY"], &["s", "drop the @v suffix"])]
fn malformed_typed_arguments_are_usage_errors(#[case] args: &[&str], #[case] needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keyfiles(tmp.path());
    let table = sample_copy(tmp.path());
    let wh = tmp.path().join("wh");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("TABLE", table.to_str().unwrap())
                .replace("WH", wh.to_str().unwrap())
                .replace("KEY", &key)
        })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = makoto(&refs);
    assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    for n in needles {
        assert!(out.stderr.contains(n), "{args:?}: {}", out.stderr);
    }
    assert!(!wh.exists(), "{args:?} wrote {}", wh.display());
}
