//! The engine delta-rs runs the cross-check on. It is delta-rs's own engine (the one
//! `LogStore::engine` builds), with one change: commit files already in the [`LogReadCache`]
//! are parsed on the thread that asks for them, by one arrow-json decoder built with the
//! kernel's own settings and schema, instead of one task, one channel hop and one decoder per
//! file. delta-rs's log replay (protocol and metadata, then the live files) runs unchanged on
//! what that decoder yields; files not in the cache go to delta-rs's engine as before.
//!
//! On a log of ten thousand small commits without a checkpoint, the per-file task and decoder
//! were most of delta-rs's cost (docs/performance.md (c)).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use delta_kernel::arrow::json::ReaderBuilder;
use delta_kernel::arrow::json::reader::Decoder;
use delta_kernel::engine::arrow_utils::{
    ReorderIndex, build_json_reorder_indices, fixup_json_read, json_arrow_schema,
};
use delta_kernel::engine_data::FilteredEngineData;
use delta_kernel::schema::SchemaRef;
use delta_kernel::{
    CancellationTokenRef, DeltaResult, DeltaResultIterator, DeltaResultIteratorStatic, Engine,
    EngineData, EvaluationHandler, FileDataReadResultIterator, FileMeta, FileSize, JsonHandler,
    ParquetFooter, ParquetHandler, PredicateRef, StorageHandler,
};
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;
use uuid::Uuid;

use super::log_reads::LogReadCache;

/// Rows per batch, as delta-rs's engine reads JSON.
const BATCH_ROWS: usize = 1000;

/// A log store that is `inner` in every respect but the engine it hands out.
pub(crate) struct CrossCheckLogStore {
    inner: LogStoreRef,
    engine: Arc<dyn Engine>,
    parquet_read: Arc<AtomicBool>,
}

impl CrossCheckLogStore {
    /// `inner` reading through `cache`; must be called inside the Tokio runtime (delta-rs's
    /// engine binds to it).
    pub fn new(inner: LogStoreRef, cache: LogReadCache) -> Self {
        let default = inner.engine(None);
        let json = Arc::new(CachedJson {
            inner: default.json_handler(),
            cache,
        });
        let parquet_read = Arc::new(AtomicBool::new(false));
        let parquet = Arc::new(SeenParquet {
            inner: default.parquet_handler(),
            read: parquet_read.clone(),
        });
        CrossCheckLogStore {
            inner,
            engine: Arc::new(CachedEngine {
                inner: default,
                json,
                parquet,
            }),
            parquet_read,
        }
    }

    /// Whether delta-rs has read a Parquet file (a checkpoint or a sidecar) through this
    /// store: the only files where a live file's statistics can be `stats_parsed` alone.
    /// Set before the rows of the file it read are handed out.
    pub fn has_read_parquet(&self) -> bool {
        self.parquet_read.load(Ordering::Acquire)
    }
}

