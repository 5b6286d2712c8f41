//! Stream windows over a table's appended records: [`attest_windows`] closes windows and
//! writes one signed `stream-window/v1` statement per window to `system.makoto.windows`;
//! verification (`verify::windows`) recomputes them from the table and names the window and
//! position of an inserted, altered, dropped or reordered record; [`prove_record`] gives an inclusion proof of
//! one record. Formats: docs/streams.md.

use makoto_core::attestation::Attestation;
use makoto_core::dsse::Envelope;
use makoto_core::keys::Signer;
use makoto_core::statement::Statement;
use makoto_core::verify::TrustedKeys;
use makoto_core::window::{
    AttestedWindow, PreviousWindow, RecordPos, WindowFacts, WindowSpec, build_window_statement,
    commit_spans,
};
use makoto_core::{Sha256Digest, merkle};

use crate::Error;
use crate::log::SourceTable;
use crate::store::{AppendOutcome, AttestationStore, WindowRow, windows_app_id};
use crate::stream_records::{self, Record, commit_records};

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

/// The leaf of every record of the commits `versions`, by commit (records are hashed batch by
/// batch as they are decoded; their bytes are not kept).
pub(crate) async fn commit_leaves(
    source: &SourceTable,
    versions: std::ops::RangeInclusive<u64>,
) -> Result<Vec<(u64, Vec<(RecordPos, Sha256Digest)>, i64)>, Error> {
    let commits = source.read_commits(versions, 8).await?;
    let mut out = Vec::with_capacity(commits.len());
    for c in &commits {
        let leaves = (0u64..)
            .zip(stream_records::commit_leaves(source, c).await?)
            .map(|(index, leaf)| {
                let pos = RecordPos {
                    version: c.version(),
                    index,
                };
                (pos, leaf)
            })
            .collect();
        out.push((c.version(), leaves, commit_ms(c)));
    }
    Ok(out)
}

/// The first commit that can hold records after `from`: `from`'s own commit only when the
/// window may have ended inside it. `commits=` and `duration=` windows always end at a
/// commit's last record, and so does a `records=` window whose last index is the last record
/// the commit's statistics count. Not re-reading that commit is what lets a run continue after
/// its files were purged (a redaction, then VACUUM).
async fn first_commit_after(
    source: &SourceTable,
    spec: WindowSpec,
    from: Option<RecordPos>,
) -> Result<u64, Error> {
    let Some(p) = from else { return Ok(0) };
    if !matches!(spec, WindowSpec::Records(_)) {
        return Ok(p.version + 1);
    }
    let commits = source.read_commits(p.version..=p.version, 1).await?;
    let counted: Option<u64> = commits.first().and_then(|c| {
        c.adds()
            .filter(|a| a.data_change())
            .map(|a| a.num_records())
            .sum()
    });
    Ok(match counted {
        Some(n) if n == p.index + 1 => p.version + 1,
        _ => p.version,
    })
}

