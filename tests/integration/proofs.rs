//! Portable proofs (genuine, doctored, reformatted and unreadable file and record proofs),
//! signed heads and anchoring, records and `--since-last`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use makoto_core::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use makoto_core::head::{HeadEntry, verify_head};
use makoto_core::keys::Signer;
use makoto_core::proof::FileProof;
use makoto_core::verify::TrustedKeys;
use makoto_core::window::RecordPos;
use makoto_delta::verify::RecordSigner;
use makoto_delta::{FindingKind, Location, SourceTable, StorageOptions, VerifyMode, VerifyOptions};
use rstest::rstest;
use serde_json::{Value, json};

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
        .rfind(|f| f.version <= 30 && f.action.as_str() == "add" && f.dv_unique_id.is_some())
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
        .rfind(|f| f.action.as_str() == "add")
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
    let (env, entries) = makoto_delta::head::sign_current_head(&store, key(1).as_ref(), None)
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
    // Only a head that verifies under a trusted key can anchor a verification.
    let anchored = |e: HeadEntry| {
        let env = makoto_core::head::sign_head(
            "wh",
            chrono::Utc::now(),
            std::slice::from_ref(&e),
            key(1).as_ref(),
        )
        .unwrap();
        let head = verify_head(env.to_json().as_bytes(), &trust(1)).unwrap();
        VerifyOptions {
            anchor: Some(makoto_core::head::head_entry(head, &e.table).unwrap()),
            mode: VerifyMode::LogOnly,
            ..VerifyOptions::default()
        }
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

/// A sample table of `appends` appends, attested by `key(1)`, and the keys a verifier trusts:
/// the attestor's and its own (`key(7)`), which signs its records.
struct SinceLast {
    _tmp: tempfile::TempDir,
    table: std::path::PathBuf,
    wh: std::path::PathBuf,
    t: makoto_testkit::SampleTable,
    verifier_key: Arc<makoto_core::keys::SigningKeyPair>,
    both: TrustedKeys,
}

async fn attested_for_since_last(appends: i64) -> SinceLast {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    let wh = tmp.path().join("wh");
    let mut t = makoto_testkit::SampleTable::create(&table).await.unwrap();
    for i in 0..appends {
        t.append(makoto_testkit::rows(i * 10..i * 10 + 10, "emea").unwrap())
            .await
            .unwrap();
    }
    Run::new(&table, &wh).run().await.unwrap();
    let verifier_key = key(7);
    let both = TrustedKeys::new(vec![
        key(1).public_key().clone(),
        verifier_key.public_key().clone(),
    ]);
    SinceLast {
        _tmp: tmp,
        table,
        wh,
        t,
        verifier_key,
        both,
    }
}

/// `--since-last` continues from a recorded verification only while the attestation it
/// verified is still in the table: its signed payload, not the row's `attestation_digest`
/// column, which an edit of the envelope leaves as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_last_finds_the_verified_attestation_replaced() {
    let SinceLast {
        _tmp,
        table,
        wh,
        verifier_key,
        both,
        ..
    } = attested_for_since_last(3).await;
    let full = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            record: Some(RecordSigner::Signed(verifier_key as Arc<dyn Signer>)),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(full.verified && full.recorded, "{:?}", full.findings);
    let since = VerifyOptions {
        since_last: true,
        ..VerifyOptions::default()
    };
    let untouched = verify_with(&table, &wh, &both, since.clone()).await;
    assert!(untouched.verified && untouched.since == Some(3));

    crate::verify::update_rows(&wh, "attestations", "version = 3", "envelope", "'{}'").await;
    let r = verify_with(&table, &wh, &both, since).await;
    assert!(!r.verified);
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::AttestationAltered
                && f.version == Some(3)
                && f.detail.contains("no longer in the attestation table")),
        "{:?}",
        r.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_last_checks_only_new_versions_and_records_are_signed() {
    let SinceLast {
        _tmp,
        table,
        wh,
        mut t,
        verifier_key,
        both,
    } = attested_for_since_last(5).await;
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
        .rfind(|f| f.action.as_str() == "add")
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
        .rfind(|f| f.action.as_str() == "add")
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
            .all(|r| r.keyid.as_ref().map(|k| k.as_str()) == Some(verifier_key.keyid().as_str()))
    );
}

