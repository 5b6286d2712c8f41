//! Stream windows over a table's appended records: [`attest_windows`] closes windows and
//! writes one signed `stream-window/v1` statement per window to `system.makoto.windows`;
//! [`verify_windows`] recomputes them from the table and names the window and position of an
//! inserted, altered, dropped or reordered record; [`prove_record`] gives an inclusion proof of
//! one record. Formats: docs/streams.md.

use makoto_core::attestation::Attestation;
use makoto_core::dsse::Envelope;
use makoto_core::keys::Signer;
use makoto_core::statement::Statement;
use makoto_core::verify::TrustedKeys;
use makoto_core::window::{
    AttestedWindow, PreviousWindow, RecordPos, WindowFacts, WindowSpec, build_window_statement,
};
use makoto_core::{Sha256Digest, merkle};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::log::SourceTable;
use crate::records::{Record, commit_records};
use crate::store::{AppendOutcome, AttestationStore, WindowRow, windows_app_id};
use crate::verify::{Finding, FindingKind};

/// A window closed by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    pub id: String,
    pub sequence: u64,
    pub root: Sha256Digest,
    pub leaf_count: u64,
    pub first: RecordPos,
    pub last: RecordPos,
}

/// What a windows run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSummary {
    pub spec: String,
    pub closed: Vec<ClosedWindow>,
    /// Records after the last closed window (the open window), not attested yet.
    pub open_records: u64,
}

struct Pending {
    records: Vec<(RecordPos, Sha256Digest, i64)>,
    commits: u64,
    bucket: Option<i64>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            records: Vec::new(),
            commits: 0,
            bucket: None,
        }
    }
}

/// Commit time of `commit` in milliseconds (in-commit timestamp, else commitInfo.timestamp).
fn commit_ms(commit: &makoto_core::delta::Commit) -> i64 {
    commit.timestamp().map_or(0, |(t, _)| t)
}

/// The leaf of every record of the commits `versions`, by commit (records are hashed as they
/// are decoded; their bytes are not kept).
async fn commit_leaves(
    source: &SourceTable,
    versions: std::ops::RangeInclusive<u64>,
) -> Result<Vec<(u64, Vec<(RecordPos, Sha256Digest)>, i64)>, Error> {
    let commits = source.read_commits(versions, 8).await?;
    let mut out = Vec::with_capacity(commits.len());
    for c in &commits {
        let leaves = commit_records(source, c)
            .await?
            .iter()
            .map(|r| (r.pos, r.leaf()))
            .collect();
        out.push((c.version(), leaves, commit_ms(c)));
    }
    Ok(out)
}

/// The stream's record leaves from `from` (exclusive) through version `through`, by commit.
async fn records_after(
    source: &SourceTable,
    from: Option<RecordPos>,
    through: u64,
) -> Result<Vec<(Vec<(RecordPos, Sha256Digest)>, i64)>, Error> {
    let start = from.map_or(0, |p| p.version);
    let mut out = Vec::new();
    for (_, mut leaves, ts) in commit_leaves(source, start..=through).await? {
        if let Some(p) = from {
            leaves.retain(|(pos, _)| *pos > p);
        }
        if !leaves.is_empty() {
            out.push((leaves, ts));
        }
    }
    Ok(out)
}

/// Leaves of recently read commits, so that windows sharing a commit read it once.
#[derive(Default)]
struct LeafCache {
    by_version: std::collections::BTreeMap<u64, Vec<(RecordPos, Sha256Digest)>>,
}

impl LeafCache {
    /// The leaves of a window's records as the table holds them now.
    async fn window(
        &mut self,
        source: &SourceTable,
        row: &WindowRow,
    ) -> Result<Vec<Sha256Digest>, Error> {
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
            .map(|(_, leaf)| *leaf)
            .collect())
    }
}

