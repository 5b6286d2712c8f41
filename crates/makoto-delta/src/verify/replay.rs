//! Replaying the log against the attestations: each commit compared with its attested
//! digests, the live files rebuilt with the attested file digests, and the state digest of
//! every version recomputed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use makoto_core::Sha256Digest;
use makoto_core::attestation::{ChangeKind, FileChange, changes_digest};
use makoto_core::attested::AttestedChange;
use makoto_core::delta::{Action, Commit, commit_file_name};
use makoto_core::state::{DvEntry, FileEntry, StateTree, leaf_key};

use super::VerifyMode;
use super::chain::CheckedRow;
use super::findings::{Finding, FindingKind};
use crate::Error;
use crate::log::SourceTable;
use crate::store::FileRow;

pub(crate) struct Replay {
    pub tree: StateTree,
    /// False once some live file's digest could not be determined (the state digest of later
    /// versions is then not recomputed).
    pub known: bool,
    /// The version each live file was added at, and its deletion-vector file: what a deep
    /// check reports and rehashes. Empty in log-only mode, which needs neither.
    pub added_at: HashMap<Sha256Digest, (u64, Option<String>)>,
    mode: VerifyMode,
    pub commits_checked: u64,
}

/// The file rows of one version, each as the change it records, with its ordinal.
#[derive(Debug, Default)]
pub(crate) struct VersionRows {
    changes: Vec<(u64, FileChange)>,
    /// The row of lowest ordinal that records no change it can be read as.
    unreadable: Option<(u64, Error)>,
}

impl VersionRows {
    pub fn push(&mut self, row: &FileRow) {
        match row.to_change() {
            Ok(change) => self.changes.push((row.ordinal, change)),
            Err(e) => {
                if self
                    .unreadable
                    .as_ref()
                    .is_none_or(|(at, _)| row.ordinal < *at)
                {
                    self.unreadable = Some((row.ordinal, e));
                }
            }
        }
    }

    /// The changes in ordinal order (rows of one ordinal in the order read), or the error of
    /// the first row that is not one.
    fn into_changes(self) -> Result<Vec<FileChange>, Error> {
        if let Some((_, e)) = self.unreadable {
            return Err(e);
        }
        let mut changes = self.changes;
        changes.sort_by_key(|(ordinal, _)| *ordinal);
        Ok(changes.into_iter().map(|(_, c)| c).collect())
    }
}

/// A version's attested file changes.
#[derive(Debug)]
pub(crate) enum Changes {
    /// Listed in its signed statement (moved out of its checked row).
    Signed(Vec<AttestedChange>),
    /// Read from its file rows, which reproduced the attested changes digest.
    FromRows(Vec<AttestedChange>),
}

impl Changes {
    pub fn as_slice(&self) -> &[AttestedChange] {
        match self {
            Changes::Signed(c) | Changes::FromRows(c) => c,
        }
    }

    /// The changes as the signed statement lists them.
    pub fn listed(&self) -> Option<&[AttestedChange]> {
        match self {
            Changes::Signed(c) => Some(c),
            Changes::FromRows(_) => None,
        }
    }
}

/// The attested changes of each version: from the statement when it lists them (taken out of
/// its row), else from the files table rows, which must reproduce the attested changes digest.
pub(crate) fn attested_changes(
    chain: &mut BTreeMap<u64, CheckedRow>,
    mut file_rows: BTreeMap<u64, VersionRows>,
    findings: &mut Vec<Finding>,
) -> BTreeMap<u64, Changes> {
    let mut out = BTreeMap::new();
    for (v, row) in chain {
        let rows = file_rows.remove(v).unwrap_or_default();
        let Some(attested) = &row.attested else {
            continue;
        };
        let from_rows = rows.into_changes();
        let rows_ok = match &from_rows {
            Ok(changes) => changes_digest(changes) == attested.changes_digest(),
            Err(_) => false,
        };
        if !rows_ok {
            let detail = match &from_rows {
                Err(e) => e.to_string(),
                Ok(changes) => format!(
                    "{} rows whose changes digest is not the attested {}",
                    changes.len(),
                    attested.changes_digest()
                ),
            };
            findings.push(
                Finding::new(
                    FindingKind::FileRowsAltered,
                    format!("system.makoto.files for version {v}: {detail}"),
                )
                .at(*v),
            );
        }
        if let Some(listed) = row.listed.take() {
            out.insert(*v, Changes::Signed(listed));
        } else if rows_ok && let Ok(changes) = from_rows {
            let changes = changes.iter().map(AttestedChange::from).collect();
            out.insert(*v, Changes::FromRows(changes));
        }
    }
    out
}