// ---------------------------------------------------------------------------------------------
// Doctored proofs: `makoto verify-proof` accepts exactly the genuine proofs `makoto prove`
// writes. Exit 0 genuine, 1 doctored (whatever member was changed), 2 not JSON at all.

/// A genuine proof file edited as a JSON value, then written back canonically (as makoto
/// writes proofs), so that only the edit differs.
type Edit = fn(&mut Value, &Stream);

fn canonical_file(v: &Value) -> Vec<u8> {
    let mut b = makoto_core::canonical::to_vec(v);
    b.push(b'\n');
    b
}

fn rename(v: &mut Value, from: &str, to: &str) {
    let o = v.as_object_mut().unwrap();
    let x = o.remove(from).unwrap();
    o.insert(to.to_owned(), x);
}

/// `makoto verify-proof` on `bytes` with the PEM `pem` (or a trust file) as `--trust`.
fn verify_proof(bytes: &[u8], trust: &str) -> ChildOutput {
    let tmp = tempfile::tempdir().unwrap();
    let proof = tmp.path().join("proof.json");
    let trust_file = tmp.path().join("trust");
    std::fs::write(&proof, bytes).unwrap();
    std::fs::write(&trust_file, trust).unwrap();
    makoto(&[
        "verify-proof",
        proof.to_str().unwrap(),
        "--trust",
        trust_file.to_str().unwrap(),
    ])
}

fn assert_fails(out: &ChildOutput, reason: &str) {
    assert_eq!(
        out.code,
        Some(1),
        "stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.starts_with("PROOF DOES NOT VERIFY: ") && out.stdout.contains(reason),
        "{reason:?} not in {}",
        out.stdout
    );
}

/// The stream table of windows.rs (appends v1, v2, v3, a delete at v4, an append at v5; 10
/// records each) attested with key 1 and windowed `records=7`: window 1 holds 1:0..=1:6,
/// 2 holds 1:7..=2:3, 3 holds 2:4..=3:0, 4 holds 3:1..=3:7, 5 holds 3:8..=5:4.
struct Stream {
    pem: String,
    /// Genuine record proofs by `version:index`, as `makoto prove` writes them.
    proofs: BTreeMap<&'static str, Vec<u8>>,
    /// The envelope (JSON) of each window, 1 to 5, re-signed with key 1 as the
    /// `formatVersion` 1 statement an older makoto wrote (no `commits`).
    format_1_envelopes: Vec<Value>,
}

impl Stream {
    fn proof(&self, at: &str) -> Value {
        serde_json::from_slice(&self.proofs[at]).unwrap()
    }
}

static STREAM: OnceLock<Stream> = OnceLock::new();

fn stream() -> &'static Stream {
    STREAM.get_or_init(|| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(build_stream())
    })
}

async fn build_stream() -> Stream {
    let tmp = tempfile::tempdir().unwrap();
    let table = crate::windows::stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let storage = StorageOptions::default();
    let source = SourceTable::open(
        Location::existing(table.to_str().unwrap()).unwrap(),
        &storage,
    )
    .unwrap();
    let store = store_of(&wh).await;
    let table_id = attestation_rows(&wh, &table).await[0].table_id.clone();
    let signer = key(1);
    let summary = makoto_delta::windows::attest_windows(
        &source,
        &store,
        Some(signer.as_ref() as &dyn Signer),
        "records=7".parse().unwrap(),
        5,
        &table_id,
        "test",
        None,
    )
    .await
    .unwrap();
    assert_eq!(summary.closed.len(), 5);
    let mut proofs = BTreeMap::new();
    for at in ["1:3", "2:4", "2:5", "3:0", "3:4", "5:0"] {
        let (v, i) = at.split_once(':').unwrap();
        let p = makoto_delta::windows::prove_record(
            &source,
            &store,
            RecordPos {
                version: v.parse().unwrap(),
                index: i.parse().unwrap(),
            },
        )
        .await
        .unwrap();
        let mut b = p.to_json_bytes().unwrap();
        b.push(b'\n');
        proofs.insert(at, b);
    }
    let format_1_envelopes = store
        .window_rows(&table_uri(&table))
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(&format_1_envelope(&row.envelope).to_json()).unwrap())
        .collect();
    Stream {
        pem: signer.public_key().to_spki_pem().unwrap(),
        proofs,
        format_1_envelopes,
    }
}

