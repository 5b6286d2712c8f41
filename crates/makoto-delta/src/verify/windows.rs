//! Verification of a table's stream windows (deep mode): each window's signature, its columns
//! against its statement, the chain, and its records recomputed from the table.

use std::collections::{BTreeSet, HashMap};

use makoto_core::dsse::Envelope;
use makoto_core::statement::Statement;
use makoto_core::timestamp::{EnvelopeTimestamp, LinkProblem, envelope_timestamp};
use makoto_core::verify::TrustedKeys;
use makoto_core::window::{AttestedWindow, RecordPos, commit_spans};
use makoto_core::{Sha256Digest, merkle};
use object_store::ObjectStoreExt;

use super::{Finding, FindingKind};
use crate::Error;
use crate::location::object_path;
use crate::log::SourceTable;
use crate::store::{AttestationStore, WindowRow};
use crate::windows::{bounds, commit_leaves};

/// Leaves of recently read commits, so that windows sharing a commit read it once.
#[derive(Default)]
struct LeafCache {
    by_version: std::collections::BTreeMap<u64, Vec<(RecordPos, Sha256Digest)>>,
}

impl LeafCache {
    /// The positions and leaves of a window's records as the table holds them now.
    async fn window(
        &mut self,
        source: &SourceTable,
        row: &WindowRow,
    ) -> Result<Vec<(RecordPos, Sha256Digest)>, Error> {
        let (first, last) = bounds(row);
        // Windows of one spec come in order: older commits are not needed again.
        self.by_version = self.by_version.split_off(&first.version);
        let missing: Vec<u64> = (first.version..=last.version)
            .filter(|v| !self.by_version.contains_key(v))
            .collect();
        if let (Some(a), Some(b)) = (missing.first(), missing.last()) {
            for (v, leaves, _) in commit_leaves(source, *a..=*b).await? {
                self.by_version.insert(v, leaves);
            }
        }
        Ok(self
            .by_version
            .range(first.version..=last.version)
            .flat_map(|(_, l)| l.iter())
            .filter(|(pos, _)| *pos >= first && *pos <= last)
            .copied()
            .collect())
    }
}

/// Where the recomputed leaves first differ from the attested ones, as a finding kind.
fn localize(attested: &[Sha256Digest], now: &[Sha256Digest]) -> Option<(FindingKind, usize)> {
    merkle::diff_leaves(attested, now).map(|(change, p)| {
        let kind = match change {
            merkle::LeafChange::Altered => FindingKind::WindowRecordAltered,
            merkle::LeafChange::Inserted => FindingKind::WindowRecordInserted,
            merkle::LeafChange::Dropped => FindingKind::WindowRecordDropped,
            merkle::LeafChange::Reordered => FindingKind::WindowRecordsReordered,
        };
        (kind, p)
    })
}

/// The versions that removed the window's missing data files, when every file of the window
/// that is gone from storage was removed by a commit after it and at or before `through`
/// (commits the walk checked against their signed digests); `None` when a file is gone that no
/// such commit removed, or none is gone (the failure was something else).
async fn purged_by(
    source: &SourceTable,
    row: &WindowRow,
    through: u64,
) -> Result<Option<Vec<u64>>, Error> {
    let commits = source.read_commits(row.first_version..=through, 8).await?;
    let mut removed: HashMap<&str, u64> = HashMap::new();
    for c in &commits {
        for r in c.removes() {
            removed.entry(r.path().as_str()).or_insert(c.version());
        }
    }
    let mut by = BTreeSet::new();
    for c in commits.iter().filter(|c| c.version() <= row.last_version) {
        for add in c.adds().filter(|a| a.data_change()) {
            let path = add.path().as_str();
            let gone = matches!(
                source.store().head(&object_path(path)).await,
                Err(object_store::Error::NotFound { .. })
            );
            if !gone {
                continue;
            }
            match removed.get(path) {
                Some(v) if *v > c.version() => {
                    by.insert(*v);
                }
                _ => return Ok(None),
            }
        }
    }
    Ok((!by.is_empty()).then(|| by.into_iter().collect()))
}

/// What [`verify_windows`] found.
pub(crate) struct WindowsChecked {
    pub findings: Vec<Finding>,
    pub windows: u64,
    /// Windows whose records were removed by later attested commits and then deleted.
    pub purged: u64,
    /// Windows whose signature carries a token that verifies under a trusted authority.
    pub timestamped: u64,
}

