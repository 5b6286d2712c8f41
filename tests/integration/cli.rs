//! The `makoto` binary's behavior: exit codes, output, key files.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Child-process entry: runs the CLI with the arguments in `MAKOTO_CLI_ARGS`, writing its
/// standard output to `MAKOTO_CHILD_OUT`, and exits with its status.
#[test]
#[ignore = "entry point of child processes started by the CLI tests, not a test by itself"]
fn child_entry() {
    let Ok(args) = std::env::var("MAKOTO_CLI_ARGS") else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let mut out = std::fs::File::create(std::env::var("MAKOTO_CHILD_OUT").unwrap()).unwrap();
    let code = makoto_cli::run_status(args, &mut out);
    std::process::exit(i32::from(code));
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn keygen_writes_0600_pkcs8_key_that_openssl_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("keys/prod");
    let out = makoto(&["keygen", prefix.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let key = tmp.path().join("keys/prod.key");
    let pubk = tmp.path().join("keys/prod.pub");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        !out.stdout.contains(key_pem.lines().nth(1).unwrap()),
        "the private key is never printed"
    );

    // The key id is the SHA-256 of the raw 32-byte public key: the last 32 bytes of the SPKI DER.
    let pub_pem = std::fs::read_to_string(&pubk).unwrap();
    let b64: String = pub_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(der.len(), 44);
    let keyid = sha256_hex(&der[12..]);
    assert!(
        out.stdout.contains(&format!("keyid {keyid}")),
        "{}",
        out.stdout
    );

    if openssl_available() {
        let derived = Command::new("openssl")
            .args(["pkey", "-in", key.to_str().unwrap(), "-pubout"])
            .output()
            .unwrap();
        assert!(
            derived.status.success(),
            "{}",
            String::from_utf8_lossy(&derived.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&derived.stdout),
            pub_pem,
            "openssl derives the same public key"
        );
    } else {
        eprintln!("openssl not found: skipping the openssl cross-check");
    }

    let again = makoto(&["keygen", prefix.to_str().unwrap()]);
    assert_eq!(again.code, Some(2));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        key_pem,
        "the existing key is untouched"
    );
}

#[test]
fn attest_json_summary_and_environment_fallbacks() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("k");
    let kg = makoto(&["keygen", prefix.to_str().unwrap(), "--json"]);
    let kg: Value = serde_json::from_str(&kg.stdout).unwrap();
    let table = repo_root().join("data/sample/sales");
    let wh = tmp.path().join("wh");
    let env = [
        ("MAKOTO_WAREHOUSE", wh.display().to_string()),
        ("MAKOTO_KEY", tmp.path().join("k.key").display().to_string()),
    ];
    let out = makoto_env(&["attest", table.to_str().unwrap(), "--json"], &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // Creating the warehouse is not an error, whatever delta-kernel logs while probing it.
    assert!(!out.stderr.contains("ERROR"), "{}", out.stderr);
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(s["attestedThrough"], 9);
    // Signed, but neither time-stamped nor naming an identity: L1 (docs/levels.md).
    assert_eq!(s["level"], "L1");
    assert_eq!(s["keyid"], kg["keyid"]);
    assert_eq!(s["attested"].as_array().unwrap().len(), 10);
    assert_eq!(
        s["attested"][0]["predicateType"],
        "https://makoto.dev/origin/v1"
    );

    let again = makoto_env(&["attest", table.to_str().unwrap(), "--json"], &env);
    assert_eq!(again.code, Some(0));
    let s: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(s["attested"], Value::Array(vec![]));
    assert_eq!(s["previouslyAttested"], 9);
}