/// A window's envelope re-signed with key 1 as the `formatVersion` 1 statement an older makoto
/// wrote: the same statement without `commits`.
fn format_1_envelope(envelope: &str) -> Envelope {
    let env = Envelope::from_json(envelope.as_bytes()).unwrap();
    let mut st: Value = serde_json::from_slice(env.payload()).unwrap();
    let d = st["predicate"]["delta"].as_object_mut().unwrap();
    assert_eq!(d["formatVersion"], 2);
    d.insert("formatVersion".into(), json!(1));
    d.remove("commits").unwrap();
    Envelope::sign(
        IN_TOTO_PAYLOAD_TYPE,
        makoto_core::canonical::to_vec(&st),
        key(1).as_ref(),
    )
    .unwrap()
}

/// A warehouse whose windows were signed in `formatVersion` 1: `makoto verify` still checks
/// them, and `makoto prove --record` proves only the records format 1 pins (its first and last
/// record, any record of a window of one commit); for the others it exits 2 and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_of_format_1_still_verify_and_prove_only_what_they_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let table = crate::windows::stream_table(tmp.path()).await;
    let uri = table_uri(&table);
    let (scratch, wh) = (tmp.path().join("scratch"), tmp.path().join("wh"));
    Run::new(&table, &scratch).run().await.unwrap();
    Run::new(&table, &wh).run().await.unwrap();
    let table_id = attestation_rows(&wh, &table).await[0].table_id.clone();
    let storage = StorageOptions::default();
    let source = SourceTable::open(
        Location::existing(table.to_str().unwrap()).unwrap(),
        &storage,
    )
    .unwrap();
    let scratch_store = store_of(&scratch).await;
    makoto_delta::windows::attest_windows(
        &source,
        &scratch_store,
        Some(key(1).as_ref() as &dyn Signer),
        "records=7".parse().unwrap(),
        5,
        &table_id,
        "test",
        None,
    )
    .await
    .unwrap();
    // The same windows, as an older makoto signed them, in the warehouse that is checked.
    let rows: Vec<makoto_delta::WindowRow> = scratch_store
        .window_rows(&uri)
        .await
        .unwrap()
        .into_iter()
        .map(|mut row| {
            let env = format_1_envelope(&row.envelope);
            row.attestation_digest = makoto_core::Sha256Digest::of(env.payload());
            row.envelope = env.to_json();
            row
        })
        .collect();
    assert_eq!(rows.len(), 5);
    let store = store_of(&wh).await;
    let windows = store.load_windows().await.unwrap();
    store
        .append_windows(windows, &rows, &uri, "records=7", 5, "test")
        .await
        .unwrap();
    let pubk = tmp.path().join("k.pub");
    std::fs::write(&pubk, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    let (t, w, k) = (
        table.to_str().unwrap().to_owned(),
        wh.to_str().unwrap().to_owned(),
        pubk.to_str().unwrap().to_owned(),
    );
    let dir = tmp.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let report = makoto(&[
            "verify",
            &t,
            "--warehouse",
            &w,
            "--trust",
            &k,
            "--no-record",
            "--json",
        ]);
        let report: Value = serde_json::from_str(&report.stdout).unwrap();
        assert_eq!(report["outcome"], "verified", "{report}");
        assert_eq!(report["windowsChecked"], 5);
        let proof = dir.join("r.json");
        let prove = |at: &str| {
            makoto(&[
                "prove",
                &t,
                "--warehouse",
                &w,
                "--record",
                at,
                "--out",
                proof.to_str().unwrap(),
            ])
        };
        // 2:4 and 3:0 are the first and last record of window 3; 3:4 is in window 4, which
        // holds records of commit 3 only.
        for at in ["2:4", "3:0", "3:4"] {
            let out = prove(at);
            assert_eq!(out.code, Some(0), "{at}: {}", out.stderr);
            let ok = makoto(&["verify-proof", proof.to_str().unwrap(), "--trust", &k]);
            assert_eq!(ok.code, Some(0), "{at}: {}", ok.stdout);
        }
        let out = prove("2:5");
        assert_eq!(out.code, Some(2), "{}", out.stderr);
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        assert!(
            errors[0].contains("version 2 record 5") && errors[0].contains("formatVersion 1"),
            "{}",
            errors[0]
        );
    })
    .await
    .unwrap();
}

