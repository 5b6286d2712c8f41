//! Tables written by Spark, Databricks and delta-rs (../shared/delta-corpus): every version
//! attested, every digest checked against an independent recomputation. The state digest of a
//! version is recomputed from delta-rs's snapshot of that version, which is read through the
//! table's checkpoints (classic, multi-part, v2 with sidecars) when there are any, while the
//! attestation was computed by replaying the JSON commits: equal digests show the state does
//! not depend on how the log is stored.

use rstest::rstest;

use crate::support::*;

#[rstest]
#[case::classic_checkpoints_and_deletion_vectors("basic-dv-with-checkpoint")]
#[case::classic_checkpoint_copy_on_write_deletes("basic-with-inserts-deletes-checkpoint")]
#[case::multi_part_checkpoint("multi-part-checkpoint")]
#[case::multi_part_partitioned_percent_names("v1-multi-part-partitioned-struct-stats-only")]
#[case::v2_checkpoint_parquet_sidecars("v2-checkpoint-parquet")]
#[case::v2_checkpoint_json_databricks("checkpoint-v2-table")]
#[case::v2_content_classic_name("v2-classic-checkpoint-parquet")]
#[case::stale_last_checkpoint("table_failed_last_checkpoint_update")]
#[case::corrupt_last_checkpoint("corrupted-last-checkpoint-kernel")]
#[case::deletion_vectors_small("table-with-dv-small")]
#[case::inline_deletion_vectors("cdf-table-with-dv")]
#[case::dv_partitioned("dv-partitioned-with-checkpoint")]
#[case::column_mapping_name_with_dv("dv-with-columnmapping")]
#[case::column_mapping_id("table-with-columnmapping-mode-id")]
#[case::column_mapping_databricks("table_with_column_mapping")]
#[case::partition_escapes_and_emoji("dat-multi_partitioned")]
#[case::log_compaction("compacted-log-files-table")]
#[case::change_data_feed("cdf-table")]
#[case::in_commit_timestamps("cdc_ict_table")]
#[case::app_transactions("app-txn-checkpoint")]
#[case::delta_0_2_0("delta-0.2.0")]
#[case::domain_metadata_liquid("table_with_liquid_clustering")]
#[case::restore("basic-with-inserts-overwrite-restore")]
#[case::deletion_logs_databricks("table_with_deletion_logs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_table_every_version(#[case] name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table(name, tmp.path());
    let wh = tmp.path().join("wh");
    let summary = Run::new(&table, &wh)
        .run()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let rows = attestation_rows(&wh, &table).await;
    assert_eq!(
        rows.len() as u64,
        summary.latest_version + 1,
        "{name}: every version attested"
    );
    check_rows(&rows, Some(&key(1)), &table);
    check_commit_digests(&table, &rows);
    check_file_digests(&table, &file_rows(&wh, &table).await);
    check_state_digests(&table, &rows).await;
    // And it verifies, deeply, with no finding (checkpoints included).
    let report = crate::verify::verify(&table, &wh).await;
    assert!(
        report.findings.is_empty(),
        "{name}: {:?}",
        report
            .findings
            .iter()
            .map(|f| (f.kind.code(), f.version, &f.detail))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        report.checkpoints_checked as usize,
        count_checkpoint_versions(&table)
    );
}

fn count_checkpoint_versions(table: &std::path::Path) -> usize {
    let mut versions: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() > 20 && n[20..].starts_with(".checkpoint."))
        .map(|n| n[..20].to_owned())
        .collect();
    versions.sort();
    versions.dedup();
    versions.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_commit_timestamps_are_preferred() {
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table("cdc_ict_table", tmp.path());
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let rows = attestation_rows(&wh, &table).await;
    for row in &rows {
        let text =
            std::fs::read_to_string(table.join(format!("_delta_log/{:020}.json", row.version)))
                .unwrap();
        let ict = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["commitInfo"]["inCommitTimestamp"].as_i64());
        if let Some(ict) = ict {
            assert_eq!(row.commit_timestamp_ms, ict, "v{}", row.version);
            assert_eq!(row.timestamp_source, "inCommitTimestamp");
        }
    }
    assert!(
        rows.iter()
            .any(|r| r.timestamp_source == "inCommitTimestamp")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_vector_files_are_hashed_and_carried() {
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table("table-with-dv-small", tmp.path());
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let files = file_rows(&wh, &table).await;
    let dv_add = files
        .iter()
        .find(|f| f.action == "add" && f.dv_file.is_some())
        .expect("v1 adds the file again with a deletion vector");
    let bytes = std::fs::read(table.join(dv_add.dv_file.as_ref().unwrap())).unwrap();
    assert_eq!(dv_add.dv_sha256.unwrap().to_hex(), sha256_hex(&bytes));
    assert_eq!(dv_add.dv_cardinality, Some(2));
    // The data file is the same one added at v0: same digest, carried without rehashing.
    let v0 = files
        .iter()
        .find(|f| f.version == 0 && f.action == "add")
        .unwrap();
    assert_eq!(dv_add.sha256, v0.sha256);
    // The remove at v1 names the digest of what it removed.
    let rm = files.iter().find(|f| f.action == "remove").unwrap();
    assert_eq!(rm.sha256, v0.sha256);
}