/// The stream's record leaves from `from` (exclusive) through version `through`, by commit.
async fn records_after(
    source: &SourceTable,
    spec: WindowSpec,
    from: Option<RecordPos>,
    through: u64,
) -> Result<Vec<(Vec<(RecordPos, Sha256Digest)>, i64)>, Error> {
    let start = first_commit_after(source, spec, from).await?;
    if start > through {
        return Ok(Vec::new());
    }
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

pub(crate) fn bounds(row: &WindowRow) -> (RecordPos, RecordPos) {
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
/// `through` (the last attested version), continuing the chain already stored. With a TSA,
/// every window's signature is time-stamped.
#[allow(clippy::too_many_arguments)]
pub async fn attest_windows(
    source: &SourceTable,
    store: &AttestationStore,
    signer: Option<&dyn Signer>,
    spec: WindowSpec,
    through: u64,
    table_id: &str,
    run_id: &str,
    tsa: Option<&crate::tsa::TsaClient>,
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
    // Each closed window with its Merkle root, computed once (a root costs a hash per leaf).
    let mut closed: Vec<(WindowFacts, Sha256Digest)> = Vec::new();
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
            commits: commit_spans(records.iter().map(|r| r.0)),
            previous: previous.clone(),
            attested_at_ms,
        };
        let root = facts.root();
        *previous = Some(PreviousWindow {
            id: facts.id(),
            root,
            sequence,
            genesis_id: previous
                .as_ref()
                .map_or(facts.id(), |p| p.genesis_id.clone()),
        });
        closed.push((facts, root));
    };
    for (records, ts) in records_after(source, spec, resume, through).await? {
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
    for (w, root) in &closed {
        let statement = build_window_statement(w, "https://makoto.dev/attestors/makoto")
            .map_err(|e| Error::core(format!("window {}", w.id()), e))?;
        let att = Attestation::seal(statement, signer)
            .map_err(|e| Error::core(format!("signing window {}", w.id()), e))?;
        let mut envelope = att.envelope().clone();
        if let Some(tsa) = tsa {
            tsa.stamp(&mut envelope, &format!("window {}", w.id()))
                .await?;
        }
        store.put_window_leaves(*root, &w.leaves).await?;
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
            merkle_root: *root,
            previous_window_id: w.previous.as_ref().map(|p| p.id.clone()),
            previous_merkle_root: w.previous.as_ref().map(|p| p.root),
            attestation_digest: att.digest(),
            keyid: att.keyid().cloned(),
            envelope: envelope.to_json(),
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
            .map(|(w, root)| ClosedWindow {
                id: w.id(),
                sequence: w.sequence,
                root: *root,
                leaf_count: w.leaves.len() as u64,
                first: w.first,
                last: w.last,
            })
            .collect(),
        open_records,
    })
}

/// The records of a window as the table holds them now.
pub(crate) async fn window_records(
    source: &SourceTable,
    row: &WindowRow,
) -> Result<Vec<Record>, Error> {
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

/// `format` of the record proofs `makoto prove --record` writes (docs/streams.md#record-proofs).
pub const RECORD_PROOF_FORMAT: &str = "makoto-record-proof/2";

/// The record proofs written before they bound the record's `version:index` (their `kind`
/// member); refused.
pub const RECORD_PROOF_FORMAT_1: &str = "makoto-record-proof/1";

/// An inclusion proof of one record in an attested window, bound to the record's commit
/// version and index by the window's signed commit spans. Its file is the canonical JSON of
///
/// ```json
/// {"format": "makoto-record-proof/2", "windowId": "<id>", "version": v, "index": i,
///  "position": p, "leafCount": n, "merkleRoot": "<hex>", "record": "<record bytes>",
///  "auditPath": ["<hex>", …], "keyid": "<key id>", "envelope": {<the window's DSSE envelope>}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProof {
    pub window_id: String,
    /// The commit that appended the record.
    pub version: u64,
    /// The record's index among that commit's records.
    pub index: u64,
    /// Position of the record's leaf in the window.
    pub position: u64,
    pub leaf_count: u64,
    pub merkle_root: Sha256Digest,
    /// The record's canonical bytes (`makoto-record-json/1`), as text.
    pub record: String,
    /// RFC 6962 audit path, bottom-up.
    pub audit_path: Vec<Sha256Digest>,
    /// The window's DSSE envelope.
    pub envelope: Envelope,
}

/// What a checked record proof establishes: the signed window holds this record, added by
/// commit `version` as its record `index`, at leaf `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenRecord {
    pub window_id: String,
    pub version: u64,
    pub index: u64,
    pub position: u64,
    pub leaf_count: u64,
    pub merkle_root: Sha256Digest,
    /// The trusted key the window's signature verified under.
    pub keyid: String,
    /// `predicate.delta.formatVersion` of the window statement.
    pub window_format: u64,
}

fn proof_invalid(reason: impl Into<String>) -> Error {
    Error::ProofInvalid {
        reason: reason.into(),
    }
}

impl RecordProof {
    /// The key id the window's (first) signature names; empty when it names none.
    pub fn keyid(&self) -> String {
        self.envelope
            .signatures()
            .first()
            .and_then(|s| s.keyid())
            .unwrap_or_default()
            .to_owned()
    }

