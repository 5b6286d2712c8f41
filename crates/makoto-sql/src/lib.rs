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

pub mod functions;
pub mod lineage;
pub mod transform;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use makoto_core::attested::parse_subject_name;
use makoto_core::verify::TrustedKeys;
use makoto_delta::lineage::Lineage;
use makoto_delta::store::{
    ATTESTATIONS_PATH, FILES_PATH, RUNS_PATH, VERIFICATIONS_PATH, WINDOWS_PATH, empty_runs,
    empty_verifications, empty_windows, has_delta_log,
};
use makoto_delta::{AttestationRow, Location, StorageOptions};

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
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("SQL error: {source}")]
    Sql {
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    #[error(
        "input {input} ({table} version {version}) is not attested and verified: {reason} (use --allow-unattested to read it anyway; that is recorded in the attestation)"
    )]
    InputNotVerified {
        input: String,
        table: String,
        version: u64,
        reason: String,
    },
    #[error("cannot write {table}: {source}")]
    Write {
        table: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("{table}: the transform was written but not attested with its inputs: {reason}")]
    TransformNotRecorded { table: String, reason: String },
    #[error("bad table {spec:?}: {reason}")]
    TableSpec { spec: String, reason: String },
    #[error("cannot format results: {source}")]
    Format {
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(source: datafusion::error::DataFusionError) -> Self {
        Error::Sql {
            source: Box::new(source),
        }
    }
}

/// The column a table registered with a file column is first read with: the file's URL.
const FILE_URL_COLUMN: &str = "__makoto_file_url";

/// A user table registered in the session: `NAME=URI`, or `NAME=URI@vN` pinned to a version.
#[derive(Debug, Clone)]
pub struct UserTable {
    name: String,
    location: Location,
    version: Option<u64>,
    file_column: Option<String>,
}

impl UserTable {
    pub fn new(name: impl Into<String>, location: Location, version: Option<u64>) -> Self {
        UserTable {
            name: name.into(),
            location,
            version,
            file_column: None,
        }
    }

    /// Adds a column `name` holding each row's data file, as `system.makoto.files.path` names
    /// it (relative to the table root), so rows join to the commits and windows that added them.
    pub fn with_file_column(mut self, name: impl Into<String>) -> Self {
        self.file_column = Some(name.into());
        self
    }

    /// Parses `NAME=URI` or `NAME=URI@vN`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::TableSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=URI or NAME=URI@vN"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("the name must be letters, digits and _"));
        }
        let (uri, version) = match parse_subject_name(rest) {
            Some((uri, v)) => (uri, Some(v)),
            None => (rest.to_owned(), None),
        };
        Ok(UserTable {
            name: name.to_owned(),
            location: Location::existing(&uri)?,
            version,
            file_column: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn location(&self) -> &Location {
        &self.location
    }
    pub fn version(&self) -> Option<u64> {
        self.version
    }
    pub fn file_column(&self) -> Option<&str> {
        self.file_column.as_deref()
    }
}

/// What a session registers besides the system tables.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub storage: StorageOptions,
    /// Default keys of `makoto_verify(envelope)`.
    pub trust: TrustedKeys,
    pub tables: Vec<UserTable>,
}

/// A DataFusion session with the `system.makoto.*` tables registered.
pub struct MakotoSession {
    ctx: SessionContext,
    lineage: Arc<Lineage>,
    pinned: Vec<(String, String, u64)>,
}

impl std::fmt::Debug for MakotoSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakotoSession").finish_non_exhaustive()
    }
}

async fn provider(
    ctx: &SessionContext,
    location: &Location,
    version: Option<u64>,
    options: &StorageOptions,
    what: &str,
    file_column: Option<&str>,
) -> Result<(Arc<dyn datafusion::catalog::TableProvider>, u64), Error> {
    let mut table = location.delta_table(options)?;
    let loaded = match version {
        Some(v) => table.load_version(v).await,
        None => table.load().await,
    };
    loaded.map_err(|source| Error::Open {
        table: format!(
            "{what} at {location}{}",
            version.map(|v| format!(" version {v}")).unwrap_or_default()
        ),
        source: Box::new(source),
    })?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|source| Error::Open {
            table: what.to_owned(),
            source: Box::new(source),
        })?;
    let at = table.version().unwrap_or(0);
    let mut builder = table.table_provider();
    if let Some(c) = file_column {
        builder = builder.with_file_column(c);
    }
    let provider = builder.await?;
    Ok((provider, at))
}

impl MakotoSession {
    /// Opens a session over the warehouse's system tables only.
    pub async fn open(warehouse: &Location, options: &StorageOptions) -> Result<Self, Error> {
        Self::open_with(
            warehouse,
            SessionOptions {
                storage: options.clone(),
                ..SessionOptions::default()
            },
        )
        .await
    }