#[rstest]
#[case::first_record_of_a_window("2:4", 2, 0)]
#[case::inside_a_window("2:5", 2, 1)]
#[case::last_record_of_a_window("3:0", 2, 6)]
#[case::a_window_of_one_commit("1:3", 0, 3)]
#[case::a_commit_after_a_delete("5:0", 4, 2)]
fn a_genuine_record_proof_verifies(#[case] at: &str, #[case] window: usize, #[case] leaf: u64) {
    let s = stream();
    let (v, i) = at.split_once(':').unwrap();
    let p = s.proof(at);
    assert_eq!(p["position"], leaf);
    assert!(
        p["windowId"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#window/records=7/{}", window + 1))
    );
    let bytes = &s.proofs[at];
    assert_eq!(&canonical_file(&p), bytes, "canonical JSON and one newline");
    let ok = verify_proof(bytes, &s.pem);
    assert_eq!(ok.code, Some(0), "{} {}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout
            .contains(&format!("record {i} of version {v} is record {leaf} of 7")),
        "{}",
        ok.stdout
    );
    // Without the trailing newline too.
    let ok = verify_proof(&bytes[..bytes.len() - 1], &s.pem);
    assert_eq!(ok.code, Some(0), "{}", ok.stdout);
    // Not under another key.
    let other = key(2).public_key().to_spki_pem().unwrap();
    assert_fails(&verify_proof(bytes, &other), "signature");
}

#[rstest]
#[case::version_to_another_existing_version("3:0", |p: &mut Value, _: &Stream| p["version"] = json!(2), "record 2:0 is not in window")]
#[case::version_to_a_delete_with_no_records("5:0", |p: &mut Value, _: &Stream| p["version"] = json!(4), "signs no record 4:0")]
#[case::version_that_does_not_exist("5:0", |p: &mut Value, _: &Stream| p["version"] = json!(99), "record 99:0 is not in window")]
#[case::version_and_index_to_a_record_at_another_leaf("5:0", |p: &mut Value, _: &Stream| {
    p["version"] = json!(3);
    p["index"] = json!(9);
}, "signs record 3:9 at position 1, the proof claims position 2")]
#[case::index_to_a_record_at_another_leaf("2:5", |p: &mut Value, _: &Stream| p["index"] = json!(4), "signs record 2:4 at position 0, the proof claims position 1")]
#[case::index_past_the_commit_in_the_window("3:0", |p: &mut Value, _: &Stream| p["index"] = json!(1), "record 3:1 is not in window")]
#[case::index_and_position_together("2:5", |p: &mut Value, _: &Stream| {
    p["index"] = json!(6);
    p["position"] = json!(2);
}, "the record and audit path give root")]
#[case::position("2:5", |p: &mut Value, _: &Stream| p["position"] = json!(0), "the proof claims position 0")]
#[case::record("2:5", |p: &mut Value, _: &Stream| {
    let r = p["record"].as_str().unwrap().replace("\"id\":15", "\"id\":16");
    p["record"] = json!(r);
}, "the record and audit path give root")]
#[case::audit_path_shortened("2:5", |p: &mut Value, _: &Stream| {
    p["auditPath"].as_array_mut().unwrap().pop();
}, "too short")]
#[case::audit_path_lengthened("2:5", |p: &mut Value, _: &Stream| {
    let first = p["auditPath"][0].clone();
    p["auditPath"].as_array_mut().unwrap().push(first);
}, "too long")]
#[case::merkle_root("2:5", |p: &mut Value, s: &Stream| p["merkleRoot"] = s.proof("1:3")["merkleRoot"].clone(), "window")]
#[case::leaf_count("2:5", |p: &mut Value, _: &Stream| p["leafCount"] = json!(8), "over 8 records")]
#[case::window_id("2:5", |p: &mut Value, _: &Stream| {
    let w = p["windowId"].as_str().unwrap().replace("records=7/3", "records=7/4");
    p["windowId"] = json!(w);
}, "the proof names window")]
#[case::envelope_of_another_window("2:5", |p: &mut Value, s: &Stream| p["envelope"] = s.proof("1:3")["envelope"].clone(), "the proof names window")]
#[case::format_1("2:5", |p: &mut Value, _: &Stream| p["format"] = json!("makoto-record-proof/1"), "format is \"makoto-record-proof/1\"")]
#[case::format_of_file_proofs("2:5", |p: &mut Value, _: &Stream| p["format"] = json!("makoto-membership-proof/1"), "no table")]
#[case::kind_instead_of_format("2:5", |p: &mut Value, _: &Stream| rename(p, "format", "kind"), "format is missing")]
#[case::keyid_of_another_key("2:5", |p: &mut Value, _: &Stream| p["keyid"] = json!(key(2).keyid().as_str()), "is not the key id the window's signature names")]
#[case::keyid_of_another_key_also_in_the_envelope("2:5", |p: &mut Value, _: &Stream| {
    let k = json!(key(2).keyid().as_str());
    p["keyid"] = k.clone();
    p["envelope"]["signatures"][0]["keyid"] = k;
}, "but the proof names key")]
#[case::keyid_emptied_everywhere("2:5", |p: &mut Value, _: &Stream| {
    p["keyid"] = json!("");
    p["envelope"]["signatures"][0]["keyid"] = json!("");
}, "but the proof names key \"\"")]
#[case::keyid_renamed("2:5", |p: &mut Value, _: &Stream| rename(p, "keyid", "keyId"), "no keyid")]
#[case::signature_keyid_renamed("2:5", |p: &mut Value, _: &Stream| rename(&mut p["envelope"]["signatures"][0], "keyid", "keyId"), "is not the key id")]
#[case::extra_member("2:5", |p: &mut Value, _: &Stream| p["comment"] = json!("x"), "it was edited")]
#[case::extra_member_in_the_envelope("2:5", |p: &mut Value, _: &Stream| p["envelope"]["extra"] = json!(1), "it was edited")]
#[case::extra_member_in_a_signature("2:5", |p: &mut Value, _: &Stream| p["envelope"]["signatures"][0]["extra"] = json!(1), "it was edited")]
#[case::second_signature("2:5", |p: &mut Value, _: &Stream| {
    let sig = p["envelope"]["signatures"][0].clone();
    p["envelope"]["signatures"].as_array_mut().unwrap().push(sig);
}, "makoto writes exactly one")]
#[case::no_signature("2:5", |p: &mut Value, _: &Stream| p["envelope"]["signatures"] = json!([]), "makoto writes exactly one")]
#[case::version_as_a_string("2:5", |p: &mut Value, _: &Stream| p["version"] = json!("2"), "version is not a non-negative integer")]
fn a_doctored_record_proof_fails(#[case] at: &str, #[case] edit: Edit, #[case] reason: &str) {
    let s = stream();
    let mut p = s.proof(at);
    edit(&mut p, s);
    assert_fails(&verify_proof(&canonical_file(&p), &s.pem), reason);
}

