//! Reading a table's transaction log: listing commit files and fetching their bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use makoto_core::delta::{Commit, commit_file_name};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::Error;
use crate::location::{Location, StorageOptions};

/// A commit file as listed on storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitFileMeta {
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// Commit files found at or after some version, contiguous.
#[derive(Debug, Clone, Default)]
pub struct LogListing {
    commits: BTreeMap<u64, CommitFileMeta>,
}

impl LogListing {
    pub fn latest(&self) -> Option<u64> {
        self.commits.keys().next_back().copied()
    }
    pub fn first(&self) -> Option<u64> {
        self.commits.keys().next().copied()
    }
    pub fn get(&self, version: u64) -> Option<&CommitFileMeta> {
        self.commits.get(&version)
    }
    pub fn len(&self) -> usize {
        self.commits.len()
    }
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
    }
}

/// Every file of `_delta_log/` at or after some version, by kind.
#[derive(Debug, Clone, Default)]
pub struct LogFiles {
    commits: BTreeMap<u64, CommitFileMeta>,
    checkpoints: BTreeMap<u64, Vec<String>>,
    checksums: BTreeMap<u64, String>,
    compactions: BTreeMap<(u64, u64), String>,
    /// Entries that could not be listed (permissions, symlink loops…), one line each.
    errors: Vec<String>,
}

impl LogFiles {
    /// Commit files, by version (with any gaps left in).
    pub fn commits(&self) -> &BTreeMap<u64, CommitFileMeta> {
        &self.commits
    }
    /// Checkpoint file names (classic, multi-part or v2), by version.
    pub fn checkpoints(&self) -> &BTreeMap<u64, Vec<String>> {
        &self.checkpoints
    }
    pub fn latest_commit(&self) -> Option<u64> {
        self.commits.keys().next_back().copied()
    }
    /// `.crc` version checksum files, by version.
    pub fn checksums(&self) -> &BTreeMap<u64, String> {
        &self.checksums
    }
    /// Log compaction files `<x>.<y>.compacted.json`, by `(x, y)`.
    pub fn compactions(&self) -> &BTreeMap<(u64, u64), String> {
        &self.compactions
    }
    /// Listing errors, one line each.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}

/// Delta versions are signed 64-bit numbers; a name beyond that is not a version.
const MAX_VERSION: u64 = i64::MAX as u64;

/// `00000000000000000012.crc` → 12.
fn parse_checksum_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".crc")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
        .filter(|v| *v <= MAX_VERSION)
}

/// `00000000000000000004.00000000000000000006.compacted.json` → (4, 6).
fn parse_compaction_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".compacted.json")?;
    let (a, b) = stem.split_once('.')?;
    let ok = |s: &str| s.len() == 20 && s.bytes().all(|c| c.is_ascii_digit());
    if !(ok(a) && ok(b)) {
        return None;
    }
    let (x, y): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (x <= y && y <= MAX_VERSION).then_some((x, y))
}

/// `00000000000000000012.checkpoint.parquet`, `….checkpoint.0000000001.0000000003.parquet`,
/// `….checkpoint.<uuid>.json` → 12.
pub(crate) fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let (digits, rest) = name.split_at_checked(20)?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with(".checkpoint."))
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|v| *v <= MAX_VERSION)
}

/// Whether a listing error concerns one entry (a symlink loop, an unreadable directory
/// entry) rather than the whole listing.
fn is_entry_error(e: &object_store::Error) -> bool {
    let s = e.to_string();
    s.contains("loop") || s.contains("symlink") || s.contains("Permission denied")
}