    /// Opens a session with the system tables, user tables, the provenance functions and the
    /// lineage table function.
    pub async fn open_with(warehouse: &Location, options: SessionOptions) -> Result<Self, Error> {
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
        let storage = &options.storage;
        let schema = Arc::new(MemorySchemaProvider::new());
        for (name, path) in [("attestations", ATTESTATIONS_PATH), ("files", FILES_PATH)] {
            let location = warehouse.join(path)?;
            let (p, _) = provider(
                &ctx,
                &location,
                None,
                storage,
                &format!("system.makoto.{name}"),
                None,
            )
            .await?;
            schema.register_table(name.to_owned(), p)?;
        }
        // Tables written on first use: empty until then.
        type Empty = fn() -> Result<arrow::array::RecordBatch, makoto_delta::Error>;
        let optional: [(&str, &str, &str, Empty); 3] = [
            (
                VERIFICATIONS_PATH,
                "verifications",
                "system.makoto.verifications",
                empty_verifications,
            ),
            (
                WINDOWS_PATH,
                "windows",
                "system.makoto.windows",
                empty_windows,
            ),
            (RUNS_PATH, "runs", "system.makoto.runs", empty_runs),
        ];
        for (path, name, display, empty) in optional {
            let location = warehouse.join(path)?;
            let p: Arc<dyn datafusion::catalog::TableProvider> =
                if has_delta_log(&location, storage).await? {
                    provider(&ctx, &location, None, storage, display, None)
                        .await?
                        .0
                } else {
                    let empty = empty()?;
                    Arc::new(MemTable::try_new(empty.schema(), vec![vec![empty]])?)
                };
            schema.register_table(name.into(), p)?;
        }

        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema("makoto", Arc::clone(&schema) as Arc<dyn SchemaProvider>)?;
        ctx.register_catalog("system", catalog);

        let rows = {
            let batches = ctx
                .sql("SELECT * FROM system.makoto.attestations")
                .await?
                .collect()
                .await?;
            let store = warehouse.join(ATTESTATIONS_PATH)?.as_uri();
            let mut rows = Vec::new();
            for b in &batches {
                rows.extend(AttestationRow::read_batch(b, &store)?);
            }
            rows
        };
        let lineage = Arc::new(Lineage::from_rows(&rows));
        schema.register_table("lineage".into(), Arc::new(lineage::edge_table(&lineage)?))?;

        let mut aliases = HashMap::new();
        let mut pinned = Vec::new();
        for f in functions::scalar_functions(Arc::new(options.trust.clone())) {
            ctx.register_udf(f);
        }
        for t in &options.tables {
            let raw = t.file_column().map(|_| FILE_URL_COLUMN);
            let (p, at) = provider(&ctx, t.location(), t.version(), storage, t.name(), raw).await?;
            match t.file_column() {
                None => ctx.register_table(t.name(), p)?,
                Some(column) => {
                    let hidden = format!("__makoto_files_{}", t.name());
                    ctx.register_table(hidden.as_str(), p)?;
                    let view = ctx
                        .sql(&format!(
                            "SELECT * EXCEPT ({FILE_URL_COLUMN}), \
                             makoto_table_path({FILE_URL_COLUMN}, '{}') AS \"{}\" FROM {hidden}",
                            t.location().as_uri().replace('\'', "''"),
                            column.replace('"', "\"\""),
                        ))
                        .await?
                        .into_view();
                    ctx.register_table(t.name(), view)?
                }
            };
            aliases.insert(t.name().to_owned(), t.location().as_uri());
            pinned.push((t.name().to_owned(), t.location().as_uri(), at));
        }
        ctx.register_udtf(
            "makoto_lineage",
            Arc::new(lineage::LineageFunction::new(Arc::clone(&lineage), aliases)),
        );
        Ok(MakotoSession {
            ctx,
            lineage,
            pinned,
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The lineage graph decoded from the attestations when the session opened.
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The user tables as registered: name, canonical URI, version.
    pub fn user_tables(&self) -> &[(String, String, u64)] {
        &self.pinned
    }

    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, Error> {
        Ok(self.ctx.sql(query).await?.collect().await?)
    }

    /// Like [`sql`](Self::sql), with the result's schema, which an empty result needs too.
    pub async fn query(&self, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
        let frame = self.ctx.sql(query).await?;
        let planned: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        let schema = batches.first().map_or(planned, RecordBatch::schema);
        Ok((schema, batches))
    }
}

/// Output formats of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Renders batches in `format` (JSON: one array of objects).
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Table => format_table(batches),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = deltalake::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(|source| Error::Format { source })?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = deltalake::arrow::json::ArrayWriter::new(&mut buf);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs)
                    .map_err(|source| Error::Format { source })?;
                w.finish().map_err(|source| Error::Format { source })?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// Renders batches as an ASCII table.
pub fn format_table(batches: &[RecordBatch]) -> Result<String, Error> {
    deltalake::arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .map_err(|source| Error::Format { source })
}
impl std::str::FromStr for UserTable {
    type Err = Error;

    /// `NAME=URI` or `NAME=URI@vN` (see [`UserTable::parse`]).
    fn from_str(spec: &str) -> Result<Self, Error> {
        UserTable::parse(spec)
    }
}