fn bounds(row: &WindowRow) -> (RecordPos, RecordPos) {
    (
        RecordPos {
            version: row.first_version,
            index: row.first_index,
        },
        RecordPos {
            version: row.last_version,
            index: row.last_index,
        },
    )
}

/// Closes and attests the windows of `spec` over the records appended through version
/// `through` (the last attested version), continuing the chain already stored.
pub async fn attest_windows(
    source: &SourceTable,
    store: &AttestationStore,
    signer: Option<&dyn Signer>,
    spec: WindowSpec,
    through: u64,
    table_id: &str,
    run_id: &str,
) -> Result<WindowSummary, Error> {
    let uri = source.uri().to_owned();
    let spec_s = spec.to_string();
    let existing: Vec<WindowRow> = store
        .window_rows(&uri)
        .await?
        .into_iter()
        .filter(|r| r.spec == spec_s)
        .collect();
    let last = existing.last();
    let table = store.load_windows().await?;
    let done = AttestationStore::txn_version(&table, &windows_app_id(&uri, &spec_s)).await?;
    if done != last.map(|r| r.sequence) {
        return Err(Error::StoreCorrupt {
            store: store.windows_location().as_uri(),
            reason: format!(
                "windows {spec_s} of {uri}: the txn says sequence {done:?}, the rows end at {:?}",
                last.map(|r| r.sequence)
            ),
        });
    }
    let resume = last.map(|r| RecordPos {
        version: r.last_version,
        index: r.last_index,
    });
    let mut previous = last.map(|r| PreviousWindow {
        id: r.window_id.clone(),
        root: r.merkle_root,
        sequence: r.sequence,
        genesis_id: existing
            .first()
            .map_or(r.window_id.clone(), |g| g.window_id.clone()),
    });
    let mut closed: Vec<WindowFacts> = Vec::new();
    let mut pending = Pending::new();
    let attested_at_ms = chrono::Utc::now().timestamp_millis();
    let mut close = |pending: &mut Pending, previous: &mut Option<PreviousWindow>| {
        let records = std::mem::take(&mut pending.records);
        pending.commits = 0;
        pending.bucket = None;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let sequence = previous.as_ref().map_or(1, |p| p.sequence + 1);
        let facts = WindowFacts {
            table_uri: uri.clone(),
            table_id: table_id.to_owned(),
            spec,
            sequence,
            first: first.0,
            last: last.0,
            first_timestamp_ms: first.2,
            last_timestamp_ms: last.2,
            leaves: records.iter().map(|r| r.1).collect(),
            previous: previous.clone(),
            attested_at_ms,
        };
        *previous = Some(PreviousWindow {
            id: facts.id(),
            root: facts.root(),
            sequence,
            genesis_id: previous
                .as_ref()
                .map_or(facts.id(), |p| p.genesis_id.clone()),
        });
        closed.push(facts);
    };
    for (records, ts) in records_after(source, resume, through).await? {
        match spec {
            WindowSpec::Duration { millis } => {
                let bucket = ts.div_euclid(i64::try_from(millis).unwrap_or(i64::MAX));
                if pending.bucket.is_some_and(|b| b != bucket) {
                    close(&mut pending, &mut previous);
                }
                pending.bucket = Some(bucket);
                pending
                    .records
                    .extend(records.iter().map(|(pos, leaf)| (*pos, *leaf, ts)));
            }
            WindowSpec::Commits(n) => {
                pending
                    .records
                    .extend(records.iter().map(|(pos, leaf)| (*pos, *leaf, ts)));
                pending.commits += 1;
                if pending.commits == n {
                    close(&mut pending, &mut previous);
                }
            }
            WindowSpec::Records(n) => {
                for (pos, leaf) in &records {
                    pending.records.push((*pos, *leaf, ts));
                    if pending.records.len() as u64 == n {
                        close(&mut pending, &mut previous);
                    }
                }
            }
        }
    }
    let open_records = pending.records.len() as u64;
    let mut rows = Vec::with_capacity(closed.len());
    for w in &closed {
        let statement = build_window_statement(w, "https://makoto.dev/attestors/makoto")
            .map_err(|e| Error::core(format!("window {}", w.id()), e))?;
        let att = Attestation::seal(statement, signer)
            .map_err(|e| Error::core(format!("signing window {}", w.id()), e))?;
        store.put_window_leaves(w.root(), &w.leaves).await?;
        rows.push(WindowRow {
            table_uri: uri.clone(),
            table_id: table_id.to_owned(),
            spec: spec_s.clone(),
            sequence: w.sequence,
            window_id: w.id(),
            first_version: w.first.version,
            first_index: w.first.index,
            last_version: w.last.version,
            last_index: w.last.index,
            first_timestamp_ms: w.first_timestamp_ms,
            last_timestamp_ms: w.last_timestamp_ms,
            leaf_count: w.leaves.len() as u64,
            merkle_root: w.root(),
            previous_window_id: w.previous.as_ref().map(|p| p.id.clone()),
            previous_merkle_root: w.previous.as_ref().map(|p| p.root),
            attestation_digest: att.digest(),
            keyid: att.keyid().map(|k| k.to_string()),
            envelope: att.envelope().to_json(),
            attested_at_us: attested_at_ms.saturating_mul(1000),
            run_id: run_id.to_owned(),
        });
    }
    if let Some(last) = rows.last() {
        match store
            .append_windows(table, &rows, &uri, &spec_s, last.sequence, run_id)
            .await?
        {
            AppendOutcome::Committed { .. } => {}
            AppendOutcome::Conflict => {
                return Err(Error::TooManyConflicts {
                    table: uri,
                    attempts: 1,
                });
            }
        }
    }
    Ok(WindowSummary {
        spec: spec_s,
        closed: closed
            .iter()
            .map(|w| ClosedWindow {
                id: w.id(),
                sequence: w.sequence,
                root: w.root(),
                leaf_count: w.leaves.len() as u64,
                first: w.first,
                last: w.last,
            })
            .collect(),
        open_records,
    })
}