#[test]
fn text_output_and_help() {
    let tmp = tempfile::tempdir().unwrap();
    let table = repo_root().join("data/sample/sales");
    let wh = tmp.path().join("wh");
    let out = makoto(&[
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--to-version",
        "3",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("attested 4 versions 0..=3"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("unsigned attestations (Makoto L1)"),
        "{}",
        out.stderr
    );
    let help = makoto(&["--help"]);
    assert_eq!(help.code, Some(0));
    for cmd in [
        "keygen",
        "attest",
        "verify",
        "prove",
        "verify-proof",
        "head",
        "demo",
    ] {
        assert!(help.stdout.contains(cmd), "{}", help.stdout);
    }
    let bad = makoto(&["attest"]);
    assert_eq!(bad.code, Some(2));
}

#[test]
fn demo_runs_twice_on_the_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let table = repo_root().join("data/sample/sales");
    let args = [
        "demo",
        "--table",
        table.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--json",
    ];
    let first = makoto(&args);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let v: Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(v["keyCreated"], true);
    assert_eq!(v["rowsVerified"], 10);
    let second = makoto(&args);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let v: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(v["keyCreated"], false);
    assert_eq!(v["summary"]["attested"], Value::Array(vec![]));
    assert_eq!(v["rowsVerified"], 10);
}

#[test]
fn documented_table_schemas_match_the_code() {
    for file in ["docs/attestation-table.md", "docs/sql.md"] {
        check_documented_schemas(file);
    }
}

fn check_documented_schemas(file: &str) {
    let doc = std::fs::read_to_string(repo_root().join(file)).unwrap();
    for (section, cols) in [
        (
            "## `system.makoto.attestations`",
            makoto_delta::store::attestation_columns(),
        ),
        (
            "## `system.makoto.files`",
            makoto_delta::store::file_columns(),
        ),
        (
            "## `system.makoto.verifications`",
            makoto_delta::store::verification_columns(),
        ),
        (
            "## `system.makoto.windows`",
            makoto_delta::store::window_columns(),
        ),
        (
            "## `system.makoto.runs`",
            makoto_delta::store::run_columns(),
        ),
    ] {
        let start = doc
            .find(section)
            .unwrap_or_else(|| panic!("{file}: {section} missing"));
        let body = &doc[start..];
        let table: Vec<&str> = body
            .lines()
            .skip_while(|l| !l.starts_with("| column"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let names: Vec<String> = table
            .iter()
            .map(|l| {
                l.split('|')
                    .nth(1)
                    .unwrap()
                    .trim()
                    .trim_matches('`')
                    .to_owned()
            })
            .collect();
        let expected: Vec<String> = cols.iter().map(|c| c.name.to_owned()).collect();
        assert_eq!(names, expected, "{file}: {section}");
        for (line, c) in table.iter().zip(&cols) {
            let nullable = line.split('|').nth(3).unwrap().trim();
            assert_eq!(nullable == "yes", c.nullable, "{}", c.name);
        }
    }
}

#[test]
fn every_finding_kind_is_documented() {
    let doc = std::fs::read_to_string(repo_root().join("docs/verification.md")).unwrap();
    for k in makoto_delta::FindingKind::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", k.code())),
            "{} is not in docs/verification.md",
            k.code()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_compacts_and_checkpoints_without_changing_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (key, public) = keyfiles(tmp.path());
    let (t, w) = (table.to_str().unwrap(), wh.to_str().unwrap());
    let out = makoto(&[
        "attest",
        t,
        "--warehouse",
        w,
        "--key",
        &key,
        "--batch-size",
        "1",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows_before = attestation_rows(&wh, &table).await;

    let out = makoto(&["maintain", "--warehouse", w, "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let tables = report["tables"].as_array().unwrap();
    let attestations = tables
        .iter()
        .find(|t| t["table"] == "attestations")
        .unwrap();
    assert!(
        attestations["filesBefore"].as_u64().unwrap() >= 10,
        "{report}"
    );
    assert_eq!(attestations["filesAfter"], 1, "{report}");
    let version = attestations["checkpointVersion"].as_u64().unwrap();
    let checkpoint = wh.join(format!(
        "system/makoto/attestations/_delta_log/{version:020}.checkpoint.parquet"
    ));
    assert!(checkpoint.exists(), "{}", checkpoint.display());

    // The same rows, and everything still verifies.
    let mut before: Vec<_> = rows_before
        .iter()
        .map(|r| (r.version, r.envelope.clone()))
        .collect();
    let mut after: Vec<_> = attestation_rows(&wh, &table)
        .await
        .iter()
        .map(|r| (r.version, r.envelope.clone()))
        .collect();
    before.sort();
    after.sort();
    assert_eq!(before, after);
    let verify = || {
        makoto(&[
            "verify",
            t,
            "--warehouse",
            w,
            "--trust",
            &public,
            "--no-record",
        ])
    };
    let out = verify();
    assert_eq!(out.code, Some(0), "{}", out.stdout);

    // An operator's retention lands on the tables that exist, once.
    let args = ["maintain", "--warehouse", w, "--retention", "10m", "--json"];
    let out = makoto(&args);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["retention"], "interval 600 seconds", "{report}");
    assert_eq!(
        report["retentionSetOn"],
        serde_json::json!(["attestations", "files"]),
        "{report}"
    );
    let out = makoto(&args);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["retentionSetOn"], serde_json::json!([]), "{report}");
    let newest_metadata = std::fs::read_dir(wh.join("system/makoto/files/_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            text.contains("\"metaData\"").then_some((p, text))
        })
        .max()
        .unwrap()
        .1;
    for property in [
        "delta.logRetentionDuration",
        "delta.deletedFileRetentionDuration",
    ] {
        assert!(
            newest_metadata.contains(&format!("\"{property}\":\"interval 600 seconds\"")),
            "{newest_metadata}"
        );
    }
    let out = verify();
    assert_eq!(out.code, Some(0), "{}", out.stdout);

    // A warehouse that does not exist is an error, and is not created.
    let missing = tmp.path().join("nowhere");
    let args = ["maintain", "--warehouse", missing.to_str().unwrap()];
    sole_error(&args, &makoto(&args));
    assert!(!missing.exists());
}
