//! Runs at the same time on the same table: every version attested exactly once.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use makoto_core::keys::Signer;
use makoto_delta::{Event, Observer, Phase};

use crate::support::*;

/// Holds each run after it has signed its first batch until the other has too, so both
/// race to write the same versions.
struct Rendezvous {
    barrier: Arc<Barrier>,
    waited: AtomicBool,
}

impl Observer for Rendezvous {
    fn on_event(&self, event: &Event<'_>) -> ControlFlow<()> {
        if let Event::Reached {
            phase: Phase::Signed,
            ..
        } = event
            && !self.waited.swap(true, Ordering::SeqCst)
        {
            self.barrier.wait();
        }
        ControlFlow::Continue(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_racing_write_each_version_once() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let barrier = Arc::new(Barrier::new(2));
    let obs = |b: &Arc<Barrier>| -> Arc<dyn Observer> {
        Arc::new(Rendezvous {
            barrier: Arc::clone(b),
            waited: AtomicBool::new(false),
        })
    };
    // Separate tasks, so that one run waiting at the barrier does not block the other.
    let spawn = |o: Arc<dyn Observer>| {
        let (t, w) = (table.clone(), wh.clone());
        tokio::spawn(async move { Run::new(&t, &w).batch_size(4).observer(o).run().await })
    };
    let (a, b) = (spawn(obs(&barrier)), spawn(obs(&barrier)));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(
        a.concurrent_runs + b.concurrent_runs >= 1,
        "the loser of the race starts over ({} / {})",
        a.concurrent_runs,
        b.concurrent_runs
    );
    assert_eq!(a.attested_through(), Some(9));
    assert_eq!(b.attested_through(), Some(9));
    let rows = attestation_rows(&wh, &table).await;
    check_rows(&rows, Some(&key(1)), &table);
    assert_eq!(
        raw_row_count(&wh.join("system/makoto/attestations")).await,
        10
    );
    let files = file_rows(&wh, &table).await;
    let clean = tmp.path().join("clean");
    Run::new(&table, &clean).run().await.unwrap();
    assert_eq!(
        counts_by_version(&files),
        counts_by_version(&file_rows(&clean, &table).await)
    );
}

/// Runs `makoto` once per argument list, all at the same time; their outputs in order.
fn at_once(runs: impl Iterator<Item = Vec<String>>) -> Vec<ChildOutput> {
    let handles: Vec<_> = runs
        .map(|args| {
            std::thread::spawn(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                makoto(&refs)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let runs = (0..3).map(|i| {
        let batch = (2 + i).to_string();
        vec![
            "attest".to_owned(),
            table.to_str().unwrap().to_owned(),
            "--warehouse".to_owned(),
            wh.to_str().unwrap().to_owned(),
            "--batch-size".to_owned(),
            batch,
        ]
    });
    for out in at_once(runs) {
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let rows = attestation_rows(&wh, &table).await;
    check_rows(&rows, None, &table);
    assert_eq!(
        raw_row_count(&wh.join("system/makoto/attestations")).await,
        10
    );
    let files = file_rows(&wh, &table).await;
    let clean = tmp.path().join("clean");
    Run::new(&table, &clean).run().await.unwrap();
    assert_eq!(
        counts_by_version(&files),
        counts_by_version(&file_rows(&clean, &table).await)
    );
}

/// A scheduled run per mutation on several tables into one warehouse, the runs of one round
/// at the same time: over enough rounds for the system tables to checkpoint (every 10 commits)
/// while other runs write, every version of every table is attested exactly once, every run
/// succeeds, and every table verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_many_tables_into_one_warehouse_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let key_file = tmp.path().join("k.key");
    std::fs::write(&key_file, key(1).to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&key_file, private).unwrap();
    let names = ["a", "b", "c"];
    let mut tables = Vec::new();
    for n in names {
        tables.push(
            makoto_testkit::SampleTable::create(&tmp.path().join(n))
                .await
                .unwrap(),
        );
    }
    let rounds = 12;
    for round in 0..rounds {
        for t in &mut tables {
            t.append(makoto_testkit::rows(round * 10..round * 10 + 3, "eu").unwrap())
                .await
                .unwrap();
        }
        let runs = names.iter().map(|n| {
            let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
            let table = path(&tmp.path().join(n));
            let (wh, key) = (path(&wh), path(&key_file));
            ["attest", &table, "--warehouse", &wh, "--key", &key]
                .map(str::to_owned)
                .to_vec()
        });
        for out in at_once(runs) {
            assert_eq!(out.code, Some(0), "round {round}: {}", out.stderr);
        }
    }
    let attestations = wh.join("system/makoto/attestations");
    let log: Vec<String> = std::fs::read_dir(attestations.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        log.iter().any(|f| f.ends_with(".checkpoint.parquet")),
        "the attestations table checkpointed while runs raced: {log:?}"
    );
    let pem = tmp.path().join("k.pub");
    std::fs::write(&pem, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    for (n, t) in names.iter().zip(&tables) {
        let path = tmp.path().join(n);
        let rows = attestation_rows(&wh, &path).await;
        let versions: Vec<u64> = rows.iter().map(|r| r.version).collect();
        let latest = t.version().unwrap();
        assert_eq!(
            versions,
            (0..=latest).collect::<Vec<_>>(),
            "{n}: each version once"
        );
        let out = makoto(&[
            "verify",
            path.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            pem.to_str().unwrap(),
            "--no-record",
        ]);
        assert_eq!(out.code, Some(0), "{n}: {}{}", out.stdout, out.stderr);
    }
    assert_eq!(
        raw_row_count(&attestations).await,
        tables.iter().map(|t| t.version().unwrap() + 1).sum::<u64>() as usize
    );
}

/// A service hands each run the tip its previous run committed. A fresh hint saves reading
/// the attestations table; a stale one (another writer attested further meanwhile) costs one
/// restart and never a duplicate or a broken chain; a hint for another table is ignored.
#[tokio::test]
async fn a_run_started_from_a_hint_writes_each_version_once() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");

    let first = Run::new(&table, &wh).up_to(3).run().await.unwrap();
    let tip = first.tip.clone().unwrap();
    assert_eq!(tip.version(), 3);
    let fresh = Run::new(&table, &wh)
        .up_to(5)
        .hint(Some(tip.clone()))
        .run()
        .await
        .unwrap();
    assert_eq!(fresh.concurrent_runs, 0);
    assert_eq!(fresh.previously_attested, Some(3));
    assert_eq!(fresh.tip.as_ref().map(|t| t.version()), Some(5));

    // The hint still says 3; the table is attested through 5.
    let stale = Run::new(&table, &wh).hint(Some(tip)).run().await.unwrap();
    assert_eq!(stale.concurrent_runs, 1, "a stale hint costs one restart");
    assert_eq!(stale.previously_attested, Some(5));
    assert_eq!(stale.attested_through(), Some(9));
    let versions: Vec<u64> = stale.attested.iter().map(|a| a.version).collect();
    assert_eq!(versions, vec![6, 7, 8, 9]);

    let rows = attestation_rows(&wh, &table).await;
    check_rows(&rows, Some(&key(1)), &table);
    assert_eq!(
        raw_row_count(&wh.join("system/makoto/attestations")).await,
        10
    );

    let other = tmp.path().join("other");
    copy_dir(&repo_root().join("data/sample/sales"), &other);
    let foreign = Run::new(&other, &wh)
        .hint(stale.tip.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(
        foreign.previously_attested, None,
        "another table's hint is ignored"
    );
    assert_eq!(foreign.concurrent_runs, 0);
    assert_eq!(foreign.attested_through(), Some(9));
}
