//! Streaming SHA-256 of files through `object_store`, several files in parallel, with memory
//! bounded by the number of files in flight, not by their size.
//!
//! Each file is one `get` request, and the response body is hashed chunk by chunk as it
//! arrives. Local tables (`file://`) are read on blocking threads instead, several files per
//! thread hop (small files cost more in hops between threads than in hashing), each into a
//! buffer no larger than it needs; paths resolve exactly as `object_store`'s local store
//! resolves them.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use futures::StreamExt;
use makoto_core::StreamHasher;
use object_store::local::LocalFileSystem;
use object_store::{GetOptions, GetResultPayload, ObjectStore};

use crate::location::object_path;

/// Size of the read buffer for local files.
pub const DEFAULT_CHUNK_SIZE: usize = 2 * 1024 * 1024;

/// Local files up to this size are hashed on the calling task.
const SMALL_FILE: u64 = 64 * 1024;

/// A group of local files hashed on one blocking thread: up to this many files...
const GROUP_FILES: usize = 64;
/// ... or this many bytes (by the sizes the log records).
const GROUP_BYTES: u64 = 8 << 20;

/// Called with the number of bytes hashed, as they are hashed.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A file to hash: its path relative to the table root (decoded once) and the size the log
/// records for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashRequest {
    pub path: String,
    pub expected_size: Option<u64>,
}

pub use makoto_core::state::Hashed;

/// Results of [`FileHasher::hash_in_order`], in the order of the requests. Dropping it stops
/// the hashing.
#[derive(Debug)]
pub struct HashFeed {
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Result<Hashed, HashFailure>)>,
    task: tokio::task::JoinHandle<()>,
}

impl HashFeed {
    /// The next request's path and result; `None` once every request has one.
    pub async fn next(&mut self) -> Option<(String, Result<Hashed, HashFailure>)> {
        self.rx.recv().await
    }
}

impl Drop for HashFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a file could not be hashed.
#[derive(Debug)]
pub enum HashFailure {
    Missing,
    Storage(object_store::Error),
    Io(std::io::Error),
    Task(String),
}

/// Hashes files of one table.
#[derive(Debug, Clone)]
pub struct FileHasher {
    store: Arc<dyn ObjectStore>,
    chunk_size: usize,
    parallelism: usize,
    /// The table root (`file:///…/`, `s3://…/`): absolute paths under it are read through
    /// `store`.
    root: Option<url::Url>,
    /// For a local table, its directory, to read files without a thread hop per file.
    local: Option<Arc<LocalFileSystem>>,
}

impl FileHasher {
    pub fn new(store: Arc<dyn ObjectStore>, parallelism: usize) -> Self {
        FileHasher {
            store,
            chunk_size: DEFAULT_CHUNK_SIZE,
            parallelism: parallelism.max(1),
            root: None,
            local: None,
        }
    }

    /// Resolves absolute paths (`s3://bucket/table/part-0.parquet`, `/data/table/…`) that lie
    /// under the table root `root`.
    pub fn with_table_root(mut self, root: url::Url) -> Self {
        self.local = (root.scheme() == "file")
            .then(|| root.to_file_path().ok())
            .flatten()
            .and_then(|dir| LocalFileSystem::new_with_prefix(dir).ok())
            .map(Arc::new);
        self.root = Some(root);
        self
    }

    /// Hashes every request, `parallelism` at a time.
    pub async fn hash_all(
        &self,
        requests: Vec<HashRequest>,
        progress: Progress,
    ) -> HashMap<String, Result<Hashed, HashFailure>> {
        if let Some(local) = &self.local {
            return self.hash_local(local, requests, progress).await;
        }
        futures::stream::iter(requests)
            .map(|r| {
                let progress = Arc::clone(&progress);
                async move {
                    let result = self.hash_one(&r, progress).await;
                    (r.path, result)
                }
            })
            .buffer_unordered(self.parallelism)
            .collect()
            .await
    }