/// Other bytes for the same JSON value: only the exact bytes `makoto prove` writes pass.
#[rstest]
#[case::pretty_printed(|b: &[u8]| {
    let v: Value = serde_json::from_slice(b).unwrap();
    serde_json::to_vec_pretty(&v).unwrap()
})]
#[case::members_reordered(|b: &[u8]| {
    let v: Value = serde_json::from_slice(b).unwrap();
    let members: Vec<String> = v
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(k, x)| format!("{}:{}", json!(k), String::from_utf8(makoto_core::canonical::to_vec(x)).unwrap()))
        .collect();
    format!("{{{}}}\n", members.join(",")).into_bytes()
})]
#[case::space_after_a_colon(|b: &[u8]| String::from_utf8(b.to_vec()).unwrap().replacen("\":", "\": ", 1).into_bytes())]
#[case::escaped_character(|b: &[u8]| String::from_utf8(b.to_vec()).unwrap().replacen("makoto-record-proof", "\\u006dakoto-record-proof", 1).into_bytes())]
#[case::escaped_slash(|b: &[u8]| String::from_utf8(b.to_vec()).unwrap().replacen("file:///", "file:\\/\\/\\/", 1).into_bytes())]
#[case::duplicated_member(|b: &[u8]| {
    let mut out = b"{\"version\":2,".to_vec();
    out.extend_from_slice(&b[1..]);
    out
})]
#[case::integer_written_as_a_float(|b: &[u8]| String::from_utf8(b.to_vec()).unwrap().replacen("\"version\":2", "\"version\":2.0", 1).into_bytes())]
#[case::leading_space(|b: &[u8]| [b" ", b].concat())]
#[case::two_trailing_newlines(|b: &[u8]| [b, b"\n"].concat())]
#[case::crlf(|b: &[u8]| [&b[..b.len() - 1], b"\r\n"].concat())]
fn a_reformatted_record_proof_fails(#[case] reformat: fn(&[u8]) -> Vec<u8>) {
    let s = stream();
    let bytes = reformat(&s.proofs["2:5"]);
    assert_ne!(bytes, s.proofs["2:5"]);
    assert_fails(&verify_proof(&bytes, &s.pem), "");
}