/// The files directly in a local `_delta_log/` (symbolic links to files are followed, to
/// directories not), as object metas; entries that cannot be read are returned as errors.
#[allow(clippy::type_complexity)]
fn list_local(
    dir: &std::path::Path,
) -> Result<(Vec<object_store::ObjectMeta>, Vec<String>), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => {
            return Err(Error::InvalidLog {
                table: dir.display().to_string(),
                version: 0,
                reason: format!("cannot list the log: {e}"),
            });
        }
    };
    let (mut metas, mut errors) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) => {
                errors.push(format!("_delta_log/{name}: {e}"));
                continue;
            }
        };
        metas.push(object_store::ObjectMeta {
            location: Path::from_iter(["_delta_log", name.as_str()]),
            last_modified: meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(|_| Utc::now()),
            size: meta.len(),
            e_tag: None,
            version: None,
        });
    }
    Ok((metas, errors))
}

/// A Delta table being read.
#[derive(Debug, Clone)]
pub struct SourceTable {
    location: Location,
    uri: String,
    store: Arc<dyn ObjectStore>,
}

/// Commits of a local log read and parsed by one blocking task ([`SourceTable::read_commits`]).
const LOCAL_READ_GROUP: usize = 64;

fn commit_path(version: u64) -> Path {
    Path::from(format!("_delta_log/{}", commit_file_name(version)))
}

/// `00000000000000000012.json` → 12.
pub(crate) fn parse_commit_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
        .filter(|v| *v <= MAX_VERSION)
}

impl SourceTable {
    pub fn open(location: Location, options: &StorageOptions) -> Result<Self, Error> {
        let store = location.object_store(options)?;
        Ok(SourceTable {
            uri: location.as_uri(),
            location,
            store,
        })
    }

    /// Where the table is read.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The canonical table URI its attestations name: its own location's, or the one given by
    /// [`SourceTable::attested_as`] for a copy.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The same bytes, checked as the table attested under `uri` (an evidence copy, a restored
    /// backup, the same table seen through another scheme or mount).
    pub fn attested_as(mut self, uri: String) -> Self {
        self.uri = uri;
        self
    }

    /// The location read, when it is not the attested URI (a copy).
    pub fn copy_location(&self) -> Option<String> {
        let here = self.location.as_uri();
        (here != self.uri).then_some(here)
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Lists the commit and checkpoint files of `_delta_log/` with version `>= from` (files
    /// in subdirectories such as `_sidecars/` are not listed).
    pub async fn list_log(&self, from: u64) -> Result<LogFiles, Error> {
        let prefix = Path::from("_delta_log");
        let mut files = LogFiles::default();
        let metas = if from == 0 && self.location.is_local() {
            // Only the log's own level: subdirectories (`_sidecars/`, `_staged_commits/`, or
            // a symbolic link looping back) are not descended into.
            let dir = self
                .location
                .local_dir()
                .map(|p| p.join("_delta_log"))
                .ok_or_else(|| Error::InvalidLog {
                    table: self.uri.clone(),
                    version: 0,
                    reason: "the table location is not a local path".into(),
                })?;
            let (metas, errors) = tokio::task::spawn_blocking(move || list_local(&dir))
                .await
                .map_err(|e| Error::Task {
                    reason: e.to_string(),
                })??;
            files.errors.extend(errors);
            metas
        } else if from == 0 {
            match self.store.list_with_delimiter(Some(&prefix)).await {
                Ok(l) => l.objects,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(Error::storage(format!("{}/_delta_log", self.uri), e)),
            }
        } else {
            let mut stream = self
                .store
                .list_with_offset(Some(&prefix), &commit_path(from - 1));
            let mut metas = Vec::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(m) => metas.push(m),
                    Err(object_store::Error::NotFound { .. }) => {}
                    // A whole-listing failure (no permission, unreachable store) cannot be
                    // worked around; one bad entry (a symlink loop) is reported and skipped.
                    Err(e)
                        if metas.is_empty() && files.errors.is_empty() && !is_entry_error(&e) =>
                    {
                        return Err(Error::storage(format!("{}/_delta_log", self.uri), e));
                    }
                    Err(e) => {
                        if files.errors.len() < 100 {
                            files.errors.push(e.to_string());
                        }
                    }
                }
            }
            metas
        };
        for m in metas {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if m.location.parts().count() != 2 {
                continue;
            }
            if let Some(v) = parse_commit_name(name).filter(|v| *v >= from) {
                files.commits.insert(
                    v,
                    CommitFileMeta {
                        size: m.size,
                        last_modified: m.last_modified,
                    },
                );
            } else if let Some(v) = parse_checkpoint_name(name).filter(|v| *v >= from) {
                files
                    .checkpoints
                    .entry(v)
                    .or_default()
                    .push(name.to_owned());
            } else if let Some(v) = parse_checksum_name(name).filter(|v| *v >= from) {
                files.checksums.insert(v, name.to_owned());
            } else if let Some(r) = parse_compaction_name(name).filter(|r| r.1 >= from) {
                files.compactions.insert(r, name.to_owned());
            }
        }
        Ok(files)
    }

