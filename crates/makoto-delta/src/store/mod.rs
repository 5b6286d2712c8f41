//! The attestation store: the Delta tables `system.makoto.attestations` and
//! `system.makoto.files` under a warehouse, and the state-tree pages beside them.

mod columns;
mod group;
mod lookup;
mod rows;

use std::sync::Arc;

use datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};

pub use rows::{AttestationRow, FileRow, RunRow, VerificationRow, WindowRow};

use crate::Error;
use crate::location::{Location, StorageOptions};
use crate::pages::PageStore;
use columns::{SystemRow, delta_fields, to_batch};
use lookup::RowKey;
use makoto_core::Sha256Digest;
use rows::{ATTESTATION_COLUMNS, FILE_COLUMNS, RUN_COLUMNS, VERIFICATION_COLUMNS, WINDOW_COLUMNS};

/// SQL name of the attestations table.
pub const ATTESTATIONS_TABLE: &str = "system.makoto.attestations";
/// SQL name of the per-file digests table.
pub const FILES_TABLE: &str = "system.makoto.files";

/// Path of the attestations table under the warehouse.
pub const ATTESTATIONS_PATH: &str = "system/makoto/attestations";
/// Path of the files table under the warehouse.
pub const FILES_PATH: &str = "system/makoto/files";
/// SQL name of the verification records table.
pub const VERIFICATIONS_TABLE: &str = "system.makoto.verifications";
/// Path of the verification records table under the warehouse.
pub const VERIFICATIONS_PATH: &str = "system/makoto/verifications";
/// SQL name of the stream-window attestations table.
pub const WINDOWS_TABLE: &str = "system.makoto.windows";
/// Path of the stream-window attestations table under the warehouse.
pub const WINDOWS_PATH: &str = "system/makoto/windows";
/// SQL name of the table of `makoto serve` runs.
pub const RUNS_TABLE: &str = "system.makoto.runs";
/// Path of the runs table under the warehouse.
pub const RUNS_PATH: &str = "system/makoto/runs";

/// How often a blind append (run and verification records) is written again after losing its
/// commit to a conflicting one.
const BLIND_APPEND_ATTEMPTS: u32 = 4;

/// Prefix of the windows' leaf-hash lists (content-addressed by Merkle root).
pub const WINDOW_LEAVES_PATH: &str = "system/makoto/window-leaves";

/// `txn.appId` recording the last window sequence of a table and spec.
pub fn windows_app_id(table_uri: &str, spec: &str) -> String {
    format!("makoto.windows:{spec}:{table_uri}")
}

pub fn window_columns() -> Vec<ColumnDoc> {
    docs(WINDOW_COLUMNS)
}

/// `delta.checkpointInterval` of the system tables. Every run opens them, and opening costs a
/// replay of the commits since the last checkpoint (one or two per run): checkpointing every
/// 10 commits keeps that replay short (docs/performance.md).
pub const SYSTEM_CHECKPOINT_INTERVAL: &str = "10";

/// `delta.deletedFileRetentionDuration` of the system tables. Every compaction leaves a
/// tombstone (`remove`) per file it merged, and checkpoints carry tombstones until they expire
/// (a week by Delta's default); every run reads the newest checkpoint several times. Under
/// `makoto serve` the system tables' checkpoints held 4,213 tombstones after 8 minutes
/// (docs/performance.md (i)); an hour bounds them. It is also the shortest retention a
/// VACUUM that enforces the table's retention (delta-rs's default) accepts on a system table
/// (docs/operations.md).
pub const SYSTEM_DELETED_FILE_RETENTION: &str = "interval 1 hours";

/// `delta.logRetentionDuration` of the system tables. Their log is listed whenever a snapshot
/// of them is loaded or brought forward, and on a local file system a listing reads the whole
/// directory. With Delta's default of 30 days the attestations table's `_delta_log/` held
/// 20,111 entries after 90 minutes of `makoto serve`, and listing it took 39 % of the
/// service's CPU (docs/performance.md (i)). makoto reads its system tables at their newest
/// version only; a run loads them again just before it commits, and one whose load is older
/// than this by then is told to start again (a conflict, in `append`).
pub const SYSTEM_LOG_RETENTION: &str = "interval 1 hours";

/// A log and tombstone retention an operator gives the system tables (`makoto maintain
/// --retention`): at least [`SystemRetention::MIN`], so that the seconds between a run's last
/// load of a system table and its commit stay well inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemRetention(std::time::Duration);

impl SystemRetention {
    pub const MIN: std::time::Duration = std::time::Duration::from_secs(60);

    /// `None` when `d` is shorter than [`SystemRetention::MIN`].
    pub fn new(d: std::time::Duration) -> Option<Self> {
        (d >= Self::MIN).then_some(Self(d))
    }

    /// The Delta table property value: `interval N seconds`.
    pub fn interval(&self) -> String {
        format!("interval {} seconds", self.0.as_secs())
    }
}

/// The table properties every system table is created with, and given once if it lacks them.
fn system_properties() -> [(deltalake::TableProperty, &'static str); 3] {
    [
        (
            deltalake::TableProperty::CheckpointInterval,
            SYSTEM_CHECKPOINT_INTERVAL,
        ),
        (
            deltalake::TableProperty::DeletedFileRetentionDuration,
            SYSTEM_DELETED_FILE_RETENTION,
        ),
        (
            deltalake::TableProperty::LogRetentionDuration,
            SYSTEM_LOG_RETENTION,
        ),
    ]
}

/// [`system_properties`] as a table configuration (`CreateBuilder::with_configuration`).
fn system_configuration() -> impl Iterator<Item = (String, Option<String>)> {
    system_properties()
        .into_iter()
        .map(|(key, value)| (key.as_ref().to_owned(), Some(value.to_owned())))
}

/// Files smaller than [`SYSTEM_COMPACT_TARGET`] a system table may hold before the writing run
/// compacts them. A scheduled run adds one or two small files; without compaction every
/// later open, checkpoint and scan grows with the number of runs.
pub const SYSTEM_COMPACT_AT: usize = 32;

/// Target size of a compacted system-table file (bytes).
pub const SYSTEM_COMPACT_TARGET: u64 = 8 << 20;

/// Largest Parquet row group (estimated encoded bytes) in the files system tables are written
/// with, by appends and by compaction. A Parquet reader holds a whole row group of the columns
/// it reads at once, and compaction reads files of up to [`SYSTEM_COMPACT_TARGET`]: with one
/// row group per file, each compaction held more than the last, and the service's memory
/// followed (docs/performance.md (i)).
pub const SYSTEM_ROW_GROUP_BYTES: usize = 1 << 20;

/// The Delta set-transaction id every compaction of a system table commits, so that two
/// concurrent compactions conflict instead of both committing.
pub const COMPACTION_APP_ID: &str = "makoto-compaction";

/// How long a claim to compact a system table keeps other runs from compacting it: far longer
/// than compacting [`SYSTEM_COMPACT_AT`] small files takes, so that a claim only lapses when
/// the run that made it died.
pub const COMPACTION_LEASE_MS: i64 = 10 * 60 * 1000;

/// Prefix of the state-tree pages under the warehouse.
pub const STATE_PAGES_PATH: &str = "system/makoto/state";

/// `txn.appId` recording, in the attestations table, the last attested version of a table.
pub fn attestations_app_id(table_uri: &str) -> String {
    format!("makoto.attestations:{table_uri}")
}

/// `txn.appId` recording, in the files table, the last version whose file rows were written.
pub fn files_app_id(table_uri: &str) -> String {
    format!("makoto.files:{table_uri}")
}

/// Column name, type and meaning, for documentation and the SQL layer.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDoc {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub nullable: bool,
    pub doc: &'static str,
}

fn docs(cols: &[columns::Col]) -> Vec<ColumnDoc> {
    cols.iter()
        .map(|c| ColumnDoc {
            name: c.name,
            sql_type: c.kind.sql_type(),
            nullable: c.nullable,
            doc: c.doc,
        })
        .collect()
}

/// The columns of `system.makoto.attestations`.
pub fn attestation_columns() -> Vec<ColumnDoc> {
    docs(ATTESTATION_COLUMNS)
}

/// The columns of `system.makoto.files`.
pub fn file_columns() -> Vec<ColumnDoc> {
    docs(FILE_COLUMNS)
}

/// The columns of `system.makoto.verifications`.
/// An empty batch with the schema of `system.makoto.verifications`, for readers of a warehouse
/// where no verification was recorded yet.
pub fn empty_verifications() -> Result<arrow::array::RecordBatch, Error> {
    to_batch::<VerificationRow>(&[]).map_err(|e| Error::StoreCorrupt {
        store: VERIFICATIONS_TABLE.into(),
        reason: format!("cannot build the schema: {e}"),
    })
}

/// The columns of `system.makoto.runs`.
pub fn run_columns() -> Vec<ColumnDoc> {
    docs(RUN_COLUMNS)
}

/// An empty batch with the schema of `system.makoto.runs`.
pub fn empty_runs() -> Result<arrow::array::RecordBatch, Error> {
    to_batch::<RunRow>(&[]).map_err(|e| Error::StoreCorrupt {
        store: RUNS_TABLE.into(),
        reason: format!("cannot build the schema: {e}"),
    })
}

/// An empty batch with the schema of `system.makoto.windows`.
pub fn empty_windows() -> Result<arrow::array::RecordBatch, Error> {
    to_batch::<WindowRow>(&[]).map_err(|e| Error::StoreCorrupt {
        store: WINDOWS_TABLE.into(),
        reason: format!("cannot build the schema: {e}"),
    })
}

/// Whether `location` holds a Delta log: any file under `_delta_log/`.
pub async fn has_delta_log(location: &Location, options: &StorageOptions) -> Result<bool, Error> {
    use futures::TryStreamExt;
    if let Some(dir) = location.local_dir() {
        // The object store's local listing reads and `stat`s a whole chunk of entries before
        // it yields the first (three `stat`s each), so a system table's growing log made every
        // run slower; this stops at the first file.
        let log = dir.join("_delta_log");
        return tokio::task::spawn_blocking(move || holds_a_file(&log))
            .await
            .map_err(|e| Error::Task {
                reason: e.to_string(),
            })?
            .map_err(|e| Error::local_io(format!("{location}/_delta_log"), e));
    }
    let store = location.object_store(options)?;
    let prefix = object_store::path::Path::from("_delta_log");
    let mut listing = store.list(Some(&prefix));
    match listing.try_next().await {
        Ok(first) => Ok(first.is_some()),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::storage(format!("{location}/_delta_log"), e)),
    }
}

/// The commit properties of every system-table write. delta-rs's expired-log cleanup is off:
/// it runs after every commit and lists (and `stat`s) the table's whole log each time, so
/// every run of a warehouse cost more than the one before. It runs at checkpoints instead
/// ([`cleanup_at_checkpoint`]).
pub(crate) fn system_commit() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

/// Writer properties of system-table files: `compression` (Snappy for appends; ZSTD level 1
/// for OPTIMIZE, below delta-rs's level 4: compaction rewrites the growing compacted file each
/// time, and the envelopes it is mostly made of compress about as well at level 1), row groups
/// of at most [`SYSTEM_ROW_GROUP_BYTES`], and no dictionary encoding.
pub(crate) fn system_writer_properties(compression: Compression) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_bytes(Some(SYSTEM_ROW_GROUP_BYTES))
        .set_dictionary_enabled(false)
        .build()
}