/// The records of a window as the table holds them now.
async fn window_records(source: &SourceTable, row: &WindowRow) -> Result<Vec<Record>, Error> {
    let (first, last) = bounds(row);
    let commits = source.read_commits(first.version..=last.version, 8).await?;
    let mut out = Vec::new();
    for c in &commits {
        for r in commit_records(source, c).await? {
            if r.pos >= first && r.pos <= last {
                out.push(r);
            }
        }
    }
    Ok(out)
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

/// Checks every window of the table whose records end at or before `through`: signature,
/// columns against the statement, the chain, and the records recomputed from the table.
pub async fn verify_windows(
    source: &SourceTable,
    store: &AttestationStore,
    trust: &TrustedKeys,
    through: u64,
) -> Result<(Vec<Finding>, u64), Error> {
    let mut findings = Vec::new();
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
                makoto_core::verify::verify_statement(&env, trust)
                    .map(|v| v.value().clone())
                    .map_err(|e| e.to_string())
            });
        let statement: Statement = match statement {
            Ok(s) => s,
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
        let now: Vec<Sha256Digest> = match cache.window(source, row).await {
            Ok(leaves) => leaves,
            Err(e) => {
                // Vacuumed or unreadable data: the window cannot be rechecked (not tampering
                // by itself; the per-commit checks say whether a live file is missing).
                findings.push(
                    at(
                        FindingKind::DataUnavailable,
                        format!("its records cannot be read: {e}"),
                    )
                    .warning(),
                );
                continue;
            }
        };
        if merkle::root(&now) == attested.root && now.len() as u64 == attested.leaf_count {
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
    Ok((findings, rows.len() as u64))
}

/// An inclusion proof of one record in an attested window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordProof {
    pub kind: String,
    pub window_id: String,
    pub version: u64,
    pub index: u64,
    /// Position of the record in the window.
    pub position: u64,
    pub leaf_count: u64,
    pub merkle_root: String,
    /// The record's canonical bytes (`makoto-record-json/1`).
    pub record: String,
    pub audit_path: Vec<String>,
    /// The window's DSSE envelope.
    pub envelope: serde_json::Value,
}

