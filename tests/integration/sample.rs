use makoto_testkit::{SampleTable, rows};
use serde_json::Value;

use crate::support::*;

fn sample_dir() -> std::path::PathBuf {
    repo_root().join("data/sample/sales")
}

fn count_actions(table: &std::path::Path, version: u64) -> usize {
    let text =
        std::fs::read_to_string(table.join(format!("_delta_log/{version:020}.json"))).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            ["add", "remove", "cdc"].iter().any(|k| v.get(k).is_some())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_table_attests_with_independently_checked_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_dir();
    let wh = tmp.path().join("wh");
    let summary = Run::new(&table, &wh).run().await.unwrap();
    assert_eq!(summary.attested.len(), 10);
    assert_eq!(summary.attested_through(), Some(9));

    let rows = attestation_rows(&wh, &table).await;
    let statements = check_rows(&rows, Some(&key(1)), &table);
    check_state_digests(&table, &rows).await;
    check_commit_digests(&table, &rows);
    let files = file_rows(&wh, &table).await;
    check_file_digests(&table, &files);
    for row in &rows {
        assert_eq!(
            files.iter().filter(|f| f.version == row.version).count(),
            count_actions(&table, row.version),
            "file rows of v{}",
            row.version
        );
    }

    // The statements carry what the log says.
    assert_eq!(
        statements[1]["predicate"]["delta"]["commit"]["actionCounts"]["add"],
        1
    );
    assert_eq!(
        statements[0]["predicate"]["origin"]["source"],
        table_uri(&table)
    );
    assert_eq!(statements[3]["predicate"]["transform"]["name"], "DELETE");
    assert_eq!(
        statements[3]["predicate"]["transform"]["type"],
        "https://makoto.dev/transforms/delta/delete"
    );
    assert_eq!(statements[4]["predicate"]["transform"]["name"], "MERGE");
    assert!(
        statements[9]["predicate"]["executor"]["id"]
            .as_str()
            .unwrap()
            .starts_with("delta-rs"),
        "{}",
        statements[9]["predicate"]["executor"]
    );
    // Row counts from the add statistics: the first append wrote 40 rows.
    assert_eq!(rows[1].records_added, Some(40));
    // OPTIMIZE at v9 replaces two files by one.
    assert_eq!((rows[9].files_added, rows[9].files_removed), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_is_a_noop_and_new_commits_add_exactly_their_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&sample_dir(), &table);
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let att_dir = wh.join("system/makoto/attestations");
    let files_dir = wh.join("system/makoto/files");
    let (att_before, files_before) = (
        raw_row_count(&att_dir).await,
        raw_row_count(&files_dir).await,
    );
    assert_eq!(att_before, 10);
    let log_entries = std::fs::read_dir(att_dir.join("_delta_log"))
        .unwrap()
        .count();

    let again = Run::new(&table, &wh).run().await.unwrap();
    assert!(again.attested.is_empty());
    assert_eq!(again.previously_attested, Some(9));
    assert_eq!(raw_row_count(&att_dir).await, att_before);
    assert_eq!(raw_row_count(&files_dir).await, files_before);
    assert_eq!(
        std::fs::read_dir(att_dir.join("_delta_log"))
            .unwrap()
            .count(),
        log_entries,
        "a no-op run writes no commit"
    );

    let mut t = SampleTable::open(&table).await.unwrap();
    t.append(rows(500..510, "emea").unwrap()).await.unwrap();
    t.delete("id = 505").await.unwrap();
    let more = Run::new(&table, &wh).run().await.unwrap();
    assert_eq!(
        more.attested.iter().map(|a| a.version).collect::<Vec<_>>(),
        vec![10, 11]
    );
    assert_eq!(raw_row_count(&att_dir).await, att_before + 2);
    assert_eq!(
        raw_row_count(&files_dir).await,
        files_before + count_actions(&table, 10) + count_actions(&table, 11)
    );
    let rows = attestation_rows(&wh, &table).await;
    check_rows(&rows, Some(&key(1)), &table);
    check_state_digests(&table, &rows[10..]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_partial_runs_give_the_same_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_dir();
    let one = tmp.path().join("one");
    Run::new(&table, &one).run().await.unwrap();
    let split = tmp.path().join("split");
    let first = Run::new(&table, &split).up_to(4).run().await.unwrap();
    assert_eq!(first.attested_through(), Some(4));
    assert_eq!(attestation_rows(&split, &table).await.len(), 5);
    Run::new(&table, &split).batch_size(2).run().await.unwrap();
    let a = attestation_rows(&one, &table).await;
    let b = attestation_rows(&split, &table).await;
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.state_digest, y.state_digest, "v{}", x.version);
        assert_eq!(x.changes_digest, y.changes_digest, "v{}", x.version);
    }
    check_rows(&b, Some(&key(1)), &table);
    let files = file_rows(&split, &table).await;
    assert_eq!(
        counts_by_version(&files),
        counts_by_version(&file_rows(&one, &table).await)
    );
}

