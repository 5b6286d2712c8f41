//! Building a portable membership proof for one file of an attested version.

use makoto_core::Sha256Digest;
use makoto_core::attestation::ChangeKind;
use makoto_core::dsse::Envelope;
use makoto_core::proof::FileProof;
use makoto_core::state::{DvEntry, FileEntry, StateTree, leaf_key};

use crate::Error;
use crate::store::{AttestationStore, FileRow};

/// The state leaf of an `add` row; a file whose bytes were vacuumed before they were attested
/// keeps its leaf, with no digest (`"sha256": null`), as the attestation signed it.
fn entry_of(row: &FileRow) -> Option<FileEntry> {
    let dv = row.dv_unique_id.as_ref().map(|id| {
        DvEntry::new(
            id.clone(),
            row.dv_size_in_bytes.unwrap_or(0),
            row.dv_cardinality.unwrap_or(0),
            row.dv_sha256,
        )
    });
    let size = row.size?;
    Some(match row.sha256 {
        Some(sha256) => FileEntry::new(row.path.clone(), size, sha256, dv),
        None => FileEntry::unavailable(row.path.clone(), size, dv),
    })
}

/// The state tree of `version`, rebuilt from the file rows and checked against `expected`.
fn tree_at(
    rows: &[FileRow],
    expected: Sha256Digest,
    store: &str,
    table: &str,
    version: u64,
) -> Result<StateTree, Error> {
    let mut tree = StateTree::new();
    let core = |e| Error::core(format!("{table}@v{version}"), e);
    let mut i = 0;
    while i < rows.len() {
        let v = rows[i].version;
        let j = rows[i..]
            .iter()
            .position(|r| r.version != v)
            .map_or(rows.len(), |k| i + k);
        let commit = &rows[i..j];
        for r in commit.iter().filter(|r| r.action == ChangeKind::Remove) {
            tree.remove(&leaf_key(&r.path, r.dv_unique_id.as_deref()))
                .map_err(core)?;
        }
        for r in commit.iter().filter(|r| r.action == ChangeKind::Add) {
            if let Some(e) = entry_of(r) {
                tree.insert(e).map_err(core)?;
            }
        }
        i = j;
    }
    if tree.root() != expected {
        return Err(Error::StoreCorrupt {
            store: store.to_owned(),
            reason: format!(
                "the file rows of {table} up to version {version} give state {}, the attestation says {expected}; run `makoto verify`",
                tree.root()
            ),
        });
    }
    Ok(tree)
}

/// A proof that `path` is a live file of `table_uri` at `version`, anchored in the version's
/// signed attestation.
pub async fn prove(
    store: &AttestationStore,
    table_uri: &str,
    path: &str,
    version: u64,
) -> Result<FileProof, Error> {
    let store_name = store.attestations_location().as_uri();
    let rows = store.attestation_rows(table_uri).await?;
    let at: Vec<_> = rows.iter().filter(|r| r.version == version).collect();
    let row = match at.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::StoreCorrupt {
                store: store_name,
                reason: format!("{table_uri}@v{version} is not attested"),
            });
        }
        _ => {
            return Err(Error::StoreCorrupt {
                store: store_name,
                reason: format!(
                    "{table_uri}@v{version} has {} attestation rows; run `makoto verify`",
                    at.len()
                ),
            });
        }
    };
    let envelope = Envelope::from_json(row.envelope.as_bytes())
        .map_err(|e| Error::core(format!("attestation of {table_uri}@v{version}"), e))?;
    let files_table = store.load_files().await?;
    let file_rows = store.file_rows(&files_table, table_uri, 0, version).await?;
    let tree = tree_at(
        &file_rows,
        row.state_digest,
        &store.files_location().as_uri(),
        table_uri,
        version,
    )?;
    let entry = tree
        .loaded_entries()
        .into_iter()
        .find(|e| e.path() == path)
        .cloned()
        .ok_or_else(|| Error::InvalidLog {
            table: table_uri.to_owned(),
            version,
            reason: format!("{path} is not a live file at this version"),
        })?;
    if !entry.is_available() {
        // Other files of the version are proven; this one has nothing to prove its bytes by.
        return Err(Error::InvalidLog {
            table: table_uri.to_owned(),
            version,
            reason: format!(
                "{path} has no digest: its bytes were already deleted (VACUUM) when it was attested, so there is nothing to prove them by"
            ),
        });
    }
    let proof = tree
        .prove(&entry.key())
        .map_err(|e| Error::core(format!("{table_uri}@v{version}"), e))?
        .ok_or_else(|| Error::Task {
            reason: format!("no proof for live file {path}"),
        })?;
    Ok(FileProof::new(
        table_uri.to_owned(),
        version,
        row.state_digest,
        proof,
        envelope,
    ))
}

/// What checking a proof file found.
#[derive(Debug, Clone, PartialEq)]
pub enum ProofOutcome {
    /// The proof holds: a one-line summary and the report `verify-proof --json` prints.
    Verified {
        summary: String,
        report: serde_json::Value,
    },
    /// The proof does not hold, and why.
    Invalid { reason: String },
}

/// Checks a proof file's bytes (a file proof or a record proof, told apart by their format)
/// against `trust`, offline. The one newline `makoto prove` ends the file with is ignored;
/// nothing else is. Bytes that are not JSON at all are an error, not an outcome.
pub fn verify_proof(
    bytes: &[u8],
    trust: &makoto_core::verify::TrustedKeys,
) -> Result<ProofOutcome, Error> {
    use serde_json::{Value, json};
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::ProofNotJson {
        reason: e.to_string(),
    })?;
    let is_record = ["format", "kind"].iter().any(|k| {
        value
            .get(k)
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("makoto-record-proof/"))
    });
    let verdict = if is_record {
        crate::windows::RecordProof::from_json_bytes(bytes)
            .and_then(|p| p.verify(trust))
            .map(|r| ProofOutcome::Verified {
                summary: format!(
                    "record {} of version {} is record {} of {} in window {} (Merkle root {}), signed with key {}",
                    r.index, r.version, r.position, r.leaf_count, r.window_id, r.merkle_root, r.keyid
                ),
                report: json!({"verified": true, "window": r.window_id, "version": r.version,
                               "index": r.index, "position": r.position, "leafCount": r.leaf_count,
                               "merkleRoot": r.merkle_root.to_hex(), "keyid": r.keyid}),
            })
            .map_err(|e| e.to_string())
    } else {
        FileProof::from_json_bytes(bytes)
            .and_then(|p| p.verify(trust))
            .map(|v| {
                let (p, f) = (v.value(), &v.value().file);
                ProofOutcome::Verified {
                    summary: format!(
                        "{} ({} bytes, SHA-256 {}) is a live file of {}@v{} (state {}), attested with key {}",
                        f.path(),
                        f.size(),
                        f.sha256().map_or("unknown".to_owned(), |h| h.to_hex()),
                        p.table,
                        p.version,
                        p.state_digest,
                        v.keyid()
                    ),
                    report: json!({
                        "verified": true,
                        "table": p.table,
                        "version": p.version,
                        "stateDigest": p.state_digest.to_hex(),
                        "file": f.to_json(),
                        "keyid": v.keyid().as_str(),
                    }),
                }
            })
            .map_err(|e| e.to_string())
    };
    Ok(verdict.unwrap_or_else(|reason| ProofOutcome::Invalid { reason }))
}
