//! What readers see: every artifact a Delta reader may use (commits, checkpoints of every
//! kind, `.crc` files, log compactions, `_last_checkpoint`) is bound by the signed reader
//! view, and each way of forging one is found with its kind, version and file — deep and
//! log-only. Also the verdict's coverage: no VERIFIED for a version that was not checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::json::{LineDelimitedWriter, ReaderBuilder};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use makoto_delta::{FindingKind, Outcome, VerifyMode, VerifyOptions, VerifyReport, VersionSpec};
use rstest::rstest;
use serde_json::Value;

use crate::support::*;
use crate::verify::{attested_copy, trust, verify_with};

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

fn log(table: &Path, name: &str) -> PathBuf {
    table.join("_delta_log").join(name)
}

/// Rewrites a Parquet checkpoint through its JSON form (same schema), so a test can forge any
/// field the way an attacker with write access to the bucket would.
fn rewrite_parquet(path: &Path, edit: impl Fn(String) -> String) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let mut json = Vec::new();
    {
        let mut w = LineDelimitedWriter::new(&mut json);
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }
    let edited = edit(String::from_utf8(json).unwrap());
    let reader = ReaderBuilder::new(schema.clone())
        .build(std::io::Cursor::new(edited.into_bytes()))
        .unwrap();
    let mut out = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        for b in reader {
            w.write(&b.unwrap()).unwrap();
        }
        w.close().unwrap();
    }
    std::fs::write(path, out).unwrap();
}

fn edit_text(path: &Path, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(
        text,
        edited,
        "the edit of {} changed nothing",
        path.display()
    );
    std::fs::write(path, edited).unwrap();
}

async fn verify_mode(table: &Path, wh: &Path, mode: VerifyMode, at: VersionSpec) -> VerifyReport {
    verify_with(
        table,
        wh,
        &trust(1),
        VerifyOptions {
            mode,
            at,
            ..VerifyOptions::default()
        },
    )
    .await
}

fn assert_found(r: &VerifyReport, kind: FindingKind, version: u64, file: Option<&str>, what: &str) {
    assert!(!r.verified, "{what}: reported VERIFIED\n{}", summary(r));
    assert_eq!(r.outcome, Outcome::Failed, "{what}\n{}", summary(r));
    let hit = r.findings.iter().any(|f| {
        f.kind == kind
            && f.version == Some(version)
            && (file.is_none() || f.path.as_deref() == file)
    });
    assert!(
        hit,
        "{what}: expected {} at v{version} {file:?}, got:\n{}",
        kind.code(),
        summary(r)
    );
}

#[derive(Debug, Clone, Copy)]
enum Forge {
    CheckpointPartitionValue,
    CheckpointSchema,
    CheckpointStats,
    CheckpointDroppedFile,
    CheckpointBeyondLog,
    ChecksumSchema,
    ChecksumFileCount,
    ChecksumBeyondLog,
    MultiPartCheckpointPart,
    SidecarPartitionValue,
    StatsParsed,
    CompactionStats,
    CompactionBeyondLog,
    ExpiredCommitsThenForgedCheckpoint,
}

