//! Group commit: appends that concurrent runs make to one system table are written together,
//! in one Delta commit that carries each run's rows and each run's `txn` action.
//!
//! A run hands its rows in with the `txn` version it read for its application id (from the
//! snapshot it checked). Whoever holds the table's commit lock is the leader: it takes every
//! append waiting, loads the newest snapshot, answers [`AppendOutcome::Conflict`] to each
//! append whose application id has moved since its run read it (or that repeats an id
//! already in the group), and commits the rest at once. Delta's conflict check covers commits
//! made after that snapshot: a concurrent transaction on one of the ids, or any other commit
//! conflict (say an operator's metadata change), fails the whole commit, and the leader loads
//! the newest snapshot, checks again and retries without the losers. So each run gets the
//! same answer it would have had committing alone; while one commit is written the next group
//! gathers, and a service with many runs in flight makes a few commits instead of one per run.

use std::collections::HashSet;

use arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::TransactionError;
use deltalake::{DeltaTable, DeltaTableError};

use super::AppendOutcome;

/// How often a group is retried after losing to a concurrent transaction before its members
/// are told to start over.
const GROUP_ATTEMPTS: u32 = 8;

/// One run's append, waiting for a leader.
pub(super) struct Pending {
    pub batch: RecordBatch,
    pub txn: Transaction,
    /// The `txn` version of `txn.app_id` the run read (`None`: none yet).
    pub expected: Option<i64>,
    /// The snapshot the run read `expected` from.
    pub read_at: DeltaTable,
    pub run_id: String,
    pub reply: tokio::sync::oneshot::Sender<Result<Committed, String>>,
}

/// What a member is told.
pub(super) type Committed = AppendOutcome;

/// The appends waiting for one system table, and who may commit.
#[derive(Default)]
pub(super) struct CommitQueue {
    pending: std::sync::Mutex<Vec<Pending>>,
    leader: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CommitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitQueue")
    }
}

impl CommitQueue {
    /// Queues `pending` and returns once it is committed (by this caller, leading, or by
    /// another). `snapshot` loads the newest snapshot of the table; `after` runs with each
    /// committed table (compaction).
    pub async fn append<L, LF, A, AF>(
        &self,
        pending: Pending,
        rx: tokio::sync::oneshot::Receiver<Result<Committed, String>>,
        snapshot: L,
        after: A,
    ) -> Result<Committed, String>
    where
        L: Fn() -> LF,
        LF: std::future::Future<Output = Result<DeltaTable, String>>,
        A: FnOnce(DeltaTable) -> AF,
        AF: std::future::Future<Output = ()>,
    {
        self.pending
            .lock()
            .map_err(|_| "commit queue poisoned".to_owned())?
            .push(pending);
        let mut rx = rx;
        let guard = self.leader.lock().await;
        if let Ok(answer) = rx.try_recv() {
            return answer;
        }
        let group = std::mem::take(
            &mut *self
                .pending
                .lock()
                .map_err(|_| "commit queue poisoned".to_owned())?,
        );
        let committed = commit_group(group, &snapshot).await;
        drop(guard);
        if let Some(table) = committed {
            after(table).await;
        }
        rx.await
            .unwrap_or_else(|_| Err("the group commit was abandoned".to_owned()))
    }
}

/// Commits `group`, answering every member; returns the committed table, if any.
pub(super) async fn commit_group<L, LF>(mut group: Vec<Pending>, snapshot: &L) -> Option<DeltaTable>
where
    L: Fn() -> LF,
    LF: std::future::Future<Output = Result<DeltaTable, String>>,
{
    for attempt in 0..GROUP_ATTEMPTS {
        // A lone member is first committed from the snapshot it read its `txn` from: Delta's
        // conflict check covers whatever was committed since, and a conflict sends it round
        // again from the newest snapshot. That saves loading the table once more per append.
        let lone = match group.as_slice() {
            [only] if attempt == 0 => Some(only.read_at.clone()),
            _ => None,
        };
        let from_own_snapshot = lone.is_some();
        let table = match lone {
            Some(t) => t,
            None => match snapshot().await {
                Ok(t) => t,
                Err(e) => {
                    answer_all(group, Err(e));
                    return None;
                }
            },
        };
        let keep = if from_own_snapshot {
            group
        } else {
            let (keep, refused) = match admit(&table, group).await {
                Ok(split) => split,
                Err((members, e)) => {
                    answer_all(members, Err(e));
                    return None;
                }
            };
            answer_all(refused, Ok(AppendOutcome::Conflict));
            keep
        };
        if keep.is_empty() {
            return None;
        }
        let props = super::system_commit()
            .with_application_transactions(keep.iter().map(|p| p.txn.clone()).collect());
        let metadata = vec![(
            "makoto.runs".to_owned(),
            serde_json::json!(
                keep.iter()
                    .map(|p| serde_json::json!({
                        "run": p.run_id,
                        "appId": p.txn.app_id,
                        "through": p.txn.version,
                    }))
                    .collect::<Vec<_>>()
            ),
        )];
        let batches: Vec<RecordBatch> = keep.iter().map(|p| p.batch.clone()).collect();
        match super::append_batches(
            &table,
            &batches,
            deltalake::parquet::basic::Compression::SNAPPY,
            props,
            metadata,
        )
        .await
        {
            Ok(t) => {
                let table_version = t.version().unwrap_or(0);
                answer_all(keep, Ok(AppendOutcome::Committed { table_version }));
                return Some(t);
            }
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_),
            }) => {
                // Another writer moved one of the ids, or changed the metadata (an operator's
                // `maintain --retention`), after the snapshot: admit again from the newest.
                group = keep;
            }
            Err(e) => {
                answer_all(keep, Err(e.to_string()));
                return None;
            }
        }
    }
    answer_all(group, Ok(AppendOutcome::Conflict));
    None
}

type Split = (Vec<Pending>, Vec<Pending>);

/// Members whose application id still stands where their run read it, once each; and the
/// rest.
async fn admit(table: &DeltaTable, group: Vec<Pending>) -> Result<Split, (Vec<Pending>, String)> {
    let snapshot = match table.snapshot() {
        Ok(s) => s,
        Err(e) => return Err((group, e.to_string())),
    };
    let mut seen = HashSet::new();
    let (mut keep, mut refused) = (Vec::new(), Vec::new());
    let mut members = group.into_iter();
    while let Some(p) = members.next() {
        let now = match snapshot
            .transaction_version(table.log_store().as_ref(), &p.txn.app_id)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                let mut all: Vec<Pending> = keep;
                all.extend(refused);
                all.push(p);
                all.extend(members);
                return Err((all, e.to_string()));
            }
        };
        if now == p.expected && seen.insert(p.txn.app_id.clone()) {
            keep.push(p);
        } else {
            refused.push(p);
        }
    }
    Ok((keep, refused))
}

fn answer_all(members: Vec<Pending>, answer: Result<Committed, String>) {
    for m in members {
        // A member that gave up waiting is gone; nothing to tell it.
        let _ = m.reply.send(answer.clone());
    }
}