    /// Lists commit files with version `>= from`. Fails on a gap between `from` (or the first
    /// listed commit) and the latest one.
    pub async fn list_commits(&self, from: u64) -> Result<LogListing, Error> {
        let listing = LogListing {
            commits: self.list_log(from).await?.commits,
        };
        if let (Some(first), Some(latest)) = (listing.first(), listing.latest()) {
            let expected_first = from.max(first);
            if let Some(gap) = (expected_first..=latest).find(|v| !listing.commits.contains_key(v))
            {
                return Err(Error::LogGap {
                    table: self.uri.clone(),
                    version: gap,
                });
            }
            if from > 0 && first > from {
                return Err(Error::LogGap {
                    table: self.uri.clone(),
                    version: from,
                });
            }
        }
        Ok(listing)
    }

    /// When the commit file for `version` was last modified (written), or `None` when there is
    /// no such commit: one metadata request, how a watcher notices a new commit.
    pub async fn commit_modified(
        &self,
        version: u64,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
        match self.store.head(&commit_path(version)).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(
                format!("{}/_delta_log/{}", self.uri, commit_file_name(version)),
                e,
            )),
        }
    }

    /// [`SourceTable::commit_modified`] on the calling thread, for a local table whose log is
    /// `dir` ([`SourceTable::local_log_dir`]): one `stat`, so that a watcher looks at many
    /// local tables in one blocking task rather than one task each. As with the object store,
    /// anything but a file at the commit's path (missing, a directory) is no commit.
    pub fn local_commit_modified(
        &self,
        dir: &std::path::Path,
        version: u64,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
        let name = commit_file_name(version);
        let io = |e| Error::local_io(format!("{}/_delta_log/{name}", self.uri), e);
        match std::fs::metadata(dir.join(&name)) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.modified().map_err(io)?.into())),
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Whether the commit file for `version` exists.
    pub async fn commit_exists(&self, version: u64) -> Result<bool, Error> {
        match self.store.head(&commit_path(version)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::storage(
                format!("{}/_delta_log/{}", self.uri, commit_file_name(version)),
                e,
            )),
        }
    }

    /// The raw bytes of commit `version`.
    pub async fn read_commit_bytes(&self, version: u64) -> Result<Bytes, Error> {
        let path = commit_path(version);
        let location = format!("{}/{}", self.uri, path);
        match self.store.get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| Error::storage(location, e)),
            Err(object_store::Error::NotFound { .. }) => Err(Error::InvalidLog {
                table: self.uri.clone(),
                version,
                reason: format!(
                    "commit file {path} disappeared while reading (concurrent log cleanup?)"
                ),
            }),
            Err(e) => Err(Error::storage(location, e)),
        }
    }

    /// The table's `_delta_log` directory, for a local table.
    pub fn local_log_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.location.local_dir()?.join("_delta_log"))
    }

    /// [`SourceTable::read_commits`] of a local log whose directory is `dir`: groups of up to
    /// [`LOCAL_READ_GROUP`] commits, each read and parsed by one blocking task, up to
    /// `concurrency` groups at once. Many small commits then cost a task per group rather than
    /// one per commit, and are parsed on the blocking pool while the caller's thread waits.
    async fn read_local_commits(
        &self,
        dir: std::path::PathBuf,
        versions: Vec<u64>,
        concurrency: usize,
    ) -> Result<Vec<Commit>, Error> {
        let groups: Vec<Vec<u64>> = versions
            .chunks(LOCAL_READ_GROUP)
            .map(<[u64]>::to_vec)
            .collect();
        let parsed: Vec<Vec<Commit>> = futures::stream::iter(groups)
            .map(|group| {
                let (source, dir) = (self.clone(), dir.clone());
                async move {
                    tokio::task::spawn_blocking(move || {
                        group
                            .into_iter()
                            .map(|v| source.read_local_commit(&dir, v))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await
                    .map_err(|e| Error::Task {
                        reason: format!("reading commits: {e}"),
                    })?
                }
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
        Ok(parsed.into_iter().flatten().collect())
    }

    /// Commit `version` of the local log `dir`, read and parsed on the calling thread.
    fn read_local_commit(&self, dir: &std::path::Path, version: u64) -> Result<Commit, Error> {
        let bytes = self
            .read_local_commit_bytes(dir, version, u64::MAX)?
            .unwrap_or_default();
        self.parse_commit(version, &bytes)
            .map_err(|source| Error::CorruptCommit {
                table: self.uri.clone(),
                source,
            })
    }

    /// [`SourceTable::read_commit_bytes`] on the calling thread, for a local table whose log is
    /// `dir` ([`SourceTable::local_log_dir`]): many small commits are read by one blocking task
    /// rather than one task each. `None` when the file holds more than `limit` bytes (it grew
    /// since it was listed; the caller reads it with its size checks).
    pub fn read_local_commit_bytes(
        &self,
        dir: &std::path::Path,
        version: u64,
        limit: u64,
    ) -> Result<Option<Bytes>, Error> {
        use std::io::Read;
        let name = commit_file_name(version);
        let location = || format!("{}/_delta_log/{name}", self.uri);
        let io = |e| Error::local_io(location(), e);
        let file = match std::fs::File::open(dir.join(&name)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::InvalidLog {
                    table: self.uri.clone(),
                    version,
                    reason: format!(
                        "commit file _delta_log/{name} disappeared while reading (concurrent log cleanup?)"
                    ),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Ok((bytes.len() as u64 <= limit).then(|| Bytes::from(bytes)))
    }

    /// Parses commit `version`, naming each file by one identity: an absolute path under the
    /// table root becomes its path relative to the root (as Spark and delta-rs resolve it), so
    /// an `add` by absolute URI and a `remove` by relative path (or the reverse) are the same
    /// file. Absolute paths outside the root are left as they are.
    pub fn parse_commit(&self, version: u64, bytes: &[u8]) -> Result<Commit, makoto_core::Error> {
        Ok(Commit::parse(version, bytes)?.map_paths(|p| self.relative(p)))
    }

    /// The relative form of an absolute path under the table root.
    pub fn relative(
        &self,
        path: &makoto_core::delta::FilePath,
    ) -> Option<makoto_core::delta::FilePath> {
        if !path.is_absolute() {
            return None;
        }
        crate::location::under_root(self.location.url(), path.as_str())
            .map(makoto_core::delta::FilePath::from_decoded)
    }

    /// Reads and parses commits `versions`, up to `concurrency` at a time, in order.
    pub async fn read_commits(
        &self,
        versions: impl Iterator<Item = u64>,
        concurrency: usize,
    ) -> Result<Vec<Commit>, Error> {
        if let Some(dir) = self.local_log_dir() {
            return self
                .read_local_commits(dir, versions.collect(), concurrency)
                .await;
        }
        futures::stream::iter(versions)
            .map(|v| async move {
                let bytes = self.read_commit_bytes(v).await?;
                self.parse_commit(v, &bytes)
                    .map_err(|source| Error::CorruptCommit {
                        table: self.uri.clone(),
                        source,
                    })
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names() {
        assert_eq!(
            parse_checkpoint_name("00000000000000000010.checkpoint.parquet"),
            Some(10)
        );
        assert_eq!(
            parse_checkpoint_name("00000000000000000010.checkpoint.0000000001.0000000003.parquet"),
            Some(10)
        );
        assert_eq!(
            parse_checkpoint_name(
                "00000000000000000002.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json"
            ),
            Some(2)
        );
        assert_eq!(parse_checkpoint_name("00000000000000000010.json"), None);
        assert_eq!(parse_checkpoint_name("_last_checkpoint"), None);
    }

    #[test]
    fn commit_names() {
        assert_eq!(parse_commit_name("00000000000000000012.json"), Some(12));
        assert_eq!(
            parse_commit_name("00000000000000000012.checkpoint.parquet"),
            None
        );
        assert_eq!(
            parse_commit_name("00000000000000000000.00000000000000000005.compacted.json"),
            None
        );
        assert_eq!(parse_commit_name("0012.json"), None);
        assert_eq!(parse_checksum_name("00000000000000000012.crc"), Some(12));
        assert_eq!(parse_checksum_name(".00000000000000000012.json.crc"), None);
        assert_eq!(
            parse_compaction_name("00000000000000000004.00000000000000000006.compacted.json"),
            Some((4, 6))
        );
        assert_eq!(
            parse_compaction_name("00000000000000000006.00000000000000000004.compacted.json"),
            None
        );
        assert_eq!(parse_commit_name("_last_checkpoint"), None);
    }

    #[test]
    fn local_commit_reads_are_bounded_and_name_a_vanished_commit() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).unwrap();
        std::fs::write(log.join(commit_file_name(0)), "{}\n").unwrap();
        std::fs::write(log.join(commit_file_name(1)), "x".repeat(11)).unwrap();
        let location = crate::Location::existing(dir.path().to_str().unwrap()).unwrap();
        let source = SourceTable::open(location, &crate::StorageOptions::default()).unwrap();
        let dir = source.local_log_dir().unwrap();
        assert_eq!(dir, log);
        let read = |v, limit| source.read_local_commit_bytes(&dir, v, limit);
        assert_eq!(read(0, 10).unwrap().unwrap(), "{}\n");
        assert_eq!(read(1, 11).unwrap().unwrap().len(), 11);
        assert!(read(1, 10).unwrap().is_none(), "over the limit");
        let gone = read(2, 10).unwrap_err().to_string();
        assert!(gone.contains("disappeared"), "{gone}");
        assert!(gone.contains(&commit_file_name(2)), "{gone}");
    }

    #[tokio::test]
    async fn a_local_look_agrees_with_the_object_store() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).unwrap();
        std::fs::write(log.join(commit_file_name(0)), "{}\n").unwrap();
        std::fs::create_dir(log.join(commit_file_name(1))).unwrap();
        let location = crate::Location::existing(dir.path().to_str().unwrap()).unwrap();
        let source = SourceTable::open(location, &crate::StorageOptions::default()).unwrap();
        let log_dir = source.local_log_dir().unwrap();
        let written = std::fs::metadata(log.join(commit_file_name(0)))
            .unwrap()
            .modified()
            .unwrap();
        for (version, expected) in [(0, Some(written.into())), (1, None), (2, None)] {
            let local = source.local_commit_modified(&log_dir, version).unwrap();
            let remote = source.commit_modified(version).await.unwrap();
            assert_eq!((local, remote), (expected, expected), "version {version}");
        }
        // A table whose log is gone is no commit either, not an error.
        let gone = dir.path().join("elsewhere/_delta_log");
        assert_eq!(source.local_commit_modified(&gone, 0).unwrap(), None);
    }
}