/// Each forgery, on a table that has the artifact: (table, forge, kind, version, file).
#[rstest]
#[case::checkpoint_partition_value(
    "sample",
    Forge::CheckpointPartitionValue,
    FindingKind::CheckpointMismatch,
    8,
    Some("_delta_log/00000000000000000008.checkpoint.parquet")
)]
#[case::checkpoint_schema(
    "sample",
    Forge::CheckpointSchema,
    FindingKind::CheckpointMismatch,
    8,
    Some("_delta_log/00000000000000000008.checkpoint.parquet")
)]
#[case::checkpoint_stats(
    "sample",
    Forge::CheckpointStats,
    FindingKind::CheckpointMismatch,
    8,
    Some("_delta_log/00000000000000000008.checkpoint.parquet")
)]
#[case::checkpoint_dropped_file(
    "sample",
    Forge::CheckpointDroppedFile,
    FindingKind::CheckpointMismatch,
    8,
    Some("_delta_log/00000000000000000008.checkpoint.parquet")
)]
#[case::checkpoint_beyond_log(
    "sample",
    Forge::CheckpointBeyondLog,
    FindingKind::LogFileUnattested,
    10,
    Some("_delta_log/00000000000000000010.checkpoint.parquet")
)]
#[case::checksum_schema(
    "cdc_ict_table",
    Forge::ChecksumSchema,
    FindingKind::ChecksumMismatch,
    2,
    Some("_delta_log/00000000000000000002.crc")
)]
#[case::checksum_file_count(
    "cdc_ict_table",
    Forge::ChecksumFileCount,
    FindingKind::ChecksumMismatch,
    3,
    Some("_delta_log/00000000000000000003.crc")
)]
#[case::checksum_beyond_log(
    "cdc_ict_table",
    Forge::ChecksumBeyondLog,
    FindingKind::LogFileUnattested,
    4,
    Some("_delta_log/00000000000000000004.crc")
)]
#[case::multi_part_checkpoint_part(
    "multi-part-checkpoint",
    Forge::MultiPartCheckpointPart,
    FindingKind::CheckpointMismatch,
    1,
    None
)]
#[case::sidecar_partition_value(
    "v2-checkpoint-parquet",
    Forge::SidecarPartitionValue,
    FindingKind::CheckpointMismatch,
    2,
    None
)]
#[case::stats_parsed(
    "parsed-stats",
    Forge::StatsParsed,
    FindingKind::CheckpointMismatch,
    3,
    Some("_delta_log/00000000000000000003.checkpoint.parquet")
)]
#[case::compaction_stats(
    "compacted-log-files-table",
    Forge::CompactionStats,
    FindingKind::CompactionMismatch,
    5,
    Some("_delta_log/00000000000000000000.00000000000000000005.compacted.json")
)]
#[case::compaction_beyond_log(
    "compacted-log-files-table",
    Forge::CompactionBeyondLog,
    FindingKind::LogFileUnattested,
    27,
    Some("_delta_log/00000000000000000024.00000000000000000027.compacted.json")
)]
#[case::expired_commits_then_forged_checkpoint(
    "sample",
    Forge::ExpiredCommitsThenForgedCheckpoint,
    FindingKind::CheckpointMismatch,
    8,
    Some("_delta_log/00000000000000000008.checkpoint.parquet")
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reader_artifacts_are_found(
    #[case] name: &str,
    #[case] forge: Forge,
    #[case] kind: FindingKind,
    #[case] version: u64,
    #[case] file: Option<&str>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy(name, tmp.path()).await;
    let before = verify_mode(&table, &wh, VerifyMode::Deep, VersionSpec::Latest).await;
    assert!(
        before.verified,
        "{name} before the forgery:\n{}",
        summary(&before)
    );
    match forge {
        Forge::CheckpointPartitionValue => rewrite_parquet(
            &log(&table, "00000000000000000008.checkpoint.parquet"),
            |j| j.replacen("\"region\":\"apac\"", "\"region\":\"emea\"", 1),
        ),
        Forge::CheckpointSchema => rewrite_parquet(
            &log(&table, "00000000000000000008.checkpoint.parquet"),
            |j| {
                j.replace(
                    "\\\"name\\\":\\\"amount\\\"",
                    "\\\"name\\\":\\\"amount_usd\\\"",
                )
            },
        ),
        Forge::CheckpointStats => rewrite_parquet(
            &log(&table, "00000000000000000008.checkpoint.parquet"),
            // A forged minimum hides the file from `WHERE id < 100`.
            |j| {
                j.replacen(
                    "\\\"minValues\\\":{\\\"id\\\":",
                    "\\\"minValues\\\":{\\\"id\\\":9999",
                    1,
                )
            },
        ),
        Forge::CheckpointDroppedFile => rewrite_parquet(
            &log(&table, "00000000000000000008.checkpoint.parquet"),
            |j| {
                let mut lines: Vec<&str> = j.lines().collect();
                let i = lines
                    .iter()
                    .position(|l| l.starts_with("{\"add\""))
                    .unwrap();
                lines.remove(i);
                lines.join("\n") + "\n"
            },
        ),
        Forge::CheckpointBeyondLog => {
            std::fs::copy(
                log(&table, "00000000000000000008.checkpoint.parquet"),
                log(&table, "00000000000000000010.checkpoint.parquet"),
            )
            .unwrap();
        }
        Forge::ChecksumSchema => edit_text(&log(&table, "00000000000000000002.crc"), |t| {
            t.replace("\\\"name\\\":\\\"age\\\"", "\\\"name\\\":\\\"years\\\"")
        }),
        Forge::ChecksumFileCount => edit_text(&log(&table, "00000000000000000003.crc"), |t| {
            let mut v: Value = serde_json::from_str(&t).unwrap();
            let n = v["numFiles"].as_u64().unwrap();
            v["numFiles"] = Value::from(n + 1);
            v.to_string()
        }),
        Forge::ChecksumBeyondLog => {
            std::fs::copy(
                log(&table, "00000000000000000003.crc"),
                log(&table, "00000000000000000004.crc"),
            )
            .unwrap();
        }
        Forge::MultiPartCheckpointPart => {
            let part = std::fs::read_dir(table.join("_delta_log"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".checkpoint.0000000002."))
                .min()
                .unwrap();
            rewrite_parquet(&log(&table, &part), |j| {
                let mut lines: Vec<&str> = j.lines().collect();
                let i = lines
                    .iter()
                    .position(|l| l.starts_with("{\"add\""))
                    .unwrap();
                lines.remove(i);
                lines.join("\n") + "\n"
            });
        }
        Forge::SidecarPartitionValue => {
            let dir = table.join("_delta_log/_sidecars");
            let sidecar = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "parquet"))
                .unwrap();
            rewrite_parquet(&sidecar, |j| {
                let mut lines: Vec<&str> = j.lines().collect();
                let i = lines
                    .iter()
                    .position(|l| l.starts_with("{\"add\""))
                    .unwrap();
                lines.remove(i);
                lines.join("\n") + "\n"
            });
        }
        Forge::StatsParsed => rewrite_parquet(
            &log(&table, "00000000000000000003.checkpoint.parquet"),
            |j| {
                let mut v: Vec<Value> = j
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                let add = v
                    .iter_mut()
                    .find(|r| {
                        r.get("add")
                            .is_some_and(|a| a.get("stats_parsed").is_some())
                    })
                    .unwrap();
                let n = add["add"]["stats_parsed"]["numRecords"].as_i64().unwrap();
                add["add"]["stats_parsed"]["numRecords"] = Value::from(n + 100);
                v.iter().map(|r| r.to_string() + "\n").collect()
            },
        ),
        Forge::CompactionStats => edit_text(
            &log(
                &table,
                "00000000000000000000.00000000000000000005.compacted.json",
            ),
            |t| {
                // The first `add` of the file: its statistics are what readers skip by.
                let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
                let i = lines
                    .iter()
                    .position(|l| l.starts_with("{\"add\""))
                    .unwrap();
                lines[i] = lines[i].replacen("\\\"numRecords\\\":", "\\\"numRecords\\\":40", 1);
                lines.join("\n") + "\n"
            },
        ),
        Forge::CompactionBeyondLog => {
            std::fs::copy(
                log(
                    &table,
                    "00000000000000000006.00000000000000000010.compacted.json",
                ),
                log(
                    &table,
                    "00000000000000000024.00000000000000000027.compacted.json",
                ),
            )
            .unwrap();
        }
        Forge::ExpiredCommitsThenForgedCheckpoint => {
            for v in 0..8 {
                std::fs::remove_file(log(&table, &format!("{v:020}.json"))).unwrap();
            }
            rewrite_parquet(
                &log(&table, "00000000000000000008.checkpoint.parquet"),
                |j| j.replacen("\"region\":\"apac\"", "\"region\":\"emea\"", 1),
            );
        }
    }
    for mode in [VerifyMode::Deep, VerifyMode::LogOnly] {
        let r = verify_mode(&table, &wh, mode, VersionSpec::Latest).await;
        assert_found(&r, kind, version, file, &format!("{forge:?} {mode:?}"));
    }
}

