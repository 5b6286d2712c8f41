//! The rows of one source table, read straight from a system table's Parquet files.
//!
//! An attest run reads one row, the chain tip. Asking DataFusion for it meant a session, its
//! optimizer passes and a scan plan that replayed the system table's log once more: about a
//! quarter of a run that attests one commit. A system table makoto wrote has the plainest
//! Delta protocol (reader version 1: no column mapping, no deletion vectors), no partition
//! columns and relative file paths, so its rows are exactly the rows of the Parquet files its
//! snapshot lists. Those are read here, skipping files and row groups whose `table_uri` and
//! `version` statistics rule them out, and decoding the other columns only for rows that
//! match. A table that is not that plain, or a file whose columns are stored as other types
//! than makoto writes, is left to DataFusion ([`rows`] returns `None`).

use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::LogicalFileView;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection,
};
use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData,
};
use deltalake::parquet::file::statistics::Statistics;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::columns::{self, SystemRow};
use crate::Error;

/// The rows wanted: those of `table_uri`, at a version in `versions` when given (the
/// table then has a `version` column).
#[derive(Debug, Clone)]
pub(crate) struct RowKey {
    pub table_uri: String,
    pub versions: Option<RangeInclusive<i64>>,
}

/// The rows of `table` (the system table `store`) that match `key`, unordered, passed
/// through `each` a data file at a time; `None` when the table is not plain enough to be read
/// without a Delta reader (what `each` returned for earlier files is then dropped).
pub(super) async fn rows<R: SystemRow, T>(
    table: &DeltaTable,
    store: &str,
    key: &RowKey,
    each: &mut impl FnMut(Vec<R>) -> Vec<T>,
) -> Result<Option<Vec<T>>, Error> {
    let Some(files) = plain_files(table, store)? else {
        return Ok(None);
    };
    let object_store = table.log_store().object_store(None);
    let mut out = Vec::new();
    for file in files.iter().filter(|f| may_hold(f.stats().as_deref(), key)) {
        match read_file::<R>(&object_store, file, store, key).await? {
            Some(rows) => out.extend(each(rows)),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// How many rows of `table` (the system table `store`) match `key`, from their key columns
/// alone; `None` when the table is not plain enough to be read without a Delta reader.
pub(super) async fn count<R: SystemRow>(
    table: &DeltaTable,
    store: &str,
    key: &RowKey,
) -> Result<Option<u64>, Error> {
    let Some(files) = plain_files(table, store)? else {
        return Ok(None);
    };
    let object_store = table.log_store().object_store(None);
    let mut count = 0;
    for file in files.iter().filter(|f| may_hold(f.stats().as_deref(), key)) {
        match select::<R>(&object_store, file, store, key).await? {
            Selected::NotAsIs => return Ok(None),
            Selected::Nothing => {}
            Selected::Rows { selection, .. } => count += selection.row_count() as u64,
        }
    }
    Ok(Some(count))
}

/// The data files of `table`, when it is plain: reader protocol 1, no partition columns,
/// relative paths.
fn plain_files(table: &DeltaTable, store: &str) -> Result<Option<Vec<LogicalFileView>>, Error> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(store.to_owned(), e))?;
    if snapshot.protocol().min_reader_version() != 1
        || !snapshot.metadata().partition_columns().is_empty()
    {
        return Ok(None);
    }
    let files: Vec<LogicalFileView> = snapshot.log_data().iter().collect();
    if (files.iter()).any(|f| f.path().contains("://") || f.path().starts_with('/')) {
        return Ok(None);
    }
    Ok(Some(files))
}

/// Whether a file whose Delta statistics are `stats` may hold a row of `key`: `false` only
/// when its `table_uri` or `version` bounds exclude it. String bounds may be truncated, but
/// they stay bounds (a truncated minimum is a prefix, a truncated maximum is rounded up), as
/// Delta readers and DataFusion's pruning rely on too.
fn may_hold(stats: Option<&str>, key: &RowKey) -> bool {
    let Some(stats) = stats.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return true;
    };
    let bound = |which: &str, column: &str| stats.get(which)?.get(column).cloned();
    let uri = |which| bound(which, "table_uri")?.as_str().map(str::to_owned);
    let version = |which| bound(which, "version")?.as_i64();
    within(
        key,
        uri("minValues").as_deref().map(str::as_bytes),
        uri("maxValues").as_deref().map(str::as_bytes),
        version("minValues").zip(version("maxValues")),
    )
}