fn dv_id(dv: Option<&makoto_core::delta::DeletionVector>) -> Option<String> {
    dv.map(makoto_core::delta::DeletionVector::unique_id)
}

impl Replay {
    pub fn new(tree: StateTree, mode: VerifyMode) -> Self {
        Replay {
            tree,
            known: true,
            added_at: HashMap::new(),
            mode,
            commits_checked: 0,
        }
    }

    /// Applies one commit with the attested digests of its files. Returns the paths whose
    /// digest is unknown.
    pub fn apply(
        &mut self,
        commit: &Commit,
        attested: Option<&[AttestedChange]>,
        unavailable: &[String],
    ) -> Result<Vec<String>, Error> {
        let v = commit.version();
        let core = |e| Error::core(format!("replay of version {v}"), e);
        let mut removed: HashMap<String, FileEntry> = HashMap::new();
        // Branches are hashed once, when the commit's changes are all made.
        let mut tree = self.tree.batch();
        for r in commit.removes() {
            let key = leaf_key(r.path().as_str(), dv_id(r.deletion_vector()).as_deref());
            if let Some(old) = tree.remove(&key).map_err(core)? {
                self.added_at.remove(&key);
                removed.insert(r.path().as_str().to_owned(), old);
            }
        }
        let mut unknown = Vec::new();
        for action in commit.actions() {
            let Action::Add(a) = action else { continue };
            let path = a.path().as_str();
            let dv = a.deletion_vector();
            let uid = dv_id(dv);
            let from_attested = attested.and_then(|changes| {
                changes
                    .iter()
                    .find(|c| c.kind == ChangeKind::Add && c.path == path && c.dv_unique_id == uid)
            });
            let carried = removed.get(path).filter(|o| o.size() == a.size());
            // Outer `None`: not known; inner `None`: attested as unavailable (vacuumed first).
            let sha: Option<Option<Sha256Digest>> = match from_attested {
                Some(c) if c.sha256.is_some() => Some(c.sha256),
                Some(_) if unavailable.iter().any(|u| u == path) => Some(None),
                _ => carried.map(FileEntry::sha256),
            };
            let Some(sha) = sha else {
                unknown.push(path.to_owned());
                self.known = false;
                continue;
            };
            let dv_entry = dv.map(|d| {
                DvEntry::new(
                    d.unique_id(),
                    d.size_in_bytes(),
                    d.cardinality(),
                    from_attested.and_then(|c| c.dv_sha256),
                )
            });
            let entry = match sha {
                Some(sha) => FileEntry::new(path.to_owned(), a.size(), sha, dv_entry),
                None => FileEntry::unavailable(path.to_owned(), a.size(), dv_entry),
            };
            let key = entry.key();
            tree.insert(entry).map_err(core)?;
            if self.mode == VerifyMode::Deep {
                self.added_at
                    .insert(key, (v, dv.and_then(|d| d.file()).map(str::to_owned)));
            }
        }
        self.commits_checked += 1;
        Ok(unknown)
    }

    /// The loaded live files with where they came from, borrowed.
    pub fn live_files(&self) -> Vec<super::data::LiveFile<'_>> {
        self.tree
            .loaded_entries()
            .into_iter()
            .map(|entry| {
                let (added_at, dv_file) = self
                    .added_at
                    .get(&entry.key())
                    .map_or((0, None), |(v, dv)| (*v, dv.as_deref()));
                super::data::LiveFile {
                    entry,
                    added_at,
                    dv_file,
                }
            })
            .collect()
    }
}