#[async_trait::async_trait]
impl LogStore for CrossCheckLogStore {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> Result<(), deltalake::DeltaTableError> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(
        &self,
        version: deltalake::kernel::Version,
    ) -> Result<Option<Bytes>, deltalake::DeltaTableError> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: deltalake::kernel::Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), deltalake::kernel::transaction::TransactionError> {
        self.inner
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn abort_commit_entry(
        &self,
        version: deltalake::kernel::Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), deltalake::kernel::transaction::TransactionError> {
        self.inner
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(
        &self,
        start_version: deltalake::kernel::Version,
    ) -> Result<deltalake::kernel::Version, deltalake::DeltaTableError> {
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn engine(&self, _operation_id: Option<Uuid>) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(
        &self,
        operation_id: Option<Uuid>,
    ) -> Result<Url, deltalake::DeltaTableError> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> Result<bool, deltalake::DeltaTableError> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }

    fn object_store_url(&self) -> datafusion::datasource::object_store::ObjectStoreUrl {
        self.inner.object_store_url()
    }
}

struct CachedEngine {
    inner: Arc<dyn Engine>,
    json: Arc<CachedJson>,
    parquet: Arc<SeenParquet>,
}

impl Engine for CachedEngine {
    fn evaluation_handler(&self) -> Arc<dyn EvaluationHandler> {
        self.inner.evaluation_handler()
    }

    fn storage_handler(&self) -> Arc<dyn StorageHandler> {
        self.inner.storage_handler()
    }

    fn json_handler(&self) -> Arc<dyn JsonHandler> {
        self.json.clone()
    }

    fn parquet_handler(&self) -> Arc<dyn ParquetHandler> {
        self.parquet.clone()
    }
}

/// delta-rs's Parquet handler, noting that it was asked to read.
struct SeenParquet {
    inner: Arc<dyn ParquetHandler>,
    read: Arc<AtomicBool>,
}

impl SeenParquet {
    fn seen(&self) {
        self.read.store(true, Ordering::Release);
    }
}

impl ParquetHandler for SeenParquet {
    fn read_parquet_files(
        &self,
        files: &[FileMeta],
        physical_schema: SchemaRef,
        predicate: Option<PredicateRef>,
    ) -> DeltaResult<FileDataReadResultIterator> {
        self.seen();
        self.inner
            .read_parquet_files(files, physical_schema, predicate)
    }

    fn read_parquet_files_with_cancellation(
        &self,
        files: &[FileMeta],
        physical_schema: SchemaRef,
        predicate: Option<PredicateRef>,
        cancellation_token: Option<CancellationTokenRef>,
    ) -> DeltaResult<FileDataReadResultIterator> {
        self.seen();
        self.inner.read_parquet_files_with_cancellation(
            files,
            physical_schema,
            predicate,
            cancellation_token,
        )
    }

    fn write_parquet_file(
        &self,
        location: Url,
        data: DeltaResultIteratorStatic<Box<dyn EngineData>>,
    ) -> DeltaResult<()> {
        self.inner.write_parquet_file(location, data)
    }

    fn read_parquet_footer(&self, file: &FileMeta) -> DeltaResult<ParquetFooter> {
        self.seen();
        self.inner.read_parquet_footer(file)
    }

    fn read_parquet_footer_with_cancellation(
        &self,
        file: &FileMeta,
        cancellation_token: Option<CancellationTokenRef>,
    ) -> DeltaResult<ParquetFooter> {
        self.seen();
        self.inner
            .read_parquet_footer_with_cancellation(file, cancellation_token)
    }
}

struct CachedJson {
    inner: Arc<dyn JsonHandler>,
    cache: LogReadCache,
}

impl JsonHandler for CachedJson {
    fn parse_json(
        &self,
        json_strings: Box<dyn EngineData>,
        output_schema: SchemaRef,
    ) -> DeltaResult<Box<dyn EngineData>> {
        self.inner.parse_json(json_strings, output_schema)
    }

    fn read_json_files(
        &self,
        files: &[FileMeta],
        physical_schema: SchemaRef,
        predicate: Option<PredicateRef>,
    ) -> DeltaResult<FileDataReadResultIterator> {
        let mut parts: VecDeque<Part> = VecDeque::new();
        for file in files {
            let cached = Path::from_url_path(file.location.path())
                .ok()
                .and_then(|p| self.cache.cached_bytes(&p));
            match (cached, parts.back_mut()) {
                (Some(bytes), _) => parts.push_back(Part::Cached(file.location.to_string(), bytes)),
                (None, Some(Part::Delegated(run))) => run.push(file.clone()),
                (None, _) => parts.push_back(Part::Delegated(vec![file.clone()])),
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Cached(..))) {
            return self
                .inner
                .read_json_files(files, physical_schema, predicate);
        }
        let json_schema = Arc::new(json_arrow_schema(&physical_schema)?);
        Ok(Box::new(CachedRead {
            decoder: ReaderBuilder::new(json_schema)
                .with_batch_size(BATCH_ROWS)
                .with_coerce_primitive(true)
                .build_decoder()?,
            reorder: build_json_reorder_indices(&physical_schema)?,
            parts,
            current: Current::Idle,
            inner: self.inner.clone(),
            schema: physical_schema,
            predicate,
            failed: false,
        }))
    }

    fn write_json_file(
        &self,
        path: &Url,
        data: DeltaResultIterator<'_, FilteredEngineData>,
        overwrite: bool,
    ) -> DeltaResult<FileSize> {
        self.inner.write_json_file(path, data, overwrite)
    }
}

/// Files read in the order given: a cached file (its URL and bytes), or a run of files
/// delta-rs's engine reads.
enum Part {
    Cached(String, Bytes),
    Delegated(Vec<FileMeta>),
}

enum Current {
    Idle,
    Cached {
        location: String,
        bytes: Bytes,
        offset: usize,
    },
    Delegated(FileDataReadResultIterator),
}

/// The batches of the files of one `read_json_files` call, file after file and never two files
/// in one batch, as the kernel requires.
struct CachedRead {
    decoder: Decoder,
    reorder: Vec<ReorderIndex>,
    parts: VecDeque<Part>,
    current: Current,
    inner: Arc<dyn JsonHandler>,
    schema: SchemaRef,
    predicate: Option<PredicateRef>,
    failed: bool,
}

impl CachedRead {
    /// The next batch of the current cached file; `None` when the file ends without one.
    fn next_cached(&mut self) -> Option<DeltaResult<Box<dyn EngineData>>> {
        let Current::Cached {
            location,
            bytes,
            offset,
        } = &mut self.current
        else {
            return None;
        };
        let decoded = match self.decoder.decode(&bytes[*offset..]) {
            Ok(n) => n,
            Err(e) => return Some(Err(e.into())),
        };
        *offset += decoded;
        let done = *offset >= bytes.len();
        let batch = match self.decoder.flush() {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        let location = location.clone();
        if done {
            self.current = Current::Idle;
        } else if batch.is_none() {
            return Some(Err(delta_kernel::Error::generic(format!(
                "{location}: the JSON decoder stopped before the end of the file"
            ))));
        }
        Some(
            fixup_json_read(batch?, &self.reorder, &location)
                .map(|d| Box::new(d) as Box<dyn EngineData>),
        )
    }
}

impl Iterator for CachedRead {
    type Item = DeltaResult<Box<dyn EngineData>>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let item = match &mut self.current {
                Current::Idle => {
                    self.current = match self.parts.pop_front()? {
                        Part::Cached(location, bytes) => Current::Cached {
                            location,
                            bytes,
                            offset: 0,
                        },
                        Part::Delegated(files) => match self.inner.read_json_files(
                            &files,
                            self.schema.clone(),
                            self.predicate.clone(),
                        ) {
                            Ok(it) => Current::Delegated(it),
                            Err(e) => {
                                self.failed = true;
                                return Some(Err(e));
                            }
                        },
                    };
                    continue;
                }
                Current::Delegated(it) => match it.next() {
                    Some(item) => Some(item),
                    None => {
                        self.current = Current::Idle;
                        continue;
                    }
                },
                Current::Cached { .. } => self.next_cached(),
            };
            if let Some(Err(_)) = &item {
                self.failed = true;
            }
            if item.is_some() {
                return item;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_kernel::arrow::record_batch::RecordBatch;
    use delta_kernel::engine::arrow_data::ArrowEngineData;
    use deltalake::logstore::{StorageConfig, default_logstore};
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    fn add(i: usize) -> String {
        format!(
            r#"{{"add":{{"path":"k=v/p{i}.parquet","partitionValues":{{"k":"v"}},"size":{i},"modificationTime":1,"dataChange":true,"stats":"{{\"numRecords\":1}}"}}}}"#
        )
    }

    /// Commit bodies: protocol and metadata; 2,500 adds (three batches); empty; a remove and
    /// commit info with no final newline.
    fn bodies() -> Vec<String> {
        let first = [
            r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#.to_owned(),
            r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"k\",\"type\":\"string\",\"nullable\":true,\"metadata\":{}}]}","partitionColumns":["k"],"configuration":{},"createdTime":1}}"#.to_owned(),
            add(0),
        ];
        vec![
            first.join("\n") + "\n",
            (1..=2500).map(|i| add(i) + "\n").collect(),
            String::new(),
            r#"{"remove":{"path":"k=v/p0.parquet","deletionTimestamp":2,"dataChange":true}}
{"commitInfo":{"timestamp":2}}"#
                .to_owned(),
        ]
    }

    async fn fixture(bodies: &[String]) -> (LogReadCache, Arc<dyn JsonHandler>, Vec<FileMeta>) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut files = Vec::new();
        for (v, body) in bodies.iter().enumerate() {
            let name = format!("t/_delta_log/{v:020}.json");
            store
                .put(&Path::from(name.as_str()), PutPayload::from(body.clone()))
                .await
                .unwrap();
            let url = Url::parse(&format!("memory:///{name}")).unwrap();
            files.push(FileMeta::new(url, 1, body.len() as u64));
        }
        let cache = LogReadCache::new(store.clone(), Path::from("t/_delta_log"));
        let url = Url::parse("memory:///t/").unwrap();
        let log_store = default_logstore(
            store.clone(),
            Arc::new(cache.clone()),
            &url,
            &StorageConfig::default(),
        );
        let handler = log_store.engine(None).json_handler();
        (cache, handler, files)
    }

    /// Every batch (or the first error) the handler yields, read on a blocking thread as the
    /// kernel reads.
    async fn read(
        handler: Arc<dyn JsonHandler>,
        files: Vec<FileMeta>,
    ) -> Result<Vec<RecordBatch>, String> {
        tokio::task::spawn_blocking(move || {
            let schema = delta_kernel::actions::get_commit_schema().clone();
            let batches = handler
                .read_json_files(&files, schema, None)
                .map_err(|e| e.to_string())?;
            batches
                .map(|b| {
                    let data = ArrowEngineData::try_from_engine_data(b.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                    Ok(data.record_batch().clone())
                })
                .collect()
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_files_read_as_delta_rs_reads_them() {
        let (cache, default, files) = fixture(&bodies()).await;
        let expected = read(default.clone(), files.clone()).await.unwrap();
        assert_eq!(
            expected.len(),
            1 + 3 + 1,
            "one file's batches never mix with another's"
        );
        // Files 0 and 2 cached, 1 and 3 not: cached and delegated reads alternate, in order.
        for v in [0, 2] {
            let p = Path::from_url_path(files[v].location.path()).unwrap();
            cache.get(&p).await.unwrap();
            assert!(cache.cached_bytes(&p).is_some());
        }
        let cached: Arc<dyn JsonHandler> = Arc::new(CachedJson {
            inner: default.clone(),
            cache: cache.clone(),
        });
        assert_eq!(read(cached.clone(), files.clone()).await.unwrap(), expected);
        // File 1 is over the cache's file limit: it is always read by delta-rs's engine.
        cache.prefetch(3).await;
        for f in &files {
            let p = Path::from_url_path(f.location.path()).unwrap();
            let small = f.size <= super::super::log_reads::MAX_CACHED_FILE;
            assert_eq!(cache.cached_bytes(&p).is_some(), small, "{p}");
        }
        assert_eq!(read(cached, files).await.unwrap(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_truncated_commit_fails_as_it_does_for_delta_rs() {
        let mut b = bodies();
        b[1] = add(1) + "\n" + r#"{"add":{"path":"k=v/cut"#;
        let (cache, default, files) = fixture(&b).await;
        assert!(read(default.clone(), files.clone()).await.is_err());
        cache.prefetch(3).await;
        let cached: Arc<dyn JsonHandler> = Arc::new(CachedJson {
            inner: default,
            cache,
        });
        assert!(read(cached, files).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefetch_starts_after_the_newest_checkpoint_at_or_below_the_version() {
        let (cache, _, files) = fixture(&bodies()).await;
        let store = cache.clone();
        store
            .put(
                &Path::from("t/_delta_log/00000000000000000001.checkpoint.parquet"),
                PutPayload::from("p"),
            )
            .await
            .unwrap();
        let cache = LogReadCache::new(Arc::new(store), Path::from("t/_delta_log"));
        cache.prefetch(2).await;
        let kept: Vec<bool> = files
            .iter()
            .map(|f| {
                let p = Path::from_url_path(f.location.path()).unwrap();
                cache.cached_bytes(&p).is_some()
            })
            .collect();
        assert_eq!(kept, [false, false, true, false]);
    }
}
