//! The local file system as delta-rs, the Delta kernel and Makoto list it.
//!
//! object_store's `LocalFileSystem` answers a listing with an offset by walking the whole
//! directory and turning every entry's file-system path into an object path (a URL built and
//! parsed per entry) before it compares the entry with the offset. A `_delta_log/` keeps every
//! commit of the retention period (30 days by default), and delta-rs lists it from the newest
//! checkpoint each time it opens or commits to a table, so on a table with a long log every
//! open cost time in proportion to the log's length, not to what changed.
//!
//! [`LocalStore`] answers the same listing by comparing entry names with the offset first and
//! `stat`ing only the entries after it. It returns what `LocalFileSystem` returns (same
//! locations, sizes, modification times and e-tags; subdirectories and names it does not
//! handle are `LocalFileSystem`'s own), in ascending order, except that an entry it cannot read
//! is an error item after all the others, where `LocalFileSystem` ends its listing. A listing
//! without an offset is the listing from the prefix itself.

use std::fmt;
use std::io::ErrorKind;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// `LocalFileSystem` rooted at `/`, as delta-rs builds it for `file://` tables, with listings
/// from an offset that cost one directory read plus one `stat` per entry after the offset.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalStore {
    inner: Arc<LocalFileSystem>,
}

/// What one directory read found.
#[derive(Debug)]
enum Listing {
    /// The files after the offset, the entries that could not be read, and the subdirectories
    /// (listed by `LocalFileSystem`).
    Read {
        files: Vec<ObjectMeta>,
        unreadable: Vec<std::io::Error>,
        subdirs: Vec<Path>,
    },
    /// A name this store does not turn into an object path itself: `LocalFileSystem` lists it.
    Unhandled,
}

impl LocalStore {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The entries after `offset`, in ascending order, then one error per entry that could not
    /// be read (as `LocalFileSystem` yields an error item for such an entry and goes on). An
    /// error for the whole listing is the outer one.
    async fn listed_after(&self, prefix: Path, offset: Path) -> Result<Vec<Result<ObjectMeta>>> {
        let read = match self.inner.path_to_filesystem(&prefix) {
            Ok(dir) => {
                let (prefix, offset) = (prefix.clone(), offset.clone());
                blocking(move || read_after(&dir, &prefix, &offset)).await?
            }
            // A prefix that is not a valid file path (`name#123`) is LocalFileSystem's to list.
            Err(_) => Listing::Unhandled,
        };
        let (mut metas, mut errors) = (Vec::new(), Vec::new());
        let mut take = |items: Vec<Result<ObjectMeta>>| {
            for item in items {
                match item {
                    Ok(meta) => metas.push(meta),
                    Err(e) => errors.push(Err(e)),
                }
            }
        };
        match read {
            Listing::Read {
                files,
                unreadable,
                subdirs,
            } => {
                take(files.into_iter().map(Ok).collect());
                take(
                    unreadable
                        .into_iter()
                        .map(|e| Err(generic(e.into())))
                        .collect(),
                );
                for sub in subdirs {
                    take(
                        self.inner
                            .list_with_offset(Some(&sub), &offset)
                            .collect()
                            .await,
                    );
                }
            }
            Listing::Unhandled => take(
                self.inner
                    .list_with_offset(Some(&prefix), &offset)
                    .collect()
                    .await,
            ),
        }
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(metas.into_iter().map(Ok).chain(errors).collect())
    }
}

/// Runs `f` on tokio's blocking pool when there is a runtime, in place when there is none (as
/// `LocalFileSystem` does).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let result = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(f)
            .await
            .map_err(|e| generic(e.into()))?,
        Err(_) => f(),
    };
    result.map_err(|e| generic(Box::new(e)))
}

fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source,
    }
}

