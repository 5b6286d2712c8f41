//! Real Delta tables for tests, benchmarks and the bundled sample, written with delta-rs.
//!
//! [`SampleTable`] wraps a table with the schema `id BIGINT, name STRING, amount DOUBLE,
//! region STRING` (partitioned by `region`) and one method per kind of commit: append,
//! overwrite, delete, update, merge (upsert), optimize, checkpoint and vacuum.

pub mod synthetic;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use deltalake::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::{DataType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};

/// A Delta table under test.
pub struct SampleTable {
    path: PathBuf,
    table: Option<DeltaTable>,
}

impl std::fmt::Debug for SampleTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SampleTable({})", self.path.display())
    }
}

fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", ArrowType::Int64, false),
        Field::new("name", ArrowType::Utf8, true),
        Field::new("amount", ArrowType::Float64, true),
        Field::new("region", ArrowType::Utf8, true),
    ]))
}

/// Rows `ids` in `region`, with deterministic names and amounts.
pub fn rows(ids: std::ops::Range<i64>, region: &str) -> Result<RecordBatch> {
    let n = ids.clone().count();
    Ok(RecordBatch::try_new(
        arrow_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("customer-{i}")),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.map(|i| (i * 37 % 1000) as f64 / 4.0),
            )),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                region, n,
            ))),
        ],
    )?)
}

/// The sample schema as Delta columns: `id BIGINT NOT NULL, name STRING, amount DOUBLE,
/// region STRING` (tables are partitioned by `region`).
pub fn sample_columns() -> [StructField; 4] {
    [
        StructField::new("id", DataType::LONG, false),
        StructField::new("name", DataType::STRING, true),
        StructField::new("amount", DataType::DOUBLE, true),
        StructField::new("region", DataType::STRING, true),
    ]
}

fn url_of(path: &Path) -> Result<url::Url> {
    std::fs::create_dir_all(path)?;
    let abs = std::fs::canonicalize(path)?;
    url::Url::from_directory_path(&abs).map_err(|()| anyhow::anyhow!("bad path {}", abs.display()))
}

impl SampleTable {
    /// Creates an empty partitioned table (version 0, `CREATE TABLE`).
    pub async fn create(path: &Path) -> Result<Self> {
        let url = url_of(path)?;
        let table = DeltaTableBuilder::from_url(url)?.build()?;
        let table = table
            .create()
            .with_columns(sample_columns())
            .with_partition_columns(["region"])
            .with_table_name("sales")
            .with_comment("Makoto sample table")
            .await
            .context("create table")?;
        Ok(SampleTable {
            path: path.to_owned(),
            table: Some(table),
        })
    }

