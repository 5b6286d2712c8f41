//! SQL over the Makoto system tables with DataFusion.
//!
//! [`MakotoSession`] is a DataFusion session in which the tables of a warehouse are reachable
//! by their three-part names, `system.makoto.attestations` and `system.makoto.files`.
//!
//! ```no_run
//! # async fn example() -> Result<(), makoto_sql::Error> {
//! use makoto_delta::{Location, StorageOptions};
//! let session = makoto_sql::MakotoSession::open(&Location::existing("/tmp/warehouse")?, &StorageOptions::default()).await?;
//! let batches = session
//!     .sql("SELECT version, operation, level FROM system.makoto.attestations ORDER BY version")
//!     .await?;
//! println!("{}", makoto_sql::format_table(&batches)?);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::arrow::array::RecordBatch;
use makoto_delta::store::{ATTESTATIONS_PATH, FILES_PATH};
use makoto_delta::{Location, StorageOptions};

/// Errors of the SQL layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] makoto_delta::Error),
    #[error("cannot open {table}: {source}")]
    Open {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("SQL error: {source}")]
    Sql {
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("cannot format results: {source}")]
    Format {
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
}

/// A DataFusion session with the `system.makoto.*` tables registered.
pub struct MakotoSession {
    ctx: SessionContext,
}

impl std::fmt::Debug for MakotoSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakotoSession").finish_non_exhaustive()
    }
}

impl MakotoSession {
    pub async fn open(warehouse: &Location, options: &StorageOptions) -> Result<Self, Error> {
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
        let schema = Arc::new(MemorySchemaProvider::new());
        for (name, path) in [("attestations", ATTESTATIONS_PATH), ("files", FILES_PATH)] {
            let location = warehouse.join(path)?;
            let mut table = location.delta_table(options)?;
            table.load().await.map_err(|source| Error::Open {
                table: format!("system.makoto.{name} at {location}"),
                source,
            })?;
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|source| Error::Open {
                    table: format!("system.makoto.{name}"),
                    source,
                })?;
            let provider = table
                .table_provider()
                .await
                .map_err(|source| Error::Sql { source })?;
            schema
                .register_table(name.to_owned(), provider)
                .map_err(|source| Error::Sql { source })?;
        }
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog
            .register_schema("makoto", schema)
            .map_err(|source| Error::Sql { source })?;
        ctx.register_catalog("system", catalog);
        Ok(MakotoSession { ctx })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, Error> {
        self.ctx
            .sql(query)
            .await
            .map_err(|source| Error::Sql { source })?
            .collect()
            .await
            .map_err(|source| Error::Sql { source })
    }
}

/// Renders batches as an ASCII table.
pub fn format_table(batches: &[RecordBatch]) -> Result<String, Error> {
    deltalake::arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .map_err(|source| Error::Format { source })
}