    /// The canonical JSON bytes of the proof (no trailing newline).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, Error> {
        let envelope: serde_json::Value = serde_json::from_str(&self.envelope.to_json())
            .map_err(|e| proof_invalid(format!("envelope: {e}")))?;
        let v = serde_json::json!({
            "format": RECORD_PROOF_FORMAT,
            "windowId": self.window_id,
            "version": self.version,
            "index": self.index,
            "position": self.position,
            "leafCount": self.leaf_count,
            "merkleRoot": self.merkle_root.to_hex(),
            "record": self.record,
            "auditPath": self.audit_path.iter().map(Sha256Digest::to_hex).collect::<Vec<_>>(),
            "keyid": self.keyid(),
            "envelope": envelope,
        });
        Ok(makoto_core::canonical::to_vec(&v))
    }

    /// Parses a proof, which must be exactly the bytes [`RecordProof::to_json_bytes`] writes:
    /// no other member, order, spacing or encoding.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, Error> {
        use serde_json::Value;
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| proof_invalid(format!("not JSON: {e}")))?;
        let format = v.get("format").and_then(Value::as_str);
        if format != Some(RECORD_PROOF_FORMAT) {
            if format.is_none()
                && v.get("kind").and_then(Value::as_str) == Some(RECORD_PROOF_FORMAT_1)
            {
                return Err(proof_invalid(format!(
                    "{RECORD_PROOF_FORMAT_1} proofs do not bind the record's version and index and are no longer accepted; make a new proof with `makoto prove --record`"
                )));
            }
            return Err(proof_invalid(format!(
                "format is {}, not {RECORD_PROOF_FORMAT}",
                format.map_or("missing".to_owned(), |f| format!("{f:?}"))
            )));
        }
        let member = |k: &str| v.get(k).ok_or_else(|| proof_invalid(format!("no {k}")));
        let string = |k: &str| -> Result<String, Error> {
            member(k)?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| proof_invalid(format!("{k} is not a string")))
        };
        let number = |k: &str| -> Result<u64, Error> {
            member(k)?
                .as_u64()
                .ok_or_else(|| proof_invalid(format!("{k} is not a non-negative integer")))
        };
        let digest = |k: &str, s: &str| -> Result<Sha256Digest, Error> {
            s.parse()
                .map_err(|_| proof_invalid(format!("{k} is not a lowercase hex SHA-256")))
        };
        let audit_path = member("auditPath")?
            .as_array()
            .ok_or_else(|| proof_invalid("auditPath is not an array"))?
            .iter()
            .map(|h| {
                h.as_str()
                    .ok_or_else(|| proof_invalid("auditPath holds a non-string"))
                    .and_then(|s| digest("auditPath", s))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let envelope = Envelope::from_json(&makoto_core::canonical::to_vec(member("envelope")?))
            .map_err(|e| proof_invalid(format!("envelope: {e}")))?;
        if envelope.signatures().len() != 1 {
            return Err(proof_invalid(format!(
                "the envelope holds {} signatures; makoto writes exactly one",
                envelope.signatures().len()
            )));
        }
        let keyid = string("keyid")?;
        let proof = RecordProof {
            window_id: string("windowId")?,
            version: number("version")?,
            index: number("index")?,
            position: number("position")?,
            leaf_count: number("leafCount")?,
            merkle_root: digest("merkleRoot", &string("merkleRoot")?)?,
            record: string("record")?,
            audit_path,
            envelope,
        };
        if proof.keyid() != keyid {
            return Err(proof_invalid(format!(
                "keyid {keyid:?} is not the key id the window's signature names ({:?})",
                proof.keyid()
            )));
        }
        if proof.to_json_bytes()? != bytes {
            return Err(proof_invalid(
                "the proof is not exactly what makoto prove writes (a member added, renamed or reordered, other spacing or escapes): it was edited",
            ));
        }
        Ok(proof)
    }

    /// Checks the proof offline: the window's signature under `trust` (a trusted key valid at
    /// the window's signing time, whose id is the proof's `keyid`), the proof's window, root and
    /// leaf count against the signed statement, the record's leaf position against the one the
    /// statement signs for `version:index`, and the record's leaf and audit path up to the
    /// signed root.
    pub fn verify(&self, trust: &TrustedKeys) -> Result<ProvenRecord, Error> {
        let verified = makoto_core::verify::verify_statement(&self.envelope, trust)
            .map_err(|e| proof_invalid(format!("window {}: {e}", self.window_id)))?;
        let keyid = self.keyid();
        if verified.keyid().as_str() != keyid
            || self
                .envelope
                .signatures()
                .iter()
                .any(|s| s.keyid() != Some(keyid.as_str()))
        {
            return Err(proof_invalid(format!(
                "the window verifies under key {}, but the proof names key {keyid:?}",
                verified.keyid()
            )));
        }
        let w = AttestedWindow::from_statement(verified.value())
            .map_err(|e| proof_invalid(e.to_string()))?;
        if w.id != self.window_id {
            return Err(proof_invalid(format!(
                "the proof names window {}, the signed statement is window {}",
                self.window_id, w.id
            )));
        }
        if w.root != self.merkle_root || w.leaf_count != self.leaf_count {
            return Err(proof_invalid(format!(
                "the proof says root {} over {} records, window {} signs root {} over {}",
                self.merkle_root, self.leaf_count, w.id, w.root, w.leaf_count
            )));
        }
        let pos = RecordPos {
            version: self.version,
            index: self.index,
        };
        let expected = w.locate(pos).map_err(proof_invalid)?;
        if expected != self.position {
            return Err(proof_invalid(format!(
                "window {} signs record {}:{} at position {expected}, the proof claims position {}",
                w.id, self.version, self.index, self.position
            )));
        }
        let root = merkle::root_from_proof(
            merkle::leaf_hash(self.record.as_bytes()),
            self.position,
            self.leaf_count,
            &self.audit_path,
        )
        .map_err(|e| proof_invalid(e.to_string()))?;
        if root != w.root {
            return Err(proof_invalid(format!(
                "the record and audit path give root {root}, window {} signs {}",
                w.id, w.root
            )));
        }
        Ok(ProvenRecord {
            window_id: w.id,
            version: self.version,
            index: self.index,
            position: self.position,
            leaf_count: self.leaf_count,
            merkle_root: w.root,
            keyid,
            window_format: w.format_version,
        })
    }
}