/// Whether rows whose `table_uri` lies within `uri_min..=uri_max` (each bound when known) and
/// whose `version` lies within `versions` (when known) may include a row of `key`.
fn within(
    key: &RowKey,
    uri_min: Option<&[u8]>,
    uri_max: Option<&[u8]>,
    versions: Option<(i64, i64)>,
) -> bool {
    let uri = key.table_uri.as_bytes();
    if uri_min.is_some_and(|min| uri < min) || uri_max.is_some_and(|max| uri > max) {
        return false;
    }
    match (&key.versions, versions) {
        (Some(wanted), Some((min, max))) => min <= *wanted.end() && max >= *wanted.start(),
        _ => true,
    }
}

/// What the key columns of one data file select.
enum Selected {
    /// A column is stored as a type the rows are not read from as is.
    NotAsIs,
    /// No row of the key.
    Nothing,
    /// The rows of the key, in the row groups that may hold it.
    Rows {
        reader: FileReader,
        metadata: ArrowReaderMetadata,
        groups: Vec<usize>,
        selection: RowSelection,
    },
}

/// The matching rows of one data file, in two passes: the key columns of the row groups that
/// may hold `key` ([`select`]), then every column of the rows that match. `None` when a
/// column is stored as a type the rows are not read from as is (another writer's timestamps
/// in nanoseconds, say): DataFusion casts those to the table's types.
async fn read_file<R: SystemRow>(
    object_store: &Arc<dyn ObjectStore>,
    file: &LogicalFileView,
    store: &str,
    key: &RowKey,
) -> Result<Option<Vec<R>>, Error> {
    let (reader, metadata, groups, selection) =
        match select::<R>(object_store, file, store, key).await? {
            Selected::NotAsIs => return Ok(None),
            Selected::Nothing => return Ok(Some(Vec::new())),
            Selected::Rows {
                reader,
                metadata,
                groups,
                selection,
            } => (reader, metadata, groups, selection),
        };
    let path = file.object_store_path();
    let errors = FileErrors { store, path: &path };
    // Collected before converting: converting each batch as it is decoded interleaves the
    // rows' strings with the batches' buffers, and the verify of 10,001 rows peaked at
    // 348 - 352 MB instead of 320 - 324 MB.
    let batches: Vec<_> = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
        .with_row_groups(groups)
        .with_row_selection(selection)
        .build()
        .map_err(|e| errors.failed(e))?
        .try_collect()
        .await
        .map_err(|e| errors.failed(e))?;
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(columns::from_batch::<R>(batch, store)?);
    }
    Ok(Some(rows))
}

/// The errors of reading one data file, naming it.
struct FileErrors<'a> {
    store: &'a str,
    path: &'a Path,
}

impl FileErrors<'_> {
    fn unreadable(&self, e: String) -> Error {
        Error::StoreCorrupt {
            store: self.store.to_owned(),
            reason: format!("file {} cannot be read: {e}", self.path),
        }
    }

    fn failed(&self, e: ParquetError) -> Error {
        match e {
            ParquetError::External(source) => match source.downcast::<object_store::Error>() {
                Ok(source) => Error::Storage {
                    location: format!("{}/{}", self.store.trim_end_matches('/'), self.path),
                    source,
                },
                Err(other) => self.unreadable(other.to_string()),
            },
            other => self.unreadable(other.to_string()),
        }
    }
}

/// The rows of one data file that match `key`, from its key columns, in the row groups whose
/// Parquet statistics may hold it.
async fn select<R: SystemRow>(
    object_store: &Arc<dyn ObjectStore>,
    file: &LogicalFileView,
    store: &str,
    key: &RowKey,
) -> Result<Selected, Error> {
    let path = file.object_store_path();
    let errors = FileErrors { store, path: &path };
    let size = u64::try_from(file.size())
        .map_err(|_| errors.unreadable(format!("the log gives it {} bytes", file.size())))?;
    let mut reader = FileReader {
        store: Arc::clone(object_store),
        path: path.clone(),
        size,
    };
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::default())
        .await
        .map_err(|e| errors.failed(e))?;
    if !columns::reads_as_is(metadata.schema(), R::COLUMNS) {
        return Ok(Selected::NotAsIs);
    }
    let parquet_schema = metadata.metadata().file_metadata().schema_descr();
    let column_at = |name: &str| {
        parquet_schema
            .columns()
            .iter()
            .position(|c| c.path().parts() == [name])
            .ok_or_else(|| errors.unreadable(format!("it has no column {name}")))
    };
    let uri_at = column_at("table_uri")?;
    let version_at = match key.versions {
        Some(_) => Some(column_at("version")?),
        None => None,
    };
    let groups: Vec<usize> = (metadata.metadata().row_groups().iter().enumerate())
        .filter(|(_, g)| group_may_hold(g, uri_at, version_at, key))
        .map(|(i, _)| i)
        .collect();
    let keys = match version_at {
        Some(_) => vec!["table_uri", "version"],
        None => vec!["table_uri"],
    };
    if groups.is_empty() {
        return Ok(Selected::Nothing);
    }
    let projection = ProjectionMask::columns(parquet_schema, keys);
    let key_batches: Vec<_> =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), metadata.clone())
            .with_projection(projection)
            .with_row_groups(groups.clone())
            .build()
            .map_err(|e| errors.failed(e))?
            .try_collect()
            .await
            .map_err(|e| errors.failed(e))?;
    let masks = key_batches
        .iter()
        .map(|b| columns::key_mask(b, key).map_err(|e| errors.unreadable(e)))
        .collect::<Result<Vec<_>, _>>()?;
    let selection = RowSelection::from_filters(&masks);
    if !selection.selects_any() {
        return Ok(Selected::Nothing);
    }
    Ok(Selected::Rows {
        reader,
        metadata,
        groups,
        selection,
    })
}

