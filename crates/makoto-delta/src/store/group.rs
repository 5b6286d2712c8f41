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
//!
//! Admission reads the log only from each member's snapshot on: an application id has moved
//! since a run read it exactly when a commit after that snapshot carries a `txn` for it, so
//! the leader checks the `txn` ids of the commits in between ([`RecentTxns`]: its own group
//! commits as it made them, others' read once from their commit files) instead of replaying
//! the table's log from its checkpoint for every member.

use std::collections::{BTreeMap, HashSet};

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
    /// The `txn` version of `txn.app_id` the run read (`None`: none yet) from `read_at`.
    pub expected: Option<i64>,
    /// The snapshot the run read `expected` from: the group's commit is checked against
    /// the commits after it.
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
    /// Held by the leader, with what it knows of the table's recent commits.
    leader: tokio::sync::Mutex<RecentTxns>,
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
        let mut guard = self.leader.lock().await;
        if let Ok(answer) = rx.try_recv() {
            return answer;
        }
        let group = std::mem::take(
            &mut *self
                .pending
                .lock()
                .map_err(|_| "commit queue poisoned".to_owned())?,
        );
        let committed = commit_group(group, &snapshot, &mut guard).await;
        drop(guard);
        if let Some(table) = committed {
            after(table).await;
        }
        rx.await
            .unwrap_or_else(|_| Err("the group commit was abandoned".to_owned()))
    }
}

/// Commits `group`, answering every member; returns the committed table, if any.
pub(super) async fn commit_group<L, LF>(
    mut group: Vec<Pending>,
    snapshot: &L,
    recent: &mut RecentTxns,
) -> Option<DeltaTable>
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
            let (keep, refused) = match admit(&table, group, recent).await {
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
                recent.record(
                    table_version,
                    keep.iter().map(|p| p.txn.app_id.clone()).collect(),
                );
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
async fn admit(
    table: &DeltaTable,
    group: Vec<Pending>,
    recent: &mut RecentTxns,
) -> Result<Split, (Vec<Pending>, String)> {
    let snapshot = match table.snapshot() {
        Ok(s) => s,
        Err(e) => return Err((group, e.to_string())),
    };
    // Expiring `txn`s would let an id read at an older snapshot vanish without a commit
    // naming it: then only a full lookup answers.
    let expiring = snapshot
        .metadata()
        .configuration()
        .contains_key(TXN_RETENTION_KEY);
    let now_at = table.version();
    let mut seen = HashSet::new();
    let (mut keep, mut refused) = (Vec::new(), Vec::new());
    let mut members = group.into_iter();
    while let Some(p) = members.next() {
        let since = match (expiring, p.read_at.version(), now_at) {
            (false, Some(read), Some(now)) => recent.moved(table, &p.txn.app_id, read, now).await,
            _ => None,
        };
        let stands = match since {
            Some(moved) => Ok(!moved),
            None => snapshot
                .transaction_version(table.log_store().as_ref(), &p.txn.app_id)
                .await
                .map(|now| now == p.expected),
        };
        match stands {
            Ok(stands) if stands && seen.insert(p.txn.app_id.clone()) => keep.push(p),
            Ok(_) => refused.push(p),
            Err(e) => {
                let mut all: Vec<Pending> = keep;
                all.extend(refused);
                all.push(p);
                all.extend(members);
                return Err((all, e.to_string()));
            }
        }
    }
    Ok((keep, refused))
}

/// The table property under which Delta expires `txn` actions.
const TXN_RETENTION_KEY: &str = "delta.setTransactionRetentionDuration";

/// How many commits after a member's snapshot admission reads before it looks the id up in
/// the whole log instead.
const RECENT_SCAN: u64 = 256;

/// How many commits' ids [`RecentTxns`] keeps.
const RECENT_KEPT: usize = 1024;

/// The `txn` application ids of a system table's recent commits, by table version.
#[derive(Default)]
pub(super) struct RecentTxns {
    by_version: BTreeMap<u64, Vec<String>>,
}

impl RecentTxns {
    /// Whether a commit in `(read, now]` carries a `txn` for `app_id`; `None` when that cannot
    /// be told from those commits (too many, or a commit file gone or unreadable).
    async fn moved(
        &mut self,
        table: &DeltaTable,
        app_id: &str,
        read: u64,
        now: u64,
    ) -> Option<bool> {
        if read > now || now - read > RECENT_SCAN {
            return None;
        }
        for version in read + 1..=now {
            if self
                .ids_at(table, version)
                .await?
                .iter()
                .any(|id| id == app_id)
            {
                return Some(true);
            }
        }
        Some(false)
    }

    async fn ids_at(&mut self, table: &DeltaTable, version: u64) -> Option<&[String]> {
        if !self.by_version.contains_key(&version) {
            let commit = table.log_store().read_commit_entry(version).await.ok()??;
            self.record(version, txn_ids(&commit)?);
        }
        self.by_version.get(&version).map(Vec::as_slice)
    }

    /// Records the ids committed at `version`.
    fn record(&mut self, version: u64, ids: Vec<String>) {
        self.by_version.insert(version, ids);
        while self.by_version.len() > RECENT_KEPT {
            self.by_version.pop_first();
        }
    }
}

/// The application ids of the `txn` actions in one commit file (newline-delimited JSON
/// actions); `None` if a line is not a JSON object.
fn txn_ids(commit: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Line {
        txn: Option<Txn>,
    }
    #[derive(serde::Deserialize)]
    struct Txn {
        #[serde(rename = "appId")]
        app_id: String,
    }
    let mut ids = Vec::new();
    for line in commit.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line = serde_json::from_slice(line).ok()?;
        ids.extend(line.txn.map(|t| t.app_id));
    }
    Some(ids)
}

fn answer_all(members: Vec<Pending>, answer: Result<Committed, String>) {
    for m in members {
        // A member that gave up waiting is gone; nothing to tell it.
        let _ = m.reply.send(answer.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commits_txn_ids_are_read_from_its_txn_lines_only() {
        let commit = br#"{"commitInfo":{"operation":"WRITE","makoto.runs":[{"appId":"not-a-txn"}]}}
{"txn":{"appId":"makoto-attestations:file:///a","version":3,"lastUpdated":1}}
{"add":{"path":"part-0.parquet","size":10,"partitionValues":{},"modificationTime":1,"dataChange":true}}

{"txn":{"appId":"makoto-attestations:file:///b","version":0}}
"#;
        assert_eq!(
            txn_ids(commit),
            Some(vec![
                "makoto-attestations:file:///a".to_owned(),
                "makoto-attestations:file:///b".to_owned()
            ])
        );
        assert_eq!(txn_ids(b"{\"add\":{}}\n"), Some(vec![]));
        assert_eq!(txn_ids(b"{\"txn\":{\"appId\":\"a\"}}\nnot json\n"), None);
        assert_eq!(txn_ids(b"{\"txn\":{\"version\":1}}\n"), None);
    }

    #[test]
    fn recent_commits_keep_the_newest_ids() {
        let mut recent = RecentTxns::default();
        for v in 0..(RECENT_KEPT as u64 + 10) {
            recent.record(v, vec![format!("app-{v}")]);
        }
        assert_eq!(recent.by_version.len(), RECENT_KEPT);
        assert_eq!(recent.by_version.keys().next(), Some(&10));
        assert_eq!(
            recent.by_version.get(&(RECENT_KEPT as u64 + 9)),
            Some(&vec![format!("app-{}", RECENT_KEPT + 9)])
        );
    }
}