/// Log cleanup after attestation is normal operation: the walk restarts from the checkpoint,
/// which matches the signed reader view, and the latest version is VERIFIED (the expired
/// commits are warnings). A version before the checkpoint cannot be read by anyone any more:
/// not VERIFIED, and the report says nothing was checked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_commits_restart_from_a_checkpoint_and_old_versions_are_not_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    for v in 0..8 {
        std::fs::remove_file(log(&table, &format!("{v:020}.json"))).unwrap();
    }
    for mode in [VerifyMode::Deep, VerifyMode::LogOnly] {
        let r = verify_mode(&table, &wh, mode, VersionSpec::Latest).await;
        assert_eq!(r.outcome, Outcome::Verified, "{mode:?}\n{}", summary(&r));
        assert!(r.coverage.version_checked);
        assert_eq!(
            r.coverage.reader_view,
            makoto_delta::ReaderViewCoverage::Signed
        );
        assert_eq!(r.coverage.commits_expired, 8);
        assert!(
            r.findings
                .iter()
                .all(|f| f.kind == FindingKind::CommitExpired),
            "{}",
            summary(&r)
        );
        if mode == VerifyMode::Deep {
            assert!(r.files_hashed > 0, "the live files were rehashed");
        }
    }
    let old = verify_mode(&table, &wh, VerifyMode::Deep, VersionSpec::Version(3)).await;
    assert_eq!(old.outcome, Outcome::Unverifiable, "{}", summary(&old));
    assert!(!old.verified && !old.coverage.version_checked);
    assert!(
        old.findings
            .iter()
            .any(|f| f.kind == FindingKind::VersionUnverifiable && f.version == Some(3)),
        "{}",
        summary(&old)
    );
}