    /// Opens an existing table.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = url_of(path)?;
        let mut table = DeltaTableBuilder::from_url(url)?.build()?;
        table.load().await?;
        Ok(SampleTable {
            path: path.to_owned(),
            table: Some(table),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(&mut self) -> Result<DeltaTable> {
        self.table
            .take()
            .context("table handle lost after a failed operation")
    }

    pub fn version(&self) -> Option<u64> {
        self.table.as_ref().and_then(DeltaTable::version)
    }

    pub async fn append(&mut self, batch: RecordBatch) -> Result<()> {
        let t = self.take()?;
        self.table = Some(
            t.write(vec![batch])
                .with_save_mode(SaveMode::Append)
                .await?,
        );
        Ok(())
    }

    pub async fn overwrite(&mut self, batch: RecordBatch) -> Result<()> {
        let t = self.take()?;
        self.table = Some(
            t.write(vec![batch])
                .with_save_mode(SaveMode::Overwrite)
                .await?,
        );
        Ok(())
    }

    /// Overwrites only the rows matching `predicate` (`replaceWhere`).
    pub async fn overwrite_where(&mut self, batch: RecordBatch, predicate: &str) -> Result<()> {
        let t = self.take()?;
        self.table = Some(
            t.write(vec![batch])
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(predicate.to_owned())
                .await?,
        );
        Ok(())
    }

    /// Deletes rows matching a SQL predicate (e.g. `"id < 10"`).
    pub async fn delete(&mut self, predicate: &str) -> Result<()> {
        let t = self.take()?;
        let (t, _) = t.delete().with_predicate(predicate.to_owned()).await?;
        self.table = Some(t);
        Ok(())
    }

    /// `UPDATE … SET amount = amount * 2 WHERE <predicate>`.
    pub async fn double_amounts(&mut self, predicate: &str) -> Result<()> {
        let t = self.take()?;
        let (t, _) = t
            .update()
            .with_predicate(predicate.to_owned())
            .with_update("amount", "amount * 2")
            .await?;
        self.table = Some(t);
        Ok(())
    }

    /// `MERGE` upsert of `batch` on `id`: matched rows take the new name and amount, others
    /// are inserted.
    pub async fn upsert(&mut self, batch: RecordBatch) -> Result<()> {
        let t = self.take()?;
        let source = SessionContext::new().read_batch(batch)?;
        let (t, _) = t
            .merge(source, col("target.id").eq(col("source.id")))
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_update(|u| {
                u.update("name", col("source.name"))
                    .update("amount", col("source.amount"))
            })?
            .when_not_matched_insert(|i| {
                i.set("id", col("source.id"))
                    .set("name", col("source.name"))
                    .set("amount", col("source.amount"))
                    .set("region", col("source.region"))
            })?
            .await?;
        self.table = Some(t);
        Ok(())
    }

    /// Compacts small files (`OPTIMIZE`).
    pub async fn optimize(&mut self) -> Result<()> {
        let t = self.take()?;
        let (t, _) = t.optimize().await?;
        self.table = Some(t);
        Ok(())
    }

    /// Writes a checkpoint for the current version.
    pub async fn checkpoint(&mut self) -> Result<()> {
        let t = self.take()?;
        deltalake::checkpoints::create_checkpoint(&t, None).await?;
        self.table = Some(t);
        Ok(())
    }

    /// Deletes files no longer referenced, with zero retention (`VACUUM … RETAIN 0 HOURS`).
    pub async fn vacuum_all(&mut self) -> Result<usize> {
        let t = self.take()?;
        let (t, metrics) = t
            .vacuum()
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .await?;
        self.table = Some(t);
        Ok(metrics.files_deleted.len())
    }

    /// Rows of the current version through DataFusion (deletion vectors applied), sorted by id.
    pub async fn row_count(&self) -> Result<usize> {
        let t = self.table.as_ref().context("no table")?;
        let ctx = SessionContext::new();
        t.update_datafusion_session(&ctx.state())?;
        let provider = t.table_provider().await?;
        let df = ctx.read_table(provider)?.filter(lit(true))?;
        Ok(df.count().await?)
    }
}

/// Copies a directory tree (regular files and directories), making the copies writable.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            let mut perm = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&target, perm)?;
        }
    }
    Ok(())
}

/// Builds the bundled sample history at `path` (versions 0–9): create, two appends, delete,
/// merge, update, overwrite of one partition, two appends, a checkpoint at version 8, optimize.
pub async fn build_sample(path: &Path) -> Result<SampleTable> {
    let mut t = SampleTable::create(path).await?;
    t.append(rows(0..40, "emea")?).await?;
    t.append(rows(40..80, "amer")?).await?;
    t.delete("id % 10 = 3").await?;
    t.upsert(rows(75..90, "amer")?).await?;
    t.double_amounts("region = 'emea' AND id < 20").await?;
    t.overwrite_where(rows(200..230, "amer")?, "region = 'amer'")
        .await?;
    t.append(rows(100..130, "apac")?).await?;
    t.append(rows(130..150, "apac")?).await?;
    t.checkpoint().await?;
    t.optimize().await?;
    Ok(t)
}
