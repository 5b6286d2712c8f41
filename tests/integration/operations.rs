//! Tables written here with delta-rs, one commit kind at a time, attested as they grow.

use makoto_testkit::{SampleTable, rows};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_commit_is_attested_incrementally() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t");
    let wh = tmp.path().join("wh");
    let mut t = SampleTable::create(&path).await.unwrap();
    t.append(rows(0..100, "emea").unwrap()).await.unwrap();
    t.append(rows(100..200, "amer").unwrap()).await.unwrap();
    Run::new(&path, &wh).run().await.unwrap();

    t.overwrite(rows(1000..1050, "apac").unwrap())
        .await
        .unwrap();
    t.append(rows(0..30, "emea").unwrap()).await.unwrap();
    t.delete("id < 10").await.unwrap();
    Run::new(&path, &wh).run().await.unwrap();

    t.double_amounts("region = 'apac'").await.unwrap();
    t.upsert(rows(25..40, "emea").unwrap()).await.unwrap();
    t.append(rows(40..45, "emea").unwrap()).await.unwrap();
    t.optimize().await.unwrap();
    t.checkpoint().await.unwrap();
    t.append(rows(45..50, "emea").unwrap()).await.unwrap();
    let s = Run::new(&path, &wh).run().await.unwrap();
    let latest = t.version().unwrap();
    assert_eq!(s.attested_through(), Some(latest));

    let rows_ = attestation_rows(&wh, &path).await;
    assert_eq!(rows_.len() as u64, latest + 1);
    let statements = check_rows(&rows_, Some(&key(1)), &path);
    let ops: Vec<String> = statements
        .iter()
        .map(|s| {
            s["predicate"]["transform"]["name"]
                .as_str()
                .unwrap_or("(origin)")
                .to_owned()
        })
        .collect();
    for op in ["WRITE", "DELETE", "UPDATE", "MERGE", "OPTIMIZE"] {
        assert!(ops.iter().any(|o| o == op), "{op} missing from {ops:?}");
    }
    // Every version's state digest, recomputed from delta-rs's snapshot (which reads the
    // checkpoint for the later versions) and the file bytes.
    check_state_digests(&path, &rows_).await;
    check_commit_digests(&path, &rows_);
    check_file_digests(&path, &file_rows(&wh, &path).await);

    // VACUUM deletes the files of old versions (already attested) and commits its own
    // VACUUM START / VACUUM END entries, which are attested without data changes.
    let before = t.version().unwrap();
    let deleted = t.vacuum_all().await.unwrap();
    assert!(deleted > 0);
    let after = Run::new(&path, &wh).run().await.unwrap();
    let new_versions: Vec<u64> = after.attested.iter().map(|a| a.version).collect();
    assert_eq!(
        new_versions,
        ((before + 1)..=t.version().unwrap()).collect::<Vec<_>>()
    );
    let rows_ = attestation_rows(&wh, &path).await;
    let last = rows_.last().unwrap();
    assert_eq!(
        last.state_digest, rows_[before as usize].state_digest,
        "vacuum does not change the table state"
    );
    check_rows(&rows_, Some(&key(1)), &path);
    check_state_digests(&path, &rows_[before as usize..]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_commits_and_identical_rewrites_keep_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t");
    let wh = tmp.path().join("wh");
    let mut t = SampleTable::create(&path).await.unwrap();
    t.append(rows(0..10, "emea").unwrap()).await.unwrap();
    // A delete that matches nothing still commits (or not); either way the state is unchanged.
    t.delete("id > 1000000").await.unwrap();
    Run::new(&path, &wh).run().await.unwrap();
    let r = attestation_rows(&wh, &path).await;
    assert_eq!(
        r.first().unwrap().state_digest.to_hex(),
        "0".repeat(64),
        "an empty table has the zero root"
    );
    assert_eq!(r.last().unwrap().state_digest, r[1].state_digest);
    check_state_digests(&path, &r).await;
}