/// `--since-last` runs the same checkpoint and checksum checks as a full verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_last_checks_checkpoints_too() {
    use makoto_core::keys::Signer;
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let verifier = key(7);
    let both = makoto_core::verify::TrustedKeys::new(vec![
        key(1).public_key().clone(),
        verifier.public_key().clone(),
    ]);
    let record = || {
        Some(makoto_delta::verify::RecordSigner::Signed(
            Arc::clone(&verifier) as Arc<dyn Signer>,
        ))
    };
    let first = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            record: record(),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert!(first.verified && first.recorded, "{}", summary(&first));
    rewrite_parquet(
        &log(&table, "00000000000000000008.checkpoint.parquet"),
        |j| j.replacen("\"region\":\"apac\"", "\"region\":\"emea\"", 1),
    );
    let again = verify_with(
        &table,
        &wh,
        &both,
        VerifyOptions {
            since_last: true,
            record: record(),
            ..VerifyOptions::default()
        },
    )
    .await;
    assert_eq!(again.since, Some(9), "continued from the record");
    assert_found(
        &again,
        FindingKind::CheckpointMismatch,
        8,
        Some("_delta_log/00000000000000000008.checkpoint.parquet"),
        "since-last",
    );
}

/// `--timestamp` picks the version from signed commit timestamps: rewriting a commit's time
/// in the log does not move the verification to another version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_resolve_through_signed_commit_times() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let rows = attestation_rows(&wh, &table).await;
    let v = (1..rows.len() - 1)
        .find(|i| rows[*i].commit_timestamp_ms < rows[i + 1].commit_timestamp_ms)
        .unwrap();
    let t = rows[v].commit_timestamp_ms;
    // Make the next commit look older than version v.
    let next = log(&table, &format!("{:020}.json", v + 1));
    let earlier = t - 60_000;
    edit_text(&next, |text| {
        text.lines()
            .map(|l| {
                let mut a: Value = serde_json::from_str(l).unwrap();
                if let Some(ci) = a.get_mut("commitInfo") {
                    ci["timestamp"] = Value::from(earlier);
                }
                a.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t).unwrap();
    let r = verify_mode(&table, &wh, VerifyMode::LogOnly, VersionSpec::Timestamp(at)).await;
    assert_eq!(r.version, v as u64, "{}", summary(&r));
    assert!(r.verified, "{}", summary(&r));
}

/// A file of version N deleted, and a later attested commit edited to "remove" it: the forged
/// remove is not signed, so it does not excuse the missing file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattested_later_commits_do_not_explain_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    let wh = tmp.path().join("wh");
    let mut t = makoto_testkit::SampleTable::create(&table).await.unwrap();
    for i in 0..3 {
        t.append(makoto_testkit::rows(i * 10..i * 10 + 10, "emea").unwrap())
            .await
            .unwrap();
    }
    Run::new(&table, &wh).run().await.unwrap();
    let victim = crate::verify::add_paths(&table, 1).pop().unwrap();
    std::fs::remove_file(table.join(&victim)).unwrap();
    let encoded = percent_encoding::utf8_percent_encode(&victim, percent_encoding::CONTROLS)
        .to_string()
        .replace('=', "%3D");
    edit_text(&log(&table, "00000000000000000003.json"), |text| {
        format!(
            "{}\n{{\"remove\":{{\"path\":\"{encoded}\",\"deletionTimestamp\":1,\"dataChange\":true}}}}\n",
            text.trim_end()
        )
    });
    let r = verify_mode(&table, &wh, VerifyMode::Deep, VersionSpec::Version(2)).await;
    assert_found(
        &r,
        FindingKind::DataFileMissing,
        1,
        Some(&victim),
        "forged later remove",
    );
    assert!(
        !r.findings
            .iter()
            .any(|f| f.kind == FindingKind::DataFileVacuumed),
        "{}",
        summary(&r)
    );
}

/// A commit file named with a huge version: one finding per gap, whatever its length, and the
/// run ends (memory bounded by the files listed, not by version numbers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_version_numbers_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    std::fs::write(
        log(&table, "00000000000100000000.json"),
        "{\"commitInfo\":{\"timestamp\":1,\"operation\":\"WRITE\"}}\n",
    )
    .unwrap();
    // Beyond a signed 64-bit version: not a commit file at all.
    std::fs::write(log(&table, "99999999999999999999.json"), "{}\n").unwrap();
    let r = verify_mode(&table, &wh, VerifyMode::LogOnly, VersionSpec::Latest).await;
    assert_eq!(r.version, 100_000_000);
    assert!(r.findings.len() < 10, "{}", summary(&r));
    assert_found(&r, FindingKind::CommitMissing, 10, None, "gap");
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::AttestationMissing && f.version == Some(10)),
        "{}",
        summary(&r)
    );
}