/// Names made only of these characters are the same as object-path parts and as file names,
/// and cannot be `LocalFileSystem`'s in-progress uploads (`name#123`).
fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The files of `dir` (object path `prefix`) whose paths sort after `offset`, and its
/// subdirectories. Only those files are `stat`ed (and symbolic links, to see what they point
/// at). A missing `dir` lists nothing (a file where it should be is an error); an entry that
/// cannot be read (a link looping onto itself, no permission) is reported and the rest still
/// listed.
fn read_after(dir: &std::path::Path, prefix: &Path, offset: &Path) -> std::io::Result<Listing> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Listing::Read {
                files: Vec::new(),
                unreadable: Vec::new(),
                subdirs: Vec::new(),
            });
        }
        Err(e) => return Err(e),
    };
    let offset_here = offset_in(prefix, offset);
    let (mut files, mut unreadable, mut subdirs) = (Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_plain(n)) else {
            return Ok(Listing::Unhandled);
        };
        let after_offset = match offset_here {
            Ok(rest) => name > rest,
            Err(all) => all == std::cmp::Ordering::Greater,
        };
        let unreadable_entry = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{}: {e}", entry.path().display()))
        };
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) => {
                unreadable.push(unreadable_entry(e));
                continue;
            }
        };
        if kind.is_dir() {
            subdirs.push(prefix.clone().join(name));
            continue;
        }
        if !kind.is_symlink() && !after_offset {
            continue;
        }
        let location = prefix.clone().join(name);
        let meta = match std::fs::metadata(entry.path()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                unreadable.push(unreadable_entry(e));
                continue;
            }
        };
        if meta.is_dir() {
            subdirs.push(location);
        } else if meta.is_file() && after_offset {
            match object_meta(location, &meta) {
                Ok(meta) => files.push(meta),
                Err(e) => unreadable.push(unreadable_entry(e)),
            }
        }
    }
    Ok(Listing::Read {
        files,
        unreadable,
        subdirs,
    })
}

/// Where `offset` falls among the paths `prefix/NAME`, so that entries are compared by name
/// without building their paths: `Ok(rest)` when `offset` is `prefix/rest` (then `prefix/NAME`
/// is after it exactly when `NAME > rest`), else how every `prefix/NAME` compares with it (all
/// the same: they share `prefix/`, which `offset` does not start with).
fn offset_in<'a>(
    prefix: &Path,
    offset: &'a Path,
) -> std::result::Result<&'a str, std::cmp::Ordering> {
    let dir = match prefix.as_ref() {
        "" => String::new(),
        p => format!("{p}{}", object_store::path::DELIMITER),
    };
    offset
        .as_ref()
        .strip_prefix(dir.as_str())
        .ok_or_else(|| dir.as_str().cmp(offset.as_ref()))
}