/// Input that is not JSON is not a proof that fails: it could not be read (exit 2).
#[rstest]
#[case::empty(|_: &[u8]| Vec::new())]
#[case::truncated(|b: &[u8]| b[..b.len() / 2].to_vec())]
#[case::not_utf8(|b: &[u8]| [&[0xff_u8][..], b].concat())]
#[case::text(|_: &[u8]| b"PROOF VERIFIED\n".to_vec())]
#[case::two_documents(|b: &[u8]| [b, b].concat())]
fn a_proof_that_is_not_json_cannot_be_read(#[case] mangle: fn(&[u8]) -> Vec<u8>) {
    let s = stream();
    let out = verify_proof(&mangle(&s.proofs["2:5"]), &s.pem);
    assert_eq!(out.code, Some(2), "{} {}", out.stdout, out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains("proof.json: not JSON"), "{}", errors[0]);
}

/// A proof in a window attested before windows signed their commit spans (`formatVersion` 1)
/// holds only for the records that statement pins: its first and last record, or any record
/// of a window of one commit.
#[rstest]
#[case::first_record("2:4", 2, None)]
#[case::last_record("3:0", 2, None)]
#[case::a_window_of_one_commit("1:3", 0, None)]
#[case::a_window_of_one_commit_other_record("3:4", 3, None)]
#[case::inside_a_window_of_several_commits("2:5", 2, Some("formatVersion 1"))]
#[case::inside_after_a_delete("5:0", 4, Some("formatVersion 1"))]
fn a_record_proof_in_a_format_1_window_holds_only_for_pinned_records(
    #[case] at: &str,
    #[case] window: usize,
    #[case] refused: Option<&str>,
) {
    let s = stream();
    let mut p = s.proof(at);
    p["envelope"] = s.format_1_envelopes[window].clone();
    let out = verify_proof(&canonical_file(&p), &s.pem);
    match refused {
        None => assert_eq!(out.code, Some(0), "{} {}", out.stdout, out.stderr),
        Some(reason) => assert_fails(&out, reason),
    }
    // Whatever is pinned, another version or index is not.
    p["version"] = json!(4);
    p["index"] = json!(0);
    assert_fails(&verify_proof(&canonical_file(&p), &s.pem), "");
}

#[test]
fn a_record_proof_of_the_first_format_is_refused() {
    let s = stream();
    let mut p = s.proof("2:5");
    rename(&mut p, "format", "kind");
    p["kind"] = json!("makoto-record-proof/1");
    assert_fails(
        &verify_proof(&serde_json::to_vec_pretty(&p).unwrap(), &s.pem),
        "no longer accepted",
    );
}

/// The sample table attested with key 1, and a genuine proof of a file live at version 9.
struct Sample {
    pem: String,
    proof: Vec<u8>,
}

static SAMPLE: OnceLock<Sample> = OnceLock::new();

fn sample() -> &'static Sample {
    SAMPLE.get_or_init(|| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let tmp = tempfile::tempdir().unwrap();
            let (table, wh) = attested_copy("sample", tmp.path()).await;
            let path = file_rows(&wh, &table)
                .await
                .into_iter()
                .rfind(|f| f.action.as_str() == "add")
                .unwrap()
                .path;
            let store = store_of(&wh).await;
            let proof = makoto_delta::proof::prove(&store, &table_uri(&table), &path, 9)
                .await
                .unwrap();
            let mut b = proof.to_json_bytes().unwrap();
            b.push(b'\n');
            Sample {
                pem: key(1).public_key().to_spki_pem().unwrap(),
                proof: b,
            }
        })
    })
}