    /// Hashes every request, `parallelism` at a time, on a task of its own, and hands out the
    /// results in the order of `requests` as they come: the caller can use the first files'
    /// digests while later files are still being read.
    pub fn hash_in_order(self, requests: Vec<HashRequest>, progress: Progress) -> HashFeed {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut results = self.ordered(requests, progress);
            while let Some(result) = results.next().await {
                if tx.send(result).is_err() {
                    return;
                }
            }
        });
        HashFeed { rx, task }
    }

    fn ordered(
        &self,
        requests: Vec<HashRequest>,
        progress: Progress,
    ) -> futures::stream::BoxStream<'_, (String, Result<Hashed, HashFailure>)> {
        match &self.local {
            Some(local) => futures::stream::iter(group(requests))
                .map(move |g| self.hash_local_group(local, g, Arc::clone(&progress)))
                .buffered(self.parallelism)
                .flat_map(futures::stream::iter)
                .boxed(),
            None => futures::stream::iter(requests)
                .map(move |r| {
                    let progress = Arc::clone(&progress);
                    async move {
                        let result = self.hash_one(&r, progress).await;
                        (r.path, result)
                    }
                })
                .buffered(self.parallelism)
                .boxed(),
        }
    }

    /// Local files in groups, `parallelism` groups at a time.
    async fn hash_local(
        &self,
        local: &Arc<LocalFileSystem>,
        requests: Vec<HashRequest>,
        progress: Progress,
    ) -> HashMap<String, Result<Hashed, HashFailure>> {
        futures::stream::iter(group(requests))
            .map(|g| self.hash_local_group(local, g, Arc::clone(&progress)))
            .buffer_unordered(self.parallelism)
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    /// One group of local files, hashed on one blocking thread.
    fn hash_local_group(
        &self,
        local: &Arc<LocalFileSystem>,
        group: Vec<HashRequest>,
        progress: Progress,
    ) -> impl Future<Output = Vec<(String, Result<Hashed, HashFailure>)>> + use<> {
        let local = Arc::clone(local);
        let paths: Vec<Result<object_store::path::Path, HashFailure>> =
            group.iter().map(|r| self.object_path(r)).collect();
        let chunk_size = self.chunk_size;
        async move {
            let names: Vec<String> = group.into_iter().map(|r| r.path).collect();
            let hashed = tokio::task::spawn_blocking(move || {
                paths
                    .into_iter()
                    .map(|p| hash_local_file(&local, p?, chunk_size, &progress))
                    .collect::<Vec<_>>()
            })
            .await;
            match hashed {
                Ok(results) => names.into_iter().zip(results).collect(),
                Err(e) => names
                    .into_iter()
                    .map(|n| (n, Err(HashFailure::Task(e.to_string()))))
                    .collect(),
            }
        }
    }

    /// The object path of a request: relative to the table root.
    fn object_path(&self, request: &HashRequest) -> Result<object_store::path::Path, HashFailure> {
        match crate::location::is_absolute(&request.path) {
            false => Ok(object_path(&request.path)),
            true => {
                let rel = self
                    .root
                    .as_ref()
                    .and_then(|root| crate::location::under_root(root, &request.path))
                    .ok_or_else(|| {
                        HashFailure::Io(std::io::Error::other(
                            "the absolute path is outside the table root, which makoto does not attest",
                        ))
                    })?;
                Ok(object_path(&rel))
            }
        }
    }

    async fn hash_one(
        &self,
        request: &HashRequest,
        progress: Progress,
    ) -> Result<Hashed, HashFailure> {
        let path = self.object_path(request)?;
        let result = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(classify)?;
        match result.payload {
            GetResultPayload::File(file, _) => {
                // Small files need no more buffer than their size (one more byte sees EOF), and
                // are read in place: a read that short costs less than a hop to another thread.
                let chunk = usize::try_from(result.meta.size).map_or(self.chunk_size, |s| {
                    s.saturating_add(1).min(self.chunk_size)
                });
                if result.meta.size <= SMALL_FILE {
                    return hash_reader(file, chunk, &progress);
                }
                tokio::task::spawn_blocking(move || hash_reader(file, chunk, &progress))
                    .await
                    .map_err(|e| HashFailure::Task(e.to_string()))?
            }
            GetResultPayload::Stream(mut stream) => {
                let mut hasher = StreamHasher::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(classify)?;
                    hasher.update(&chunk);
                    progress(chunk.len() as u64);
                }
                let (sha256, size) = hasher.finish();
                Ok(Hashed { sha256, size })
            }
        }
    }
}

