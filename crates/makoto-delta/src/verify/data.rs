//! Deep checks: the bytes of every file live at the verified version, and files nobody
//! references.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use makoto_core::state::FileEntry;

use super::findings::{Finding, FindingKind};
use crate::Error;
use crate::hashing::{FileHasher, HashFailure, HashRequest};
use crate::log::SourceTable;

/// A live file to check: its attested entry, the version that added it, its DV file.
#[derive(Debug, Clone)]
pub(crate) struct LiveFile {
    pub entry: FileEntry,
    pub added_at: u64,
    pub dv_file: Option<String>,
}

/// Rehashes the live files (and their deletion-vector files) and compares them with the
/// attested digests. `removed_later` maps a path to the version after the verified one that
/// removed it, which explains a missing file.
pub(crate) async fn check_live_files(
    source: &SourceTable,
    entries: &[LiveFile],
    removed_later: &HashMap<String, u64>,
    parallelism: usize,
    findings: &mut Vec<Finding>,
) -> (u64, u64) {
    let mut requests = Vec::new();
    let mut seen = HashSet::new();
    for f in entries {
        let e = &f.entry;
        if e.is_available() && seen.insert(e.path().to_owned()) {
            requests.push(HashRequest {
                path: e.path().to_owned(),
                expected_size: Some(e.size()),
            });
        }
        if let Some(dv_file) = f.dv_file.clone()
            && seen.insert(dv_file.clone())
        {
            requests.push(HashRequest {
                path: dv_file,
                expected_size: None,
            });
        }
    }
    let hasher = FileHasher::new(Arc::clone(source.store()), parallelism)
        .with_table_root(source.location().url().clone());
    let results = hasher.hash_all(requests, Arc::new(|_| {})).await;
    let (mut files, mut bytes) = (0u64, 0u64);
    for h in results.values().flatten() {
        files += 1;
        bytes += h.size;
    }
    for f in entries {
        let (e, added_at) = (&f.entry, &f.added_at);
        let path = e.path();
        let Some(attested) = e.sha256() else {
            findings.push(
                Finding::new(
                    FindingKind::DataUnavailable,
                    format!("added at version {added_at}, whose data was already deleted (VACUUM) when it was first attested: only the log's facts about it are attested"),
                )
                .at(*added_at)
                .file(path),
            );
            continue;
        };
        match results.get(path) {
            Some(Ok(h)) if h.sha256 == attested && h.size == e.size() => {}
            Some(Ok(h)) => findings.push(
                Finding::new(
                    FindingKind::DataFileChanged,
                    format!(
                        "added at version {added_at}: attested {} bytes with SHA-256 {}, now {} bytes with SHA-256 {}",
                        e.size(),
                        attested,
                        h.size,
                        h.sha256
                    ),
                )
                .at(*added_at)
                .file(path),
            ),
            Some(Err(HashFailure::Missing)) => findings.push(match removed_later.get(path) {
                Some(r) => Finding::new(
                    FindingKind::DataFileVacuumed,
                    format!("added at version {added_at}, removed at version {r} and since deleted (VACUUM)"),
                )
                .at(*added_at)
                .file(path),
                None => Finding::new(
                    FindingKind::DataFileMissing,
                    format!("added at version {added_at} and still live, but gone from storage"),
                )
                .at(*added_at)
                .file(path),
            }),
            Some(Err(other)) => findings.push(
                Finding::new(FindingKind::DataFileMissing, format!("cannot be read: {other:?}"))
                    .at(*added_at)
                    .file(path),
            ),
            None => {}
        }
        let (Some(dv), Some(dv_file)) = (e.dv(), f.dv_file.clone()) else {
            continue;
        };
        if dv.file_sha256().is_none() {
            findings.push(
                Finding::new(
                    FindingKind::DataUnavailable,
                    format!("deletion vector of {path} was already deleted when version {added_at} was first attested"),
                )
                .at(*added_at)
                .file(dv_file),
            );
            continue;
        }
        match (results.get(&dv_file), dv.file_sha256()) {
            (Some(Ok(h)), Some(attested)) if h.sha256 == attested => {}
            (Some(Ok(h)), attested) => findings.push(
                Finding::new(
                    FindingKind::DeletionVectorChanged,
                    format!(
                        "deletion vector of {path}: attested SHA-256 {}, now {}",
                        attested.map_or("unknown".to_owned(), |a| a.to_hex()),
                        h.sha256
                    ),
                )
                .at(*added_at)
                .file(dv_file),
            ),
            (Some(Err(HashFailure::Missing)), _) if removed_later.contains_key(path) => {}
            (Some(Err(_)), _) => findings.push(
                Finding::new(
                    FindingKind::DeletionVectorMissing,
                    format!("deletion vector of {path} is gone"),
                )
                .at(*added_at)
                .file(dv_file),
            ),
            (None, _) => {}
        }
    }
    (files, bytes)
}

/// Files under the table root that no commit references and that appeared after `cutoff`.
pub(crate) async fn check_unreferenced(
    source: &SourceTable,
    referenced: &HashSet<String>,
    cutoff: Option<DateTime<Utc>>,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let Some(cutoff) = cutoff else { return Ok(()) };
    let objects: Vec<_> = source
        .store()
        .list(None)
        .try_collect()
        .await
        .map_err(|e| Error::storage(source.uri(), e))?;
    for m in objects {
        let path = m.location.to_string();
        let hidden = m
            .location
            .parts()
            .any(|p| p.as_ref().starts_with('.') || p.as_ref().starts_with('_'));
        if hidden || referenced.contains(&path) {
            continue;
        }
        if m.last_modified > cutoff {
            findings.push(
                Finding::new(
                    FindingKind::UnreferencedFile,
                    format!(
                        "no commit references it and it appeared at {}, after the last attestation ({})",
                        m.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                )
                .file(path),
            );
        }
    }
    Ok(())
}
