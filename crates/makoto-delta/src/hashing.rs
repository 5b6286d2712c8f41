//! Streaming SHA-256 of files through `object_store`, several files in parallel, with memory
//! bounded by the number of files in flight, not by their size.
//!
//! Each file is one `get` request. When the store hands back a local file (`file://` tables),
//! it is read on a blocking thread into one reused buffer and hashed as it is read, which is as
//! fast as hashing from memory; otherwise the response body is hashed chunk by chunk as it
//! arrives.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use futures::StreamExt;
use makoto_core::StreamHasher;
use object_store::{GetOptions, GetResultPayload, ObjectStore};

use crate::location::object_path;

/// Size of the read buffer for local files.
pub const DEFAULT_CHUNK_SIZE: usize = 2 * 1024 * 1024;

/// Local files up to this size are hashed on the calling task.
const SMALL_FILE: u64 = 64 * 1024;

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
}

impl FileHasher {
    pub fn new(store: Arc<dyn ObjectStore>, parallelism: usize) -> Self {
        FileHasher {
            store,
            chunk_size: DEFAULT_CHUNK_SIZE,
            parallelism: parallelism.max(1),
            root: None,
        }
    }

    /// Resolves absolute paths (`s3://bucket/table/part-0.parquet`, `/data/table/…`) that lie
    /// under the table root `root`.
    pub fn with_table_root(mut self, root: url::Url) -> Self {
        self.root = Some(root);
        self
    }

    /// Hashes every request, `parallelism` at a time.
    pub async fn hash_all(
        &self,
        requests: Vec<HashRequest>,
        progress: Progress,
    ) -> HashMap<String, Result<Hashed, HashFailure>> {
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

    async fn hash_one(
        &self,
        request: &HashRequest,
        progress: Progress,
    ) -> Result<Hashed, HashFailure> {
        let path = match crate::location::is_absolute(&request.path) {
            false => object_path(&request.path),
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
                object_path(&rel)
            }
        };
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
