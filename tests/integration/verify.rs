//! `makoto verify`: an untampered table verifies; each tamper is reported with the right kind
//! and location; a legitimate VACUUM is not tampering.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use deltalake::datafusion::prelude::SessionContext;
use makoto_core::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use makoto_core::keys::Signer;
use makoto_core::verify::TrustedKeys;
use makoto_delta::verify::UnsignedRows;
use makoto_delta::{
    AttestationStore, FindingKind, Location, Outcome, Severity, SourceTable, StorageOptions,
    Verifier, VerifyMode, VerifyOptions, VerifyReport, VersionSpec,
};
use rstest::rstest;
use serde_json::Value;

use crate::support::*;

pub fn trust(seed: u8) -> TrustedKeys {
    TrustedKeys::new(vec![key(seed).public_key().clone()])
}

/// The error of a verification that cannot be done (exit 2), as text.
pub async fn verify_err(table: &Path, wh: &Path, version: u64) -> String {
    let storage = StorageOptions::default();
    let source = SourceTable::open(
        Location::existing(table.to_str().unwrap()).unwrap(),
        &storage,
    )
    .unwrap();
    let store =
        AttestationStore::open_existing(Location::existing(wh.to_str().unwrap()).unwrap(), storage)
            .await
            .unwrap();
    let options = VerifyOptions {
        at: makoto_delta::VersionSpec::Version(version),
        ..VerifyOptions::default()
    };
    match Verifier::new(&source, &store, &trust(1), options)
        .run()
        .await
    {
        Ok(r) => format!("unexpectedly ran: {:?}", r.outcome),
        Err(e) => e.to_string(),
    }
}

pub async fn verify_with(
    table: &Path,
    wh: &Path,
    trust: &TrustedKeys,
    options: VerifyOptions,
) -> VerifyReport {
    let storage = StorageOptions::default();
    let source = SourceTable::open(
        Location::existing(table.to_str().unwrap()).unwrap(),
        &storage,
    )
    .unwrap();
    let store =
        AttestationStore::open_existing(Location::existing(wh.to_str().unwrap()).unwrap(), storage)
            .await
            .unwrap();
    Verifier::new(&source, &store, trust, options)
        .run()
        .await
        .unwrap()
}

pub async fn verify(table: &Path, wh: &Path) -> VerifyReport {
    verify_with(table, wh, &trust(1), VerifyOptions::default()).await
}

/// A table attested with key 1: `generated` (written here by delta-rs: 10 versions, a
/// checkpoint), `sample` (a copy of data/sample/sales) or a corpus table.
pub async fn attested_copy(name: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let table = match name {
        "generated" => {
            let t = dir.join("generated");
            makoto_testkit::build_sample(&t).await.unwrap();
            t
        }
        "sample" => {
            let t = dir.join("sales");
            copy_dir(&repo_root().join("data/sample/sales"), &t);
            t
        }
        corpus => corpus_table(corpus, dir),
    };
    let wh = dir.join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    (table, wh)
}

fn kinds(r: &VerifyReport) -> Vec<(FindingKind, Option<u64>)> {
    r.findings.iter().map(|f| (f.kind, f.version)).collect()
}