/// The inclusion proof of record `pos` in the attested window that holds it. Refused (exit 2)
/// for a record of a `formatVersion` 1 window that does not sign where the record is.
pub async fn prove_record(
    source: &SourceTable,
    store: &AttestationStore,
    pos: RecordPos,
) -> Result<RecordProof, Error> {
    let table = source.uri().to_owned();
    let rows = store.window_rows(&table).await?;
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
            table: table.clone(),
            version: pos.version,
            index: pos.index,
        })?;
    let corrupt = |reason: String| Error::StoreCorrupt {
        store: store.windows_location().as_uri(),
        reason: format!("window {}: {reason}", row.window_id),
    };
    let envelope =
        Envelope::from_json(row.envelope.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
    let statement =
        Statement::from_payload(envelope.payload()).map_err(|e| corrupt(e.to_string()))?;
    let attested =
        AttestedWindow::from_statement(&statement).map_err(|e| corrupt(e.to_string()))?;
    let signed_position = attested.locate(pos).map_err(|reason| {
        proof_invalid(format!(
            "{table} version {} record {}: {reason}",
            pos.version, pos.index
        ))
    })?;
    let records = window_records(source, row).await?;
    let leaves: Vec<Sha256Digest> = records.iter().map(Record::leaf).collect();
    let position = records.iter().position(|r| r.pos == pos);
    if merkle::root(&leaves) != attested.root || position != usize::try_from(signed_position).ok() {
        return Err(Error::InvalidLog {
            table,
            version: pos.version,
            reason: format!(
                "the records of window {} no longer match its attestation; run `makoto verify`",
                row.window_id
            ),
        });
    }
    let position = position.ok_or_else(|| Error::InvalidLog {
        table: table.clone(),
        version: pos.version,
        reason: format!("commit {} has no record {}", pos.version, pos.index),
    })?;
    let audit_path = merkle::inclusion_proof(&leaves, position)
        .map_err(|e| Error::core(row.window_id.clone(), e))?;
    let record =
        String::from_utf8(records[position].bytes.clone()).map_err(|_| Error::InvalidLog {
            table: table.clone(),
            version: pos.version,
            reason: format!("record {} is not UTF-8", pos.index),
        })?;
    Ok(RecordProof {
        window_id: attested.id,
        version: pos.version,
        index: pos.index,
        position: position as u64,
        leaf_count: leaves.len() as u64,
        merkle_root: attested.root,
        record,
        audit_path,
        envelope,
    })
}
