use std::collections::BTreeMap;

use serde_json::Value;

use super::action::{Action, AddFile, CdcFile, CommitInfo, Metadata, Protocol, RemoveFile};
use super::path::FilePath;
use crate::{Error, Sha256Digest, canonical};

named_enum! {
    /// How a commit's timestamp was determined, in order of preference.
    pub enum TimestampSource ("timestamp source") {
        /// `commitInfo.inCommitTimestamp` (in-commit timestamps feature).
        InCommitTimestamp = "inCommitTimestamp",
        /// `commitInfo.timestamp`.
        CommitInfo = "commitInfo",
        /// The commit file's modification time on storage (no timestamp in the log).
        FileModificationTime = "fileModificationTime",
    }
}

/// Number of actions of each type in a commit, keyed by action name.
pub type ActionCounts = BTreeMap<String, u64>;

/// One parsed commit file `_delta_log/<version>.json`.
#[derive(Debug, Clone)]
pub struct Commit {
    version: u64,
    actions: Vec<Action>,
    actions_digest: Sha256Digest,
    file_digest: Sha256Digest,
    file_size: u64,
}

impl Commit {
    /// Parses the raw bytes of a commit file. Computes the file digest (SHA-256 of the bytes)
    /// and the actions digest: SHA-256 over, for every non-blank line in order, the canonical
    /// JSON of the action followed by `\n`.
    pub fn parse(version: u64, bytes: &[u8]) -> Result<Commit, Error> {
        let corrupt = |line: usize, reason: String| Error::CorruptCommit {
            version,
            line,
            reason,
        };
        let text =
            std::str::from_utf8(bytes).map_err(|e| corrupt(0, format!("not UTF-8 ({e})")))?;
        let mut actions = Vec::new();
        let mut canonical_bytes = Vec::with_capacity(bytes.len());
        for (idx, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value =
                serde_json::from_str(line).map_err(|e| corrupt(idx + 1, e.to_string()))?;
            let action = Action::from_json(&value).map_err(|e| match e {
                Error::InvalidAction { reason } => corrupt(idx + 1, reason),
                other => other,
            })?;
            canonical::write_value(&value, &mut canonical_bytes);
            canonical_bytes.push(b'\n');
            actions.push(action);
        }
        if actions.is_empty() {
            return Err(corrupt(0, "the commit has no actions".into()));
        }
        Ok(Commit {
            version,
            actions,
            actions_digest: Sha256Digest::of(&canonical_bytes),
            file_digest: Sha256Digest::of(bytes),
            file_size: bytes.len() as u64,
        })
    }

    /// A commit made of given actions rather than read from a file (a checkpoint's actions
    /// as the changes of a baseline, a log compaction): its digests are those of no bytes.
    pub fn from_actions(version: u64, actions: Vec<Action>) -> Commit {
        Commit {
            version,
            actions,
            actions_digest: Sha256Digest::of(b""),
            file_digest: Sha256Digest::of(b""),
            file_size: 0,
        }
    }

    /// Rewrites file paths with `f` (see [`Action::map_path`]); the digests stay those of
    /// the bytes.
    pub fn map_paths(mut self, f: impl Fn(&FilePath) -> Option<FilePath>) -> Commit {
        for a in &mut self.actions {
            a.map_path(&f);
        }
        self
    }

    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
    /// Digest of the canonical form of the actions (independent of whitespace and key order).
    pub fn actions_digest(&self) -> Sha256Digest {
        self.actions_digest
    }
    /// SHA-256 of the commit file's bytes exactly as stored.
    pub fn file_digest(&self) -> Sha256Digest {
        self.file_digest
    }
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    pub fn commit_info(&self) -> Option<&CommitInfo> {
        self.actions.iter().find_map(|a| match a {
            Action::CommitInfo(c) => Some(c),
            _ => None,
        })
    }
    pub fn metadata(&self) -> Option<&Metadata> {
        self.actions.iter().find_map(|a| match a {
            Action::Metadata(m) => Some(m),
            _ => None,
        })
    }
    pub fn protocol(&self) -> Option<&Protocol> {
        self.actions.iter().find_map(|a| match a {
            Action::Protocol(p) => Some(p),
            _ => None,
        })
    }
    pub fn adds(&self) -> impl Iterator<Item = &AddFile> {
        self.actions.iter().filter_map(|a| match a {
            Action::Add(x) => Some(x),
            _ => None,
        })
    }
    pub fn removes(&self) -> impl Iterator<Item = &RemoveFile> {
        self.actions.iter().filter_map(|a| match a {
            Action::Remove(x) => Some(x),
            _ => None,
        })
    }
    pub fn cdc_files(&self) -> impl Iterator<Item = &CdcFile> {
        self.actions.iter().filter_map(|a| match a {
            Action::Cdc(x) => Some(x),
            _ => None,
        })
    }