/// Dropping the trees from memory between batches (and batches cut by bytes) changes nothing
/// that is signed: the same state, changes and reader-view digests version by version, and a
/// later run continues from the stored pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_the_state_between_batches_gives_the_same_statements() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    // About 19 files per depth-8 subtree: those subtrees are pages of their own, which the
    // evicting run drops and reads again.
    makoto_testkit::synthetic::many_files_table(&table, 12, 400, 8).unwrap();
    let (whole, evicted) = (tmp.path().join("whole"), tmp.path().join("evicted"));
    Run::new(&table, &whole).run().await.unwrap();
    Run::new(&table, &evicted)
        .up_to(5)
        .evicting(500)
        .run()
        .await
        .unwrap();
    Run::new(&table, &evicted)
        .evicting(500)
        .run()
        .await
        .unwrap();
    let pages = page_files(&evicted).len();
    assert!(pages > 200, "{pages} pages");
    let (a, b) = (
        attestation_rows(&whole, &table).await,
        attestation_rows(&evicted, &table).await,
    );
    assert_eq!(a.len(), 13);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.state_digest, y.state_digest, "v{}", x.version);
        assert_eq!(x.changes_digest, y.changes_digest, "v{}", x.version);
        let view = |r| statement_of(r)["predicate"]["delta"]["readerView"].clone();
        assert!(!view(x).is_null(), "v{}", x.version);
        assert_eq!(view(x), view(y), "v{}", x.version);
    }
    check_rows(&b, Some(&key(1)), &table);
    check_state_digests(&table, &b).await;
}

/// A stored state page changed by one bit (pages are `MKP2` now, subtrees inline) is refused
/// when the next run loads it: the run fails naming the page and writes no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctored_state_page_stops_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t");
    makoto_testkit::synthetic::many_files_table(&table, 3, 400, 8).unwrap();
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).up_to(2).run().await.unwrap();
    let rows_before = attestation_rows(&wh, &table).await.len();
    let mut doctored = 0;
    for dir in std::fs::read_dir(wh.join("system/makoto/state")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() || dir.ends_with("facts") {
            continue;
        }
        for page in std::fs::read_dir(&dir).unwrap() {
            let page = page.unwrap().path();
            let mut bytes = std::fs::read(&page).unwrap();
            assert!(bytes.starts_with(b"MKP2"), "{}", page.display());
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&page, bytes).unwrap();
            doctored += 1;
        }
    }
    assert!(doctored > 2, "{doctored} pages");
    let err = Run::new(&table, &wh).run().await.unwrap_err().to_string();
    assert!(err.contains("state page"), "{err}");
    assert_eq!(attestation_rows(&wh, &table).await.len(), rows_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_attestations_are_unsigned_l1() {
    let tmp = tempfile::tempdir().unwrap();
    let table = sample_dir();
    let wh = tmp.path().join("wh");
    let s = Run::new(&table, &wh)
        .unsigned()
        .up_to(2)
        .run()
        .await
        .unwrap();
    assert_eq!(s.level.as_str(), "L1");
    let rows = attestation_rows(&wh, &table).await;
    check_rows(&rows, None, &table);
    for r in &rows {
        let env: Value = serde_json::from_str(&r.envelope).unwrap();
        assert_eq!(env["signatures"], Value::Array(vec![]));
    }
    // Continuing with a key signs the later versions; the chain records the earlier level.
    Run::new(&table, &wh).up_to(3).run().await.unwrap();
    let rows = attestation_rows(&wh, &table).await;
    assert!(rows[3].keyid.is_some(), "signed from version 3 on");
    assert_eq!(rows[3].level.as_str(), "L1", "signed alone is not L2");
    let st = statement_of(&rows[3]);
    assert_eq!(st["predicate"]["inputs"][0]["makotoLevel"], "L1");
}