#[rstest]
#[case::genuine(|_: &mut Value| {}, None)]
#[case::version(|p: &mut Value| p["version"] = json!(8), Some("the proof claims"))]
#[case::table(|p: &mut Value| {
    let t = format!("{}x", p["table"].as_str().unwrap());
    p["table"] = json!(t);
}, Some("the proof claims"))]
#[case::path(|p: &mut Value| {
    let f = format!("{}x", p["file"]["path"].as_str().unwrap());
    p["file"]["path"] = json!(f);
}, Some("gives root"))]
#[case::size(|p: &mut Value| p["file"]["size"] = json!(p["file"]["size"].as_u64().unwrap() + 1), Some("gives root"))]
#[case::state_digest(|p: &mut Value| p["stateDigest"] = json!("00".repeat(32)), Some("state digest"))]
#[case::sibling(|p: &mut Value| p["siblings"][0] = json!("00".repeat(32)), Some("gives root"))]
#[case::keyid_of_another_key(|p: &mut Value| p["keyid"] = json!(key(2).keyid().as_str()), Some("keyid"))]
#[case::keyid_renamed(|p: &mut Value| rename(p, "keyid", "keyId"), Some("no keyid"))]
#[case::extra_member(|p: &mut Value| p["comment"] = json!("x"), Some("edited"))]
#[case::format(|p: &mut Value| p["format"] = json!("makoto-membership-proof/2"), Some("format"))]
#[case::second_signature(|p: &mut Value| {
    let sig = p["envelope"]["signatures"][0].clone();
    p["envelope"]["signatures"].as_array_mut().unwrap().push(sig);
}, Some("makoto writes exactly one"))]
#[case::extra_member_in_the_envelope(|p: &mut Value| p["envelope"]["extra"] = json!(1), Some("edited"))]
#[case::digest_removed(|p: &mut Value| p["file"]["sha256"] = Value::Null, Some("has no digest"))]
fn a_file_proof_holds_only_as_written(#[case] edit: fn(&mut Value), #[case] refused: Option<&str>) {
    let s = sample();
    let mut p: Value = serde_json::from_slice(&s.proof).unwrap();
    assert_eq!(canonical_file(&p), s.proof);
    edit(&mut p);
    let out = verify_proof(&canonical_file(&p), &s.pem);
    match refused {
        None => assert_eq!(out.code, Some(0), "{} {}", out.stdout, out.stderr),
        Some(reason) => assert_fails(&out, reason),
    }
}

#[test]
fn a_reformatted_or_broken_file_proof_fails() {
    let s = sample();
    let v: Value = serde_json::from_slice(&s.proof).unwrap();
    assert_fails(
        &verify_proof(&serde_json::to_vec_pretty(&v).unwrap(), &s.pem),
        "",
    );
    let out = verify_proof(&s.proof[..s.proof.len() / 2], &s.pem);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

/// Versions whose data is partly vacuumed (`data_availability` `unavailable`): the files whose
/// digests are known are proven; the file without a digest is a one-line exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prove_file_at_a_version_with_vacuumed_data() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    // The file added at v1 is rewritten by the DELETE at v3; deleting it simulates VACUUM.
    let gone: String = std::fs::read_to_string(table.join("_delta_log/00000000000000000001.json"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["add"]["path"].as_str().map(str::to_owned))
        .unwrap();
    let gone = percent_encoding::percent_decode_str(&gone)
        .decode_utf8()
        .unwrap()
        .into_owned();
    std::fs::remove_file(table.join(&gone)).unwrap();
    Run::new(&table, &wh).run().await.unwrap();
    let rows = attestation_rows(&wh, &table).await;
    assert_eq!(rows[2].data_availability.as_str(), "unavailable");
    let files = file_rows(&wh, &table).await;
    let known = files
        .iter()
        .find(|f| f.version <= 2 && f.action.as_str() == "add" && f.sha256.is_some())
        .unwrap()
        .path
        .clone();
    let pubk = tmp.path().join("k.pub");
    std::fs::write(&pubk, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    let (t, w, k) = (
        table.to_str().unwrap().to_owned(),
        wh.to_str().unwrap().to_owned(),
        pubk.to_str().unwrap().to_owned(),
    );
    let proof = tmp.path().join("p.json").to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let prove = |file: &str| {
            makoto(&[
                "prove",
                &t,
                "--warehouse",
                &w,
                "--version",
                "2",
                "--file",
                file,
                "--out",
                &proof,
            ])
        };
        let ok = prove(&known);
        assert_eq!(ok.code, Some(0), "{}", ok.stderr);
        let checked = makoto(&["verify-proof", &proof, "--trust", &k]);
        assert_eq!(checked.code, Some(0), "{}", checked.stdout);
        assert!(checked.stdout.contains(&known), "{}", checked.stdout);
        prove(&gone)
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].contains("version 2") && errors[0].contains("has no digest"),
        "{}",
        errors[0]
    );
}
