//! The store delta-rs reads through in the cross-check. delta-rs lists `_delta_log/` several
//! times while it opens a version and reads every commit more than once (protocol and metadata
//! first, then the files); on a checkpoint-less log of ten thousand commits that is a
//! hundred thousand directory entries stat-ed and twenty thousand files opened again. This
//! store lists the log once and keeps the bytes of small commit files it has read, so
//! delta-rs sees exactly what it would have seen, read from storage once.
//!
//! Only whole reads of `_delta_log/*.json` files and listings of `_delta_log/` are served from
//! memory; everything else (checkpoints, ranges, conditional reads, writes) goes to storage.
//! Memory is bounded: a commit larger than [`MAX_CACHED_FILE`] is never kept and the cache
//! stops growing at [`CACHE_BUDGET`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::sync::OnceCell;

/// Commit files larger than this are read from storage every time.
pub(crate) const MAX_CACHED_FILE: u64 = 256 << 10;
/// The bytes of commit files kept at most.
pub(crate) const CACHE_BUDGET: u64 = 256 << 20;
/// Commit files read at once by [`LogReadCache::prefetch`] from remote storage (delta-rs's
/// own engine keeps up to 1,000 reads in flight; a round trip each is what remote reads cost).
const PREFETCH_READS: usize = 128;
/// Local commit files read by one blocking task of [`LogReadCache::prefetch`], and such tasks
/// at once.
const LOCAL_READS_PER_TASK: usize = 256;
const LOCAL_READ_TASKS: usize = 2;

/// An object store that serves repeated listings of one `_delta_log/` and repeated reads of its
/// small commit files from memory.
#[derive(Clone)]
pub(crate) struct LogReadCache {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

struct Shared {
    log: Path,
    /// Where `log` is on the local file system, for a local table.
    local_log: Option<std::path::PathBuf>,
    listing: OnceCell<Arc<Vec<ObjectMeta>>>,
    commits: Mutex<Commits>,
}

#[derive(Default)]
struct Commits {
    files: HashMap<Path, (ObjectMeta, Bytes)>,
    bytes: u64,
}

impl LogReadCache {
    /// Wraps `inner`, a store rooted where `log` (the table's `_delta_log`) is a path.
    pub fn new(inner: Arc<dyn ObjectStore>, log: Path) -> Self {
        LogReadCache {
            inner,
            shared: Arc::new(Shared {
                log,
                local_log: None,
                listing: OnceCell::new(),
                commits: Mutex::new(Commits::default()),
            }),
        }
    }

    /// The same cache for a local table whose `_delta_log` is the directory `dir`: its
    /// prefetch reads many files per blocking task instead of one task per file.
    pub fn with_local_log(inner: Arc<dyn ObjectStore>, log: Path, dir: std::path::PathBuf) -> Self {
        let mut cache = Self::new(inner, log);
        if let Some(shared) = Arc::get_mut(&mut cache.shared) {
            shared.local_log = Some(dir);
        }
        cache
    }

    fn is_commit(&self, location: &Path) -> bool {
        location.prefix_matches(&self.shared.log)
            && location.parts().count() == self.shared.log.parts().count() + 1
            && location.extension() == Some("json")
    }

    /// The bytes of a commit file already read, if they were kept.
    pub fn cached_bytes(&self, location: &Path) -> Option<Bytes> {
        self.cached(location).map(|(_, bytes)| bytes)
    }

    /// Reads the commit files a reader of `version` replays (those after the newest checkpoint
    /// at or below it) into the cache, [`PREFETCH_READS`] at a time. Only a head start: what
    /// fails here or is not kept is read again, and reported, when delta-rs reads it.
    pub async fn prefetch(&self, version: u64) {
        let Ok(listing) = self.listing().try_collect::<Vec<_>>().await else {
            return;
        };
        let name = |m: &ObjectMeta| m.location.filename().map(str::to_owned);
        let start = listing
            .iter()
            .filter_map(|m| crate::log::parse_checkpoint_name(&name(m)?))
            .filter(|v| *v <= version)
            .max()
            .map_or(0, |c| c + 1);
        let mut wanted: Vec<(u64, ObjectMeta)> = listing
            .into_iter()
            .filter(|m| m.size <= MAX_CACHED_FILE)
            .filter_map(|m| Some((crate::log::parse_commit_name(&name(&m)?)?, m)))
            .filter(|(v, _)| (start..=version).contains(v))
            .collect();
        // Newest first, as delta-rs replays, and no more than the cache keeps.
        wanted.sort_unstable_by_key(|(v, _)| std::cmp::Reverse(*v));
        let mut total = 0u64;
        let wanted = wanted.into_iter().map(|(_, m)| m).take_while(|m| {
            total += m.size;
            total <= CACHE_BUDGET
        });
        match self.shared.local_log.clone() {
            Some(dir) => {
                let chunks: Vec<Vec<ObjectMeta>> = wanted
                    .collect::<Vec<_>>()
                    .chunks(LOCAL_READS_PER_TASK)
                    .map(<[ObjectMeta]>::to_vec)
                    .collect();
                stream::iter(chunks)
                    .map(|chunk| {
                        let dir = dir.clone();
                        tokio::task::spawn_blocking(move || read_local(&dir, chunk))
                    })
                    .buffer_unordered(LOCAL_READ_TASKS)
                    .for_each(|read| {
                        for (meta, bytes) in read.unwrap_or_default() {
                            self.keep(&meta, &bytes);
                        }
                        futures::future::ready(())
                    })
                    .await
            }
            None => {
                stream::iter(wanted)
                    .map(|m| async move {
                        if let Ok(r) = self.get_opts(&m.location, GetOptions::default()).await {
                            let _ = r.bytes().await;
                        }
                    })
                    .buffer_unordered(PREFETCH_READS)
                    .for_each(|()| futures::future::ready(()))
                    .await
            }
        }
    }

