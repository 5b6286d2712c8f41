//! Runs at the same time on the same table: every version attested exactly once.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (t, w) = (table.clone(), wh.clone());
            std::thread::spawn(move || {
                makoto(&[
                    "attest",
                    t.to_str().unwrap(),
                    "--warehouse",
                    w.to_str().unwrap(),
                    "--batch-size",
                    &(2 + i).to_string(),
                ])
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
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
