//! Deep checks: the bytes of every file live at the verified version, and files nobody
//! references.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use makoto_core::state::FileEntry;

use super::findings::{Finding, FindingKind};
use crate::Error;
use crate::hashing::{FileHasher, HashFailure, HashRequest, Hashed};
use crate::log::SourceTable;

/// A live file to check: its attested entry, the version that added it, its DV file.
/// Borrowed from the walk's tree, so a deep check holds no copy of the live set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveFile<'a> {
    pub entry: &'a FileEntry,
    pub added_at: u64,
    pub dv_file: Option<&'a str>,
}

/// Live files rehashed at a time: what a deep check holds of hashes and requests, whatever
/// the number of live files.
const HASH_CHUNK: usize = 8_192;

/// Rehashes the live files (and their deletion-vector files) and compares them with the
/// attested digests, about [`HASH_CHUNK`] files at a time, each file once: the files are taken
/// in path order and a chunk never splits one path, and a DV file (often shared by many data
/// files) keeps its result for the chunks after it. `removed_later` maps a path to the version
/// after the verified one that removed it, which explains a missing file. Returns the files
/// and bytes hashed.
pub(crate) async fn check_live_files(
    source: &SourceTable,
    mut entries: Vec<LiveFile<'_>>,
    removed_later: &HashMap<String, u64>,
    parallelism: usize,
    findings: &mut Vec<Finding>,
) -> (u64, u64) {
    let hasher = FileHasher::new(Arc::clone(source.store()), parallelism)
        .with_table_root(source.location().url().clone());
    entries.sort_unstable_by(|a, b| a.entry.path().cmp(b.entry.path()));
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut dv_results: Results = HashMap::new();
    let mut rest = &entries[..];
    while !rest.is_empty() {
        let mut end = rest.len().min(HASH_CHUNK);
        while end < rest.len() && rest[end].entry.path() == rest[end - 1].entry.path() {
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        let mut results = hasher
            .hash_all(requests(chunk, &dv_results), Arc::new(|_| {}))
            .await;
        for h in results.values().flatten() {
            files += 1;
            bytes += h.size;
        }
        for dv_file in chunk.iter().filter_map(|f| f.dv_file) {
            if let Some(r) = results.remove(dv_file) {
                dv_results.insert(dv_file.to_owned(), r);
            }
        }
        compare(chunk, &results, &dv_results, removed_later, findings);
    }
    (files, bytes)
}

type Results = HashMap<String, Result<Hashed, HashFailure>>;

/// One request per distinct file of `chunk`: its data file when it was hashed when attested,
/// its DV file unless an earlier chunk hashed it.
fn requests(chunk: &[LiveFile<'_>], dv_done: &Results) -> Vec<HashRequest> {
    let mut requests = Vec::new();
    let mut seen = HashSet::new();
    for f in chunk {
        let e = f.entry;
        if e.is_available() && seen.insert(e.path()) {
            requests.push(HashRequest {
                path: e.path().to_owned(),
                expected_size: Some(e.size()),
            });
        }
        if let Some(dv_file) = f.dv_file
            && !dv_done.contains_key(dv_file)
            && seen.insert(dv_file)
        {
            requests.push(HashRequest {
                path: dv_file.to_owned(),
                expected_size: None,
            });
        }
    }
    requests
}

/// Compares one chunk's files with what rehashing them found (`results`, and `dv_results`
/// for the DV files of this chunk and those before).
fn compare(
    chunk: &[LiveFile<'_>],
    results: &Results,
    dv_results: &Results,
    removed_later: &HashMap<String, u64>,
    findings: &mut Vec<Finding>,
) {
    let result = |path: &str| results.get(path).or_else(|| dv_results.get(path));
    for f in chunk {
        let (e, added_at) = (f.entry, &f.added_at);
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
        match result(path) {
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
        let (Some(dv), Some(dv_file)) = (e.dv(), f.dv_file) else {
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
        match (result(dv_file), dv.file_sha256()) {
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
}

/// Files under the table root that no commit references and that appeared after `cutoff`.
/// Listing never follows a symbolic link (a link is not descended into, so a loop or a link
/// out of the table is harmless); entries that cannot be listed are reported, not fatal.
pub(crate) async fn check_unreferenced(
    source: &SourceTable,
    referenced: &HashSet<String>,
    cutoff: Option<DateTime<Utc>>,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let Some(cutoff) = cutoff else { return Ok(()) };
    let (objects, errors) = if source.location().is_local() {
        let root = source.location().url().to_file_path().map_err(|()| {
            Error::storage(
                source.uri(),
                object_store::Error::Generic {
                    store: "local",
                    source: "the table location is not a local path".into(),
                },
            )
        })?;
        tokio::task::spawn_blocking(move || walk_local(&root))
            .await
            .map_err(|e| Error::Task {
                reason: e.to_string(),
            })?
    } else {
        let mut stream = source.store().list(None);
        let (mut objects, mut errors) = (Vec::new(), Vec::new());
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => objects.push((m.location.to_string(), m.last_modified)),
                Err(e) if objects.is_empty() && errors.is_empty() => {
                    return Err(Error::storage(source.uri(), e));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        (objects, errors)
    };
    for e in errors.iter().take(20) {
        findings.push(Finding::new(FindingKind::LogListingFailed, e.clone()));
    }
    for (path, modified) in objects {
        let hidden = path
            .split('/')
            .any(|p| p.starts_with('.') || p.starts_with('_'));
        if hidden || referenced.contains(&path) {
            continue;
        }
        if modified > cutoff {
            findings.push(
                Finding::new(
                    FindingKind::UnreferencedFile,
                    format!(
                        "no commit references it and it appeared at {}, after the last attestation ({})",
                        modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                )
                .file(path),
            );
        }
    }
    Ok(())
}

/// Regular files under `root` (paths relative to it, `/`-separated) with their modification
/// times; symbolic links are neither followed nor listed. Bounded in depth.
#[allow(clippy::type_complexity)]
fn walk_local(root: &std::path::Path) -> (Vec<(String, DateTime<Utc>)>, Vec<String>) {
    const MAX_DEPTH: usize = 64;
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    let mut stack: Vec<(std::path::PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                errors.push(format!("{}: cannot be read", path.display()));
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    errors.push(format!(
                        "{}: deeper than {MAX_DEPTH} directories, not listed",
                        path.display()
                    ));
                } else {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let modified = meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(|_| Utc::now());
            files.push((rel.join("/"), modified));
        }
    }
    (files, errors)
}