/// One data file of a system table, of the size the log gives it, read in ranges.
#[derive(Clone)]
struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

/// How much of a file's end is read at once for its footer: most system-table footers fit.
const FOOTER_PREFETCH: usize = 64 * 1024;

fn parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(parquet_error)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

type ParquetResult<T> = Result<T, ParquetError>;

/// Whether row group `group` may hold a row of `key`, by the Parquet statistics of its
/// `table_uri` and `version` columns (at `uri_at` and `version_at`).
fn group_may_hold(
    group: &RowGroupMetaData,
    uri_at: usize,
    version_at: Option<usize>,
    key: &RowKey,
) -> bool {
    let statistics = |at: usize| group.columns().get(at).and_then(|c| c.statistics());
    let (uri_min, uri_max) = match statistics(uri_at) {
        Some(Statistics::ByteArray(s)) => {
            (s.min_opt().map(|v| v.data()), s.max_opt().map(|v| v.data()))
        }
        _ => (None, None),
    };
    let versions = match version_at.and_then(statistics) {
        Some(Statistics::Int64(s)) => s.min_opt().copied().zip(s.max_opt().copied()),
        _ => None,
    };
    within(key, uri_min, uri_max, versions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn key(versions: RangeInclusive<i64>) -> RowKey {
        RowKey {
            table_uri: "file:///t".into(),
            versions: Some(versions),
        }
    }

    const STATS: &str = r#"{"minValues":{"table_uri":"file:///a","version":3},"maxValues":{"table_uri":"file:///u","version":9}}"#;

    #[rstest]
    #[case::inside(STATS, 5..=5, true)]
    #[case::at_the_low_end(STATS, 0..=3, true)]
    #[case::at_the_high_end(STATS, 9..=20, true)]
    #[case::below(STATS, 0..=2, false)]
    #[case::above(STATS, 10..=10, false)]
    #[case::no_max(r#"{"minValues":{"version":3}}"#, 10..=10, true)]
    #[case::not_a_number(r#"{"minValues":{"version":"3"},"maxValues":{"version":9}}"#, 10..=10, true)]
    #[case::not_json("{", 10..=10, true)]
    #[case::uri_below(r#"{"minValues":{"table_uri":"file:///u"}}"#, 5..=5, false)]
    #[case::uri_above(r#"{"maxValues":{"table_uri":"file:///s"}}"#, 5..=5, false)]
    #[case::uri_is_the_min(r#"{"minValues":{"table_uri":"file:///t"}}"#, 5..=5, true)]
    #[case::uri_is_the_max(r#"{"maxValues":{"table_uri":"file:///t"}}"#, 5..=5, true)]
    #[case::truncated_min_is_a_prefix(r#"{"minValues":{"table_uri":"file:///"}}"#, 5..=5, true)]
    #[case::truncated_max_rounded_up(r#"{"maxValues":{"table_uri":"file:0"}}"#, 5..=5, true)]
    fn files_are_skipped_only_on_known_bounds(
        #[case] stats: &str,
        #[case] versions: RangeInclusive<i64>,
        #[case] expected: bool,
    ) {
        assert_eq!(may_hold(Some(stats), &key(versions)), expected);
    }

    #[test]
    fn a_file_without_statistics_is_read() {
        assert!(may_hold(None, &key(1..=1)));
    }

    #[test]
    fn without_versions_only_the_uri_bounds_count() {
        let any = |uri: &str| RowKey {
            table_uri: uri.into(),
            versions: None,
        };
        assert!(may_hold(Some(STATS), &any("file:///t")));
        assert!(!may_hold(Some(STATS), &any("file:///v")));
    }
}