/// Requests in groups of at most [`GROUP_FILES`] files and about [`GROUP_BYTES`] bytes.
fn group(requests: Vec<HashRequest>) -> Vec<Vec<HashRequest>> {
    let mut groups: Vec<Vec<HashRequest>> = Vec::new();
    let mut bytes = 0u64;
    for r in requests {
        let size = r.expected_size.unwrap_or(0);
        match groups.last_mut() {
            Some(g) if g.len() < GROUP_FILES && bytes.saturating_add(size) <= GROUP_BYTES => {
                bytes = bytes.saturating_add(size);
                g.push(r);
            }
            _ => {
                bytes = size;
                groups.push(vec![r]);
            }
        }
    }
    groups
}

/// One local file, opened and checked as `object_store`'s local store does (a directory is
/// not found), read into a buffer no larger than the file. Anything else that is not a regular
/// file (a FIFO, a socket, a device put where a data file should be) is an error, and opening
/// never waits: a FIFO with no writer would otherwise block the run forever.
fn hash_local_file(
    local: &LocalFileSystem,
    path: object_store::path::Path,
    chunk_size: usize,
    progress: &Progress,
) -> Result<Hashed, HashFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let fs_path = local.path_to_filesystem(&path).map_err(classify)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fs_path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HashFailure::Missing,
            _ => HashFailure::Io(e),
        })?;
    let meta = file.metadata().map_err(HashFailure::Io)?;
    if meta.is_dir() {
        return Err(HashFailure::Missing);
    }
    if !meta.is_file() {
        return Err(HashFailure::Io(std::io::Error::other(
            "not a regular file (a FIFO, socket or device)",
        )));
    }
    let chunk =
        usize::try_from(meta.len()).map_or(chunk_size, |s| s.saturating_add(1).min(chunk_size));
    hash_reader(file, chunk, progress)
}

fn hash_reader(
    mut file: impl Read,
    chunk: usize,
    progress: &Progress,
) -> Result<Hashed, HashFailure> {
    let mut buf = vec![0u8; chunk];
    let mut hasher = StreamHasher::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HashFailure::Io(e)),
        };
        hasher.update(&buf[..n]);
        progress(n as u64);
    }
    let (sha256, size) = hasher.finish();
    Ok(Hashed { sha256, size })
}