/// What the log at one version says against its attestation.
pub(crate) fn compare_commit(
    commit_bytes: &[u8],
    commit: Option<&Commit>,
    version: u64,
    chain: &BTreeMap<u64, CheckedRow>,
    listed: Option<&[AttestedChange]>,
    findings: &mut Vec<Finding>,
) -> bool {
    let path = format!("_delta_log/{}", commit_file_name(version));
    let Some(attested) = chain.get(&version).and_then(|r| r.attested.as_deref()) else {
        return false;
    };
    let digest = Sha256Digest::of(commit_bytes);
    if digest == attested.commit_file_digest() {
        return true;
    }
    if let Some(c) = commit
        && c.actions_digest() == attested.commit_actions_digest()
    {
        findings.push(
            Finding::new(
                FindingKind::CommitReserialized,
                format!("the commit file's bytes changed (SHA-256 {digest}, attested {}) but its actions are the attested ones", attested.commit_file_digest()),
            )
            .at(version)
            .file(path),
        );
        return false;
    }
    let attested_digest_of = |v: u64| {
        chain
            .get(&v)
            .and_then(|r| r.attested.as_deref())
            .map(|a| a.commit_file_digest())
    };
    if version > 0 && attested_digest_of(version - 1) == Some(digest) {
        findings.push(
            Finding::new(
                FindingKind::CommitInserted,
                format!("the commit at version {version} is the one attested for version {}: a commit was inserted before it", version - 1),
            )
            .at(version)
            .file(path),
        );
        return false;
    }
    if attested_digest_of(version + 1) == Some(digest) {
        findings.push(
            Finding::new(
                FindingKind::CommitMissing,
                format!("the commit at version {version} is the one attested for version {}: the attested commit {version} was removed and later ones renumbered", version + 1),
            )
            .at(version)
            .file(path),
        );
        return false;
    }
    let detail = match (commit, listed) {
        (None, _) => "the commit file is not a valid Delta commit any more".to_owned(),
        (Some(c), Some(att)) => describe_difference(c, att),
        (Some(_), None) => String::new(),
    };
    findings.push(
        Finding::new(
            FindingKind::CommitRewritten,
            format!(
                "the commit file differs from the attested one (SHA-256 {digest}, attested {}){}",
                attested.commit_file_digest(),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        )
        .at(version)
        .file(path),
    );
    false
}

fn describe_difference(commit: &Commit, attested: &[AttestedChange]) -> String {
    let log: BTreeMap<(String, String), Option<u64>> = commit
        .actions()
        .iter()
        .filter_map(|a| match a {
            Action::Add(x) => Some((
                ("add".to_owned(), x.path().as_str().to_owned()),
                Some(x.size()),
            )),
            Action::Remove(x) => Some((
                ("remove".to_owned(), x.path().as_str().to_owned()),
                x.size(),
            )),
            Action::Cdc(x) => Some((
                ("cdc".to_owned(), x.path().as_str().to_owned()),
                Some(x.size()),
            )),
            _ => None,
        })
        .collect();
    let att: BTreeMap<(String, String), Option<u64>> = attested
        .iter()
        .map(|c| ((c.kind.as_str().to_owned(), c.path.clone()), c.size))
        .collect();
    let show = |s: Option<u64>| s.map_or("no size".to_owned(), |s| format!("{s} bytes"));
    let mut parts = Vec::new();
    for ((kind, path), size) in &log {
        match att.get(&(kind.clone(), path.clone())) {
            None => parts.push(format!("{kind} {path} is not attested")),
            Some(a) if a != size => parts.push(format!(
                "{kind} {path} has {} in the log, {} attested",
                show(*size),
                show(*a)
            )),
            Some(_) => {}
        }
    }
    for (kind, path) in att.keys() {
        if !log.contains_key(&(kind.clone(), path.clone())) {
            parts.push(format!("attested {kind} {path} is gone"));
        }
    }
    if parts.is_empty() {
        return "the file actions are the attested ones; other actions or fields changed".into();
    }
    let more = parts.len().saturating_sub(3);
    parts.truncate(3);
    if more > 0 {
        parts.push(format!("{more} more"));
    }
    parts.join("; ")
}

/// Reads and parses a commit, turning a parse failure into a finding (`None`).
pub(crate) async fn read_commit(
    source: &SourceTable,
    version: u64,
) -> Result<(bytes::Bytes, Option<Commit>), Error> {
    let bytes = source.read_commit_bytes(version).await?;
    let commit = source.parse_commit(version, &bytes).ok();
    Ok((bytes, commit))
}

/// Commit files at most this large are read ahead of the walk; larger ones are read when the
/// walk reaches them, after its size checks.
const PREFETCH_MAX_BYTES: u64 = 256 << 10;
/// Commit files read and parsed at once ahead of the walk.
const PREFETCH_CONCURRENCY: usize = 16;
/// Read commits waiting for the walk (bounds memory with the two constants above).
const PREFETCH_QUEUE: usize = 32;

type ReadCommit = Result<(bytes::Bytes, Option<Commit>), Error>;

/// Commit files read and parsed in version order on their own task while the walk checks the
/// ones before them: the walk waits for storage once, not once per commit.
pub(crate) struct CommitPrefetch {
    rx: tokio::sync::mpsc::Receiver<(u64, ReadCommit)>,
    next: Option<(u64, ReadCommit)>,
    task: tokio::task::JoinHandle<()>,
}

impl CommitPrefetch {
    /// Starts reading `versions` (ascending) whose listed size is small enough.
    pub fn start(source: &SourceTable, versions: impl Iterator<Item = (u64, u64)>) -> Self {
        use futures::StreamExt;
        let wanted: Vec<u64> = versions
            .filter(|(_, size)| *size <= PREFETCH_MAX_BYTES)
            .map(|(v, _)| v)
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_QUEUE);
        let source = source.clone();
        let task = match source.local_log_dir() {
            Some(dir) => tokio::spawn(read_local_ahead(source, dir, wanted, tx)),
            None => tokio::spawn(async move {
                let source = &source;
                let mut reads = futures::stream::iter(wanted)
                    .map(|v| async move { (v, read_commit(source, v).await) })
                    .buffered(PREFETCH_CONCURRENCY);
                while let Some(item) = reads.next().await {
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            }),
        };
        CommitPrefetch {
            rx,
            next: None,
            task,
        }
    }

    /// The read of version `v`, if it was read ahead (versions before it are dropped).
    pub async fn take(&mut self, v: u64) -> Option<ReadCommit> {
        loop {
            let item = match self.next.take() {
                Some(item) => item,
                None => self.rx.recv().await?,
            };
            match item.0.cmp(&v) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Some(item.1),
                std::cmp::Ordering::Greater => {
                    self.next = Some(item);
                    return None;
                }
            }
        }
    }
}