/// Writes key 1's public key as `k.pub` in `dir`.
fn write_trust(dir: &Path) -> PathBuf {
    let pubk = dir.join("k.pub");
    std::fs::write(&pubk, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    pubk
}

fn summary(r: &VerifyReport) -> String {
    r.findings
        .iter()
        .map(|f| {
            format!(
                "{} v{:?} {:?} {}",
                f.kind.code(),
                f.version,
                f.path,
                f.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn add_paths(table: &Path, version: u64) -> Vec<String> {
    std::fs::read_to_string(table.join(format!("_delta_log/{version:020}.json")))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["add"]["path"].as_str().map(str::to_owned))
        .map(|p| {
            percent_encoding::percent_decode_str(&p)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect()
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

// ----- tampering with the attestation tables, as someone with write access to the warehouse.

async fn system_table(wh: &Path, name: &str) -> DeltaTable {
    let url = url::Url::from_directory_path(
        std::fs::canonicalize(wh.join("system/makoto").join(name)).unwrap(),
    )
    .unwrap();
    let mut t = deltalake::DeltaTableBuilder::from_url(url)
        .unwrap()
        .build()
        .unwrap();
    t.load().await.unwrap();
    // An attacker simply turns the append-only property off.
    t.set_tbl_properties()
        .with_properties(HashMap::from([(
            "delta.appendOnly".to_owned(),
            "false".to_owned(),
        )]))
        .await
        .unwrap()
}

pub(crate) async fn update_rows(
    wh: &Path,
    table: &str,
    predicate: &str,
    column: &str,
    value_sql: &str,
) {
    let t = system_table(wh, table).await;
    let (_, metrics) = t
        .update()
        .with_predicate(predicate.to_owned())
        .with_update(column.to_owned(), value_sql.to_owned())
        .await
        .unwrap();
    assert!(metrics.num_updated_rows > 0, "{predicate} matched no row");
}

pub(crate) async fn delete_rows(wh: &Path, predicate: &str) {
    let t = system_table(wh, "attestations").await;
    let (_, metrics) = t
        .delete()
        .with_predicate(predicate.to_owned())
        .await
        .unwrap();
    assert!(metrics.num_deleted_rows.unwrap_or(0) > 0);
}

/// Rows of the attestations table matching `predicate`, as record batches with the table's types.
pub(crate) async fn select_rows(wh: &Path, predicate: &str) -> Vec<RecordBatch> {
    let t = system_table(wh, "attestations").await;
    let ctx = SessionContext::new();
    t.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("a", t.table_provider().await.unwrap())
        .unwrap();
    let df = ctx
        .sql(&format!("SELECT * FROM a WHERE {predicate}"))
        .await
        .unwrap();
    let schema: deltalake::arrow::datatypes::Schema = t
        .snapshot()
        .unwrap()
        .snapshot()
        .arrow_schema()
        .as_ref()
        .clone();
    let batches = df.collect().await.unwrap();
    batches
        .into_iter()
        .map(|b| {
            let cols = schema
                .fields()
                .iter()
                .map(|f| {
                    deltalake::arrow::compute::cast(
                        b.column_by_name(f.name()).unwrap(),
                        f.data_type(),
                    )
                    .unwrap()
                })
                .collect();
            RecordBatch::try_new(std::sync::Arc::new(schema.clone()), cols).unwrap()
        })
        .collect()
}

pub(crate) async fn append_rows(wh: &Path, batches: Vec<RecordBatch>) {
    let t = system_table(wh, "attestations").await;
    t.write(batches).await.unwrap();
}

pub(crate) fn replace_column(
    batch: &RecordBatch,
    name: &str,
    values: std::sync::Arc<dyn Array>,
) -> RecordBatch {
    let schema = batch.schema();
    let cols = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.name() == name {
                values.clone()
            } else {
                batch.column(i).clone()
            }
        })
        .collect();
    RecordBatch::try_new(schema, cols).unwrap()
}

fn envelope_of(wh_row: &RecordBatch) -> Envelope {
    let env = wh_row
        .column_by_name("envelope")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .value(0);
    Envelope::from_json(env.as_bytes()).unwrap()
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

// ----- the matrix

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untampered_tables_verify_with_no_finding() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "sample",
        "basic-dv-with-checkpoint",
        "dat-multi_partitioned",
    ] {
        let dir = tmp.path().join(name);
        let (table, wh) = attested_copy(name, &dir).await;
        let r = verify(&table, &wh).await;
        assert!(
            r.findings.is_empty() && r.verified,
            "{name}: {}",
            summary(&r)
        );
        assert_eq!(r.commits_checked, r.latest_version + 1);
        assert!(r.files_hashed > 0);
        // Every past version too, deep and log-only.
        for v in 0..=r.latest_version {
            let mut o = VerifyOptions {
                at: VersionSpec::Version(v),
                ..VerifyOptions::default()
            };
            let deep = verify_with(&table, &wh, &trust(1), o.clone()).await;
            assert!(
                deep.findings
                    .iter()
                    .all(|f| f.severity == Severity::Warning),
                "{name} v{v}: {}",
                summary(&deep)
            );
            o.mode = VerifyMode::LogOnly;
            let log = verify_with(&table, &wh, &trust(1), o).await;
            assert!(
                log.findings.is_empty(),
                "{name} v{v} log-only: {}",
                summary(&log)
            );
        }
    }
}

/// One tamper of a freshly attested copy of `table`, and what verify must say.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    DataBytes,
    DataDeleted,
    DeletionVectorBytes,
    UnreferencedFile,
    CommitRewritten,
    CommitReserialized,
    CommitDeleted,
    CommitInserted,
    CheckpointReplaced,
    LastCheckpointBogus,
    TableIdChanged,
    RowEdited,
    RowDeleted,
    RowsReordered,
    RowResignedUntrusted,
    RowUnsigned,
    RowReplayed,
    FileRowEdited,
}

#[rstest]
#[case::data_bytes("generated", Tamper::DataBytes, FindingKind::DataFileChanged)]
#[case::data_deleted("sample", Tamper::DataDeleted, FindingKind::DataFileMissing)]
#[case::dv_bytes(
    "basic-dv-with-checkpoint",
    Tamper::DeletionVectorBytes,
    FindingKind::DeletionVectorChanged
)]
#[case::unreferenced_file("sample", Tamper::UnreferencedFile, FindingKind::UnreferencedFile)]
#[case::commit_rewritten("generated", Tamper::CommitRewritten, FindingKind::CommitRewritten)]
#[case::commit_reserialized("sample", Tamper::CommitReserialized, FindingKind::CommitReserialized)]
#[case::commit_deleted("sample", Tamper::CommitDeleted, FindingKind::CommitMissing)]
#[case::commit_inserted("sample", Tamper::CommitInserted, FindingKind::CommitInserted)]
#[case::checkpoint_replaced(
    "basic-dv-with-checkpoint",
    Tamper::CheckpointReplaced,
    FindingKind::CheckpointMismatch
)]
#[case::last_checkpoint_bogus(
    "basic-dv-with-checkpoint",
    Tamper::LastCheckpointBogus,
    FindingKind::LastCheckpointInvalid
)]
#[case::table_id_changed("sample", Tamper::TableIdChanged, FindingKind::TableReplaced)]
#[case::row_edited("generated", Tamper::RowEdited, FindingKind::AttestationAltered)]
#[case::row_deleted("generated", Tamper::RowDeleted, FindingKind::AttestationMissing)]
#[case::rows_reordered("generated", Tamper::RowsReordered, FindingKind::AttestationAltered)]
#[case::row_resigned_untrusted(
    "sample",
    Tamper::RowResignedUntrusted,
    FindingKind::SignatureUntrusted
)]
#[case::row_unsigned("sample", Tamper::RowUnsigned, FindingKind::AttestationUnsigned)]
#[case::row_replayed("sample", Tamper::RowReplayed, FindingKind::AttestationDuplicated)]
#[case::file_row_edited("sample", Tamper::FileRowEdited, FindingKind::FileRowsAltered)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_is_found(
    #[case] name: &str,
    #[case] tamper: Tamper,
    #[case] expected: FindingKind,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy(name, tmp.path()).await;
    let latest = attestation_rows(&wh, &table).await.len() as u64 - 1;
    // Where the finding must point: (version, file).
    let (version, file): (Option<u64>, Option<String>) = match tamper {
        Tamper::DataBytes | Tamper::DataDeleted => {
            // A file live at the latest version: the one the last add wrote.
            let v = (0..=latest)
                .rev()
                .find(|v| !add_paths(&table, *v).is_empty())
                .unwrap();
            let path = add_paths(&table, v).pop().unwrap();
            if matches!(tamper, Tamper::DataBytes) {
                flip_byte(&table.join(&path), 200);
            } else {
                std::fs::remove_file(table.join(&path)).unwrap();
            }
            (Some(v), Some(path))
        }
        Tamper::DeletionVectorBytes => {
            let files = file_rows(&wh, &table).await;
            // The DV file of the last add that has one (live at the latest version).
            let row = files
                .iter()
                .rev()
                .find(|f| f.action.as_str() == "add" && f.dv_file.is_some())
                .unwrap();
            let dv = row.dv_file.clone().unwrap();
            flip_byte(&table.join(&dv), 30);
            (Some(row.version), Some(dv))
        }
        Tamper::UnreferencedFile => {
            std::fs::write(
                table.join("region=emea/part-99999-injected.snappy.parquet"),
                b"PAR1 fake",
            )
            .unwrap();
            (
                None,
                Some("region=emea/part-99999-injected.snappy.parquet".into()),
            )
        }
        Tamper::CommitRewritten => {
            let p = table.join("_delta_log/00000000000000000003.json");
            let t = std::fs::read_to_string(&p)
                .unwrap()
                .replacen("\"size\":", "\"size\":1", 1);
            std::fs::write(&p, t).unwrap();
            (Some(3), Some("_delta_log/00000000000000000003.json".into()))
        }
        Tamper::CommitReserialized => {
            let p = table.join("_delta_log/00000000000000000004.json");
            let t = std::fs::read_to_string(&p).unwrap().replace('\n', "\n\n");
            std::fs::write(&p, t).unwrap();
            (Some(4), Some("_delta_log/00000000000000000004.json".into()))
        }
        Tamper::CommitDeleted => {
            std::fs::remove_file(table.join("_delta_log/00000000000000000005.json")).unwrap();
            (Some(5), Some("_delta_log/00000000000000000005.json".into()))
        }
        Tamper::CommitInserted => {
            // Shift versions 5.. up by one and put a forged commit at 5.
            for v in (5..=latest).rev() {
                std::fs::rename(
                    table.join(format!("_delta_log/{v:020}.json")),
                    table.join(format!("_delta_log/{:020}.json", v + 1)),
                )
                .unwrap();
            }
            std::fs::write(
                table.join("_delta_log/00000000000000000005.json"),
                "{\"commitInfo\":{\"timestamp\":1,\"operation\":\"WRITE\"}}\n",
            )
            .unwrap();
            (Some(6), Some("_delta_log/00000000000000000006.json".into()))
        }
        Tamper::CheckpointReplaced => {
            std::fs::copy(
                table.join("_delta_log/00000000000000000020.checkpoint.parquet"),
                table.join("_delta_log/00000000000000000010.checkpoint.parquet"),
            )
            .unwrap();
            (
                Some(10),
                Some("_delta_log/00000000000000000010.checkpoint.parquet".into()),
            )
        }
        Tamper::LastCheckpointBogus => {
            std::fs::write(
                table.join("_delta_log/_last_checkpoint"),
                "{\"version\":33,\"size\":12}",
            )
            .unwrap();
            (Some(33), Some("_delta_log/_last_checkpoint".into()))
        }
        Tamper::TableIdChanged => {
            let p = table.join("_delta_log/00000000000000000000.json");
            let text = std::fs::read_to_string(&p).unwrap();
            let id = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v["metaData"]["id"].as_str().map(str::to_owned))
                .unwrap();
            std::fs::write(
                &p,
                text.replace(&id, "11111111-2222-3333-4444-555555555555"),
            )
            .unwrap();
            (Some(0), None)
        }
        Tamper::RowEdited => {
            update_rows(
                &wh,
                "attestations",
                "version = 3",
                "state_digest",
                &sql_str(&"ab".repeat(32)),
            )
            .await;
            (Some(3), None)
        }
        Tamper::RowDeleted => {
            delete_rows(&wh, "version = 4").await;
            (Some(4), None)
        }
        Tamper::RowsReordered => {
            // Swap the version columns of rows 2 and 3.
            update_rows(&wh, "attestations", "version = 2", "version", "-1").await;
            update_rows(&wh, "attestations", "version = 3", "version", "2").await;
            update_rows(&wh, "attestations", "version = -1", "version", "3").await;
            (Some(2), None)
        }
        Tamper::RowResignedUntrusted => {
            let row = select_rows(&wh, "version = 5").await.remove(0);
            let env = envelope_of(&row);
            let attacker = key(66);
            let forged = Envelope::sign(
                IN_TOTO_PAYLOAD_TYPE,
                env.payload().to_vec(),
                attacker.as_ref(),
            )
            .unwrap();
            update_rows(
                &wh,
                "attestations",
                "version = 5",
                "envelope",
                &sql_str(&forged.to_json()),
            )
            .await;
            update_rows(
                &wh,
                "attestations",
                "version = 5",
                "keyid",
                &sql_str(attacker.keyid().as_str()),
            )
            .await;
            (Some(5), None)
        }
        Tamper::RowUnsigned => {
            let row = select_rows(&wh, "version = 6").await.remove(0);
            let env = envelope_of(&row);
            let bare = Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, env.payload().to_vec());
            update_rows(
                &wh,
                "attestations",
                "version = 6",
                "envelope",
                &sql_str(&bare.to_json()),
            )
            .await;
            update_rows(&wh, "attestations", "version = 6", "level", "'L1'").await;
            update_rows(&wh, "attestations", "version = 6", "keyid", "NULL").await;
            (Some(6), None)
        }
        Tamper::RowReplayed => {
            // Replay the (validly signed) row of version 2 as if it were version 7.
            let row = select_rows(&wh, "version = 2").await.remove(0);
            let replayed = replace_column(
                &row,
                "version",
                std::sync::Arc::new(Int64Array::from(vec![7i64])),
            );
            append_rows(&wh, vec![replayed]).await;
            (Some(2), None)
        }
        Tamper::FileRowEdited => {
            update_rows(
                &wh,
                "files",
                "version = 2 AND action = 'add'",
                "sha256",
                &sql_str(&"cd".repeat(32)),
            )
            .await;
            (Some(2), None)
        }
    };
    let r = verify(&table, &wh).await;
    assert!(
        !r.verified || expected.severity() == Severity::Warning,
        "{tamper:?} not detected:\n{}",
        summary(&r)
    );
    let hit = r.findings.iter().find(|f| {
        f.kind == expected
            && (version.is_none() || f.version == version)
            && (file.is_none() || f.path == file)
    });
    assert!(
        hit.is_some(),
        "{tamper:?}: expected {} at {version:?} {file:?}, got:\n{}",
        expected.code(),
        summary(&r)
    );
    // Attestation-row findings name the row.
    if matches!(
        expected,
        FindingKind::AttestationAltered
            | FindingKind::SignatureUntrusted
            | FindingKind::AttestationUnsigned
    ) {
        assert!(hit.unwrap().row.is_some(), "{tamper:?}: no row reference");
    }
    // A rewritten commit's finding says how its file actions differ from the signed list.
    if matches!(tamper, Tamper::CommitRewritten) {
        let detail = &hit.unwrap().detail;
        assert!(
            detail.contains(" in the log, ") && detail.contains(" attested"),
            "{detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_deleted_rows_break_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    delete_rows(&wh, "version = 4").await;
    let r = verify(&table, &wh).await;
    assert!(
        kinds(&r).contains(&(FindingKind::AttestationMissing, Some(4))),
        "{}",
        summary(&r)
    );
    // Version 5 still points to the deleted row's digest, which is no longer in the table, and
    // the state of version 4 cannot be compared: the missing row is the finding.
    assert!(!r.verified);
}

/// A system-table cell that is not a value of its column's type (junk written by an attacker
/// or a foreign writer) is never read as null or skipped: verify stops with exit 2 and one
/// line naming the table, the row and the column, and gives no verdict.
#[rstest]
#[case::keyid("attestations", "keyid", "'not-a-key'")]
#[case::timestamp_source("attestations", "timestamp_source", "'yesterday'")]
#[case::data_availability("attestations", "data_availability", "'maybe'")]
#[case::action("files", "action", "'rename'")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_of_the_wrong_kind_stops_verification(
    #[case] system: &str,
    #[case] column: &str,
    #[case] junk: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    update_rows(&wh, system, "version = 3", column, junk).await;
    let pubk = tmp.path().join("k.pub");
    std::fs::write(&pubk, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    let args: Vec<String> = [
        "verify",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--trust",
        pubk.to_str().unwrap(),
        "--no-record",
    ]
    .map(str::to_owned)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        makoto(&refs)
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("system/makoto/{system}"))
            && err.contains("@v3")
            && err.contains(&format!("column {column} ")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_after_a_legitimate_remove_is_not_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    // The file written at v1 was rewritten by the DELETE at v3; deleting it is what VACUUM does.
    let path = add_paths(&table, 1).pop().unwrap();
    std::fs::remove_file(table.join(&path)).unwrap();
    let latest = verify(&table, &wh).await;
    assert!(latest.findings.is_empty(), "{}", summary(&latest));
    // Version 1 itself can no longer be checked deeply: a warning, not a failure.
    let old = verify_with(
        &table,
        &wh,
        &trust(1),
        VerifyOptions {
            at: VersionSpec::Version(1),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(old.outcome, Outcome::Unverifiable, "{}", summary(&old));
    assert_eq!(old.errors(), 0, "{}", summary(&old));
    assert!(
        old.findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileVacuumed
                && f.path.as_deref() == Some(path.as_str())),
        "{}",
        summary(&old)
    );
    let log_only = verify_with(
        &table,
        &wh,
        &trust(1),
        VerifyOptions {
            at: VersionSpec::Version(1),
            mode: VerifyMode::LogOnly,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(log_only.findings.is_empty(), "{}", summary(&log_only));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_their_window_and_untrusted_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let pem = serde_json::to_string(&key(1).public_key().to_spki_pem().unwrap()).unwrap();
    let expired = TrustedKeys::parse(&format!(
        r#"{{"keys":[{{"name":"old","publicKey":{pem},"validUntil":"2020-01-01T00:00:00Z"}}]}}"#
    ))
    .unwrap();
    let r = verify_with(&table, &wh, &expired, VerifyOptions::default()).await;
    assert!(!r.verified);
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::KeyNotValid && f.detail.contains("expired")),
        "{}",
        summary(&r)
    );
    // Rotation: the old key plus a new one both valid now verifies.
    let rotated = TrustedKeys::parse(&format!(
        r#"{{"keys":[{{"publicKey":{}}},{{"publicKey":{pem},"validFrom":"2020-01-01T00:00:00Z"}}]}}"#,
        serde_json::to_string(&key(2).public_key().to_spki_pem().unwrap()).unwrap()
    ))
    .unwrap();
    assert!(
        verify_with(&table, &wh, &rotated, VerifyOptions::default())
            .await
            .verified
    );
    // Another key entirely: every row is untrusted.
    let r = verify_with(&table, &wh, &trust(9), VerifyOptions::default()).await;
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f.kind == FindingKind::SignatureUntrusted)
            .count() as u64,
        r.latest_version + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_tables_fail_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).unsigned().run().await.unwrap();
    let r = verify(&table, &wh).await;
    assert!(!r.verified);
    let allowed = verify_with(
        &table,
        &wh,
        &trust(1),
        VerifyOptions {
            unsigned: UnsignedRows::Warn,
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(allowed.verified, "{}", summary(&allowed));
    assert!(
        allowed
            .findings
            .iter()
            .all(|f| f.kind == FindingKind::AttestationUnsigned)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_by_timestamp_and_unattested_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).up_to(6).run().await.unwrap();
    // Versions 7..9 exist but are not attested.
    let r = verify(&table, &wh).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::AttestationMissing && f.version == Some(7)),
        "{}",
        summary(&r)
    );
    // As of version 6, everything holds.
    let rows = attestation_rows(&wh, &table).await;
    let t6 = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(rows[6].commit_timestamp_ms)
        .unwrap();
    let r = verify_with(
        &table,
        &wh,
        &trust(1),
        VerifyOptions {
            at: VersionSpec::Timestamp(t6),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(r.version, 6);
    assert!(
        r.findings.iter().all(|f| f.severity == Severity::Warning),
        "{}",
        summary(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_cli_exit_codes_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let pubk = tmp.path().join("k.pub");
    std::fs::write(&pubk, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "verify",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            pubk.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        makoto(&refs)
    };
    let ok = tokio::task::spawn_blocking({
        let a = args(&["--json"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let v: Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["version"], 9);
    assert_eq!(v["coverage"]["deltaRsCrossCheck"], true);
    assert_eq!(v["coverage"]["readerCheck"], "delta-rs");
    let skipped = tokio::task::spawn_blocking({
        let a = args(&["--json", "--reader-check", "skip"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    let s: Value = serde_json::from_str(&skipped.stdout).unwrap();
    assert_eq!(s["coverage"]["deltaRsCrossCheck"], false);
    assert_eq!(s["coverage"]["readerCheck"], "skip");
    let skipped_text = tokio::task::spawn_blocking({
        let a = args(&["--reader-check", "skip"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert!(
        skipped_text
            .stdout
            .contains("delta-rs cross-check skipped (--reader-check skip)"),
        "{}",
        skipped_text.stdout
    );
    let path = add_paths(&table, 9).pop().unwrap();
    flip_byte(&table.join(&path), 100);
    let bad = tokio::task::spawn_blocking({
        let a = args(&[]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        bad.stdout.contains("NOT VERIFIED")
            && bad.stdout.contains("data-file-changed")
            && bad.stdout.contains(&path),
        "{}",
        bad.stdout
    );
    let log_only = tokio::task::spawn_blocking({
        let a = args(&["--log-only"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(
        log_only.code,
        Some(0),
        "log-only does not read data: {}",
        log_only.stdout
    );
    let missing = tokio::task::spawn_blocking({
        let a = args(&["--version", "42"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(missing.code, Some(2));
    assert!(
        missing.stderr.contains("version 42 does not exist"),
        "{}",
        missing.stderr
    );
}

/// Files vacuumed before the first attestation make old versions unverifiable, never
/// "verified"; a file deleted while live is still tampering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_vacuumed_before_attestation_are_unverifiable_not_tampered() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("snapshot-vacuumed", tmp.path()).await;
    let rows = attestation_rows(&wh, &table).await;
    let statement = statement_of(&rows[0]);
    let gone = &statement["predicate"]["delta"]["dataAvailability"];
    assert_eq!(gone["status"], "unavailable");
    for f in gone["unavailableFiles"].as_array().unwrap() {
        assert!(!table.join(f.as_str().unwrap()).exists(), "{f}");
    }
    let at = |v| VerifyOptions {
        at: VersionSpec::Version(v),
        ..VerifyOptions::default()
    };
    let old = verify_with(&table, &wh, &trust(1), at(1)).await;
    assert_eq!(old.outcome, Outcome::Unverifiable, "{}", summary(&old));
    assert!(!old.verified);
    assert!(
        old.findings
            .iter()
            .all(|f| f.kind == FindingKind::DataUnavailable),
        "{}",
        summary(&old)
    );
    let out = makoto(&[
        "verify",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--trust",
        write_trust(tmp.path()).to_str().unwrap(),
        "--version",
        "1",
        "--no-record",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stdout.starts_with("UNVERIFIABLE"), "{}", out.stdout);
    assert!(out.stdout.contains("no tampering found"), "{}", out.stdout);

    // The latest version is complete; deleting one of its files is tampering.
    let latest = verify(&table, &wh).await;
    assert_eq!(latest.outcome, Outcome::Verified, "{}", summary(&latest));
    let live = add_paths(&table, 5).pop().unwrap();
    std::fs::remove_file(table.join(&live)).unwrap();
    let tampered = verify(&table, &wh).await;
    assert_eq!(tampered.outcome, Outcome::Failed);
    assert!(
        tampered
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileMissing && f.path.as_deref() == Some(&live)),
        "{}",
        summary(&tampered)
    );
}

/// A chain that starts from a checkpoint (log cleaned before the first attestation) keeps the
/// checkpoint's digests: a rewritten checkpoint is found, even with the same live files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_baseline_checkpoint_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("checkpoint-cdf-table", tmp.path()).await;
    let rows = attestation_rows(&wh, &table).await;
    assert_eq!(rows[0].version, 3);
    let baseline = &statement_of(&rows[0])["predicate"]["delta"]["baseline"];
    assert_eq!(baseline["checkpointVersion"], 3);
    assert_eq!(baseline["firstAvailableCommit"], 3);
    let checkpoint = "_delta_log/00000000000000000003.checkpoint.parquet";
    assert_eq!(
        baseline["checkpointFiles"][0]["sha256"],
        sha256_hex(&std::fs::read(table.join(checkpoint)).unwrap())
    );
    assert!(verify(&table, &wh).await.verified);

    // Replace the checkpoint of version 3 with one delta-rs writes for version 5 (other live
    // files, other bytes), as someone rewriting history would.
    let url = url::Url::from_directory_path(std::fs::canonicalize(&table).unwrap()).unwrap();
    let t = deltalake::DeltaTableBuilder::from_url(url)
        .unwrap()
        .load()
        .await
        .unwrap();
    deltalake::checkpoints::create_checkpoint(&t, None)
        .await
        .unwrap();
    let before = sha256_hex(&std::fs::read(table.join(checkpoint)).unwrap());
    std::fs::copy(
        table.join("_delta_log/00000000000000000005.checkpoint.parquet"),
        table.join(checkpoint),
    )
    .unwrap();
    assert_ne!(
        sha256_hex(&std::fs::read(table.join(checkpoint)).unwrap()),
        before
    );
    let report = verify(&table, &wh).await;
    assert_eq!(report.outcome, Outcome::Failed, "{}", summary(&report));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::BaselineChanged
                && f.version == Some(3)
                && f.path.as_deref() == Some(checkpoint)),
        "{}",
        summary(&report)
    );
}

/// The P-256 order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The high-S twin `(r, n − s)` of a DER ECDSA signature: just as valid to plain ECDSA, which
/// is why ES256 verifiers that accept only low-S must refuse it.
fn high_s_twin(der: &[u8]) -> Vec<u8> {
    let int = |at: usize| -> (Vec<u8>, usize) {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        (der[at + 2..at + 2 + len].to_vec(), at + 2 + len)
    };
    let (r, next) = int(2);
    let (s, _) = int(next);
    let s = s
        .iter()
        .skip_while(|b| **b == 0)
        .copied()
        .collect::<Vec<_>>();
    let mut padded = [0u8; 32];
    padded[32 - s.len()..].copy_from_slice(&s);
    let mut twin = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(padded[i]) - borrow;
        borrow = i16::from(d < 0);
        twin[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    let enc = |v: &[u8]| {
        let v: Vec<u8> = v.iter().skip_while(|b| **b == 0).copied().collect();
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| *b >= 0x80);
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend(v);
        out
    };
    let body = [enc(&r), enc(&twin)].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

/// Row tampering against ECDSA P-256 (ES256) signatures, the algorithm Makoto recommends: an
/// altered payload, a high-S twin of a valid signature, a re-signature by another P-256 key and
/// a stripped signature are each found; the untouched copy verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p256_signed_rows_tampered_are_found() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let prefix = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    for k in ["p", "other"] {
        let out = makoto(&["keygen", &prefix(k), "--algorithm", "ecdsa-p256"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let (key, public) = (
        format!("{}.key", prefix("p")),
        format!("{}.pub", prefix("p")),
    );
    let out = makoto(&[
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let other =
        makoto_delta::keyfile::load_signing_key(Path::new(&format!("{}.key", prefix("other"))))
            .unwrap();
    let verify = |wh: &Path| {
        let out = makoto(&[
            "verify",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            &public,
            "--log-only",
            "--no-record",
            "--json",
        ]);
        let report: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
        let kinds: Vec<String> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["version"] == 4)
            .map(|f| f["kind"].as_str().unwrap().to_owned())
            .collect();
        (out.code.unwrap(), kinds)
    };
    assert_eq!(verify(&wh), (0, vec![]), "the untouched copy verifies");

    type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "payload",
            Box::new(|env: &mut Value| {
                let p = b64.decode(env["payload"].as_str().unwrap()).unwrap();
                let mut p = String::from_utf8(p).unwrap();
                // The first hex digit of the first subject digest, changed.
                let at = p.find("\"sha256\":\"").unwrap() + 10;
                let digit = if &p[at..=at] == "0" { "1" } else { "0" };
                p.replace_range(at..=at, digit);
                env["payload"] = b64.encode(p).into();
            }),
            "attestation-altered",
        ),
        (
            "high-s",
            Box::new(|env: &mut Value| {
                let sig = b64
                    .decode(env["signatures"][0]["sig"].as_str().unwrap())
                    .unwrap();
                let twin = high_s_twin(&sig);
                assert_ne!(twin, sig);
                // Plain ECDSA (OpenSSL) accepts the twin: only the low-S rule refuses it.
                let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
                let pae = makoto_core::dsse::pae(env["payloadType"].as_str().unwrap(), &payload);
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("pae"), pae).unwrap();
                std::fs::write(dir.path().join("sig"), &twin).unwrap();
                let ok = std::process::Command::new("openssl")
                    .args(["dgst", "-sha256", "-verify", &public, "-signature"])
                    .arg(dir.path().join("sig"))
                    .arg(dir.path().join("pae"))
                    .output()
                    .unwrap();
                assert!(ok.status.success(), "openssl rejects the twin: {ok:?}");
                env["signatures"][0]["sig"] = b64.encode(twin).into();
            }),
            "signature-invalid",
        ),
        (
            "resigned",
            Box::new(|env: &mut Value| {
                let e = Envelope::from_json(env.to_string().as_bytes()).unwrap();
                let again =
                    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, e.payload().to_vec(), &other).unwrap();
                *env = serde_json::from_str(&again.to_json()).unwrap();
            }),
            "signature-untrusted",
        ),
        (
            "stripped",
            Box::new(|env: &mut Value| env["signatures"] = serde_json::json!([])),
            "attestation-unsigned",
        ),
    ];
    for (name, edit, expected) in cases {
        let to = tmp.path().join(format!("wh-{name}"));
        crate::timestamps::rewritten(&wh, &table, &to, |r| {
            if r.version == 4 {
                let mut env: Value = serde_json::from_str(&r.envelope).unwrap();
                let before = env.clone();
                edit(&mut env);
                assert_ne!(env, before, "the edit changes the envelope");
                r.envelope = env.to_string();
            }
        })
        .await;
        let (code, kinds) = verify(&to);
        assert_eq!(code, 1, "{name}: {kinds:?}");
        assert!(kinds.iter().any(|k| k == expected), "{name}: {kinds:?}");
    }
}

/// The walk drops both of its trees from memory where the warehouse stores their pages and
/// loads them again when a commit or a check touches them: the verdicts, findings and counts
/// are those of a walk that keeps them whole, tampered or not. A page gone from the warehouse
/// makes it walk again with whole trees rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_the_walks_trees_changes_no_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    // About 4,400 live files at the end: both trees span hundreds of pages.
    makoto_testkit::synthetic::many_files_table(&table, 12, 400, 8).unwrap();
    let wh = tmp.path().join("wh");
    // One batch per version: the pages of every version are stored.
    Run::new(&table, &wh).evicting(500).run().await.unwrap();
    let eager = makoto_delta::Eviction::Above {
        files: 0,
        changed: 1,
    };
    let with = |eviction, mode| VerifyOptions {
        eviction,
        mode,
        ..VerifyOptions::default()
    };
    let compare = |whole: &VerifyReport, evicted: &VerifyReport, what: &str| {
        assert_eq!(kinds(whole), kinds(evicted), "{what}: {}", summary(evicted));
        assert_eq!(whole.verified, evicted.verified, "{what}");
        assert_eq!(whole.files_hashed, evicted.files_hashed, "{what}");
        assert_eq!(whole.commits_checked, evicted.commits_checked, "{what}");
        assert_eq!(whole.state_digest, evicted.state_digest, "{what}");
        assert_eq!(
            whole.coverage.reader_view, evicted.coverage.reader_view,
            "{what}"
        );
        assert_eq!(whole.state_pages_loaded, 0, "{what}");
    };
    for mode in [VerifyMode::Deep, VerifyMode::LogOnly] {
        let whole = verify_with(
            &table,
            &wh,
            &trust(1),
            with(makoto_delta::Eviction::Never, mode),
        )
        .await;
        let evicted = verify_with(&table, &wh, &trust(1), with(eager, mode)).await;
        assert!(whole.verified, "{mode:?}: {}", summary(&whole));
        compare(&whole, &evicted, &format!("{mode:?}"));
        assert!(
            evicted.state_pages_loaded > 100,
            "{mode:?}: {} pages loaded again",
            evicted.state_pages_loaded
        );
    }

    // A data file live at the end, changed: found by both (deep mode hashes every live file,
    // evicted or not).
    let path = add_paths(&table, 12).pop().unwrap();
    let original = std::fs::read(table.join(&path)).unwrap();
    flip_byte(&table.join(&path), 3);
    let whole = verify_with(
        &table,
        &wh,
        &trust(1),
        with(makoto_delta::Eviction::Never, VerifyMode::Deep),
    )
    .await;
    let evicted = verify_with(&table, &wh, &trust(1), with(eager, VerifyMode::Deep)).await;
    assert!(
        evicted
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileChanged
                && f.path.as_deref() == Some(path.as_str())),
        "{}",
        summary(&evicted)
    );
    compare(&whole, &evicted, "a data file changed");
    std::fs::write(table.join(&path), original).unwrap();

    // Only the root pages of each version's trees left: the first eviction's subtrees cannot
    // be loaded again, so the walk starts over with whole trees.
    let rows = attestation_rows(&wh, &table).await;
    let roots: std::collections::HashSet<String> = rows
        .iter()
        .flat_map(|r| {
            let view = statement_of(r)["predicate"]["delta"]["readerView"]["files"]["root"]
                .as_str()
                .map(str::to_owned);
            [Some(r.state_digest.to_hex()), view]
        })
        .flatten()
        .collect();
    let pages = page_files(&wh);
    assert!(pages.len() > 200, "{} pages", pages.len());
    for (id, file) in &pages {
        if !roots.contains(id) {
            std::fs::remove_file(file).unwrap();
        }
    }
    let evicted = verify_with(&table, &wh, &trust(1), with(eager, VerifyMode::LogOnly)).await;
    assert!(evicted.verified, "{}", summary(&evicted));
    assert!(evicted.findings.is_empty(), "{}", summary(&evicted));
    assert_eq!(
        evicted.state_pages_loaded, 0,
        "the second walk kept its trees whole"
    );
}

/// A deep check rehashes the live files a chunk at a time (8,192): every file past the first
/// chunk is still hashed, and every one changed is still reported.
#[tokio::test]
async fn a_deep_check_covers_every_live_file_past_one_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    makoto_testkit::synthetic::many_files_table(&table, 1, 8_300, 4).unwrap();
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let deep = VerifyOptions {
        mode: VerifyMode::Deep,
        ..VerifyOptions::default()
    };
    let clean = verify_with(&table, &wh, &trust(1), deep.clone()).await;
    assert!(clean.verified, "{}", summary(&clean));
    assert_eq!(clean.files_hashed, 8_300);

    let paths = add_paths(&table, 1);
    assert_eq!(paths.len(), 8_300);
    for p in &paths {
        flip_byte(&table.join(p), 1);
    }
    let changed = verify_with(&table, &wh, &trust(1), deep).await;
    assert!(!changed.verified);
    let mut reported: Vec<&str> = changed
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::DataFileChanged)
        .filter_map(|f| f.path.as_deref())
        .collect();
    reported.sort_unstable();
    let mut expected: Vec<&str> = paths.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(reported, expected);
}