/// The inclusion proof of record `pos` in the attested window that holds it.
pub async fn prove_record(
    source: &SourceTable,
    store: &AttestationStore,
    pos: RecordPos,
) -> Result<RecordProof, Error> {
    let rows = store.window_rows(source.uri()).await?;
    let row = rows
        .iter()
        .find(|r| {
            RecordPos {
                version: r.first_version,
                index: r.first_index,
            } <= pos
                && pos
                    <= RecordPos {
                        version: r.last_version,
                        index: r.last_index,
                    }
        })
        .ok_or_else(|| Error::RecordNotInWindow {
            table: source.uri().to_owned(),
            version: pos.version,
            index: pos.index,
        })?;
    let records = window_records(source, row).await?;
    let leaves: Vec<Sha256Digest> = records.iter().map(Record::leaf).collect();
    if merkle::root(&leaves) != row.merkle_root {
        return Err(Error::InvalidLog {
            table: source.uri().to_owned(),
            version: pos.version,
            reason: format!(
                "the records of window {} no longer match its attestation; run `makoto verify`",
                row.window_id
            ),
        });
    }
    let position = records
        .iter()
        .position(|r| r.pos == pos)
        .ok_or_else(|| Error::InvalidLog {
            table: source.uri().to_owned(),
            version: pos.version,
            reason: format!("commit {} has no record {}", pos.version, pos.index),
        })?;
    let path = merkle::inclusion_proof(&leaves, position)
        .map_err(|e| Error::core(row.window_id.clone(), e))?;
    Ok(RecordProof {
        kind: "makoto-record-proof/1".into(),
        window_id: row.window_id.clone(),
        version: pos.version,
        index: pos.index,
        position: position as u64,
        leaf_count: leaves.len() as u64,
        merkle_root: row.merkle_root.to_hex(),
        record: String::from_utf8_lossy(&records[position].bytes).into_owned(),
        audit_path: path.iter().map(Sha256Digest::to_hex).collect(),
        envelope: serde_json::from_str(&row.envelope).map_err(|e| Error::StoreCorrupt {
            store: store.windows_location().as_uri(),
            reason: format!("window {}: envelope is not JSON: {e}", row.window_id),
        })?,
    })
}

/// Checks a record proof offline: the window's signature under `trust`, the record's leaf,
/// and the audit path up to the signed root. Returns the window id.
pub fn verify_record_proof(proof: &RecordProof, trust: &TrustedKeys) -> Result<String, Error> {
    let bad = |reason: String| Error::ProofInvalid { reason };
    let env = Envelope::from_json(proof.envelope.to_string().as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let verified =
        makoto_core::verify::verify_statement(&env, trust).map_err(|e| bad(e.to_string()))?;
    let w = AttestedWindow::from_statement(verified.value()).map_err(|e| bad(e.to_string()))?;
    if w.id != proof.window_id
        || w.root.to_hex() != proof.merkle_root
        || w.leaf_count != proof.leaf_count
    {
        return Err(bad(
            "the proof's window does not match the signed statement".into(),
        ));
    }
    let path = proof
        .audit_path
        .iter()
        .map(|h| h.parse::<Sha256Digest>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let root = merkle::root_from_proof(
        merkle::leaf_hash(proof.record.as_bytes()),
        proof.position,
        proof.leaf_count,
        &path,
    )
    .map_err(|e| bad(e.to_string()))?;
    if root != w.root {
        return Err(bad(format!(
            "the record and audit path give root {root}, the signed window {}",
            w.root
        )));
    }
    Ok(w.id)
}