/// The local form of the read-ahead: [`PREFETCH_QUEUE`] commits read and parsed per blocking
/// task, two tasks at once, instead of one task per file.
async fn read_local_ahead(
    source: SourceTable,
    dir: std::path::PathBuf,
    wanted: Vec<u64>,
    tx: tokio::sync::mpsc::Sender<(u64, ReadCommit)>,
) {
    use futures::StreamExt;
    let (source, dir) = (Arc::new(source), Arc::new(dir));
    let chunks: Vec<Vec<u64>> = wanted.chunks(PREFETCH_QUEUE).map(<[u64]>::to_vec).collect();
    let mut reads = futures::stream::iter(chunks)
        .map(|chunk| {
            let (source, dir) = (source.clone(), dir.clone());
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .filter_map(|v| {
                        let read = match source.read_local_commit_bytes(&dir, v, PREFETCH_MAX_BYTES)
                        {
                            Ok(Some(bytes)) => {
                                let commit = source.parse_commit(v, &bytes).ok();
                                Ok((bytes, commit))
                            }
                            // Grown past the read-ahead's limit: the walk reads it itself.
                            Ok(None) => return None,
                            Err(e) => Err(e),
                        };
                        Some((v, read))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .buffered(2);
    while let Some(Ok(items)) = reads.next().await {
        for item in items {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for CommitPrefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ordinal: u64, partition_values: &str) -> FileRow {
        let change = FileChange::new(
            ChangeKind::Add,
            format!("part-{ordinal}.parquet"),
            Some(ordinal),
            Some(Sha256Digest::of(&ordinal.to_be_bytes())),
            true,
            Default::default(),
            None,
            None,
        );
        let mut r = FileRow::from_change("file:///t", "id", 7, ordinal, 0, &change, "run");
        r.partition_values = partition_values.to_owned();
        r
    }

    /// Rows read in any order give the changes in ordinal order, as the sorted rows did.
    #[test]
    fn changes_come_in_ordinal_order() {
        let mut rows = VersionRows::default();
        for o in [2, 0, 3, 1] {
            rows.push(&row(o, "{}"));
        }
        let paths: Vec<String> = (rows.into_changes().unwrap().iter())
            .map(|c| c.path().to_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "part-0.parquet",
                "part-1.parquet",
                "part-2.parquet",
                "part-3.parquet"
            ]
        );
    }

    /// A version with an unreadable row is that row's error: the one of lowest ordinal, as
    /// reading the sorted rows met it first.
    #[test]
    fn the_first_unreadable_row_is_the_error() {
        let mut rows = VersionRows::default();
        rows.push(&row(0, "{}"));
        rows.push(&row(5, "not json 5"));
        rows.push(&row(3, "not json 3"));
        rows.push(&row(4, "{}"));
        let err = rows.into_changes().unwrap_err().to_string();
        assert!(err.contains("part-3.parquet"), "{err}");
    }
}
