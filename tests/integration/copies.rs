//! Verifying a copy: an evidence bucket, a restored backup, the same table under another URI.
//! The copy is checked as the table its attestations name (`--as`, or found by its Delta
//! table id), byte for byte, and a changed copy is caught like a changed original.

use std::path::Path;

use makoto_delta::identity::{self, Identity};
use makoto_delta::{
    AttestationStore, FindingKind, Location, SourceTable, StorageOptions, Verifier, VerifyOptions,
};

use crate::support::*;
use crate::verify::{attested_copy, trust};

async fn verify_copy(copy: &Path, wh: &Path) -> (makoto_delta::VerifyReport, Identity) {
    let storage = StorageOptions::default();
    let store = AttestationStore::open_existing(
        Location::existing(wh.to_str().unwrap()).unwrap(),
        storage.clone(),
    )
    .await
    .unwrap();
    let source = SourceTable::open(
        Location::existing(copy.to_str().unwrap()).unwrap(),
        &storage,
    )
    .unwrap();
    let (source, id) = identity::resolve(source, &store).await.unwrap();
    let report = Verifier::new(&source, &store, &trust(1), VerifyOptions::default())
        .run()
        .await
        .unwrap();
    (report, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_identical_copy_is_found_by_table_id_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let copy = tmp.path().join("evidence/sales-copy");
    copy_dir(&table, &copy);
    let (r, id) = verify_copy(&copy, &wh).await;
    assert!(
        matches!(&id, Identity::ByTableId { attested_uri, .. } if *attested_uri == table_uri(&table)),
        "{id:?}"
    );
    assert!(r.verified, "{:?}", r.findings);
    assert_eq!(r.table, table_uri(&table));
    assert_eq!(r.copy.as_deref(), Some(table_uri(&copy).as_str()));
    assert!(r.files_hashed > 0, "the copy's own bytes were hashed");

    // A changed byte in the copy is found in the copy.
    let data = crate::verify::add_paths(&copy, 9).pop().unwrap();
    let mut bytes = std::fs::read(copy.join(&data)).unwrap();
    bytes[100] ^= 1;
    std::fs::write(copy.join(&data), bytes).unwrap();
    let (r, _) = verify_copy(&copy, &wh).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileChanged
                && f.path.as_deref() == Some(data.as_str())),
        "{:?}",
        r.findings
    );
}

#[test]
fn verify_as_names_the_attested_table_and_ambiguity_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keyfiles(tmp.path());
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (t, w) = (table.to_str().unwrap(), wh.to_str().unwrap());
    assert_eq!(
        makoto(&["attest", t, "--warehouse", w, "--key", &key]).code,
        Some(0)
    );
    let copy = tmp.path().join("restore");
    copy_dir(&table, &copy);
    let c = copy.to_str().unwrap();
    let uri = table_uri(&table);
    let out = makoto(&[
        "verify",
        c,
        "--as",
        &uri,
        "--warehouse",
        w,
        "--trust",
        &public,
    ]);
    assert_eq!(out.code, Some(0), "{} {}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("VERIFIED {uri} (read from the copy")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("covered: version 9 rebuilt and compared"),
        "{}",
        out.stdout
    );

    // The same table id attested under a second URI: a third copy must be told which one.
    assert_eq!(
        makoto(&["attest", c, "--warehouse", w, "--key", &key]).code,
        Some(0)
    );
    let third = tmp.path().join("third");
    copy_dir(&table, &third);
    let out = makoto(&[
        "verify",
        third.to_str().unwrap(),
        "--warehouse",
        w,
        "--trust",
        &public,
    ]);
    assert_eq!(out.code, Some(2), "{} {}", out.stdout, out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].contains("--as") && errors[0].contains(&uri),
        "{}",
        errors[0]
    );
    let out = makoto(&[
        "check",
        third.to_str().unwrap(),
        "--as",
        &uri,
        "--warehouse",
        w,
        "--trust",
        &public,
        "--min-level",
        "1",
    ]);
    assert_eq!(out.code, Some(0), "{} {}", out.stdout, out.stderr);

    // A proof taken from the copy names the attested table and verifies.
    let file = crate::verify::add_paths(&third, 9).pop().unwrap();
    let proof = tmp.path().join("file.proof");
    let t3 = third.to_str().unwrap();
    let out = makoto(&[
        "prove",
        t3,
        "--as",
        &uri,
        "--file",
        &file,
        "--version",
        "9",
        "--warehouse",
        w,
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{} {}", out.stdout, out.stderr);
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    assert_eq!(p["table"], uri.as_str());
    let out = makoto(&["verify-proof", proof.to_str().unwrap(), "--trust", &public]);
    assert_eq!(out.code, Some(0), "{} {}", out.stdout, out.stderr);
    // Without --as the copy's table id is ambiguous here, and prove says so.
    let out = makoto(&[
        "prove",
        t3,
        "--file",
        &file,
        "--version",
        "9",
        "--warehouse",
        w,
    ]);
    assert_eq!(out.code, Some(2), "{} {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("--as"), "{}", out.stderr);
}
