//! Applying one commit to the state tree, without I/O: removes first (they free the keys that
//! adds of the same path take, and carry the data file's digest to them), then every add, in
//! log order, with the digests of the files it names.
//!
//! The caller loads the state pages of the keys the commit touches, hashes the files
//! [`needed_digests`] lists, and passes what it found to [`apply_commit`].

use std::collections::HashMap;

use crate::attestation::{ChangeKind, FileChange};
use crate::delta::{Action, Commit};
use crate::state::{DvEntry, FileEntry, StateTree, leaf_key};
use crate::{Error, Sha256Digest};

/// The digest and actual size of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// What the caller found for a file [`needed_digests`] listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Hashed(Hashed),
    /// The file was already deleted (VACUUM): its digest is unknown.
    Unavailable,
}

/// A commit applied to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCommit {
    /// Every add, remove and cdc action with its digests, in log order.
    pub changes: Vec<FileChange>,
    /// Files the commit references whose bytes were gone, in log order.
    pub unavailable_files: Vec<String>,
    /// Live files without a digest after the commit.
    pub live_unavailable: u64,
}

fn key_of(path: &str, dv: Option<&crate::delta::DeletionVector>) -> Sha256Digest {
    leaf_key(path, dv.map(|d| d.unique_id()).as_deref())
}

/// The entries the commit's removes take out of the tree, by path (pages must be loaded).
fn removed_entries(tree: &StateTree, commit: &Commit) -> Result<HashMap<String, FileEntry>, Error> {
    let mut removed = HashMap::new();
    for r in commit.removes() {
        if let Some(old) = tree.get(&key_of(r.path().as_str(), r.deletion_vector()))? {
            removed.insert(r.path().as_str().to_owned(), old.clone());
        }
    }
    Ok(removed)
}

/// The files whose digests [`apply_commit`] needs, in log order, with the size the log
/// records: added data files that do not take their digest from a removed entry of the same
/// path and size, deletion-vector files of adds, and change-data files.
pub fn needed_digests(
    tree: &StateTree,
    commit: &Commit,
) -> Result<Vec<(String, Option<u64>)>, Error> {
    let removed = removed_entries(tree, commit)?;
    let mut needed = Vec::new();
    for action in commit.actions() {
        match action {
            Action::Add(a) => {
                let path = a.path().as_str();
                if removed.get(path).is_none_or(|o| o.size() != a.size()) {
                    needed.push((path.to_owned(), Some(a.size())));
                }
                if let Some(f) = a.deletion_vector().and_then(|d| d.file()) {
                    needed.push((f.to_owned(), None));
                }
            }
            Action::Cdc(c) => needed.push((c.path().as_str().to_owned(), Some(c.size()))),
            _ => {}
        }
    }
    Ok(needed)
}