    /// The commit's timestamp in milliseconds since the epoch and where it came from, or `None`
    /// when the log records none (the caller then falls back to the file's modification time).
    pub fn timestamp(&self) -> Option<(i64, TimestampSource)> {
        let info = self.commit_info()?;
        if let Some(ts) = info.in_commit_timestamp() {
            return Some((ts, TimestampSource::InCommitTimestamp));
        }
        info.timestamp().map(|ts| (ts, TimestampSource::CommitInfo))
    }

    pub fn action_counts(&self) -> ActionCounts {
        let mut counts = ActionCounts::new();
        for a in &self.actions {
            *counts.entry(a.name().to_owned()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = concat!(
        r#"{"commitInfo":{"timestamp":1700000000000,"operation":"WRITE","engineInfo":"Apache-Spark/3.5.0 Delta-Lake/3.0.0","operationParameters":{"mode":"Append"}}}"#,
        "\n",
        r#"{"add":{"path":"a%20b/part-0.parquet","partitionValues":{"a":"b"},"size":10,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":3}"}}"#,
        "\n",
        r#"{"remove":{"path":"part-9.parquet","deletionTimestamp":5,"dataChange":true,"size":7}}"#,
        "\n",
        r#"{"futureAction":{"x":1}}"#,
        "\n"
    );

    #[test]
    fn parses_actions_and_counts() {
        let c = Commit::parse(3, COMMIT.as_bytes()).unwrap();
        assert_eq!(c.version(), 3);
        let add = c.adds().next().unwrap();
        assert_eq!(add.path().as_str(), "a b/part-0.parquet");
        assert_eq!(add.num_records(), Some(3));
        assert_eq!(c.removes().next().unwrap().size(), Some(7));
        assert_eq!(
            c.timestamp(),
            Some((1_700_000_000_000, TimestampSource::CommitInfo))
        );
        assert_eq!(c.action_counts().get("futureAction"), Some(&1));
        assert_eq!(c.commit_info().unwrap().operation(), Some("WRITE"));
    }

    #[test]
    fn digests_are_computed_from_bytes_and_canonical_lines() {
        let c = Commit::parse(0, COMMIT.as_bytes()).unwrap();
        assert_eq!(c.file_digest(), Sha256Digest::of(COMMIT.as_bytes()));
        // Re-serializing with whitespace and reordered keys keeps the actions digest, not the
        // file digest.
        let reformatted: String = COMMIT
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&v).unwrap().replace('\n', " ")
                )
            })
            .collect();
        let c2 = Commit::parse(0, reformatted.as_bytes()).unwrap();
        assert_eq!(c.actions_digest(), c2.actions_digest());
        assert_ne!(c.file_digest(), c2.file_digest());
        // Independent recomputation of the actions digest.
        let mut expected = Vec::new();
        for l in COMMIT.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            expected.extend(canonical::to_vec(&v));
            expected.push(b'\n');
        }
        assert_eq!(c.actions_digest(), Sha256Digest::of(&expected));
    }

    #[test]
    fn ict_wins_over_commit_info_timestamp() {
        let c = Commit::parse(
            1,
            br#"{"commitInfo":{"timestamp":20,"inCommitTimestamp":10}}"#,
        )
        .unwrap();
        assert_eq!(
            c.timestamp(),
            Some((10, TimestampSource::InCommitTimestamp))
        );
    }

    #[test]
    fn corrupt_commits_name_the_line() {
        let err = Commit::parse(7, b"{\"commitInfo\":{}}\n{not json\n").unwrap_err();
        assert!(err.to_string().contains("version 7"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(Commit::parse(7, b"").is_err());
        assert!(Commit::parse(7, br#"{"add":{"path":"x","size":-1,"dataChange":true}}"#).is_err());
        assert!(Commit::parse(7, br#"{"add":{},"remove":{}}"#).is_err());
    }
}
