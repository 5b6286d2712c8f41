//! Streaming SHA-256 of files through `object_store`: bounded memory (a chunk being hashed and
//! the next one in flight per file), several files in parallel, hashing off the async threads.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use makoto_core::{Sha256Digest, StreamHasher};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::location::object_path;

/// Bytes fetched per request.
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// A file to hash: its path relative to the table root (decoded once) and the size the log
/// records for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashRequest {
    pub path: String,
    pub expected_size: Option<u64>,
}

/// The digest and actual size of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// Why a file could not be hashed.
#[derive(Debug)]
pub enum HashFailure {
    Missing,
    Storage(object_store::Error),
    Task(String),
}

/// Hashes files of one table.
#[derive(Debug, Clone)]
pub struct FileHasher {
    store: Arc<dyn ObjectStore>,
    chunk_size: usize,
    parallelism: usize,
}

impl FileHasher {
    pub fn new(store: Arc<dyn ObjectStore>, parallelism: usize) -> Self {
        FileHasher {
            store,
            chunk_size: DEFAULT_CHUNK_SIZE,
            parallelism: parallelism.max(1),
        }
    }

    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(64 * 1024);
        self
    }

    /// Hashes every request; `progress` is called with the number of bytes hashed as they are.
    pub async fn hash_all(
        &self,
        requests: Vec<HashRequest>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> HashMap<String, Result<Hashed, HashFailure>> {
        futures::stream::iter(requests)
            .map(|r| async move {
                let result = self.hash_one(&r, progress).await;
                (r.path, result)
            })
            .buffer_unordered(self.parallelism)
            .collect()
            .await
    }

    async fn hash_one(
        &self,
        request: &HashRequest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Hashed, HashFailure> {
        let path = object_path(&request.path);
        let small = request
            .expected_size
            .is_some_and(|s| s <= self.chunk_size as u64);
        if small {
            let bytes = match self.store.get(&path).await {
                Ok(r) => r.bytes().await.map_err(classify)?,
                Err(e) => return Err(classify(e)),
            };
            let len = bytes.len() as u64;
            let sha256 = if bytes.len() > 256 * 1024 {
                tokio::task::spawn_blocking(move || Sha256Digest::of(&bytes))
                    .await
                    .map_err(|e| HashFailure::Task(e.to_string()))?
            } else {
                Sha256Digest::of(&bytes)
            };
            progress(len);
            return Ok(Hashed { sha256, size: len });
        }
        let size = self.store.head(&path).await.map_err(classify)?.size;
        let mut hasher = StreamHasher::new();
        let mut offset = 0u64;
        let mut pending = (size > 0).then(|| self.fetch(&path, 0, size));
        while let Some(fetch) = pending.take() {
            let chunk = fetch
                .await
                .map_err(|e| HashFailure::Task(e.to_string()))?
                .map_err(classify)?;
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            if offset < size {
                pending = Some(self.fetch(&path, offset, size));
            }
            let n = chunk.len() as u64;
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&chunk);
                hasher
            })
            .await
            .map_err(|e| HashFailure::Task(e.to_string()))?;
            progress(n);
        }
        let (sha256, size) = hasher.finish();
        Ok(Hashed { sha256, size })
    }

    fn fetch(
        &self,
        path: &Path,
        offset: u64,
        size: u64,
    ) -> tokio::task::JoinHandle<Result<bytes::Bytes, object_store::Error>> {
        let store = Arc::clone(&self.store);
        let path = path.clone();
        let end = (offset + self.chunk_size as u64).min(size);
        tokio::spawn(async move { store.get_range(&path, offset..end).await })
    }
}

fn classify(e: object_store::Error) -> HashFailure {
    match e {
        object_store::Error::NotFound { .. } => HashFailure::Missing,
        other => HashFailure::Storage(other),
    }
}