/// Checks every window of the table whose records end at or before `through`: signature and
/// time-stamp, columns against the statement, the chain, and the records recomputed from the
/// table.
pub(crate) async fn verify_windows(
    source: &SourceTable,
    store: &AttestationStore,
    trust: &TrustedKeys,
    through: u64,
) -> Result<WindowsChecked, Error> {
    let mut findings = Vec::new();
    let mut timestamped = 0;
    let mut purged = 0;
    let rows: Vec<WindowRow> = store
        .window_rows(source.uri())
        .await?
        .into_iter()
        .filter(|r| r.last_version <= through)
        .collect();
    let mut previous: Option<&WindowRow> = None;
    let mut cache = LeafCache::default();
    for row in &rows {
        let at = |kind: FindingKind, detail: String| {
            Finding::new(kind, format!("window {}: {detail}", row.window_id)).at(row.last_version)
        };
        if previous.is_some_and(|p| p.spec != row.spec) {
            previous = None;
        }
        let statement = Envelope::from_json(row.envelope.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|env| {
                let verified = makoto_core::verify::verify_statement(&env, trust)
                    .map_err(|e| e.to_string())?;
                Ok((env, verified))
            });
        let statement: Statement = match statement {
            Ok((env, verified)) => {
                let key = trust.key(verified.keyid());
                match envelope_timestamp(&env, trust.timestamp_authorities(), key) {
                    EnvelopeTimestamp::Verified(_) => timestamped += 1,
                    EnvelopeTimestamp::Problem(p) => {
                        findings.push(at(timestamp_kind(&p), p.to_string()));
                    }
                    EnvelopeTimestamp::Missing | EnvelopeTimestamp::Unchecked => {}
                }
                verified.into_inner()
            }
            Err(e) => {
                findings.push(at(FindingKind::WindowUntrusted, e));
                continue;
            }
        };
        let attested = match AttestedWindow::from_statement(&statement) {
            Ok(a) => a,
            Err(e) => {
                findings.push(at(FindingKind::WindowAltered, e.to_string()));
                continue;
            }
        };
        if attested.root != row.merkle_root
            || attested.leaf_count != row.leaf_count
            || attested.sequence != row.sequence
            || attested.id != row.window_id
            || attested.first.version != row.first_version
            || attested.first.index != row.first_index
            || attested.last.version != row.last_version
            || attested.last.index != row.last_index
        {
            findings.push(at(
                FindingKind::WindowAltered,
                "the row's columns differ from its signed statement".into(),
            ));
        }
        let expected_seq = previous.map_or(1, |p| p.sequence + 1);
        let links = match previous {
            None => attested.previous_id.is_none() && attested.sequence == 1,
            Some(p) => {
                attested.previous_id.as_deref() == Some(p.window_id.as_str())
                    && attested.previous_root == Some(p.merkle_root)
                    && attested.sequence == expected_seq
            }
        };
        if !links {
            findings.push(at(
                FindingKind::WindowChainBroken,
                format!(
                    "chainLength {} points to {:?}, expected sequence {expected_seq} after {:?}",
                    attested.sequence,
                    attested.previous_id,
                    previous.map(|p| &p.window_id)
                ),
            ));
        }
        previous = Some(row);
        let records = match cache.window(source, row).await {
            Ok(records) => records,
            Err(e) => {
                // Vacuumed or unreadable data: the window cannot be rechecked (not tampering
                // by itself; the per-commit checks say whether a live file is missing).
                let finding = match purged_by(source, row, through).await? {
                    Some(removed) => {
                        purged += 1;
                        at(
                            FindingKind::WindowRecordsPurged,
                            format!(
                                "its files were removed by the attested commit(s) {} and deleted since; its records cannot be recomputed",
                                removed
                                    .iter()
                                    .map(|v| format!("v{v}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    }
                    None => at(
                        FindingKind::DataUnavailable,
                        format!("its records cannot be read: {e}"),
                    ),
                };
                findings.push(finding.warning());
                continue;
            }
        };
        let now: Vec<Sha256Digest> = records.iter().map(|(_, leaf)| *leaf).collect();
        if merkle::root(&now) == attested.root && now.len() as u64 == attested.leaf_count {
            // Format 2 also signs which commit each leaf comes from.
            if let Some(signed) = &attested.commits {
                let spans = commit_spans(records.iter().map(|(pos, _)| *pos));
                if let Some(k) =
                    (0..signed.len().max(spans.len())).find(|k| signed.get(*k) != spans.get(*k))
                {
                    let leaf = signed.get(k).or(spans.get(k)).map_or(0, |c| c.position);
                    findings.push(at(
                        FindingKind::WindowRecordAltered,
                        format!(
                            "records from position {leaf} of {} come from other commits than attested (commits[{k}])",
                            now.len()
                        ),
                    ));
                }
            }
            continue;
        }
        match store.window_leaves(attested.root).await {
            Some(leaves) => {
                if let Some((kind, p)) = localize(&leaves, &now) {
                    findings.push(at(
                        kind,
                        format!(
                            "record at position {p} of {} (from version {} record {})",
                            leaves.len(),
                            row.first_version,
                            row.first_index
                        ),
                    ));
                }
            }
            None => findings.push(at(
                FindingKind::WindowRecordAltered,
                format!(
                    "the records give Merkle root {} over {} records, the attestation {} over {} (leaf list unavailable, position unknown)",
                    merkle::root(&now),
                    now.len(),
                    attested.root,
                    attested.leaf_count
                ),
            )),
        }
    }
    Ok(WindowsChecked {
        findings,
        windows: rows.len() as u64,
        purged,
        timestamped,
    })
}

/// The finding kind of a time-stamp that does not hold.
pub(crate) fn timestamp_kind(p: &LinkProblem) -> FindingKind {
    match p {
        LinkProblem::Invalid(_) => FindingKind::TimestampInvalid,
        LinkProblem::Untrusted(_) => FindingKind::TimestampUntrusted,
        LinkProblem::KeyNotValid(_) => FindingKind::KeyNotValid,
    }
}