/// Applies `commit` to `tree` (pages of the touched keys loaded). `live_unavailable` is the
/// number of live files without a digest before it; `digest` answers for every file
/// [`needed_digests`] listed (`None` for a file it was not asked about is an error).
pub fn apply_commit(
    tree: &mut StateTree,
    live_unavailable: u64,
    commit: &Commit,
    digest: &dyn Fn(&str) -> Option<Digest>,
) -> Result<AppliedCommit, Error> {
    let version = commit.version();
    let lookup = |path: &str, expected: Option<u64>| -> Result<Option<Hashed>, Error> {
        match digest(path) {
            Some(Digest::Hashed(h)) => match expected {
                Some(size) if size != h.size => Err(Error::FileSizeMismatch {
                    version,
                    path: path.to_owned(),
                    expected: size,
                    actual: h.size,
                }),
                _ => Ok(Some(h)),
            },
            Some(Digest::Unavailable) => Ok(None),
            None => Err(Error::DigestNotComputed {
                version,
                path: path.to_owned(),
            }),
        }
    };
    let mut tree = tree.batch();
    let mut live_unavailable = live_unavailable;
    let mut removed: HashMap<String, FileEntry> = HashMap::new();
    let mut removed_by_key: HashMap<Sha256Digest, FileEntry> = HashMap::new();
    for r in commit.removes() {
        let key = key_of(r.path().as_str(), r.deletion_vector());
        if let Some(old) = tree.remove(&key)? {
            if !old.is_available() {
                live_unavailable = live_unavailable.saturating_sub(1);
            }
            removed.insert(r.path().as_str().to_owned(), old.clone());
            removed_by_key.insert(key, old);
        }
    }

    let mut changes = Vec::new();
    let mut unavailable_files = Vec::new();
    for action in commit.actions() {
        match action {
            Action::Remove(r) => {
                let old = removed_by_key.get(&key_of(r.path().as_str(), r.deletion_vector()));
                let dv = r.deletion_vector().map(|d| {
                    (
                        d.clone(),
                        old.and_then(|o| o.dv()).and_then(DvEntry::file_sha256),
                    )
                });
                changes.push(FileChange::new(
                    ChangeKind::Remove,
                    r.path().as_str().to_owned(),
                    r.size().or(old.map(FileEntry::size)),
                    old.and_then(FileEntry::sha256),
                    r.data_change(),
                    Default::default(),
                    None,
                    dv,
                ));
            }
            Action::Add(a) => {
                let path = a.path().as_str();
                let data = match removed.get(path).filter(|o| o.size() == a.size()) {
                    Some(old) => old.sha256().map(|sha256| Hashed {
                        sha256,
                        size: old.size(),
                    }),
                    None => lookup(path, Some(a.size()))?,
                };
                if data.is_none() {
                    unavailable_files.push(path.to_owned());
                }
                let (dv_entry, dv_change) = match a.deletion_vector() {
                    None => (None, None),
                    Some(d) => {
                        let file_sha = match d.file() {
                            Some(f) => {
                                let h = lookup(f, None)?;
                                if h.is_none() {
                                    unavailable_files.push(f.to_owned());
                                }
                                h.map(|h| h.sha256)
                            }
                            None => None,
                        };
                        let entry = DvEntry::new(
                            d.unique_id(),
                            d.size_in_bytes(),
                            d.cardinality(),
                            file_sha,
                        );
                        (Some(entry), Some((d.clone(), file_sha)))
                    }
                };
                let entry = match data {
                    Some(d) => FileEntry::new(path.to_owned(), a.size(), d.sha256, dv_entry),
                    None => FileEntry::unavailable(path.to_owned(), a.size(), dv_entry),
                };
                if !entry.is_available() {
                    live_unavailable += 1;
                }
                if tree.insert(entry)?.is_some_and(|r| !r.is_available()) {
                    live_unavailable = live_unavailable.saturating_sub(1);
                }
                changes.push(FileChange::new(
                    ChangeKind::Add,
                    path.to_owned(),
                    Some(a.size()),
                    data.map(|d| d.sha256),
                    a.data_change(),
                    a.partition_values().clone(),
                    a.num_records(),
                    dv_change,
                ));
            }
            Action::Cdc(c) => {
                let path = c.path().as_str();
                let data = lookup(path, Some(c.size()))?;
                if data.is_none() {
                    unavailable_files.push(path.to_owned());
                }
                changes.push(FileChange::new(
                    ChangeKind::Cdc,
                    path.to_owned(),
                    Some(c.size()),
                    data.map(|d| d.sha256),
                    false,
                    c.partition_values().clone(),
                    None,
                    None,
                ));
            }
            _ => {}
        }
    }
    Ok(AppliedCommit {
        changes,
        unavailable_files,
        live_unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::root_of;

    const DV: &str = r#"{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S}K{vb[*k^","offset":1,"sizeInBytes":36,"cardinality":2}"#;
    const DV_FILE: &str = "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin";

    fn commit(version: u64, lines: &[String]) -> Commit {
        Commit::parse(version, lines.join("\n").as_bytes()).unwrap()
    }
    fn add(path: &str, size: u64, dv: Option<&str>) -> String {
        let dv = dv
            .map(|d| format!(r#","deletionVector":{d}"#))
            .unwrap_or_default();
        format!(
            r#"{{"add":{{"path":"{path}","size":{size},"partitionValues":{{}},"modificationTime":1,"dataChange":true{dv}}}}}"#
        )
    }
    fn remove(path: &str, size: u64) -> String {
        format!(r#"{{"remove":{{"path":"{path}","size":{size},"dataChange":true}}}}"#)
    }
    fn hashed(bytes: &[u8]) -> Digest {
        Digest::Hashed(Hashed {
            sha256: Sha256Digest::of(bytes),
            size: bytes.len() as u64,
        })
    }

    /// Answers from a fixed list.
    fn digests(list: Vec<(&'static str, Digest)>) -> impl Fn(&str) -> Option<Digest> {
        move |p: &str| list.iter().find(|(q, _)| *q == p).map(|(_, d)| *d)
    }

    #[test]
    fn adds_take_digests_from_the_hashes_and_the_root_is_the_entries_root() {
        let mut tree = StateTree::new();
        let c = commit(0, &[add("a.parquet", 3, None), add("b.parquet", 2, None)]);
        let needed = needed_digests(&tree, &c).unwrap();
        assert_eq!(
            needed,
            [("a.parquet".into(), Some(3)), ("b.parquet".into(), Some(2))]
        );
        let d = digests(vec![
            ("a.parquet", hashed(b"aaa")),
            ("b.parquet", hashed(b"bb")),
        ]);
        let applied = apply_commit(&mut tree, 0, &c, &d).unwrap();
        assert_eq!(applied.live_unavailable, 0);
        assert!(applied.unavailable_files.is_empty());
        assert_eq!(applied.changes[1].sha256(), Some(Sha256Digest::of(b"bb")));
        let expected = [
            FileEntry::new("a.parquet".into(), 3, Sha256Digest::of(b"aaa"), None),
            FileEntry::new("b.parquet".into(), 2, Sha256Digest::of(b"bb"), None),
        ];
        assert_eq!(tree.root(), root_of(&expected));
        assert_eq!((tree.files(), tree.bytes()), (2, 5));
    }

    #[test]
    fn a_new_deletion_vector_keeps_the_data_digest_and_hashes_only_the_vector() {
        let mut tree = StateTree::new();
        let d = digests(vec![
            ("a.parquet", hashed(b"aaa")),
            (DV_FILE, hashed(b"dv")),
        ]);
        apply_commit(&mut tree, 0, &commit(0, &[add("a.parquet", 3, None)]), &d).unwrap();
        let c = commit(1, &[remove("a.parquet", 3), add("a.parquet", 3, Some(DV))]);
        assert_eq!(needed_digests(&tree, &c).unwrap(), [(DV_FILE.into(), None)]);
        let only_dv = digests(vec![(DV_FILE, hashed(b"dv"))]);
        let applied = apply_commit(&mut tree, 0, &c, &only_dv).unwrap();
        assert_eq!(applied.changes[0].kind(), ChangeKind::Remove);
        assert_eq!(applied.changes[0].sha256(), Some(Sha256Digest::of(b"aaa")));
        assert_eq!(applied.changes[1].sha256(), Some(Sha256Digest::of(b"aaa")));
        let dv = crate::delta::DeletionVector::from_fields(
            "u",
            "ab^-aqEH.-t@S}K{vb[*k^",
            Some(1),
            36,
            2,
        )
        .unwrap();
        let entry = DvEntry::new(dv.unique_id(), 36, 2, Some(Sha256Digest::of(b"dv")));
        let expected = [FileEntry::new(
            "a.parquet".into(),
            3,
            Sha256Digest::of(b"aaa"),
            Some(entry),
        )];
        assert_eq!(tree.root(), root_of(&expected));
        assert_eq!(tree.files(), 1);
    }

    #[test]
    fn vacuumed_files_are_counted_until_removed() {
        let mut tree = StateTree::new();
        let gone = digests(vec![("a.parquet", Digest::Unavailable)]);
        let applied = apply_commit(
            &mut tree,
            0,
            &commit(0, &[add("a.parquet", 3, None)]),
            &gone,
        )
        .unwrap();
        assert_eq!(applied.unavailable_files, ["a.parquet"]);
        assert_eq!(applied.live_unavailable, 1);
        assert_eq!(applied.changes[0].sha256(), None);
        let applied = apply_commit(
            &mut tree,
            applied.live_unavailable,
            &commit(1, &[remove("a.parquet", 3)]),
            &gone,
        )
        .unwrap();
        assert_eq!(applied.live_unavailable, 0);
        assert_eq!(tree.files(), 0);
    }

    #[test]
    fn a_size_other_than_the_log_s_and_a_digest_never_computed_are_errors() {
        let c = commit(4, &[add("a.parquet", 3, None)]);
        let short = digests(vec![("a.parquet", hashed(b"aa"))]);
        let e = apply_commit(&mut StateTree::new(), 0, &c, &short).unwrap_err();
        assert!(
            matches!(
                e,
                Error::FileSizeMismatch {
                    version: 4,
                    expected: 3,
                    actual: 2,
                    ..
                }
            ),
            "{e}"
        );
        let e = apply_commit(&mut StateTree::new(), 0, &c, &digests(vec![])).unwrap_err();
        assert!(
            matches!(e, Error::DigestNotComputed { version: 4, .. }),
            "{e}"
        );
    }
}