    fn cached(&self, location: &Path) -> Option<(ObjectMeta, Bytes)> {
        let commits = self.shared.commits.lock().ok()?;
        commits.files.get(location).cloned()
    }

    fn keep(&self, meta: &ObjectMeta, bytes: &Bytes) {
        let size = bytes.len() as u64;
        if size > MAX_CACHED_FILE {
            return;
        }
        if let Ok(mut commits) = self.shared.commits.lock()
            && commits.bytes + size <= CACHE_BUDGET
            && !commits.files.contains_key(&meta.location)
        {
            commits.bytes += size;
            commits
                .files
                .insert(meta.location.clone(), (meta.clone(), bytes.clone()));
        }
    }

    /// The log listing, read from storage on first use. A failed listing is not kept.
    fn listing(&self) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, shared) = (self.inner.clone(), self.shared.clone());
        stream::once(async move {
            shared
                .listing
                .get_or_try_init(|| async {
                    let all: Vec<ObjectMeta> = inner.list(Some(&shared.log)).try_collect().await?;
                    Ok::<_, object_store::Error>(Arc::new(all))
                })
                .await
                .cloned()
        })
        .map_ok(|all| stream::iter((0..all.len()).map(move |i| Ok(all[i].clone()))))
        .try_flatten()
        .boxed()
    }
}

/// Reads the commit files `metas` names from the local directory `dir`; a file that cannot be
/// read, or has grown past [`MAX_CACHED_FILE`], is left out (delta-rs reads it itself).
fn read_local(dir: &std::path::Path, metas: Vec<ObjectMeta>) -> Vec<(ObjectMeta, Bytes)> {
    use std::io::Read;
    let mut out = Vec::with_capacity(metas.len());
    for mut meta in metas {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let Ok(file) = std::fs::File::open(dir.join(name)) else {
            continue;
        };
        let mut bytes = Vec::with_capacity(meta.size as usize);
        if file
            .take(MAX_CACHED_FILE + 1)
            .read_to_end(&mut bytes)
            .is_err()
            || bytes.len() as u64 > MAX_CACHED_FILE
        {
            continue;
        }
        meta.size = bytes.len() as u64;
        out.push((meta, Bytes::from(bytes)));
    }
    out
}

/// Whether a read asks for the whole object with no conditions.
fn is_plain(options: &GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.range.is_none()
        && options.version.is_none()
        && !options.head
}

fn whole(meta: ObjectMeta, bytes: Bytes) -> GetResult {
    GetResult {
        range: 0..bytes.len() as u64,
        payload: GetResultPayload::Stream(stream::once(async move { Ok(bytes) }).boxed()),
        meta,
        attributes: Default::default(),
    }
}

impl fmt::Debug for LogReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReadCache")
            .field("inner", &self.inner)
            .field("log", &self.shared.log)
            .finish()
    }
}