/// The listing entry `LocalFileSystem` makes for a file: its size, its modification time, and an
/// e-tag of inode, modification time (microseconds) and size in hexadecimal.
fn object_meta(location: Path, meta: &std::fs::Metadata) -> std::io::Result<ObjectMeta> {
    use std::os::unix::fs::MetadataExt;
    let modified = meta.modified()?;
    let micros = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    Ok(ObjectMeta {
        location,
        last_modified: modified.into(),
        size: meta.len(),
        e_tag: Some(format!("{:x}-{micros:x}-{:x}", meta.ino(), meta.len())),
        version: None,
    })
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    /// Every entry under `prefix` sorts after `prefix` itself, so this is the listing from that
    /// offset: one `stat` per file, where `LocalFileSystem` makes three.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix.filter(|p| !p.as_ref().is_empty()) {
            Some(p) => self.list_with_offset(Some(p), p),
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(prefix) = prefix.filter(|p| !p.as_ref().is_empty()) else {
            return self.inner.list_with_offset(prefix, offset);
        };
        let (store, prefix, offset) = (self.clone(), prefix.clone(), offset.clone());
        stream::once(async move { store.listed_after(prefix, offset).await })
            .map_ok(stream::iter)
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A `_delta_log/` with what real logs hold, plus what only a hostile or odd one would.
    fn a_log(extra: &[&str]) -> (tempfile::TempDir, Path) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t/_delta_log");
        std::fs::create_dir_all(log.join("_sidecars")).unwrap();
        for v in 0..12 {
            std::fs::write(log.join(format!("{v:020}.json")), b"{}").unwrap();
            std::fs::write(log.join(format!("{v:020}.crc")), b"{}").unwrap();
        }
        for name in [
            "00000000000000000010.checkpoint.parquet",
            "_last_checkpoint",
            ".00000000000000000011.json.crc",
            "_commit_0b5b.json.tmp",
            "_sidecars/0a.parquet",
        ] {
            std::fs::write(log.join(name), b"x").unwrap();
        }
        for name in extra {
            std::fs::write(log.join(name), b"x").unwrap();
        }
        let prefix = Path::from_filesystem_path(&log).unwrap();
        (dir, prefix)
    }

    /// `store`'s listing of `prefix` from `offset`, in ascending order.
    async fn listed(
        store: &dyn ObjectStore,
        prefix: &Path,
        offset: &Path,
    ) -> Result<Vec<ObjectMeta>> {
        let mut metas: Vec<_> = store
            .list_with_offset(Some(prefix), offset)
            .try_collect()
            .await?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(metas)
    }

    async fn both(prefix: &Path, offset: &Path) -> (Vec<ObjectMeta>, Vec<ObjectMeta>) {
        let ours = listed(&LocalStore::new(), prefix, offset).await.unwrap();
        let theirs = listed(&LocalFileSystem::new(), prefix, offset)
            .await
            .unwrap();
        (ours, theirs)
    }

    #[rstest]
    #[case::from_the_start("00000000000000000000")]
    #[case::from_a_checkpoint("00000000000000000010.checkpoint.parquet")]
    #[case::at_a_commit("00000000000000000007.json")]
    #[case::past_every_commit("00000000000000000099.json")]
    #[case::past_everything("zz")]
    #[tokio::test]
    async fn lists_what_the_local_file_system_lists(#[case] after: &str) {
        let (_dir, prefix) = a_log(&[]);
        let offset = prefix.clone().join(after);
        let (ours, theirs) = both(&prefix, &offset).await;
        assert_eq!(ours, theirs);
        assert!(ours.iter().all(|m| m.location > offset));
        assert!(ours.windows(2).all(|w| w[0].location < w[1].location));
    }

    #[rstest]
    #[case::a_log("t/_delta_log")]
    #[case::a_table("t")]
    #[case::missing("nothing")]
    #[tokio::test]
    async fn a_listing_without_an_offset_is_the_local_file_systems(#[case] rel: &str) {
        let (dir, _) = a_log(&[]);
        let base = Path::from_filesystem_path(dir.path()).unwrap();
        let prefix = Path::parse(format!("{base}/{rel}")).unwrap();
        let ours: Vec<_> = LocalStore::new()
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        let mut theirs: Vec<_> = LocalFileSystem::new()
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        theirs.sort_by(|a, b| a.location.cmp(&b.location));
        assert_eq!(ours, theirs);
        assert_eq!(ours.is_empty(), rel == "nothing");
    }

    #[rstest]
    #[case::in_the_directory("t/_delta_log", "t/_delta_log/0007.json")]
    #[case::the_directory_itself("t/_delta_log", "t/_delta_log")]
    #[case::a_prefix_of_it("t/_delta_log", "t/_delta")]
    #[case::before_it("t/_delta_log", "t/_a")]
    #[case::after_it("t/_delta_log", "t/_z/0001.json")]
    #[case::a_sibling_directory("t/_delta_log", "t/_delta_log2/0001.json")]
    #[case::a_subdirectory("t/_delta_log", "t/_delta_log/_sidecars/0a.parquet")]
    #[case::at_the_root("", "0007.json")]
    fn names_compare_with_the_offset_as_their_paths_do(#[case] prefix: &str, #[case] offset: &str) {
        let (prefix, offset) = (Path::from(prefix), Path::from(offset));
        // Plain names only (`is_plain`): others are listed by `LocalFileSystem`.
        let names = [
            "0001.json",
            "0007.json",
            "0007.jsonx",
            "0008.json",
            "_",
            "_sidecars",
            "_sidecars0",
            "a",
            "z-1",
        ];
        for name in names {
            let by_path = prefix.clone().join(name) > offset;
            let by_name = match offset_in(&prefix, &offset) {
                Ok(rest) => name > rest,
                Err(all) => all == std::cmp::Ordering::Greater,
            };
            assert_eq!(by_name, by_path, "{prefix} / {name} against {offset}");
        }
    }

    #[tokio::test]
    async fn a_long_log_is_listed_from_the_offset() {
        let (_dir, prefix) = a_log(&[]);
        let offset = prefix.clone().join("00000000000000000009.json");
        let (ours, _) = both(&prefix, &offset).await;
        let names: Vec<_> = ours
            .iter()
            .map(|m| m.location.as_ref().rsplit_once("/_delta_log/").unwrap().1)
            .collect();
        assert_eq!(
            names,
            [
                "00000000000000000010.checkpoint.parquet",
                "00000000000000000010.crc",
                "00000000000000000010.json",
                "00000000000000000011.crc",
                "00000000000000000011.json",
                "_commit_0b5b.json.tmp",
                "_last_checkpoint",
                "_sidecars/0a.parquet",
            ]
        );
    }

    #[rstest]
    #[case::an_upload_in_progress(&["00000000000000000011.json#1"])]
    #[case::a_space(&["00000000000000000011 copy.json"])]
    #[case::not_ascii(&["00000000000000000011.jsön"])]
    #[tokio::test]
    async fn names_it_does_not_handle_are_listed_by_the_local_file_system(#[case] extra: &[&str]) {
        let (_dir, prefix) = a_log(extra);
        let offset = prefix.clone().join("00000000000000000005.json");
        let (ours, theirs) = both(&prefix, &offset).await;
        assert_eq!(ours, theirs);
    }

    #[tokio::test]
    async fn links_are_followed_and_broken_ones_skipped() {
        let (dir, prefix) = a_log(&[]);
        let log = dir.path().join("t/_delta_log");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("d")).unwrap();
        std::fs::write(elsewhere.join("f.json"), b"linked").unwrap();
        std::fs::write(elsewhere.join("d/g.json"), b"linked").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.join("f.json"),
            log.join("00000000000000000012.json"),
        )
        .unwrap();
        std::os::unix::fs::symlink(elsewhere.join("d"), log.join("_linked")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("gone"),
            log.join("00000000000000000013.json"),
        )
        .unwrap();
        let offset = prefix.clone().join("00000000000000000011.json");
        let (ours, theirs) = both(&prefix, &offset).await;
        assert_eq!(ours, theirs);
        assert!(
            ours.iter()
                .any(|m| m.location.as_ref().ends_with("12.json"))
        );
        assert!(
            ours.iter()
                .any(|m| m.location.as_ref().ends_with("_linked/g.json"))
        );
    }

    #[tokio::test]
    async fn a_prefix_that_is_no_file_path_is_listed_by_the_local_file_system() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t#1")).unwrap();
        std::fs::write(dir.path().join("t#1/00000000000000000001.json"), b"{}").unwrap();
        let base = Path::from_filesystem_path(dir.path()).unwrap();
        let prefix = Path::parse(format!("{base}/t#1")).unwrap();
        let (ours, theirs) = both(&prefix, &prefix.clone().join("0")).await;
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 1);
    }

    /// An entry that cannot be read (a link onto itself) is one error item after every entry
    /// that could be read. (`LocalFileSystem` ends its listing at such an entry, so what it
    /// lists before the error depends on the directory's order.)
    #[tokio::test]
    async fn an_unreadable_entry_is_an_error_item_after_the_rest() {
        let (dir, prefix) = a_log(&[]);
        let log = dir.path().join("t/_delta_log");
        std::fs::write(log.join("00000000000000000013.json"), b"{}").unwrap();
        let offset = prefix.clone().join("00000000000000000011.json");
        let (readable, _) = both(&prefix, &offset).await;
        let looped = log.join("00000000000000000012.json");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let mut ours: Vec<_> = LocalStore::new()
            .list_with_offset(Some(&prefix), &offset)
            .collect()
            .await;
        let last = ours.pop().unwrap();
        let message = last.unwrap_err().to_string();
        assert!(message.contains("00000000000000000012.json"), "{message}");
        let ours: Vec<ObjectMeta> = ours.into_iter().map(Result::unwrap).collect();
        assert_eq!(ours, readable);
        assert!(
            ours.iter()
                .any(|m| m.location.as_ref().ends_with("13.json"))
        );
    }

    /// A missing directory lists nothing; a file where a directory should be is an error,
    /// as with `LocalFileSystem`.
    #[rstest]
    #[case::missing("nothing/_delta_log", false)]
    #[case::under_a_file("file/_delta_log", true)]
    #[tokio::test]
    async fn no_directory(#[case] rel: &str, #[case] fails: bool) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let base = Path::from_filesystem_path(dir.path()).unwrap();
        let prefix = Path::parse(format!("{base}/{rel}")).unwrap();
        let offset = prefix.clone().join("0");
        let ours = listed(&LocalStore::new(), &prefix, &offset).await;
        let theirs = listed(&LocalFileSystem::new(), &prefix, &offset).await;
        assert_eq!((ours.is_err(), theirs.is_err()), (fails, fails));
        if !fails {
            assert_eq!((ours.unwrap().len(), theirs.unwrap().len()), (0, 0));
        }
    }

    #[test]
    fn local_tables_are_opened_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::Location::create(dir.path().to_str().unwrap()).unwrap();
        let table = location
            .delta_table(&crate::StorageOptions::default())
            .unwrap();
        let root = table.log_store().root_object_store(None).to_string();
        assert!(root.starts_with("LocalStore("), "{root}");
    }
}