/// A task that is stopped when its handle is dropped (the caller returned early, or was
/// itself dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<Result<T, Error>> {
    async fn join(mut self, what: &str) -> Result<T, Error> {
        (&mut self.0).await.unwrap_or_else(|e| {
            Err(Error::Task {
                reason: format!("{what}: {e}"),
            })
        })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Appends `batches` to `table` in one Delta commit made with `props` and `metadata` (entries
/// of its `commitInfo`), and returns the table at that commit. The rows go to new Parquet files
/// through delta-rs's `RecordBatchWriter` (file statistics as its write operation collects
/// them, files rolled at the table's `delta.targetFileSize`); the commit is a `WRITE` in append
/// mode with the `operationMetrics` that operation records. Unlike that operation it plans no
/// DataFusion query: planning two of them was about a fifth of the time of a run that attests
/// one commit (`docs/performance.md`, section (d)).
pub(crate) async fn append_batches(
    table: &DeltaTable,
    batches: &[arrow::array::RecordBatch],
    compression: Compression,
    props: CommitProperties,
    metadata: Vec<(String, serde_json::Value)>,
) -> Result<DeltaTable, DeltaTableError> {
    use deltalake::kernel::Action;
    use deltalake::operations::write::WriteMetrics;
    use deltalake::table::config::TablePropertiesExt;
    use deltalake::writer::{DeltaWriter, RecordBatchWriter};

    let started = std::time::Instant::now();
    let snapshot = table.snapshot()?;
    let mut writer = RecordBatchWriter::for_table(table)?
        .with_writer_properties(system_writer_properties(compression))
        .with_target_file_size(snapshot.table_config().target_file_size().get());
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        writer.write(batch.clone()).await?;
    }
    let actions: Vec<Action> = writer.flush().await?.into_iter().map(Action::Add).collect();
    let metrics = WriteMetrics {
        num_added_files: actions.len(),
        num_added_rows: batches.iter().map(|b| b.num_rows()).sum(),
        execution_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..WriteMetrics::default()
    };
    let mut metadata = metadata;
    metadata.push((
        "operationMetrics".to_owned(),
        serde_json::to_value(&metrics).map_err(|e| DeltaTableError::Generic(e.to_string()))?,
    ));
    let operation = deltalake::protocol::DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let committed =
        deltalake::kernel::transaction::CommitBuilder::from(props.with_metadata(metadata))
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await?;
    let mut table = table.clone();
    table.state = Some(committed.snapshot);
    Ok(table)
}

/// Delta's expired-log cleanup, when `table`'s version is one delta-rs wrote a checkpoint at
/// (the version after which the table's `delta.checkpointInterval` commits are complete), as
/// the Delta protocol describes it: at each checkpoint, log entries older than
/// `delta.logRetentionDuration` (30 days unless set) are removed, and only entries that the
/// checkpoint makes unnecessary. Best effort: a failure is logged and retried at the next
/// checkpoint.
async fn cleanup_at_checkpoint(table: &DeltaTable, location: &Location) {
    use deltalake::table::config::TablePropertiesExt;
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    let config = snapshot.table_config();
    let at_checkpoint = (snapshot.version() + 1).is_multiple_of(config.checkpoint_interval().get());
    if !at_checkpoint || !config.enable_expired_log_cleanup() {
        return;
    }
    if let Err(e) = deltalake::checkpoints::cleanup_metadata(table, None).await {
        tracing::warn!(table = %location.as_uri(), error = %e, "expired log entries not cleaned up");
    }
}

/// Whether `dir` or a directory under it holds a file (symbolic links followed, broken ones
/// ignored, as the object store lists them). A missing `dir` holds none.
fn holds_a_file(dir: &std::path::Path) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let kind = if kind.is_symlink() {
            match std::fs::metadata(entry.path()) {
                Ok(target) => target.file_type(),
                Err(_) => continue,
            }
        } else {
            kind
        };
        if kind.is_file() {
            return Ok(true);
        }
        // Only real directories are descended into: a linked one could loop.
        if kind.is_dir() && !entry.file_type()?.is_symlink() {
            subdirs.push(entry.path());
        }
    }
    for sub in subdirs {
        if holds_a_file(&sub)? {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn verification_columns() -> Vec<ColumnDoc> {
    docs(VERIFICATION_COLUMNS)
}

/// Result of an idempotent append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Committed {
        table_version: u64,
    },
    /// Another writer recorded the same application transaction first.
    Conflict,
}

/// Handle on the system tables of one warehouse.
#[derive(Debug, Clone)]
pub struct AttestationStore {
    warehouse: Location,
    options: StorageOptions,
    attestations: Location,
    files: Location,
    verifications: Location,
    windows: Location,
    runs: Location,
    pages: PageStore,
    leaves: PageStore,
    /// One DataFusion session for every query on the system tables of this handle (and its
    /// clones), made on first use.
    session: QuerySession,
    /// The last snapshots of the attestations and files tables, brought forward by reading
    /// only the commits since (shared with clones).
    snapshots: Snapshots,
}

/// Loaded system tables kept between loads. A load takes the kept table and applies the
/// commits written since, instead of reading the last checkpoint and replaying the log every
/// time: a long-running service loads these tables several times per attest run.
/// Correctness does not rest on freshness: every append is checked against the snapshot it
/// was made from, and Delta's conflict check covers the commits after it.
#[derive(Clone, Default)]
struct Snapshots {
    attestations: Arc<tokio::sync::Mutex<Option<DeltaTable>>>,
    files: Arc<tokio::sync::Mutex<Option<DeltaTable>>>,
    /// Appends waiting to be committed together, per table written with a `txn`.
    queues: Arc<Queues>,
    /// `txn` versions looked up on the kept snapshots.
    txns: Arc<std::sync::Mutex<TxnMemo>>,
}

/// `txn` versions by (table, table version, application id). A Delta version never changes
/// once written, so an answer holds for its version: a run that checks an application id and
/// then appends from the same snapshot replays the log for it once.
#[derive(Default)]
struct TxnMemo {
    versions: std::collections::HashMap<(String, u64, String), Option<i64>>,
}

/// How many answers [`TxnMemo`] holds before it starts again.
const TXN_MEMO_ENTRIES: usize = 4096;

/// A `txn` lookup's answer as the table version it records (negative versions are none).
fn attested_through(
    table: &DeltaTable,
    looked_up: Result<Option<i64>, DeltaTableError>,
) -> Result<Option<u64>, Error> {
    let v = looked_up.map_err(|e| Error::delta(table.table_url().as_str(), e))?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

#[derive(Debug, Default)]
struct Queues {
    attestations: group::CommitQueue,
    files: group::CommitQueue,
    windows: group::CommitQueue,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshots")
    }
}

/// A DataFusion session for the system tables, without DataFusion's session-long caches. A
/// store handle lives as long as `makoto serve`, and those caches (Parquet footers up to
/// 50 MiB, file statistics up to 20 MiB, listings up to 1 MiB by default) fill slowly with the
/// footers of files that compaction soon replaces: memory that grows for hours, for lookups
/// that mostly do not go through DataFusion ([`lookup`]).
fn query_session() -> Result<SessionContext, datafusion::error::DataFusionError> {
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_metadata_cache_limit(0)
        .with_file_statistics_cache_limit(0)
        .with_object_list_cache_limit(0)
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(
        datafusion::prelude::SessionConfig::new(),
        runtime,
    ))
}

/// The DataFusion session shared by a store handle and its clones.
#[derive(Clone, Default)]
struct QuerySession(Arc<std::sync::OnceLock<SessionContext>>);

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuerySession")
    }
}

/// What [`AttestationStore::maintain`] did to one system table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintainedTable {
    pub table: &'static str,
    /// Live data files before and after compaction.
    pub files_before: usize,
    pub files_after: usize,
    /// The table version a checkpoint was written for.
    pub checkpoint_version: Option<u64>,
}

/// The declared columns `table`'s schema does not have.
fn missing_columns(table: &DeltaTable, cols: &[columns::Col]) -> Vec<columns::Col> {
    let Ok(snapshot) = table.snapshot() else {
        return Vec::new();
    };
    let schema = snapshot.schema();
    cols.iter()
        .filter(|c| schema.field(c.name).is_none())
        .copied()
        .collect()
}

impl AttestationStore {
    /// Compacts every system table's small files (as runs do once 32 pile up, here from 2) and
    /// writes a checkpoint of each: what `makoto maintain` does. Rows only move between
    /// files; nothing is deleted from storage, and every earlier version stays readable.
    /// Tables that do not exist yet are skipped.
    pub async fn maintain(&self) -> Result<Vec<MaintainedTable>, Error> {
        let tables = self.system_tables();
        let count = |t: &DeltaTable| t.snapshot().map_or(0, |s| s.log_data().iter().count());
        let mut out = Vec::new();
        for (name, location) in tables {
            if !self.has_log(location).await? {
                continue;
            }
            let table = self.load(location).await?;
            let files_before = count(&table);
            Self::compact_at(table, location, 2, chrono::Utc::now().timestamp_millis()).await;
            let table = self.load(location).await?;
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(|e| Error::delta(location.as_uri(), e))?;
            out.push(MaintainedTable {
                table: name,
                files_before,
                files_after: count(&table),
                checkpoint_version: table.version(),
            });
        }
        Ok(out)
    }