impl fmt::Display for LogReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogReadCache({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LogReadCache {
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
        if !(is_plain(&options) && self.is_commit(location)) {
            return self.inner.get_opts(location, options).await;
        }
        if let Some((meta, bytes)) = self.cached(location) {
            return Ok(whole(meta, bytes));
        }
        let result = self.inner.get_opts(location, options).await?;
        if result.meta.size > MAX_CACHED_FILE {
            return Ok(result);
        }
        let meta = result.meta.clone();
        let bytes = result.bytes().await?;
        self.keep(&meta, &bytes);
        Ok(whole(meta, bytes))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix {
            Some(p) if *p == self.shared.log => self.listing(),
            _ => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix {
            Some(p) if *p == self.shared.log => {
                let offset = offset.clone();
                self.listing()
                    .try_filter(move |m| futures::future::ready(m.location > offset))
                    .boxed()
            }
            _ => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    async fn store_with(files: &[(&str, &str)]) -> Arc<dyn ObjectStore> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (p, body) in files {
            store
                .put(&Path::from(*p), PutPayload::from(body.to_string()))
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn a_commit_is_read_from_storage_once() {
        let inner = store_with(&[("t/_delta_log/00000000000000000000.json", "{}\n")]).await;
        let cache = LogReadCache::new(inner.clone(), Path::from("t/_delta_log"));
        let p = Path::from("t/_delta_log/00000000000000000000.json");
        assert_eq!(cache.get(&p).await.unwrap().bytes().await.unwrap(), "{}\n");
        inner.put(&p, PutPayload::from("changed")).await.unwrap();
        assert_eq!(cache.get(&p).await.unwrap().bytes().await.unwrap(), "{}\n");
    }

    #[tokio::test]
    async fn ranges_checkpoints_and_other_tables_go_to_storage() {
        let inner = store_with(&[
            ("t/_delta_log/00000000000000000000.json", "abcdef"),
            ("t/_delta_log/00000000000000000000.checkpoint.parquet", "p"),
            ("u/_delta_log/00000000000000000000.json", "u"),
        ])
        .await;
        let cache = LogReadCache::new(inner.clone(), Path::from("t/_delta_log"));
        let c = Path::from("t/_delta_log/00000000000000000000.json");
        assert_eq!(cache.get_range(&c, 1..3).await.unwrap(), "bc");
        for p in [
            "t/_delta_log/00000000000000000000.checkpoint.parquet",
            "u/_delta_log/00000000000000000000.json",
        ] {
            let p = Path::from(p);
            cache.get(&p).await.unwrap();
            inner.put(&p, PutPayload::from("new")).await.unwrap();
            assert_eq!(cache.get(&p).await.unwrap().bytes().await.unwrap(), "new");
        }
    }

    #[tokio::test]
    async fn the_log_is_listed_once_and_offsets_filter_it() {
        let inner = store_with(&[
            ("t/_delta_log/00000000000000000000.json", "a"),
            ("t/_delta_log/00000000000000000001.json", "b"),
        ])
        .await;
        let log = Path::from("t/_delta_log");
        let cache = LogReadCache::new(inner.clone(), log.clone());
        let names = |v: Vec<ObjectMeta>| {
            let mut n: Vec<String> = v.into_iter().map(|m| m.location.to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(
            names(cache.list(Some(&log)).try_collect().await.unwrap()).len(),
            2
        );
        inner
            .put(
                &Path::from("t/_delta_log/00000000000000000002.json"),
                PutPayload::from("c"),
            )
            .await
            .unwrap();
        let after = cache
            .list_with_offset(
                Some(&log),
                &Path::from("t/_delta_log/00000000000000000000.json"),
            )
            .try_collect()
            .await
            .unwrap();
        assert_eq!(names(after), ["t/_delta_log/00000000000000000001.json"]);
    }

    #[tokio::test]
    async fn large_commits_are_not_kept() {
        let big = "x".repeat(MAX_CACHED_FILE as usize + 1);
        let inner = store_with(&[("t/_delta_log/00000000000000000000.json", &big)]).await;
        let cache = LogReadCache::new(inner.clone(), Path::from("t/_delta_log"));
        let p = Path::from("t/_delta_log/00000000000000000000.json");
        assert_eq!(
            cache.get(&p).await.unwrap().bytes().await.unwrap().len(),
            big.len()
        );
        inner.put(&p, PutPayload::from("small")).await.unwrap();
        assert_eq!(cache.get(&p).await.unwrap().bytes().await.unwrap(), "small");
    }

    #[tokio::test]
    async fn a_local_prefetch_keeps_what_storage_serves() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).unwrap();
        let big = "x".repeat(MAX_CACHED_FILE as usize + 1);
        let bodies = ["{\"a\":1}\n", "", big.as_str(), "{\"b\":2}"];
        for (v, body) in bodies.iter().enumerate() {
            std::fs::write(log.join(format!("{v:020}.json")), body).unwrap();
        }
        let root: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let log_path = Path::from_url_path(url.path()).unwrap().join("_delta_log");
        let cache = LogReadCache::with_local_log(root.clone(), log_path.clone(), log.clone());
        cache.prefetch(2).await;
        for (v, body) in bodies.iter().enumerate() {
            let p = log_path.clone().join(format!("{v:020}.json").as_str());
            let kept = cache.cached_bytes(&p);
            match v {
                0 | 1 => assert_eq!(kept.unwrap(), body.as_bytes(), "{p}"),
                _ => assert!(kept.is_none(), "{p}: too large, or after the version"),
            }
            let served = cache.get(&p).await.unwrap().bytes().await.unwrap();
            assert_eq!(served, root.get(&p).await.unwrap().bytes().await.unwrap());
        }
    }
}
