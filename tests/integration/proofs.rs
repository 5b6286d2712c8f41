//! Portable proofs, signed heads and anchoring, records and `--since-last`.

use std::sync::Arc;

use makoto_core::head::{HeadEntry, verify_head};
use makoto_core::keys::Signer;
use makoto_core::proof::FileProof;
use makoto_core::verify::TrustedKeys;
use makoto_delta::verify::RecordSigner;
use makoto_delta::{FindingKind, VerifyMode, VerifyOptions};

use crate::support::*;
use crate::verify::{attested_copy, trust, verify_with};

async fn store_of(wh: &std::path::Path) -> makoto_delta::AttestationStore {
    store(wh).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_verifies_offline_and_any_changed_byte_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("basic-dv-with-checkpoint", tmp.path()).await;
    let rows = attestation_rows(&wh, &table).await;
    let files = file_rows(&wh, &table).await;
    // A file live at version 30 with a deletion vector.
    let live30 = files
        .iter()
        .rfind(|f| f.version <= 30 && f.action == "add" && f.dv_unique_id.is_some())
        .unwrap();
    let store = store_of(&wh).await;
    let proof = makoto_delta::proof::prove(&store, &table_uri(&table), &live30.path, 30)
        .await
        .unwrap();
    let bytes = proof.to_json_bytes().unwrap();
    let parsed = FileProof::from_json_bytes(&bytes).unwrap();
    let ok = parsed.verify(&trust(1)).unwrap();
    assert_eq!(ok.value().file.path(), live30.path);
    assert_eq!(ok.value().state_digest, rows[30].state_digest);
    assert_eq!(
        ok.value().file.sha256().unwrap().to_hex(),
        sha256_hex(&std::fs::read(table.join(&live30.path)).unwrap())
    );
    // Untrusted key: fails.
    assert!(parsed.verify(&trust(2)).is_err());
    // Every single changed byte makes it fail.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        let r = FileProof::from_json_bytes(&b).and_then(|p| p.verify(&trust(1)));
        assert!(
            r.is_err(),
            "byte {i} ({:?}) changed and the proof still verified",
            bytes[i] as char
        );
    }
    // A file that is not live at the version has no proof.
    let err = makoto_delta::proof::prove(&store, &table_uri(&table), "part-nope.parquet", 30)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a live file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prove_and_verify_proof_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let pubk = tmp.path().join("k.pub");
    std::fs::write(&pubk, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    let path = file_rows(&wh, &table)
        .await
        .into_iter()
        .rfind(|f| f.action == "add")
        .unwrap()
        .path;
    let proof = tmp.path().join("p.json");
    let (t, w, p, pr) = (table.clone(), wh.clone(), path.clone(), proof.clone());
    let out = tokio::task::spawn_blocking(move || {
        makoto(&[
            "prove",
            t.to_str().unwrap(),
            "--warehouse",
            w.to_str().unwrap(),
            "--version",
            "9",
            "--file",
            &p,
            "--out",
            pr.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let check = |proof: std::path::PathBuf, pubk: std::path::PathBuf| {
        makoto(&[
            "verify-proof",
            proof.to_str().unwrap(),
            "--trust",
            pubk.to_str().unwrap(),
        ])
    };
    let ok = tokio::task::spawn_blocking({
        let (a, b) = (proof.clone(), pubk.clone());
        move || check(a, b)
    })
    .await
    .unwrap();
    assert_eq!(ok.code, Some(0), "{} {}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("PROOF VERIFIED") && ok.stdout.contains(&path));
    let mut b = std::fs::read(&proof).unwrap();
    let i = b.len() / 2;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&proof, b).unwrap();
    let bad = tokio::task::spawn_blocking(move || check(proof, pubk))
        .await
        .unwrap();
    assert_eq!(bad.code, Some(1), "{}", bad.stdout);
    assert!(bad.stdout.contains("PROOF DOES NOT VERIFY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchored_head_detects_truncation_and_rewrites() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let store = store_of(&wh).await;
    let (env, entries) = makoto_delta::head::sign_current_head(&store, key(1).as_ref())
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].version, 9);
    let head = verify_head(env.to_json().as_bytes(), &trust(1)).unwrap();
    assert!(
        verify_head(env.to_json().as_bytes(), &trust(2)).is_err(),
        "a head needs a trusted key"
    );
    let entry: HeadEntry = head.value()[0].clone();
    let anchored = |e: HeadEntry| VerifyOptions {
        anchor: Some(e),
        mode: VerifyMode::LogOnly,
        ..VerifyOptions::default()
    };
    let r = verify_with(&table, &wh, &trust(1), anchored(entry.clone())).await;
    assert!(r.verified && r.findings.is_empty());

    // Someone with write access deletes the newest rows: the chain alone cannot tell, the
    // anchor can.
    let t = {
        let url = url::Url::from_directory_path(
            std::fs::canonicalize(wh.join("system/makoto/attestations")).unwrap(),
        )
        .unwrap();
        let mut t = deltalake::DeltaTableBuilder::from_url(url)
            .unwrap()
            .build()
            .unwrap();
        t.load().await.unwrap();
        t.set_tbl_properties()
            .with_properties(std::collections::HashMap::from([(
                "delta.appendOnly".to_owned(),
                "false".to_owned(),
            )]))
            .await
            .unwrap()
    };
    t.delete()
        .with_predicate("version >= 8".to_owned())
        .await
        .unwrap();
    // Make the log agree (drop the last commits) so only the anchor can notice.
    for v in 8..=9 {
        std::fs::remove_file(table.join(format!("_delta_log/{v:020}.json"))).unwrap();
    }
    std::fs::remove_file(table.join("_delta_log/00000000000000000008.checkpoint.parquet")).unwrap();
    let _ = std::fs::remove_file(table.join("_delta_log/_last_checkpoint"));
    let plain = verify_with(
        &table,
        &wh,
        &trust(1),
        VerifyOptions {
            mode: VerifyMode::LogOnly,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(
        plain.verified,
        "without the anchor the truncated history is self-consistent"
    );
    let r = verify_with(&table, &wh, &trust(1), anchored(entry.clone())).await;
    assert!(!r.verified);
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::AttestationsTruncated && f.version == Some(9)),
        "{:?}",
        r.findings
    );

    // An anchor recording another attestation for a version that exists: mismatch.
    let other = HeadEntry {
        version: 5,
        attestation_digest: makoto_core::Sha256Digest::of(b"other"),
        ..entry
    };
    let r = verify_with(&table, &wh, &trust(1), anchored(other)).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::AnchorMismatch && f.version == Some(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_last_checks_only_new_versions_and_records_are_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    let wh = tmp.path().join("wh");
    let mut t = makoto_testkit::SampleTable::create(&table).await.unwrap();
    for i in 0..5 {
        t.append(makoto_testkit::rows(i * 10..i * 10 + 10, "emea").unwrap())
            .await
            .unwrap();
    }
    Run::new(&table, &wh).run().await.unwrap();
    // The verifier has its own key, trusted for records.
    let verifier_key = key(7);
    let both = TrustedKeys::new(vec![
        key(1).public_key().clone(),
        verifier_key.public_key().clone(),
    ]);
    let signed = || {
        Some(RecordSigner::Signed(
            Arc::clone(&verifier_key) as Arc<dyn Signer>
        ))
    };
    let full = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            record: signed(),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(full.verified && full.recorded && full.since.is_none());
    assert_eq!(full.commits_checked, 6);

    // Two new commits, attested.
    t.append(makoto_testkit::rows(100..110, "amer").unwrap())
        .await
        .unwrap();
    t.delete("id < 5").await.unwrap();
    Run::new(&table, &wh).run().await.unwrap();
    let inc = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            since_last: true,
            record: signed(),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(inc.verified, "{:?}", inc.findings);
    assert_eq!(inc.since, Some(5));
    assert_eq!(inc.commits_checked, 2, "only the new versions are replayed");
    assert!(
        inc.files_hashed <= 3,
        "only files added since are rehashed ({})",
        inc.files_hashed
    );

    // --since-last trusts what the recorded verification covered: a file of version 7 changed
    // afterwards is not re-read by it, only by a full verification.
    let old = file_rows(&wh, &table)
        .await
        .into_iter()
        .rfind(|f| f.action == "add")
        .unwrap();
    let mut b = std::fs::read(table.join(&old.path)).unwrap();
    b[10] ^= 1;
    std::fs::write(table.join(&old.path), &b).unwrap();
    let r = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            since_last: true,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(r.verified && r.since == Some(7) && r.commits_checked == 0);
    let r = verify_with(&table, &wh, &both, VerifyOptions::default()).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileChanged
                && f.path.as_deref() == Some(old.path.as_str()))
    );
    b[10] ^= 1;
    std::fs::write(table.join(&old.path), &b).unwrap();

    // A tamper in a version newer than the record is found by --since-last.
    t.append(makoto_testkit::rows(200..210, "apac").unwrap())
        .await
        .unwrap();
    Run::new(&table, &wh).run().await.unwrap();
    let newest = file_rows(&wh, &table)
        .await
        .into_iter()
        .rfind(|f| f.action == "add")
        .unwrap();
    assert_eq!(newest.version, 8);
    let mut b = std::fs::read(table.join(&newest.path)).unwrap();
    b[10] ^= 1;
    std::fs::write(table.join(&newest.path), b).unwrap();
    let r = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            since_last: true,
            record: signed(),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(
        r.since,
        Some(7),
        "continues from the last verified version (7)"
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileChanged
                && f.path.as_deref() == Some(newest.path.as_str())),
        "{:?}",
        r.findings
    );

    // Unsigned records, or records by a key that is not trusted, are not used.
    let tmp2 = tempfile::tempdir().unwrap();
    let (t2, wh2) = attested_copy("sample", tmp2.path()).await;
    let unsigned = verify_with(
        &t2,
        &wh2,
        &trust(1),
        VerifyOptions {
            record: Some(RecordSigner::Unsigned),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(unsigned.recorded);
    let again = verify_with(
        &t2,
        &wh2,
        &trust(1),
        VerifyOptions {
            since_last: true,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(again.since, None, "an unsigned record is not a base");
    assert_eq!(again.commits_checked, 10);

    // The records are in system.makoto.verifications, readable as a Delta table.
    let rows = store_of(&wh)
        .await
        .verification_rows(&table_uri(&table))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "the runs without a record option wrote none");
    assert_eq!(rows.iter().filter(|r| r.result == "verified").count(), 2);
    assert_eq!(rows.iter().filter(|r| r.result == "findings").count(), 1);
    assert!(
        rows.iter()
            .all(|r| r.keyid.as_deref() == Some(verifier_key.keyid().as_str()))
    );
}