    /// Sets `delta.logRetentionDuration` and `delta.deletedFileRetentionDuration` of every
    /// system table that exists to `retention`: one metadata commit for each table that had
    /// other values, none for the rest. Returns the tables it changed. No rows are touched; the
    /// shorter retention takes effect at the tables' next checkpoints.
    pub async fn set_retention(
        &self,
        retention: SystemRetention,
    ) -> Result<Vec<&'static str>, Error> {
        let value = retention.interval();
        let mut changed = Vec::new();
        for (name, location) in self.system_tables() {
            if !self.has_log(location).await? {
                continue;
            }
            let table = self.load(location).await?;
            let snapshot = table
                .snapshot()
                .map_err(|e| Error::delta(location.as_uri(), e))?;
            let configuration = snapshot.metadata().configuration();
            let wanted: std::collections::HashMap<String, String> = [
                deltalake::TableProperty::LogRetentionDuration,
                deltalake::TableProperty::DeletedFileRetentionDuration,
            ]
            .iter()
            .filter(|key| configuration.get(key.as_ref()) != Some(&value))
            .map(|key| (key.as_ref().to_owned(), value.clone()))
            .collect();
            if wanted.is_empty() {
                continue;
            }
            table
                .set_tbl_properties()
                .with_properties(wanted)
                .with_commit_properties(system_commit())
                .await
                .map_err(|e| Error::delta(location.as_uri(), e))?;
            changed.push(name);
        }
        Ok(changed)
    }

    fn system_tables(&self) -> [(&'static str, &Location); 5] {
        [
            ("attestations", &self.attestations),
            ("files", &self.files),
            ("verifications", &self.verifications),
            ("windows", &self.windows),
            ("runs", &self.runs),
        ]
    }

    /// Opens the store of a warehouse that must already hold attestations (every command that
    /// only reads: verify, check, prove, dbom, head, sql). Creates nothing: a warehouse without
    /// `system/makoto/attestations` (a mistyped URI, an empty bucket) is an error naming it.
    pub async fn open_existing(
        warehouse: Location,
        options: StorageOptions,
    ) -> Result<Self, Error> {
        let store = Self::handle(warehouse, options)?;
        if !store.has_log(&store.attestations).await? {
            return Err(Error::WarehouseNotFound {
                warehouse: store.warehouse.as_uri(),
            });
        }
        Ok(store)
    }

    /// Opens the store, creating the system tables if they do not exist (attest, transform,
    /// recording Kafka windows).
    ///
    /// The snapshots loaded here are kept, so the run that follows brings them forward rather
    /// than loading them again. The two tables are loaded at once, the files table on a task of
    /// its own: each load is mostly CPU (the checkpoint and the commits after it), and loading
    /// them one after the other took about a tenth of a run that attests one commit.
    pub async fn create(warehouse: Location, options: StorageOptions) -> Result<Self, Error> {
        let store = Self::handle(warehouse, options)?;
        let other = store.clone();
        let files = AbortOnDrop(tokio::spawn(async move {
            other
                .ensure_table(&other.files, FILE_COLUMNS, "files",
                    "Makoto per-file digests: every file added, removed or written as change data by an attested commit.")
                .await
        }));
        let attestations = store
            .ensure_table(
                &store.attestations,
                ATTESTATION_COLUMNS,
                "attestations",
                "Makoto attestations: one signed in-toto statement per attested Delta commit.",
            )
            .await?;
        *store.snapshots.attestations.lock().await = attestations;
        let files = files.join("loading the files table").await?;
        *store.snapshots.files.lock().await = files;
        Ok(store)
    }

    fn handle(warehouse: Location, options: StorageOptions) -> Result<Self, Error> {
        let attestations = warehouse.join(ATTESTATIONS_PATH)?;
        let files = warehouse.join(FILES_PATH)?;
        let verifications = warehouse.join(VERIFICATIONS_PATH)?;
        let windows = warehouse.join(WINDOWS_PATH)?;
        let runs = warehouse.join(RUNS_PATH)?;
        let leaves = PageStore::new(
            warehouse.object_store(&options)?,
            WINDOW_LEAVES_PATH,
            format!("{}/{WINDOW_LEAVES_PATH}", warehouse.as_uri()),
        );
        let pages = PageStore::new(
            warehouse.object_store(&options)?,
            STATE_PAGES_PATH,
            format!("{}/{STATE_PAGES_PATH}", warehouse.as_uri()),
        );
        Ok(AttestationStore {
            warehouse,
            options,
            attestations,
            files,
            verifications,
            windows,
            runs,
            pages,
            leaves,
            session: QuerySession::default(),
            snapshots: Snapshots::default(),
        })
    }

    pub fn warehouse(&self) -> &Location {
        &self.warehouse
    }
    pub fn options(&self) -> &StorageOptions {
        &self.options
    }
    pub fn attestations_location(&self) -> &Location {
        &self.attestations
    }
    pub fn files_location(&self) -> &Location {
        &self.files
    }
    pub fn pages(&self) -> &PageStore {
        &self.pages
    }

    pub fn windows_location(&self) -> &Location {
        &self.windows
    }

    /// Window rows of `table_uri` (all specs), by spec and sequence; none before the first.
    pub async fn window_rows(&self, table_uri: &str) -> Result<Vec<WindowRow>, Error> {
        let mut rows = self
            .rows_of_table::<WindowRow>(&self.windows, table_uri)
            .await?;
        rows.sort_by(|a, b| (&a.spec, a.sequence).cmp(&(&b.spec, b.sequence)));
        Ok(rows)
    }

    /// The windows table, created on first use.
    pub async fn load_windows(&self) -> Result<DeltaTable, Error> {
        self.ensured(
            &self.windows,
            WINDOW_COLUMNS,
            "windows",
            "Makoto stream windows: one signed stream-window/v1 statement per closed window of appended records.",
        )
        .await
    }

    /// Appends window rows, recording `through` as the last sequence of `(table_uri, spec)`.
    pub async fn append_windows(
        &self,
        table: DeltaTable,
        rows: &[WindowRow],
        table_uri: &str,
        spec: &str,
        through: u64,
        run_id: &str,
    ) -> Result<AppendOutcome, Error> {
        let txn = Transaction::new(windows_app_id(table_uri, spec), through as i64);
        self.append(table, &self.windows, rows, txn, run_id).await
    }

    /// Stores the leaf hashes of a window (32 bytes each, in order) under its Merkle root.
    pub async fn put_window_leaves(
        &self,
        root: Sha256Digest,
        leaves: &[Sha256Digest],
    ) -> Result<(), Error> {
        let bytes: Vec<u8> = leaves.iter().flat_map(|l| *l.as_bytes()).collect();
        self.leaves.put_each([(root, bytes)]).await.map(|_| ())
    }

    /// The leaf hashes stored for `root`, checked against it; `None` when absent or not
    /// matching (a leaf list is only a cache, the signed root is what counts).
    pub async fn window_leaves(&self, root: Sha256Digest) -> Option<Vec<Sha256Digest>> {
        let bytes = self.leaves.get(&root).await.ok()?;
        if bytes.len() % 32 != 0 {
            return None;
        }
        let leaves: Vec<Sha256Digest> = bytes
            .chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok())
            .map(Sha256Digest::from_bytes)
            .collect();
        (makoto_core::merkle::root(&leaves) == root).then_some(leaves)
    }

    /// Verification records of `table_uri` (none when the table does not exist yet).
    pub async fn verification_rows(&self, table_uri: &str) -> Result<Vec<VerificationRow>, Error> {
        let mut rows = self
            .rows_of_table::<VerificationRow>(&self.verifications, table_uri)
            .await?;
        rows.sort_by_key(|r| (r.version, r.verified_at_us));
        Ok(rows)
    }

    /// Run records of `table_uri`, oldest first (none before the first).
    pub async fn run_rows(&self, table_uri: &str) -> Result<Vec<RunRow>, Error> {
        let mut rows = self.rows_of_table::<RunRow>(&self.runs, table_uri).await?;
        rows.sort_by_key(|r| (r.finished_at_us, r.started_at_us));
        Ok(rows)
    }

    /// Appends run records in one commit, creating the table on first use.
    pub async fn append_runs(&self, rows: &[RunRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let table = self
            .ensured(
                &self.runs,
                RUN_COLUMNS,
                "runs",
                "makoto serve runs: one row per attest run that attested something or failed.",
            )
            .await?;
        let batch = to_batch(rows).map_err(|e| Error::StoreCorrupt {
            store: self.runs.as_uri(),
            reason: format!("cannot build rows: {e}"),
        })?;
        self.append_blind(&self.runs, table, batch).await
    }

    /// Appends a verification record, creating the table on first use.
    pub async fn append_verification(&self, row: &VerificationRow) -> Result<(), Error> {
        let table = self
            .ensured(
                &self.verifications,
                VERIFICATION_COLUMNS,
                "verifications",
                "Makoto verification records: one row per makoto verify run.",
            )
            .await?;
        let batch = to_batch(std::slice::from_ref(row)).map_err(|e| Error::StoreCorrupt {
            store: self.verifications.as_uri(),
            reason: format!("cannot build rows: {e}"),
        })?;
        self.append_blind(&self.verifications, table, batch).await
    }

    /// The system table at `location` at its latest version, created first when missing.
    async fn ensured(
        &self,
        location: &Location,
        cols: &[columns::Col],
        name: &str,
        comment: &str,
    ) -> Result<DeltaTable, Error> {
        match self.ensure_table(location, cols, name, comment).await? {
            Some(mut table) => {
                table
                    .update_incremental(None)
                    .await
                    .map_err(|e| Error::delta(location.as_uri(), e))?;
                Ok(table)
            }
            None => self.load(location).await,
        }
    }

    /// Loads the system table at `location`, adding columns it lacks, or creates it. Returns the
    /// loaded table (possibly a version behind, when this run just gave it its
    /// [`system_properties`]); `None` when it was created.
    async fn ensure_table(
        &self,
        location: &Location,
        cols: &[columns::Col],
        name: &str,
        comment: &str,
    ) -> Result<Option<DeltaTable>, Error> {
        if location.is_local()
            && let Ok(dir) = location.url().to_file_path()
        {
            std::fs::create_dir_all(&dir).map_err(|e| Error::InvalidLocation {
                input: location.as_uri(),
                reason: format!("cannot create directory: {e}"),
            })?;
        }
        // Loading first (rather than listing the log, then loading) saves a listing of the log
        // on every run; only a missing table is created.
        let mut table = location.delta_table(&self.options)?;
        match table.load().await {
            Ok(()) => {
                let table = Self::migrate(table, location, cols).await?;
                Self::set_system_properties(table.clone(), location).await;
                Ok(Some(table))
            }
            Err(DeltaTableError::NotATable(_)) => self
                .create_table(location, cols, name, comment)
                .await
                .map(|()| None),
            Err(e) => Err(Error::delta(location.as_uri(), e)),
        }
    }

    /// Appends `batch` to a system table whose rows carry no `txn` (run records, verification
    /// records), from `table`. A commit conflict (an operator's metadata change landing after
    /// the load) means nothing of the attempt landed: the newest snapshot is loaded and the
    /// rows written again, up to [`BLIND_APPEND_ATTEMPTS`] times.
    async fn append_blind(
        &self,
        location: &Location,
        mut table: DeltaTable,
        batch: arrow::array::RecordBatch,
    ) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            let written = append_batches(
                &table,
                std::slice::from_ref(&batch),
                Compression::SNAPPY,
                system_commit(),
                Vec::new(),
            )
            .await;
            match written {
                Ok(written) => {
                    Self::after_commit(written, location).await;
                    return Ok(());
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_),
                }) if attempt < BLIND_APPEND_ATTEMPTS => {
                    attempt += 1;
                    table = self.load(location).await?;
                }
                Err(e) => return Err(Error::delta(location.as_uri(), e)),
            }
        }
    }

    /// What follows every system-table commit: the expired-log cleanup when the commit wrote
    /// a checkpoint, then compaction when small files have piled up.
    async fn after_commit(table: DeltaTable, location: &Location) {
        cleanup_at_checkpoint(&table, location).await;
        Self::compact(table, location).await;
    }

    /// Rewrites the small files of a system table into larger ones once there are
    /// [`SYSTEM_COMPACT_AT`] of them (Delta OPTIMIZE: rows move between files, `dataChange`
    /// false, nothing is deleted from storage, every `txn` and earlier version stays readable).
    /// Best effort: a compaction that cannot claim the table or loses a race is skipped.
    async fn compact(table: DeltaTable, location: &Location) {
        Self::compact_at(
            table,
            location,
            SYSTEM_COMPACT_AT,
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
    }

    /// [`AttestationStore::compact`] once `at` small files pile up, at time `now_ms`.
    ///
    /// Two compactions of the same files must never both commit: Delta's conflict check
    /// ignores removes with `dataChange` false, so both would succeed and every row would be
    /// there twice. A run therefore first claims the table: one commit of the set transaction
    /// [`COMPACTION_APP_ID`], made from the snapshot it read, whose version is
    /// `2 × claim time in ms + 1`; when done it commits the next, even, version to release it.
    /// Of two runs claiming from the same snapshot the second fails as a concurrent
    /// transaction, and a run that reads an odd version younger than [`COMPACTION_LEASE_MS`]
    /// does not try. Only the claiming run compacts.
    async fn compact_at(table: DeltaTable, location: &Location, at: usize, now_ms: i64) {
        let Ok(snapshot) = table.snapshot() else {
            return;
        };
        let small = snapshot
            .log_data()
            .iter()
            .filter(|f| u64::try_from(f.size()).is_ok_and(|b| b < SYSTEM_COMPACT_TARGET))
            .count();
        if small < at {
            return;
        }
        let claimed = snapshot
            .transaction_version(table.log_store().as_ref(), COMPACTION_APP_ID)
            .await;
        let held = |v: i64| v % 2 == 1 && now_ms.saturating_sub(v / 2) < COMPACTION_LEASE_MS;
        match claimed {
            Ok(Some(v)) if held(v) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let claim_version = now_ms.saturating_mul(2).saturating_add(1);
        // Retried past other runs' appends (they carry other transaction ids); another claim
        // in between is a conflict.
        if let Err(e) = Self::commit_compaction_txn(&table, claim_version).await {
            tracing::debug!(table = %location.as_uri(), error = %e, "another run claimed the compaction");
            return;
        }
        let Ok(table) = Self::reload(table).await else {
            return;
        };
        let Some(target) = std::num::NonZeroU64::new(SYSTEM_COMPACT_TARGET) else {
            return;
        };
        let after = table.clone();
        match table
            .optimize()
            .with_type(deltalake::operations::optimize::OptimizeType::Compact)
            .with_target_size(target)
            .with_writer_properties(system_writer_properties(
                ZstdLevel::try_new(1).map_or(Compression::SNAPPY, Compression::ZSTD),
            ))
            .with_commit_properties(system_commit())
            .await
        {
            Ok((_, m)) => tracing::debug!(
                table = %location.as_uri(),
                removed = m.num_files_removed,
                added = m.num_files_added,
                "compacted"
            ),
            Err(DeltaTableError::Transaction { source }) => {
                tracing::debug!(table = %location.as_uri(), error = %source, "compaction lost a race")
            }
            Err(e) => {
                tracing::warn!(table = %location.as_uri(), error = %e, "compaction skipped")
            }
        }
        // Released, unless another run's commit on this id came first (then the claim lapses).
        let Ok(table) = Self::reload(after).await else {
            return;
        };
        if let Err(e) = Self::commit_compaction_txn(&table, claim_version.saturating_add(1)).await {
            tracing::debug!(table = %location.as_uri(), error = %e, "compaction claim not released");
        }
    }

    /// A commit of the set transaction [`COMPACTION_APP_ID`] at `version` and nothing else,
    /// made from `table`'s snapshot: a claim (odd version) or its release (even).
    async fn commit_compaction_txn(
        table: &DeltaTable,
        version: i64,
    ) -> Result<(), DeltaTableError> {
        let props = system_commit()
            .with_application_transaction(Transaction::new(COMPACTION_APP_ID, version));
        let operation = deltalake::protocol::DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        };
        deltalake::kernel::transaction::CommitBuilder::from(props)
            .build(Some(table.snapshot()?), table.log_store(), operation)
            .await?;
        Ok(())
    }

    async fn reload(mut table: DeltaTable) -> Result<DeltaTable, DeltaTableError> {
        table.update_state().await?;
        Ok(table)
    }

    /// Adds the declared columns a table written by an earlier version lacks (columns are only
    /// ever appended, nullable): one metadata commit, once. Rows written before read them as
    /// null. Losing that commit to another run that added them is not an error.
    async fn migrate(
        table: DeltaTable,
        location: &Location,
        cols: &[columns::Col],
    ) -> Result<DeltaTable, Error> {
        let missing = missing_columns(&table, cols);
        if missing.is_empty() {
            return Ok(table);
        }
        if let Some(c) = missing.iter().find(|c| !c.nullable) {
            return Err(Error::StoreCorrupt {
                store: location.as_uri(),
                reason: format!("the table has no column {}", c.name),
            });
        }
        let added = table
            .clone()
            .add_columns()
            .with_fields(delta_fields(&missing))
            .await;
        match added {
            Ok(t) => {
                let names: Vec<&str> = missing.iter().map(|c| c.name).collect();
                tracing::info!(table = %location.as_uri(), columns = %names.join(","), "added columns to a system table");
                Ok(t)
            }
            Err(e) => {
                let again = Self::reload(table)
                    .await
                    .map_err(|e| Error::delta(location.as_uri(), e))?;
                if missing_columns(&again, cols).is_empty() {
                    Ok(again)
                } else {
                    Err(Error::delta(location.as_uri(), e))
                }
            }
        }
    }

    /// Gives a system table created before [`system_properties`] existed the ones it lacks:
    /// one metadata commit, once. A property already set (by an operator) is left as it is.
    /// Best effort: a run that loses that commit to another run, or cannot write it, attests
    /// all the same.
    async fn set_system_properties(table: DeltaTable, location: &Location) {
        let Ok(snapshot) = table.snapshot() else {
            return;
        };
        let configuration = snapshot.metadata().configuration();
        let missing: std::collections::HashMap<String, String> = system_properties()
            .into_iter()
            .filter(|(key, _)| !configuration.contains_key(key.as_ref()))
            .map(|(key, value)| (key.as_ref().to_owned(), value.to_owned()))
            .collect();
        if missing.is_empty() {
            return;
        }
        if let Err(e) = table.set_tbl_properties().with_properties(missing).await {
            tracing::warn!(table = %location.as_uri(), error = %e, "could not set the system table properties");
        }
    }

    async fn has_log(&self, location: &Location) -> Result<bool, Error> {
        has_delta_log(location, &self.options).await
    }

    async fn create_table(
        &self,
        location: &Location,
        cols: &[columns::Col],
        name: &str,
        comment: &str,
    ) -> Result<(), Error> {
        let table = location.delta_table(&self.options)?;
        let created = table
            .create()
            .with_columns(delta_fields(cols))
            .with_table_name(name)
            .with_comment(comment)
            .with_configuration_property(deltalake::TableProperty::AppendOnly, Some("true"))
            .with_configuration(system_configuration())
            .with_save_mode(SaveMode::ErrorIfExists)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(create_err) => {
                // A concurrent run may have created it first.
                let mut again = location.delta_table(&self.options)?;
                match again.load().await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(Error::delta(location.as_uri(), create_err)),
                }
            }
        }
    }

    async fn load(&self, location: &Location) -> Result<DeltaTable, Error> {
        let mut t = location.delta_table(&self.options)?;
        t.load()
            .await
            .map_err(|e| Error::delta(location.as_uri(), e))?;
        Ok(t)
    }

    /// The latest snapshot of `location`, starting from the one kept in `slot`.
    async fn load_kept(
        &self,
        location: &Location,
        slot: &tokio::sync::Mutex<Option<DeltaTable>>,
    ) -> Result<DeltaTable, Error> {
        let mut kept = slot.lock().await;
        if let Some(mut table) = kept.clone() {
            match table.update_incremental(None).await {
                Ok(()) => {
                    *kept = Some(table.clone());
                    return Ok(table);
                }
                Err(e) => {
                    tracing::debug!(table = %location.as_uri(), error = %e, "kept snapshot could not be brought forward; loading afresh");
                }
            }
        }
        let table = self.load(location).await?;
        *kept = Some(table.clone());
        Ok(table)
    }

    pub async fn load_attestations(&self) -> Result<DeltaTable, Error> {
        self.load_kept(&self.attestations, &self.snapshots.attestations)
            .await
    }

    pub async fn load_files(&self) -> Result<DeltaTable, Error> {
        self.load_kept(&self.files, &self.snapshots.files).await
    }

    /// The last version recorded for `app_id` in `table`, a snapshot of one of this store's
    /// tables; remembered for that table version, so that the append made from the same
    /// snapshot does not look it up again.
    pub async fn read_txn(&self, table: &DeltaTable, app_id: &str) -> Result<Option<u64>, Error> {
        attested_through(table, self.memo_txn(table, app_id).await)
    }

    async fn memo_txn(
        &self,
        table: &DeltaTable,
        app_id: &str,
    ) -> Result<Option<i64>, DeltaTableError> {
        let Some(version) = table.version() else {
            return Self::kernel_txn(table, app_id).await;
        };
        let key = (table.table_url().to_string(), version, app_id.to_owned());
        if let Some(v) = self
            .snapshots
            .txns
            .lock()
            .ok()
            .and_then(|m| m.versions.get(&key).copied())
        {
            return Ok(v);
        }
        let v = Self::kernel_txn(table, app_id).await?;
        if let Ok(mut memo) = self.snapshots.txns.lock() {
            if memo.versions.len() >= TXN_MEMO_ENTRIES {
                memo.versions.clear();
            }
            memo.versions.insert(key, v);
        }
        Ok(v)
    }

    async fn kernel_txn(table: &DeltaTable, app_id: &str) -> Result<Option<i64>, DeltaTableError> {
        table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
    }

    /// The last version recorded for `app_id` in `table`.
    pub async fn txn_version(table: &DeltaTable, app_id: &str) -> Result<Option<u64>, Error> {
        attested_through(table, Self::kernel_txn(table, app_id).await)
    }

    async fn query(
        &self,
        table: &DeltaTable,
        filter: datafusion::prelude::Expr,
    ) -> Result<Vec<arrow::array::RecordBatch>, Error> {
        let name = table.table_url().to_string();
        let query_err = |source| Error::Query {
            table: name.clone(),
            source: Box::new(source),
        };
        let ctx = match self.session.0.get() {
            Some(ctx) => ctx,
            None => {
                let ctx = query_session().map_err(query_err)?;
                self.session.0.get_or_init(|| ctx)
            }
        };
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| Error::delta(name.clone(), e))?;
        let provider = table.table_provider().await.map_err(query_err)?;
        ctx.read_table(provider)
            .and_then(|df| df.filter(filter))
            .map_err(query_err)?
            .collect()
            .await
            .map_err(query_err)
    }

    /// The rows of one system table that name `table_uri` (none while that system table has no
    /// log yet), unordered.
    async fn rows_of_table<R: SystemRow>(
        &self,
        store: &Location,
        table_uri: &str,
    ) -> Result<Vec<R>, Error> {
        if !self.has_log(store).await? {
            return Ok(Vec::new());
        }
        let table = self.load(store).await?;
        let key = RowKey {
            table_uri: table_uri.to_owned(),
            versions: None,
        };
        self.keyed_rows(&table, &key, store).await
    }

    /// The rows of `table` (the system table at `store`) that match `key`, unordered: read
    /// straight from its Parquet files when the table is plain ([`lookup`]), else through
    /// DataFusion.
    async fn keyed_rows<R: SystemRow>(
        &self,
        table: &DeltaTable,
        key: &RowKey,
        store: &Location,
    ) -> Result<Vec<R>, Error> {
        self.keyed_rows_each(table, key, store, |rows| rows).await
    }

    /// [`Self::keyed_rows`], passed through `each` a data file (or a DataFusion batch) at a
    /// time, so that only what `each` keeps of them is held together.
    async fn keyed_rows_each<R: SystemRow, T>(
        &self,
        table: &DeltaTable,
        key: &RowKey,
        store: &Location,
        mut each: impl FnMut(Vec<R>) -> Vec<T>,
    ) -> Result<Vec<T>, Error> {
        if let Some(rows) = lookup::rows::<R, T>(table, &store.as_uri(), key, &mut each).await? {
            return Ok(rows);
        }
        let mut filter = col("table_uri").eq(lit(key.table_uri.clone()));
        if let Some(versions) = &key.versions {
            filter = filter
                .and(col("version").gt_eq(lit(*versions.start())))
                .and(col("version").lt_eq(lit(*versions.end())));
        }
        self.rows_each(table, filter, store, each).await
    }

    async fn rows_each<R: SystemRow, T>(
        &self,
        table: &DeltaTable,
        filter: datafusion::prelude::Expr,
        store: &Location,
        mut each: impl FnMut(Vec<R>) -> Vec<T>,
    ) -> Result<Vec<T>, Error> {
        let store = store.as_uri();
        let mut out = Vec::new();
        for b in self.query(table, filter).await? {
            out.extend(each(columns::from_batch::<R>(&b, &store)?));
        }
        Ok(out)
    }

    /// The attestation row of `table_uri` at `version`, from an already loaded table.
    pub async fn attestation_row(
        &self,
        table: &DeltaTable,
        table_uri: &str,
        version: u64,
    ) -> Result<Option<AttestationRow>, Error> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let key = RowKey {
            table_uri: table_uri.to_owned(),
            versions: Some(version..=version),
        };
        let mut rows = self
            .keyed_rows::<AttestationRow>(table, &key, &self.attestations)
            .await?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            n => Err(Error::StoreCorrupt {
                store: self.attestations.as_uri(),
                reason: format!("{n} rows for {table_uri}@v{version}"),
            }),
        }
    }

    /// All attestation rows of `table_uri`, ordered by version.
    pub async fn attestation_rows(&self, table_uri: &str) -> Result<Vec<AttestationRow>, Error> {
        let mut rows = self.attestation_rows_each(table_uri, |rows| rows).await?;
        rows.sort_by_key(|r| r.version);
        Ok(rows)
    }

    /// The attestation rows of `table_uri`, unordered, passed through `each` a data file at a
    /// time: what `each` keeps is returned. A long history's rows (their envelopes are most
    /// of their size) are then never all held at once.
    pub async fn attestation_rows_each<T>(
        &self,
        table_uri: &str,
        each: impl FnMut(Vec<AttestationRow>) -> Vec<T>,
    ) -> Result<Vec<T>, Error> {
        let table = self.load_attestations().await?;
        let key = RowKey {
            table_uri: table_uri.to_owned(),
            versions: None,
        };
        self.keyed_rows_each(&table, &key, &self.attestations, each)
            .await
    }

    /// How many attestation rows `table_uri` has, read from the key column alone when the
    /// attestations table is plain ([`lookup`]).
    pub async fn attestation_count(&self, table_uri: &str) -> Result<u64, Error> {
        let table = self.load_attestations().await?;
        let key = RowKey {
            table_uri: table_uri.to_owned(),
            versions: None,
        };
        let store = self.attestations.as_uri();
        if let Some(n) = lookup::count::<AttestationRow>(&table, &store, &key).await? {
            return Ok(n);
        }
        let rows = self
            .rows_each(
                &table,
                col("table_uri").eq(lit(key.table_uri)),
                &self.attestations,
                |rows: Vec<AttestationRow>| vec![rows.len() as u64],
            )
            .await?;
        Ok(rows.iter().sum())
    }

    /// Every attestation row of every table.
    pub async fn all_attestation_rows(&self) -> Result<Vec<AttestationRow>, Error> {
        self.all_attestation_rows_each(|rows| rows).await
    }

    /// Every attestation row of every table, passed through `each` a batch at a time.
    pub async fn all_attestation_rows_each<T>(
        &self,
        each: impl FnMut(Vec<AttestationRow>) -> Vec<T>,
    ) -> Result<Vec<T>, Error> {
        let table = self.load_attestations().await?;
        self.rows_each(&table, lit(true), &self.attestations, each)
            .await
    }

    /// File rows of `table_uri` for versions in `from..=to`, ordered by version.
    pub async fn file_rows(
        &self,
        table: &DeltaTable,
        table_uri: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<FileRow>, Error> {
        let mut rows = (self.file_rows_each(table, table_uri, from, to, |rows| rows)).await?;
        rows.sort_by_key(|r| (r.version, r.ordinal));
        Ok(rows)
    }

    /// The file rows of `table_uri` for versions in `from..=to`, unordered, passed through
    /// `each` a data file at a time: what `each` keeps is returned.
    pub async fn file_rows_each<T>(
        &self,
        table: &DeltaTable,
        table_uri: &str,
        from: u64,
        to: u64,
        each: impl FnMut(Vec<FileRow>) -> Vec<T>,
    ) -> Result<Vec<T>, Error> {
        let bound = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let key = RowKey {
            table_uri: table_uri.to_owned(),
            versions: Some(bound(from)..=bound(to)),
        };
        self.keyed_rows_each(table, &key, &self.files, each).await
    }

    /// Appends `rows` with `txn`, provided `txn.app_id` still stands where `table` (the
    /// snapshot the caller checked) has it; otherwise [`AppendOutcome::Conflict`]. Appends of
    /// concurrent runs through this handle (and its clones) are committed together
    /// ([`group`]).
    async fn append<R: SystemRow>(
        &self,
        table: DeltaTable,
        location: &Location,
        rows: &[R],
        txn: Transaction,
        run_id: &str,
    ) -> Result<AppendOutcome, Error> {
        let batch = to_batch(rows).map_err(|e| Error::StoreCorrupt {
            store: location.as_uri(),
            reason: format!("cannot build rows: {e}"),
        })?;
        let expected = match self.memo_txn(&table, &txn.app_id).await {
            Ok(v) => v,
            // The log the run read was cleaned up since, after a later checkpoint (its load
            // is older than `delta.logRetentionDuration`): what the run saw cannot be checked
            // against what is there now, so it starts again from the newest snapshot.
            Err(DeltaTableError::KernelError(delta_kernel::Error::FileNotFound(_))) => {
                return Ok(AppendOutcome::Conflict);
            }
            Err(e) => return Err(Error::delta(location.as_uri(), e)),
        };
        let queues = &self.snapshots.queues;
        let queue = if location == &self.attestations {
            &queues.attestations
        } else if location == &self.files {
            &queues.files
        } else {
            &queues.windows
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        let pending = group::Pending {
            batch,
            txn,
            expected,
            read_at: table,
            run_id: run_id.to_owned(),
            reply,
        };
        let snapshot = || async { self.load_latest(location).await.map_err(|e| e.to_string()) };
        let after = |t: DeltaTable| Self::after_commit(t, location);
        queue
            .append(pending, rx, snapshot, after)
            .await
            .map_err(|reason| Error::delta(location.as_uri(), DeltaTableError::Generic(reason)))
    }

    /// The newest snapshot of a system table: brought forward from the kept one where there
    /// is one.
    async fn load_latest(&self, location: &Location) -> Result<DeltaTable, Error> {
        if location == &self.attestations {
            self.load_attestations().await
        } else if location == &self.files {
            self.load_files().await
        } else {
            self.load(location).await
        }
    }

    /// Appends attestation rows in one commit that also records `through` as the table's last
    /// attested version. `table` must be the snapshot on which the caller checked the previous
    /// version; a concurrent append for the same table makes this a [`AppendOutcome::Conflict`].
    pub async fn append_attestations(
        &self,
        table: DeltaTable,
        rows: &[AttestationRow],
        table_uri: &str,
        through: u64,
        run_id: &str,
    ) -> Result<AppendOutcome, Error> {
        let txn = Transaction::new(attestations_app_id(table_uri), through as i64);
        self.append(table, &self.attestations, rows, txn, run_id)
            .await
    }

    /// Appends file rows, recording `through` as the last version covered.
    pub async fn append_files(
        &self,
        table: DeltaTable,
        rows: &[FileRow],
        table_uri: &str,
        through: u64,
        run_id: &str,
    ) -> Result<AppendOutcome, Error> {
        let txn = Transaction::new(files_app_id(table_uri), through as i64);
        self.append(table, &self.files, rows, txn, run_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_log_is_found_as_the_object_store_lists_it() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        type Make<'a> = &'a dyn Fn(&std::path::Path);
        let cases: [(&str, Make, bool); 6] = [
            ("missing", &|_| {}, false),
            ("empty", &|log| std::fs::create_dir_all(log).unwrap(), false),
            (
                "empty-subdir",
                &|log| std::fs::create_dir_all(log.join("_commits")).unwrap(),
                false,
            ),
            (
                "file-in-subdir",
                &|log| {
                    std::fs::create_dir_all(log.join("_commits")).unwrap();
                    std::fs::write(log.join("_commits/x.json"), "{}").unwrap();
                },
                true,
            ),
            (
                "broken-link",
                &|log| {
                    std::fs::create_dir_all(log).unwrap();
                    std::os::unix::fs::symlink(log.join("nowhere"), log.join("a.json")).unwrap();
                },
                false,
            ),
            (
                "commit",
                &|log| {
                    std::fs::create_dir_all(log).unwrap();
                    std::fs::write(log.join("00000000000000000000.json"), "{}").unwrap();
                },
                true,
            ),
        ];
        for (name, make, expected) in cases {
            let table = dir.path().join(name);
            std::fs::create_dir_all(&table).unwrap();
            make(&table.join("_delta_log"));
            let location = Location::existing(table.to_str().unwrap()).unwrap();
            let options = StorageOptions::default();
            let listed = location
                .object_store(&options)
                .unwrap()
                .list(Some(&object_store::path::Path::from("_delta_log")))
                .try_next()
                .await
                .unwrap()
                .is_some();
            let found = has_delta_log(&location, &options).await.unwrap();
            assert_eq!((found, listed), (expected, expected), "{name}");
        }
    }

    async fn table(location: &Location) -> DeltaTable {
        let mut t = location.delta_table(&StorageOptions::default()).unwrap();
        t.load().await.unwrap();
        t
    }

    /// A system table at `rel` as an earlier makoto made it: `cols` and `configuration` only.
    async fn an_earlier_table(
        dir: &std::path::Path,
        rel: &str,
        cols: &[columns::Col],
        configuration: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> DeltaTable {
        std::fs::create_dir_all(dir.join(rel)).unwrap();
        let warehouse = Location::create(dir.to_str().unwrap()).unwrap();
        warehouse
            .join(rel)
            .unwrap()
            .delta_table(&StorageOptions::default())
            .unwrap()
            .create()
            .with_columns(delta_fields(cols))
            .with_configuration(configuration)
            .await
            .unwrap()
    }

    fn interval(t: &DeltaTable) -> Option<String> {
        property(t, "delta.checkpointInterval")
    }

    fn retention(t: &DeltaTable) -> Option<String> {
        property(t, "delta.deletedFileRetentionDuration")
    }

    fn log_retention(t: &DeltaTable) -> Option<String> {
        property(t, "delta.logRetentionDuration")
    }

    /// `t` has every one of [`system_properties`], at makoto's values.
    fn assert_system_properties(t: &DeltaTable) {
        for (key, value) in system_properties() {
            assert_eq!(
                property(t, key.as_ref()).as_deref(),
                Some(value),
                "{}",
                key.as_ref()
            );
        }
    }

    fn property(t: &DeltaTable, key: &str) -> Option<String> {
        t.snapshot()
            .unwrap()
            .metadata()
            .configuration()
            .get(key)
            .cloned()
    }

    #[tokio::test]
    async fn system_tables_get_a_checkpoint_interval_and_old_ones_are_upgraded_once() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Location::create(dir.path().to_str().unwrap()).unwrap();
        let options = StorageOptions::default();
        // The files table as earlier versions created it: no checkpoint interval.
        let files = warehouse.join(FILES_PATH).unwrap();
        let append_only = ("delta.appendOnly".to_owned(), Some("true".to_owned()));
        an_earlier_table(dir.path(), FILES_PATH, FILE_COLUMNS, [append_only]).await;
        assert_eq!(interval(&table(&files).await), None);

        let store = AttestationStore::create(warehouse.clone(), options.clone())
            .await
            .unwrap();
        let attestations = table(&store.attestations).await;
        assert_system_properties(&attestations);
        assert_eq!(attestations.version(), Some(0), "created with it");
        let upgraded = table(&files).await;
        assert_system_properties(&upgraded);
        assert_eq!(upgraded.version(), Some(1), "one metadata commit");

        AttestationStore::create(warehouse, options).await.unwrap();
        assert_eq!(table(&files).await.version(), Some(1), "and only once");
    }

    /// A table that has the interval but not the retentions (made by an earlier version) gets
    /// the retentions alone; a retention an operator set is kept.
    #[tokio::test]
    async fn a_missing_retention_is_added_and_an_operators_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Location::create(dir.path().to_str().unwrap()).unwrap();
        let options = StorageOptions::default();
        let (files, attestations) = (
            warehouse.join(FILES_PATH).unwrap(),
            warehouse.join(ATTESTATIONS_PATH).unwrap(),
        );
        let every_ten = (
            "delta.checkpointInterval".to_owned(),
            Some(SYSTEM_CHECKPOINT_INTERVAL.to_owned()),
        );
        let own = (
            "delta.deletedFileRetentionDuration".to_owned(),
            Some("interval 2 days".to_owned()),
        );
        an_earlier_table(dir.path(), FILES_PATH, FILE_COLUMNS, [every_ten.clone()]).await;
        an_earlier_table(
            dir.path(),
            ATTESTATIONS_PATH,
            ATTESTATION_COLUMNS,
            [every_ten, own],
        )
        .await;
        AttestationStore::create(warehouse.clone(), options.clone())
            .await
            .unwrap();
        let files = table(&files).await;
        assert_system_properties(&files);
        let attestations = table(&attestations).await;
        assert_eq!(retention(&attestations).as_deref(), Some("interval 2 days"));
        assert_eq!(
            log_retention(&attestations).as_deref(),
            Some(SYSTEM_LOG_RETENTION)
        );
        assert_eq!(
            interval(&attestations).as_deref(),
            Some(SYSTEM_CHECKPOINT_INTERVAL)
        );
        assert_eq!(
            attestations.version(),
            Some(1),
            "only the missing one added"
        );
        AttestationStore::create(warehouse.clone(), options)
            .await
            .unwrap();
        let files = warehouse.join(FILES_PATH).unwrap();
        assert_eq!(table(&files).await.version(), Some(1), "and only once");
    }

    /// An operator's retention reaches both properties of every system table that exists, in
    /// one commit each, and setting it again commits nothing; rows stay.
    #[tokio::test]
    async fn a_set_retention_reaches_every_existing_system_table_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_file_rows(dir.path(), 0..3).await;
        assert_eq!(
            SystemRetention::new(std::time::Duration::from_secs(59)),
            None
        );
        let ten = SystemRetention::new(std::time::Duration::from_secs(600)).unwrap();
        assert_eq!(ten.interval(), "interval 600 seconds");
        let versions = || async {
            (
                table(&store.attestations).await.version(),
                table(&store.files).await.version(),
            )
        };
        let before = versions().await;
        assert_eq!(
            store.set_retention(ten).await.unwrap(),
            ["attestations", "files"]
        );
        for location in [&store.attestations, &store.files] {
            let t = table(location).await;
            assert_eq!(log_retention(&t).as_deref(), Some("interval 600 seconds"));
            assert_eq!(retention(&t).as_deref(), Some("interval 600 seconds"));
        }
        let after = versions().await;
        assert_eq!(after, (before.0.map(|v| v + 1), before.1.map(|v| v + 1)));
        assert!(store.set_retention(ten).await.unwrap().is_empty());
        assert_eq!(
            versions().await,
            after,
            "nothing to change, nothing committed"
        );
        assert!(!dir.path().join("system/makoto/windows").exists());
        let files = store.load_files().await.unwrap();
        let rows = store.file_rows(&files, "file:///t", 0, 2).await.unwrap();
        assert_eq!(rows.len(), 3);
    }

    fn attestation_row(version: u64) -> AttestationRow {
        let d = Sha256Digest::of(&version.to_be_bytes());
        AttestationRow {
            table_uri: "file:///t".into(),
            table_id: "id".into(),
            version,
            commit_timestamp_ms: 1_700_000_000_000,
            timestamp_source: makoto_core::delta::TimestampSource::CommitInfo,
            operation: None,
            engine: None,
            user_name: None,
            predicate_type: "https://makoto.dev/origin/v1".into(),
            subject: format!("file:///t@v{version}"),
            state_digest: d,
            commit_digest: d,
            commit_file_digest: d,
            changes_digest: d,
            files_added: 0,
            files_removed: 0,
            cdc_files: 0,
            bytes_added: 0,
            bytes_removed: 0,
            records_added: None,
            live_files: 0,
            live_bytes: 0,
            previous_attestation_digest: None,
            attestation_digest: d,
            keyid: None,
            level: makoto_core::attestation::MakotoLevel::L1,
            envelope: "{}".into(),
            attested_at_us: 1_700_000_000_000_000,
            attestor_version: "test".into(),
            run_id: "run".into(),
            data_availability: makoto_core::attestation::AvailabilityStatus::Complete,
            timestamp_gen_time_us: Some(1_700_000_001_000_000),
            timestamp_version: Some(version),
        }
    }

    #[tokio::test]
    async fn an_attestations_table_without_the_time_stamp_columns_gains_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Location::create(dir.path().to_str().unwrap()).unwrap();
        let options = StorageOptions::default();
        // The table as makoto wrote it before the time-stamp columns, holding one row.
        let old_cols = &ATTESTATION_COLUMNS[..ATTESTATION_COLUMNS.len() - 2];
        assert_eq!(old_cols.last().map(|c| c.name), Some("data_availability"));
        let location = warehouse.join(ATTESTATIONS_PATH).unwrap();
        let created = an_earlier_table(
            dir.path(),
            ATTESTATIONS_PATH,
            old_cols,
            system_configuration(),
        )
        .await;
        let full = to_batch(&[attestation_row(0)]).unwrap();
        let old_batch = full
            .project(&(0..old_cols.len()).collect::<Vec<_>>())
            .unwrap();
        created
            .write(vec![old_batch])
            .with_save_mode(SaveMode::Append)
            .await
            .unwrap();
        assert_eq!(table(&location).await.version(), Some(1));

        let store = AttestationStore::create(warehouse.clone(), options.clone())
            .await
            .unwrap();
        let migrated = table(&location).await;
        assert_eq!(migrated.version(), Some(2), "one metadata commit");
        assert!(missing_columns(&migrated, ATTESTATION_COLUMNS).is_empty());
        // What docs/attestation-table.md tells operators: a writer of the old shape is refused
        // (nothing is committed), so every writer of a warehouse is upgraded together.
        let old_shape = to_batch(&[attestation_row(7)])
            .unwrap()
            .project(&(0..old_cols.len()).collect::<Vec<_>>())
            .unwrap();
        let refused = migrated
            .clone()
            .write(vec![old_shape])
            .with_save_mode(SaveMode::Append)
            .await;
        assert!(refused.is_err());
        assert_eq!(table(&location).await.version(), Some(2));

        let t = store.load_attestations().await.unwrap();
        let outcome = store
            .append_attestations(t, &[attestation_row(1)], "file:///t", 1, "run")
            .await
            .unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed { .. }));
        let mut rows = store.attestation_rows("file:///t").await.unwrap();
        rows.sort_by_key(|r| r.version);
        let stamps: Vec<_> = rows
            .iter()
            .map(|r| (r.version, r.timestamp_gen_time_us, r.timestamp_version))
            .collect();
        assert_eq!(
            stamps,
            vec![(0, None, None), (1, Some(1_700_000_001_000_000), Some(1))],
            "the old row reads the new columns as null"
        );

        AttestationStore::create(warehouse, options).await.unwrap();
        assert_eq!(
            table(&location).await.version(),
            Some(3),
            "only the append since: no second migration"
        );
    }

    #[tokio::test]
    async fn a_table_missing_a_required_column_is_not_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Location::create(dir.path().to_str().unwrap()).unwrap();
        let options = StorageOptions::default();
        let location = warehouse.join(ATTESTATIONS_PATH).unwrap();
        an_earlier_table(dir.path(), ATTESTATIONS_PATH, &ATTESTATION_COLUMNS[..3], []).await;
        let err = AttestationStore::create(warehouse, options)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("commit_timestamp"), "{err}");
        assert_eq!(table(&location).await.version(), Some(0), "nothing written");
    }

    fn file_row(version: u64) -> FileRow {
        let change = makoto_core::attestation::FileChange::new(
            makoto_core::attestation::ChangeKind::Add,
            format!("part-{version}.parquet"),
            Some(version),
            Some(Sha256Digest::of(&version.to_be_bytes())),
            true,
            Default::default(),
            None,
            None,
        );
        FileRow::from_change("file:///t", "id", version, 0, 0, &change, "run")
    }

    /// A store in `dir` whose files table got one file row per version in `versions`, one
    /// append each.
    async fn store_with_file_rows(
        dir: &std::path::Path,
        versions: std::ops::Range<u64>,
    ) -> AttestationStore {
        let store = open_store(dir).await;
        append_file_rows(&store, versions).await;
        store
    }

    /// The store of a warehouse in `dir`, its system tables created when missing.
    async fn open_store(dir: &std::path::Path) -> AttestationStore {
        let warehouse = Location::create(dir.to_str().unwrap()).unwrap();
        AttestationStore::create(warehouse, StorageOptions::default())
            .await
            .unwrap()
    }

    async fn append_file_rows(store: &AttestationStore, versions: std::ops::Range<u64>) {
        for v in versions {
            let t = store.load_files().await.unwrap();
            store
                .append_files(t, &[file_row(v)], "file:///t", v, "run")
                .await
                .unwrap();
        }
    }

    fn live_files(t: &DeltaTable) -> usize {
        t.snapshot().unwrap().log_data().num_files()
    }

    /// An append is one Delta `WRITE` commit a reader can skip by: the rows' file carries its
    /// statistics, the commit its `txn`, the runs it holds and the write's metrics.
    #[tokio::test]
    async fn an_append_is_one_write_commit_with_statistics_and_its_txn() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_file_rows(dir.path(), 0..2).await;
        let t = store.load_files().await.unwrap();
        let version = t.version().unwrap();
        let log = dir
            .path()
            .join(FILES_PATH)
            .join(format!("_delta_log/{version:020}.json"));
        let actions: Vec<serde_json::Value> = std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let find = |kind: &str| {
            actions
                .iter()
                .filter_map(|a| a.get(kind))
                .cloned()
                .collect::<Vec<_>>()
        };
        let info = &find("commitInfo")[0];
        assert_eq!(info["operation"], "WRITE");
        assert_eq!(info["operationParameters"]["mode"], "Append");
        assert_eq!(info["operationMetrics"]["num_added_rows"], 1);
        assert_eq!(info["operationMetrics"]["num_added_files"], 1);
        assert_eq!(info["makoto.runs"][0]["through"], 1);
        let txn = &find("txn")[0];
        assert_eq!(txn["appId"], files_app_id("file:///t"));
        assert_eq!(txn["version"], 1);
        let adds = find("add");
        assert_eq!(adds.len(), 1);
        let stats: serde_json::Value =
            serde_json::from_str(adds[0]["stats"].as_str().unwrap()).unwrap();
        assert_eq!(stats["numRecords"], 1);
        assert_eq!(stats["minValues"]["version"], 1);
        assert_eq!(stats["maxValues"]["version"], 1);
        assert_eq!(stats["minValues"]["table_uri"], "file:///t");
        assert_eq!(stats["nullCount"]["version"], 0);
        let file = dir
            .path()
            .join(FILES_PATH)
            .join(adds[0]["path"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(file).unwrap().len(),
            adds[0]["size"].as_u64().unwrap()
        );
    }

    /// A handle keeps its last snapshot and brings it forward: it sees what another handle (or
    /// process) committed since, and a commit made from a stale snapshot of the same `txn`
    /// still conflicts.
    #[tokio::test]
    async fn a_kept_snapshot_sees_later_commits_of_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (open_store(dir.path()).await, open_store(dir.path()).await);
        let app = attestations_app_id("file:///t");
        let stale = ours.load_attestations().await.unwrap();
        assert_eq!(
            AttestationStore::txn_version(&stale, &app).await.unwrap(),
            None
        );

        let t = theirs.load_attestations().await.unwrap();
        let outcome = theirs
            .append_attestations(t, &[attestation_row(0)], "file:///t", 0, "theirs")
            .await
            .unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed { .. }));

        let now = ours.load_attestations().await.unwrap();
        assert_eq!(now.version(), Some(stale.version().unwrap() + 1));
        assert_eq!(
            AttestationStore::txn_version(&now, &app).await.unwrap(),
            Some(0)
        );
        let again = ours
            .append_attestations(stale, &[attestation_row(0)], "file:///t", 0, "ours")
            .await
            .unwrap();
        assert_eq!(again, AppendOutcome::Conflict);
        assert_eq!(ours.attestation_rows("file:///t").await.unwrap().len(), 1);
    }

    /// A `txn` answer is remembered for the table version it was read at, never carried to
    /// another version.
    #[tokio::test]
    async fn a_read_txn_answers_for_its_own_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let app = attestations_app_id("file:///t");
        let before = store.load_attestations().await.unwrap();
        assert_eq!(store.read_txn(&before, &app).await.unwrap(), None);
        let appended = store
            .append_attestations(before.clone(), &[attestation_row(4)], "file:///t", 4, "r")
            .await
            .unwrap();
        assert!(
            matches!(appended, AppendOutcome::Committed { .. }),
            "{appended:?}"
        );
        let after = store.load_attestations().await.unwrap();
        assert_eq!(store.read_txn(&after, &app).await.unwrap(), Some(4));
        assert_eq!(store.read_txn(&after, &app).await.unwrap(), Some(4));
        assert_eq!(store.read_txn(&before, &app).await.unwrap(), None);
        assert_eq!(
            AttestationStore::txn_version(&after, &app).await.unwrap(),
            Some(4)
        );
    }

    /// One group: a member whose run read a stale `txn`, and a second member for an id
    /// already in the group, are told to start over; every other member is committed, once,
    /// in one commit with its own `txn`.
    #[tokio::test]
    async fn a_group_commit_admits_each_current_txn_once_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let row = |uri: &str, version: u64| AttestationRow {
            table_uri: uri.to_owned(),
            ..attestation_row(version)
        };
        let before = store.load_attestations().await.unwrap();
        let first = store
            .append_attestations(
                before.clone(),
                &[row("file:///t0", 0)],
                "file:///t0",
                0,
                "other",
            )
            .await
            .unwrap();
        let AppendOutcome::Committed { table_version } = first else {
            panic!("{first:?}");
        };
        let now = store.load_attestations().await.unwrap();
        // The first member read t0 before the append above; the others read it after.
        let members = [
            ("file:///t0", None, 0, &before),
            ("file:///t1", None, 0, &now),
            ("file:///t2", None, 0, &now),
            ("file:///t2", None, 0, &now),
            ("file:///t0", Some(0), 1, &now),
        ];
        let (mut group, mut answers) = (Vec::new(), Vec::new());
        for (uri, expected, version, read_at) in members {
            let (reply, rx) = tokio::sync::oneshot::channel();
            group.push(group::Pending {
                batch: to_batch(&[row(uri, version)]).unwrap(),
                txn: Transaction::new(attestations_app_id(uri), version as i64),
                expected,
                read_at: read_at.clone(),
                run_id: "r".into(),
                reply,
            });
            answers.push(rx);
        }
        let snapshot = || async { store.load_attestations().await.map_err(|e| e.to_string()) };
        let mut recent = group::RecentTxns::default();
        let committed = group::commit_group(group, &snapshot, &mut recent)
            .await
            .unwrap();
        let next = table_version + 1;
        assert_eq!(committed.version(), Some(next), "one commit for the group");
        let mut got = Vec::new();
        for rx in answers {
            got.push(rx.await.unwrap().unwrap());
        }
        let ok = AppendOutcome::Committed {
            table_version: next,
        };
        assert_eq!(
            got,
            [AppendOutcome::Conflict, ok, ok, AppendOutcome::Conflict, ok]
        );
        let t = store.load_attestations().await.unwrap();
        for (uri, versions) in [
            ("file:///t0", vec![0, 1]),
            ("file:///t1", vec![0]),
            ("file:///t2", vec![0]),
        ] {
            let rows = store.attestation_rows(uri).await.unwrap();
            assert_eq!(
                rows.iter().map(|r| r.version).collect::<Vec<_>>(),
                versions,
                "{uri}"
            );
            let count = store.attestation_count(uri).await.unwrap();
            assert_eq!(count, versions.len() as u64, "{uri}");
            assert_eq!(
                AttestationStore::txn_version(&t, &attestations_app_id(uri))
                    .await
                    .unwrap(),
                versions.last().copied()
            );
        }
    }

    /// A metadata change committed between the leader's snapshot and its commit (an operator's
    /// `maintain --retention` while a service runs) fails the group's first commit; the group
    /// is admitted again from the newest snapshot and lands once, keeping the change.
    #[tokio::test]
    async fn a_group_that_meets_a_concurrent_metadata_change_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let read_at = store.load_attestations().await.unwrap();
        let before = read_at.version().unwrap();
        let (mut group, mut answers) = (Vec::new(), Vec::new());
        for uri in ["file:///t0", "file:///t1"] {
            let (reply, rx) = tokio::sync::oneshot::channel();
            group.push(group::Pending {
                batch: to_batch(&[AttestationRow {
                    table_uri: uri.to_owned(),
                    ..attestation_row(0)
                }])
                .unwrap(),
                txn: Transaction::new(attestations_app_id(uri), 0),
                expected: None,
                read_at: read_at.clone(),
                run_id: "r".into(),
                reply,
            });
            answers.push(rx);
        }
        let loads = std::sync::atomic::AtomicU32::new(0);
        let retention = SystemRetention::new(std::time::Duration::from_secs(600)).unwrap();
        let snapshot = || async {
            let t = store.load_attestations().await.map_err(|e| e.to_string())?;
            if loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let changed = store.set_retention(retention).await.unwrap();
                assert!(changed.contains(&"attestations"), "{changed:?}");
            }
            Ok(t)
        };
        let mut recent = group::RecentTxns::default();
        let committed = group::commit_group(group, &snapshot, &mut recent)
            .await
            .unwrap();
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
        let landed = before + 2;
        assert_eq!(
            committed.version(),
            Some(landed),
            "after the metadata change"
        );
        for rx in answers {
            assert_eq!(
                rx.await.unwrap().unwrap(),
                AppendOutcome::Committed {
                    table_version: landed
                }
            );
        }
        for uri in ["file:///t0", "file:///t1"] {
            assert_eq!(store.attestation_count(uri).await.unwrap(), 1, "{uri}");
        }
        let t = store.load_attestations().await.unwrap();
        let configuration = t.snapshot().unwrap().metadata().configuration().clone();
        assert_eq!(
            configuration.get("delta.logRetentionDuration"),
            Some(&retention.interval())
        );
    }

    /// A run record written from a snapshot taken before a metadata change (an operator's
    /// `maintain --retention` between the load and the commit) lands once, after the change.
    #[tokio::test]
    async fn a_blind_append_from_before_a_metadata_change_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let row = RunRow {
            table_uri: "file:///t".into(),
            service: "host:1".into(),
            run_id: Some("r".into()),
            outcome: "attested".into(),
            started_at_us: 1,
            finished_at_us: 2,
            previously_attested: None,
            attested_version: Some(0),
            latest_version: Some(0),
            commits_attested: 1,
            lag_ms: Some(1),
            files_hashed: 1,
            bytes_hashed: 1,
            error_kind: None,
            error: None,
            failures: 0,
        };
        store.append_runs(std::slice::from_ref(&row)).await.unwrap();
        let stale = store.load(&store.runs).await.unwrap();
        let retention = SystemRetention::new(std::time::Duration::from_secs(600)).unwrap();
        let changed = store.set_retention(retention).await.unwrap();
        assert!(changed.contains(&"runs"), "{changed:?}");
        let batch = to_batch(std::slice::from_ref(&row)).unwrap();
        store
            .append_blind(&store.runs, stale.clone(), batch)
            .await
            .unwrap();
        let now = store.load(&store.runs).await.unwrap();
        assert_eq!(now.version(), Some(stale.version().unwrap() + 2));
        assert_eq!(
            store.run_rows("file:///t").await.unwrap(),
            [row.clone(), row]
        );
    }

    /// The session a store handle keeps for its lifetime (a service's) caches no Parquet
    /// footers, file statistics or listings from query to query.
    #[tokio::test]
    async fn system_table_queries_leave_nothing_in_datafusion_caches() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        for v in 0..3 {
            let t = store.load_attestations().await.unwrap();
            let out = store
                .append_attestations(t, &[attestation_row(v)], "file:///t", v, "r")
                .await
                .unwrap();
            assert!(matches!(out, AppendOutcome::Committed { .. }), "{out:?}");
        }
        let t = store.load_attestations().await.unwrap();
        let batches = store
            .query(&t, col("table_uri").eq(lit("file:///t")))
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let caches = &store.session.0.get().unwrap().runtime_env().cache_manager;
        assert_eq!(caches.get_file_metadata_cache().len(), 0);
        assert!(caches.get_file_statistic_cache().is_none());
        assert!(caches.get_list_files_cache().is_none());
    }

    /// Appends of many concurrent runs through one handle all land, each once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_through_one_handle_each_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let before = store.load_attestations().await.unwrap().version().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let store = store.clone();
            tasks.spawn(async move {
                let uri = format!("file:///t{i}");
                let row = AttestationRow {
                    table_uri: uri.clone(),
                    ..attestation_row(0)
                };
                let t = store.load_attestations().await.unwrap();
                store
                    .append_attestations(t, &[row], &uri, 0, "r")
                    .await
                    .unwrap()
            });
        }
        while let Some(outcome) = tasks.join_next().await {
            assert!(matches!(outcome.unwrap(), AppendOutcome::Committed { .. }));
        }
        let after = store.load_attestations().await.unwrap();
        for i in 0..24 {
            let uri = format!("file:///t{i}");
            assert_eq!(
                store.attestation_rows(&uri).await.unwrap().len(),
                1,
                "{uri}"
            );
        }
        let commits = after.version().unwrap() - before;
        assert!(
            commits <= 24 + 2,
            "{commits} commits (24 appends, compactions)"
        );
    }

    /// Sets the table's `delta.logRetentionDuration` to zero: its next checkpoint cleans up
    /// every log entry before it.
    async fn keep_no_log(location: &Location) {
        table(location)
            .await
            .set_tbl_properties()
            .with_properties(std::collections::HashMap::from([(
                "delta.logRetentionDuration".to_owned(),
                "interval 0 seconds".to_owned(),
            )]))
            .await
            .unwrap();
    }

    /// With delta-rs's cleanup after every commit turned off, expired log entries still go
    /// when a checkpoint is written (as the Delta protocol has it), and only the entries that
    /// checkpoint replaces; every row stays.
    #[tokio::test]
    async fn expired_log_entries_still_go_at_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_file_rows(dir.path(), 0..1).await;
        keep_no_log(&store.files).await;
        let log = dir.path().join("system/makoto/files/_delta_log");
        let commits = || -> Vec<u64> {
            let mut v: Vec<u64> = std::fs::read_dir(&log)
                .unwrap()
                .filter_map(|e| crate::log::parse_commit_name(e.unwrap().file_name().to_str()?))
                .collect();
            v.sort();
            v
        };
        assert_eq!(commits(), [0, 1, 2], "create, append, properties");
        for row in 1..25 {
            append_file_rows(&store, row..row + 1).await;
            let version = table(&store.files).await.version().unwrap() as u64;
            let oldest = match version {
                0..9 => 0,
                9..19 => 9,
                _ => 19,
            };
            assert_eq!(
                commits(),
                (oldest..=version).collect::<Vec<_>>(),
                "at {version}"
            );
        }
        let t = store.load_files().await.unwrap();
        let rows = store.file_rows(&t, "file:///t", 0, 25).await.unwrap();
        assert_eq!(rows, (0..25).map(file_row).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn small_files_are_compacted_and_every_row_and_txn_survives() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let small = |t: &DeltaTable| t.snapshot().unwrap().log_data().num_files();
        let runs = SYSTEM_COMPACT_AT as u64 + 5;
        let mut most = 0;
        for v in 0..runs {
            let t = store.load_files().await.unwrap();
            let outcome = store
                .append_files(t, &[file_row(v)], "file:///t", v, "run")
                .await
                .unwrap();
            assert!(matches!(outcome, AppendOutcome::Committed { .. }));
            most = most.max(small(&store.load_files().await.unwrap()));
        }
        assert!(most <= SYSTEM_COMPACT_AT, "{most} files at most");
        let t = store.load_files().await.unwrap();
        assert!(small(&t) < 10, "{} files after compacting", small(&t));
        let rows = store.file_rows(&t, "file:///t", 0, runs).await.unwrap();
        assert_eq!(rows, (0..runs).map(file_row).collect::<Vec<_>>());
        assert_eq!(
            AttestationStore::txn_version(&t, &files_app_id("file:///t"))
                .await
                .unwrap(),
            Some(runs - 1)
        );
    }

    /// A lone append is committed from the snapshot its run read: a commit of another table's
    /// `txn` since then does not stop it, one of its own makes it a conflict (and nothing is
    /// written twice).
    #[tokio::test]
    async fn a_lone_append_from_an_older_snapshot_conflicts_only_on_its_own_txn() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (open_store(dir.path()).await, open_store(dir.path()).await);
        async fn append(
            store: &AttestationStore,
            t: DeltaTable,
            uri: &str,
            v: u64,
        ) -> AppendOutcome {
            let row = AttestationRow {
                table_uri: uri.to_owned(),
                ..attestation_row(v)
            };
            store
                .append_attestations(t, &[row], uri, v, "run")
                .await
                .unwrap()
        }
        let before = ours.load_attestations().await.unwrap();
        let other = append(
            &theirs,
            theirs.load_attestations().await.unwrap(),
            "file:///u",
            0,
        );
        assert!(matches!(other.await, AppendOutcome::Committed { .. }));
        let outcome = append(&ours, before, "file:///t", 0).await;
        assert!(
            matches!(outcome, AppendOutcome::Committed { .. }),
            "{outcome:?}"
        );

        let before = ours.load_attestations().await.unwrap();
        let same = append(
            &theirs,
            theirs.load_attestations().await.unwrap(),
            "file:///t",
            1,
        );
        assert!(matches!(same.await, AppendOutcome::Committed { .. }));
        let outcome = append(&ours, before, "file:///t", 1).await;
        assert_eq!(outcome, AppendOutcome::Conflict);
        let versions: Vec<u64> = (ours.attestation_rows("file:///t").await.unwrap())
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, [0, 1]);
    }

    /// A run that read the attestations table before other writers moved it past a checkpoint
    /// whose log cleanup removed the log the run read (its load older than
    /// `delta.logRetentionDuration`) is told to start again, and then lands once.
    #[tokio::test]
    async fn a_lone_append_from_a_snapshot_whose_later_log_is_gone_lands() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (open_store(dir.path()).await, open_store(dir.path()).await);
        keep_no_log(&ours.attestations).await;
        let before = ours.load_attestations().await.unwrap();
        let read_at = before.version().unwrap();
        for v in 0..25 {
            let row = AttestationRow {
                table_uri: "file:///u".into(),
                ..attestation_row(v)
            };
            let t = theirs.load_attestations().await.unwrap();
            let outcome = theirs
                .append_attestations(t, &[row], "file:///u", v, "run")
                .await
                .unwrap();
            assert!(matches!(outcome, AppendOutcome::Committed { .. }));
        }
        let log = dir.path().join("system/makoto/attestations/_delta_log");
        let gone = !log.join(format!("{:020}.json", read_at + 1)).exists();
        assert!(gone, "the commit after the run's snapshot was cleaned up");

        let row = AttestationRow {
            table_uri: "file:///t".into(),
            ..attestation_row(0)
        };
        let outcome = ours
            .append_attestations(before, std::slice::from_ref(&row), "file:///t", 0, "run")
            .await
            .unwrap();
        assert_eq!(outcome, AppendOutcome::Conflict);
        let now = ours.load_attestations().await.unwrap();
        let outcome = ours
            .append_attestations(now, &[row], "file:///t", 0, "run")
            .await
            .unwrap();
        assert!(
            matches!(outcome, AppendOutcome::Committed { .. }),
            "{outcome:?}"
        );
        let t: Vec<u64> = (ours.attestation_rows("file:///t").await.unwrap())
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(t, [0]);
        assert_eq!(ours.attestation_rows("file:///u").await.unwrap().len(), 25);
    }

    /// Rows read straight from the Parquet files are the rows DataFusion reads, for every
    /// key, over small and compacted files; rows of other tables and versions are left out.
    #[tokio::test]
    async fn rows_read_from_the_files_are_the_rows_datafusion_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let runs = SYSTEM_COMPACT_AT as u64 + 7;
        for v in 0..runs {
            for uri in ["file:///t", "file:///u"] {
                let t = store.load_files().await.unwrap();
                let row = FileRow {
                    table_uri: uri.into(),
                    ..file_row(v)
                };
                store.append_files(t, &[row], uri, v, "run").await.unwrap();
            }
        }
        let t = store.load_files().await.unwrap();
        let last = runs as i64 - 1;
        let keys = [
            ("file:///t", Some(0..=0)),
            ("file:///u", Some(3..=9)),
            ("file:///t", Some(last..=last + 5)),
            ("file:///u", Some(last + 1..=last + 3)),
            ("file:///t", None),
            ("file:///v", None),
        ];
        for (uri, versions) in keys {
            let expected: Vec<u64> = (0..runs)
                .filter(|_| uri != "file:///v")
                .filter(|v| versions.as_ref().is_none_or(|r| r.contains(&(*v as i64))))
                .collect();
            read_directly_as_queried(&store, &t, uri, versions, &expected).await;
        }
    }

    /// Asserts that the file rows of `uri` at `versions` read straight from the files are
    /// those DataFusion reads, and are the rows of the `expected` versions.
    async fn read_directly_as_queried(
        store: &AttestationStore,
        t: &DeltaTable,
        uri: &str,
        versions: Option<std::ops::RangeInclusive<i64>>,
        expected: &[u64],
    ) {
        let key = RowKey {
            table_uri: uri.into(),
            versions: versions.clone(),
        };
        let by_version = |rows: &mut Vec<FileRow>| rows.sort_by_key(|r| r.version);
        let mut direct: Vec<FileRow> = lookup::rows(t, "files", &key, &mut |r| r)
            .await
            .unwrap()
            .expect("a system table is plain");
        let mut filter = col("table_uri").eq(lit(uri));
        if let Some(v) = &versions {
            filter = filter
                .and(col("version").gt_eq(lit(*v.start())))
                .and(col("version").lt_eq(lit(*v.end())));
        }
        let mut queried: Vec<FileRow> = store
            .rows_each(t, filter, &store.files, |r| r)
            .await
            .unwrap();
        by_version(&mut direct);
        by_version(&mut queried);
        assert_eq!(direct, queried, "{uri} {versions:?}");
        let got: Vec<u64> = direct.iter().map(|r| r.version).collect();
        assert_eq!(got, expected, "{uri} {versions:?}");
        let counted = lookup::count::<FileRow>(t, "files", &key).await.unwrap();
        assert_eq!(counted, Some(expected.len() as u64), "{uri} {versions:?}");
        assert!(direct.iter().all(|r| r.table_uri == uri));
    }

    /// A data file of a system table that is gone is a storage error naming it; one that is
    /// not Parquet says the store is corrupt, naming it too.
    #[tokio::test]
    async fn an_unreadable_system_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_file_rows(dir.path(), 0..2).await;
        let t = store.load_files().await.unwrap();
        let files: Vec<String> = t
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect();
        let on_disk = |f: &str| dir.path().join("system/makoto/files").join(f);
        let size = std::fs::metadata(on_disk(&files[0])).unwrap().len();
        std::fs::write(on_disk(&files[0]), vec![7u8; size as usize]).unwrap();
        std::fs::remove_file(on_disk(&files[1])).unwrap();
        let err = store.file_rows(&t, "file:///t", 0, 1).await.unwrap_err();
        let named = files.iter().any(|f| err.to_string().contains(f.as_str()));
        assert!(named, "{err}");
        match err {
            Error::Storage { .. } | Error::StoreCorrupt { .. } => {}
            other => panic!("{other}"),
        }
        // Each version's row is in its own file: one read fails on the garbled file, the
        // other on the missing one.
        let mut errors = Vec::new();
        for version in 0..2 {
            errors.push(
                store
                    .file_rows(&t, "file:///t", version, version)
                    .await
                    .unwrap_err(),
            );
        }
        let garbled = errors
            .iter()
            .find(|e| matches!(e, Error::StoreCorrupt { .. }));
        let missing = errors.iter().find(|e| matches!(e, Error::Storage { .. }));
        assert!(garbled.is_some_and(|e| e.to_string().contains(files[0].as_str())));
        assert!(missing.is_some_and(|e| e.to_string().contains(files[1].as_str())));
    }

    /// A table that is not plain Parquet under a reader-version-1 protocol (partitioned, or
    /// with deletion vectors) is left to DataFusion.
    #[rstest::rstest]
    #[case::partitioned(&["table_uri"], None)]
    #[case::deletion_vectors(&[], Some("delta.enableDeletionVectors"))]
    #[tokio::test]
    async fn a_table_that_is_not_plain_is_not_read_directly(
        #[case] partitions: &[&str],
        #[case] property: Option<&str>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::create(dir.path().to_str().unwrap()).unwrap();
        let mut create = location
            .delta_table(&StorageOptions::default())
            .unwrap()
            .create()
            .with_columns(delta_fields(rows::FILE_COLUMNS))
            .with_partition_columns(partitions.iter().copied());
        if let Some(p) = property {
            create = create.with_configuration([(p, Some("true"))]);
        }
        let table = create.await.unwrap();
        let key = RowKey {
            table_uri: "file:///t".into(),
            versions: None,
        };
        assert!(
            lookup::rows::<FileRow, FileRow>(&table, "files", &key, &mut |r| r)
                .await
                .unwrap()
                .is_none()
        );
        let counted = lookup::count::<FileRow>(&table, "files", &key)
            .await
            .unwrap();
        assert_eq!(counted, None);
    }

    /// Compacted files are written in row groups of about [`SYSTEM_ROW_GROUP_BYTES`], so whoever
    /// reads one back (the next compaction, a query) holds a row group at a time, not the file.
    #[tokio::test]
    async fn compacted_files_have_bounded_row_groups() {
        use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_file_rows(dir.path(), 0..0).await;
        let per_append = 15_000u64;
        for a in 0..2 {
            let t = store.load_files().await.unwrap();
            let rows: Vec<FileRow> = (a * per_append..(a + 1) * per_append)
                .map(file_row)
                .collect();
            store
                .append_files(t, &rows, "file:///t", a, "run")
                .await
                .unwrap();
        }
        let location = store.files_location().clone();
        let t = store.load_files().await.unwrap();
        AttestationStore::compact_at(t, &location, 2, 1_000_000).await;
        let t = store.load_files().await.unwrap();
        let paths: Vec<String> = t
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect();
        assert_eq!(paths.len(), 1, "{paths:?}");
        let file =
            std::fs::File::open(dir.path().join("system/makoto/files").join(&paths[0])).unwrap();
        let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
        let groups = meta.row_groups();
        let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
        assert_eq!(rows, 2 * per_append as i64);
        assert!(groups.len() >= 2, "{} row group(s)", groups.len());
        for g in groups {
            let bytes = usize::try_from(g.compressed_size()).unwrap();
            assert!(
                bytes <= 2 * SYSTEM_ROW_GROUP_BYTES,
                "a row group of {bytes} bytes"
            );
        }
        // Rows are found in whichever row group holds them, and across two.
        let last = 2 * per_append - 1;
        for (from, to) in [
            (0, 0),
            (per_append - 2, per_append + 1),
            (last - 3, last + 3),
        ] {
            let expected: Vec<u64> = (from..=to.min(last)).collect();
            let versions = Some(from as i64..=to as i64);
            read_directly_as_queried(&store, &t, "file:///t", versions, &expected).await;
        }
    }

    /// Two runs that both see the same small files compact them once: the second one's
    /// OPTIMIZE conflicts on the compaction transaction instead of adding every row again.
    #[tokio::test]
    async fn two_compactions_of_the_same_files_commit_once() {
        let dir = tempfile::tempdir().unwrap();
        let n = 6u64;
        let store = store_with_file_rows(dir.path(), 0..n).await;
        let (first, second) = (
            store.load_files().await.unwrap(),
            store.load_files().await.unwrap(),
        );
        let location = store.files_location().clone();
        AttestationStore::compact_at(first, &location, 2, 1_000_000).await;
        AttestationStore::compact_at(second, &location, 2, 1_000_001).await;
        let t = store.load_files().await.unwrap();
        assert_eq!(live_files(&t), 1);
        let rows = store.file_rows(&t, "file:///t", 0, n).await.unwrap();
        assert_eq!(rows, (0..n).map(file_row).collect::<Vec<_>>());
        // The claim was released: the next pile of small files is compacted.
        append_file_rows(&store, n..2 * n).await;
        let t = store.load_files().await.unwrap();
        AttestationStore::compact_at(t, &location, 2, 1_000_002).await;
        let t = store.load_files().await.unwrap();
        assert_eq!(live_files(&t), 1);
        let rows = store.file_rows(&t, "file:///t", 0, 2 * n).await.unwrap();
        assert_eq!(rows, (0..2 * n).map(file_row).collect::<Vec<_>>());
    }

    /// A claim that was never released (its run died) keeps others off for the lease only.
    #[tokio::test]
    async fn an_unreleased_claim_lapses_after_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_file_rows(dir.path(), 0..4).await;
        let t = store.load_files().await.unwrap();
        AttestationStore::commit_compaction_txn(&t, 2 * 1_000_000 + 1)
            .await
            .unwrap();
        let location = store.files_location().clone();
        let t = store.load_files().await.unwrap();
        let held = 1_000_000 + COMPACTION_LEASE_MS - 1;
        AttestationStore::compact_at(t, &location, 2, held).await;
        assert_eq!(live_files(&store.load_files().await.unwrap()), 4);
        let t = store.load_files().await.unwrap();
        AttestationStore::compact_at(t, &location, 2, held + 1).await;
        assert_eq!(live_files(&store.load_files().await.unwrap()), 1);
    }
}