fn classify(e: object_store::Error) -> HashFailure {
    match e {
        object_store::Error::NotFound { .. } => HashFailure::Missing,
        other => HashFailure::Storage(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn req(path: &str, size: u64) -> HashRequest {
        HashRequest {
            path: path.to_owned(),
            expected_size: Some(size),
        }
    }

    #[test]
    fn groups_close_at_the_file_count_or_the_byte_budget() {
        let sizes = |gs: &[Vec<HashRequest>]| gs.iter().map(Vec::len).collect::<Vec<_>>();
        let many: Vec<_> = (0..130).map(|i| req(&format!("f{i}"), 10)).collect();
        assert_eq!(sizes(&group(many)), [64, 64, 2]);
        let half = GROUP_BYTES / 2;
        let big = vec![
            req("a", half),
            req("b", half),
            req("c", 1),
            req("d", GROUP_BYTES + 1),
            req("e", 1),
        ];
        assert_eq!(sizes(&group(big)), [2, 1, 1, 1]);
        assert!(group(Vec::new()).is_empty());
    }

    /// The local fast path and the object store read the same files and fail the same way.
    #[tokio::test]
    async fn local_files_hash_as_the_object_store_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["plain.parquet", "a=b%3Ac/x y.parquet", "ü/€.bin", "big.bin"];
        for (i, n) in names.iter().enumerate() {
            let p = dir.path().join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let len = if *n == "big.bin" {
                3 * DEFAULT_CHUNK_SIZE + 5
            } else {
                100 + i
            };
            std::fs::write(&p, vec![i as u8; len]).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("adir")).unwrap();
        let root = url::Url::from_directory_path(dir.path()).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let requests: Vec<HashRequest> = names
            .iter()
            .chain(&["adir", "missing.parquet"])
            .map(|n| req(n, 1))
            .collect();
        let progress: Progress = Arc::new(|_| {});
        let local = FileHasher::new(Arc::clone(&store), 2)
            .with_table_root(root)
            .hash_all(requests.clone(), Arc::clone(&progress))
            .await;
        let remote = FileHasher::new(store, 2).hash_all(requests, progress).await;
        assert_eq!(local.len(), 6);
        for n in names {
            let bytes = std::fs::read(dir.path().join(n)).unwrap();
            let expected: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            for results in [&local, &remote] {
                let h = results[n].as_ref().unwrap();
                assert_eq!(
                    (h.sha256.as_bytes(), h.size),
                    (&expected, bytes.len() as u64),
                    "{n}"
                );
            }
        }
        for n in ["adir", "missing.parquet"] {
            assert!(
                matches!(local[n], Err(HashFailure::Missing)),
                "{n}: {:?}",
                local[n]
            );
            assert!(
                matches!(remote[n], Err(HashFailure::Missing)),
                "{n}: {:?}",
                remote[n]
            );
        }
    }

    /// A FIFO where a data file should be is an error at once, not a run blocked forever.
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe.parquet"))
            .status()
            .unwrap();
        assert!(made.success());
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let hasher = FileHasher::new(store, 2)
            .with_table_root(url::Url::from_directory_path(dir.path()).unwrap());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let results = rt.block_on(async {
            let hashing = hasher.hash_all(vec![req("pipe.parquet", 10)], Arc::new(|_| {}));
            tokio::time::timeout(std::time::Duration::from_secs(20), hashing).await
        });
        // A thread stuck in open() must not keep the test from failing.
        rt.shutdown_background();
        let results = results.expect("hashing a FIFO must not block");
        assert!(matches!(results["pipe.parquet"], Err(HashFailure::Io(_))));
    }

    /// Results come out in the order of the requests, local and remote, however the groups
    /// finish, with the digests `hash_all` gives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_order_hashing_keeps_the_request_order() {
        let dir = tempfile::tempdir().unwrap();
        // 300 files, several groups of 64 in flight at once: the first group's files are
        // large, so later groups finish first.
        let names: Vec<String> = (0..300).map(|i| format!("p{i:03}.parquet")).collect();
        for (i, n) in names.iter().enumerate() {
            let len = if i < 64 {
                256 << 10
            } else {
                10 + (i * 7919) % 5000
            };
            std::fs::write(dir.path().join(n), vec![i as u8; len]).unwrap();
        }
        let mut requests: Vec<HashRequest> = names.iter().map(|n| req(n, 1)).collect();
        requests.insert(150, req("gone.parquet", 1));
        let root = url::Url::from_directory_path(dir.path()).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        for hasher in [
            FileHasher::new(Arc::clone(&store), 3).with_table_root(root),
            FileHasher::new(Arc::clone(&store), 3),
        ] {
            let all = hasher
                .clone()
                .hash_all(requests.clone(), Arc::new(|_| {}))
                .await;
            let mut feed = hasher.hash_in_order(requests.clone(), Arc::new(|_| {}));
            let mut order = Vec::new();
            while let Some((path, result)) = feed.next().await {
                match (&result, &all[&path]) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{path}"),
                    (Err(HashFailure::Missing), Err(HashFailure::Missing)) => {}
                    (a, b) => panic!("{path}: {a:?} against {b:?}"),
                }
                order.push(path);
            }
            let expected: Vec<String> = requests.iter().map(|r| r.path.clone()).collect();
            assert_eq!(order, expected);
        }
    }
}