/// Symbolic links are not followed: a loop in the table directory neither aborts a deep
/// verification nor adds findings; one inside `_delta_log/` is reported as not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_loops_do_not_stop_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    std::os::unix::fs::symlink(&table, table.join("region=loop")).unwrap();
    std::os::unix::fs::symlink("/", table.join("outside")).unwrap();
    let r = verify_mode(&table, &wh, VerifyMode::Deep, VersionSpec::Latest).await;
    assert!(r.verified, "{}", summary(&r));
    std::os::unix::fs::symlink(table.join("_delta_log"), log(&table, "loop")).unwrap();
    let r = verify_mode(&table, &wh, VerifyMode::Deep, VersionSpec::Latest).await;
    assert_ne!(r.outcome, Outcome::Failed, "{}", summary(&r));
}

/// A validly signed row of another table put in place of this table's row: reported as
/// altered, and not used to replay this table's log (no misleading second finding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_another_table_is_not_used() {
    use deltalake::arrow::array::StringArray;
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let other = tmp.path().join("other");
    makoto_testkit::build_sample(&other).await.unwrap();
    Run::new(&other, &wh).run().await.unwrap();
    let row = crate::verify::select_rows(
        &wh,
        &format!("version = 2 AND table_uri = '{}'", table_uri(&other)),
    )
    .await
    .remove(0);
    let swapped = crate::verify::replace_column(
        &row,
        "table_uri",
        Arc::new(StringArray::from(vec![table_uri(&table)])),
    );
    crate::verify::delete_rows(
        &wh,
        &format!("version = 2 AND table_uri = '{}'", table_uri(&table)),
    )
    .await;
    crate::verify::append_rows(&wh, vec![swapped]).await;
    let r = verify_mode(&table, &wh, VerifyMode::LogOnly, VersionSpec::Latest).await;
    assert_found(&r, FindingKind::AttestationAltered, 2, None, "swapped row");
    assert!(
        !r.findings.iter().any(|f| f.version == Some(2)
            && matches!(
                f.kind,
                FindingKind::CommitRewritten
                    | FindingKind::StateMismatch
                    | FindingKind::ReaderViewMismatch
            )),
        "{}",
        summary(&r)
    );
}

/// The baseline checkpoint replaced by a multi-part one under other names: something stands in
/// its place, so it is a changed baseline (an error), not an expired one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_replaced_under_another_name_is_changed_not_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("checkpoint-cdf-table", tmp.path()).await;
    let original = log(&table, "00000000000000000003.checkpoint.parquet");
    let part1 = log(
        &table,
        "00000000000000000003.checkpoint.0000000001.0000000002.parquet",
    );
    let part2 = log(
        &table,
        "00000000000000000003.checkpoint.0000000002.0000000002.parquet",
    );
    std::fs::copy(&original, &part1).unwrap();
    std::fs::copy(&original, &part2).unwrap();
    rewrite_parquet(&part2, |j| {
        j.lines()
            .filter(|l| !l.starts_with("{\"add\""))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    rewrite_parquet(&part1, |j| {
        let mut lines: Vec<&str> = j.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.starts_with("{\"add\""))
            .unwrap();
        lines.remove(i);
        lines.join("\n") + "\n"
    });
    std::fs::remove_file(&original).unwrap();
    let r = verify_mode(&table, &wh, VerifyMode::LogOnly, VersionSpec::Latest).await;
    assert_found(
        &r,
        FindingKind::BaselineChanged,
        3,
        None,
        "baseline replaced",
    );
    assert!(
        !r.findings
            .iter()
            .any(|f| f.kind == FindingKind::BaselineExpired),
        "{}",
        summary(&r)
    );
}

/// Giant planted files are reported without being read (sparse files here, so the test is
/// cheap): memory stays bounded on hostile input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giant_planted_log_files_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (table, wh) = attested_copy("sample", tmp.path()).await;
    let checkpoint = log(&table, "00000000000000000008.checkpoint.parquet");
    std::fs::File::options()
        .write(true)
        .open(&checkpoint)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    std::fs::File::create(log(&table, "00000000000000000010.json"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let r = verify_mode(&table, &wh, VerifyMode::LogOnly, VersionSpec::Version(9)).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CheckpointUnreadable
                && f.version == Some(8)
                && f.detail.contains("not read")),
        "{}",
        summary(&r)
    );
    let r = verify_mode(&table, &wh, VerifyMode::LogOnly, VersionSpec::Latest).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CommitRewritten
                && f.version == Some(10)
                && f.detail.contains("not read")),
        "{}",
        summary(&r)
    );
}

/// A run continues a chain from the stored table facts; when they are gone (or the chain was
/// made before reader views were signed) it rebuilds the view from the log, checks it against
/// the last signed one, and the chain goes on verifying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_stored_facts_rebuilds_the_view_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    let wh = tmp.path().join("wh");
    let mut t = makoto_testkit::SampleTable::create(&table).await.unwrap();
    t.append(makoto_testkit::rows(0..10, "emea").unwrap())
        .await
        .unwrap();
    t.checkpoint().await.unwrap();
    t.append(makoto_testkit::rows(10..20, "amer").unwrap())
        .await
        .unwrap();
    Run::new(&table, &wh).run().await.unwrap();
    std::fs::remove_dir_all(wh.join("system/makoto/state/facts")).unwrap();
    t.append(makoto_testkit::rows(20..30, "apac").unwrap())
        .await
        .unwrap();
    t.delete("id < 5").await.unwrap();
    let s = Run::new(&table, &wh).run().await.unwrap();
    assert_eq!(s.attested.len(), 2);
    let r = verify_mode(&table, &wh, VerifyMode::Deep, VersionSpec::Latest).await;
    assert!(r.verified, "{}", summary(&r));
    assert_eq!(
        r.coverage.reader_view,
        makoto_delta::ReaderViewCoverage::Signed
    );
}
