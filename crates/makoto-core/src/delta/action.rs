use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::dv::{DeletionVector, RawDeletionVector};
use super::path::FilePath;
use crate::Error;

/// One action of a commit, parsed into the fields attestation uses. Every action is also kept
/// verbatim (as JSON) by [`super::Commit`] for the commit digest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Action {
    Add(AddFile),
    Remove(RemoveFile),
    Cdc(CdcFile),
    Metadata(Metadata),
    Protocol(Protocol),
    CommitInfo(CommitInfo),
    Txn(Txn),
    DomainMetadata(DomainMetadata),
    /// An action type this version does not interpret (kept in the digest, listed by name).
    Other {
        name: String,
    },
}

impl Action {
    /// Replaces the file path of an `add`, `remove` or `cdc` when `f` gives another one (the
    /// relative form of an absolute path under the table root: one identity per file).
    pub fn map_path(&mut self, f: impl Fn(&FilePath) -> Option<FilePath>) {
        let path = match self {
            Action::Add(x) => x.path_mut(),
            Action::Remove(x) => x.path_mut(),
            Action::Cdc(x) => x.path_mut(),
            _ => return,
        };
        if let Some(p) = f(path) {
            *path = p;
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Action::Add(_) => "add",
            Action::Remove(_) => "remove",
            Action::Cdc(_) => "cdc",
            Action::Metadata(_) => "metaData",
            Action::Protocol(_) => "protocol",
            Action::CommitInfo(_) => "commitInfo",
            Action::Txn(_) => "txn",
            Action::DomainMetadata(_) => "domainMetadata",
            Action::Other { name } => name,
        }
    }

    /// Parses one action object `{"<type>": {...}}`.
    pub fn from_json(value: &Value) -> Result<Action, Error> {
        let obj = value.as_object().ok_or_else(|| Error::InvalidAction {
            reason: "action is not a JSON object".into(),
        })?;
        let mut entries = obj.iter();
        let (name, body) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            (None, _) => {
                return Err(Error::InvalidAction {
                    reason: "empty action object".into(),
                });
            }
            (Some(_), Some(_)) => {
                return Err(Error::InvalidAction {
                    reason: format!(
                        "action object has {} keys; exactly one is allowed",
                        obj.len()
                    ),
                });
            }
        };
        fn typed<T: for<'de> Deserialize<'de>>(name: &str, body: &Value) -> Result<T, Error> {
            T::deserialize(body).map_err(|e| Error::InvalidAction {
                reason: format!("{name}: {e}"),
            })
        }
        Ok(match name.as_str() {
            "add" => Action::Add(typed::<RawAdd>(name, body)?.try_into()?),
            "remove" => Action::Remove(typed::<RawRemove>(name, body)?.try_into()?),
            "cdc" => Action::Cdc(typed::<RawCdc>(name, body)?.try_into()?),
            "metaData" => Action::Metadata(typed::<RawMetadata>(name, body)?.into()),
            "protocol" => Action::Protocol(typed::<RawProtocol>(name, body)?.try_into()?),
            "commitInfo" => Action::CommitInfo(CommitInfo::from_json(body)?),
            "txn" => Action::Txn(typed::<RawTxn>(name, body)?.into()),
            "domainMetadata" => {
                Action::DomainMetadata(typed::<RawDomainMetadata>(name, body)?.into())
            }
            other => Action::Other {
                name: other.to_owned(),
            },
        })
    }
}

fn non_negative(what: &str, v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::InvalidAction {
        reason: format!("{what} is negative ({v})"),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAdd {
    path: String,
    #[serde(default)]
    partition_values: BTreeMap<String, Option<String>>,
    size: i64,
    #[serde(default)]
    modification_time: i64,
    #[serde(default)]
    data_change: bool,
    stats: Option<String>,
    deletion_vector: Option<RawDeletionVector>,
    tags: Option<BTreeMap<String, Option<String>>>,
    base_row_id: Option<i64>,
    default_row_commit_version: Option<i64>,
    clustering_provider: Option<String>,
}

/// An `add` action: a data file that is part of the table from this version on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddFile {
    path: FilePath,
    size: u64,
    modification_time: i64,
    data_change: bool,
    partition_values: BTreeMap<String, Option<String>>,
    num_records: Option<u64>,
    deletion_vector: Option<DeletionVector>,
    stats: Option<String>,
    tags: Option<BTreeMap<String, Option<String>>>,
    base_row_id: Option<i64>,
    default_row_commit_version: Option<i64>,
    clustering_provider: Option<String>,
}

impl TryFrom<RawAdd> for AddFile {
    type Error = Error;
    fn try_from(raw: RawAdd) -> Result<Self, Error> {
        Ok(AddFile {
            path: FilePath::from_log(&raw.path)?,
            size: non_negative("add.size", raw.size)?,
            modification_time: raw.modification_time,
            data_change: raw.data_change,
            partition_values: raw.partition_values,
            num_records: raw.stats.as_deref().and_then(num_records),
            deletion_vector: raw.deletion_vector.map(TryInto::try_into).transpose()?,
            stats: raw.stats,
            tags: raw.tags,
            base_row_id: raw.base_row_id,
            default_row_commit_version: raw.default_row_commit_version,
            clustering_provider: raw.clustering_provider,
        })
    }
}

fn num_records(stats: &str) -> Option<u64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        num_records: Option<u64>,
    }
    serde_json::from_str::<Head>(stats).ok()?.num_records
}

impl AddFile {
    pub fn path(&self) -> &FilePath {
        &self.path
    }
    pub(crate) fn path_mut(&mut self) -> &mut FilePath {
        &mut self.path
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn modification_time(&self) -> i64 {
        self.modification_time
    }
    pub fn data_change(&self) -> bool {
        self.data_change
    }
    pub fn partition_values(&self) -> &BTreeMap<String, Option<String>> {
        &self.partition_values
    }
    /// Physical row count from the file statistics, when the writer recorded them.
    pub fn num_records(&self) -> Option<u64> {
        self.num_records
    }
    pub fn deletion_vector(&self) -> Option<&DeletionVector> {
        self.deletion_vector.as_ref()
    }
    /// The `stats` JSON string as written.
    pub fn stats(&self) -> Option<&str> {
        self.stats.as_deref()
    }
    pub fn tags(&self) -> Option<&BTreeMap<String, Option<String>>> {
        self.tags.as_ref()
    }
    pub fn base_row_id(&self) -> Option<i64> {
        self.base_row_id
    }
    pub fn default_row_commit_version(&self) -> Option<i64> {
        self.default_row_commit_version
    }
    pub fn clustering_provider(&self) -> Option<&str> {
        self.clustering_provider.as_deref()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRemove {
    path: String,
    deletion_timestamp: Option<i64>,
    data_change: bool,
    size: Option<i64>,
    deletion_vector: Option<RawDeletionVector>,
}

/// A `remove` action: a file (with a given deletion vector) leaves the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveFile {
    path: FilePath,
    deletion_timestamp: Option<i64>,
    data_change: bool,
    size: Option<u64>,
    deletion_vector: Option<DeletionVector>,
}

impl TryFrom<RawRemove> for RemoveFile {
    type Error = Error;
    fn try_from(raw: RawRemove) -> Result<Self, Error> {
        Ok(RemoveFile {
            path: FilePath::from_log(&raw.path)?,
            deletion_timestamp: raw.deletion_timestamp,
            data_change: raw.data_change,
            size: raw
                .size
                .map(|s| non_negative("remove.size", s))
                .transpose()?,
            deletion_vector: raw.deletion_vector.map(TryInto::try_into).transpose()?,
        })
    }
}

impl RemoveFile {
    pub fn path(&self) -> &FilePath {
        &self.path
    }
    pub(crate) fn path_mut(&mut self) -> &mut FilePath {
        &mut self.path
    }
    pub fn deletion_timestamp(&self) -> Option<i64> {
        self.deletion_timestamp
    }
    pub fn data_change(&self) -> bool {
        self.data_change
    }
    pub fn size(&self) -> Option<u64> {
        self.size
    }
    pub fn deletion_vector(&self) -> Option<&DeletionVector> {
        self.deletion_vector.as_ref()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCdc {
    path: String,
    size: i64,
    #[serde(default)]
    partition_values: BTreeMap<String, Option<String>>,
}

/// A `cdc` action: a change-data file written by this commit (not part of the table state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdcFile {
    path: FilePath,
    size: u64,
    partition_values: BTreeMap<String, Option<String>>,
}

impl TryFrom<RawCdc> for CdcFile {
    type Error = Error;
    fn try_from(raw: RawCdc) -> Result<Self, Error> {
        Ok(CdcFile {
            path: FilePath::from_log(&raw.path)?,
            size: non_negative("cdc.size", raw.size)?,
            partition_values: raw.partition_values,
        })
    }
}

impl CdcFile {
    pub fn path(&self) -> &FilePath {
        &self.path
    }
    pub(crate) fn path_mut(&mut self) -> &mut FilePath {
        &mut self.path
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn partition_values(&self) -> &BTreeMap<String, Option<String>> {
        &self.partition_values
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    id: String,
    name: Option<String>,
    description: Option<String>,
    format: Option<RawFormat>,
    schema_string: String,
    #[serde(default)]
    partition_columns: Vec<String>,
    #[serde(default)]
    configuration: BTreeMap<String, Option<String>>,
    created_time: Option<i64>,
}

#[derive(Deserialize)]
struct RawFormat {
    provider: Option<String>,
    options: Option<BTreeMap<String, Option<String>>>,
}

/// A `metaData` action: table id, schema, partitioning and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    id: String,
    name: Option<String>,
    description: Option<String>,
    /// `format.provider` (`parquet` when absent).
    format_provider: String,
    format_options: BTreeMap<String, Option<String>>,
    schema_string: String,
    partition_columns: Vec<String>,
    configuration: BTreeMap<String, Option<String>>,
    created_time: Option<i64>,
}

impl From<RawMetadata> for Metadata {
    fn from(raw: RawMetadata) -> Self {
        let (format_provider, format_options) = match raw.format {
            Some(f) => (
                f.provider.unwrap_or_else(|| "parquet".to_owned()),
                f.options.unwrap_or_default(),
            ),
            None => ("parquet".to_owned(), BTreeMap::new()),
        };
        Metadata {
            id: raw.id,
            name: raw.name,
            description: raw.description,
            format_provider,
            format_options,
            schema_string: raw.schema_string,
            partition_columns: raw.partition_columns,
            configuration: raw.configuration,
            created_time: raw.created_time,
        }
    }
}

impl Metadata {
    /// The table id (a UUID chosen when the table was created).
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn format_provider(&self) -> &str {
        &self.format_provider
    }
    pub fn format_options(&self) -> &BTreeMap<String, Option<String>> {
        &self.format_options
    }
    pub fn schema_string(&self) -> &str {
        &self.schema_string
    }
    pub fn partition_columns(&self) -> &[String] {
        &self.partition_columns
    }
    pub fn configuration(&self) -> &BTreeMap<String, Option<String>> {
        &self.configuration
    }
    pub fn created_time(&self) -> Option<i64> {
        self.created_time
    }
    /// Whether `delta.enableInCommitTimestamps` is on.
    pub fn in_commit_timestamps_enabled(&self) -> bool {
        matches!(
            self.configuration.get("delta.enableInCommitTimestamps"),
            Some(Some(v)) if v.eq_ignore_ascii_case("true")
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProtocol {
    min_reader_version: i64,
    min_writer_version: i64,
    reader_features: Option<Vec<String>>,
    writer_features: Option<Vec<String>>,
}

/// A `protocol` action: the reader and writer versions and features a client must support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    min_reader_version: u32,
    min_writer_version: u32,
    reader_features: Vec<String>,
    writer_features: Vec<String>,
}

impl TryFrom<RawProtocol> for Protocol {
    type Error = Error;
    fn try_from(raw: RawProtocol) -> Result<Self, Error> {
        let v = |what: &str, x: i64| {
            u32::try_from(x).map_err(|_| Error::InvalidAction {
                reason: format!("protocol.{what} out of range ({x})"),
            })
        };
        Ok(Protocol {
            min_reader_version: v("minReaderVersion", raw.min_reader_version)?,
            min_writer_version: v("minWriterVersion", raw.min_writer_version)?,
            reader_features: raw.reader_features.unwrap_or_default(),
            writer_features: raw.writer_features.unwrap_or_default(),
        })
    }
}

impl Protocol {
    pub fn new(
        min_reader_version: u32,
        min_writer_version: u32,
        reader_features: Vec<String>,
        writer_features: Vec<String>,
    ) -> Self {
        Protocol {
            min_reader_version,
            min_writer_version,
            reader_features,
            writer_features,
        }
    }
    pub fn min_reader_version(&self) -> u32 {
        self.min_reader_version
    }
    pub fn min_writer_version(&self) -> u32 {
        self.min_writer_version
    }
    pub fn reader_features(&self) -> &[String] {
        &self.reader_features
    }
    pub fn writer_features(&self) -> &[String] {
        &self.writer_features
    }
}

/// A `commitInfo` action. Free-form by protocol; the fields attestation reads are extracted,
/// the whole object is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    raw: serde_json::Map<String, Value>,
}

impl CommitInfo {
    fn from_json(body: &Value) -> Result<Self, Error> {
        match body {
            Value::Object(m) => Ok(CommitInfo { raw: m.clone() }),
            _ => Err(Error::InvalidAction {
                reason: "commitInfo is not an object".into(),
            }),
        }
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.raw.get(name).and_then(Value::as_str)
    }

    pub fn timestamp(&self) -> Option<i64> {
        self.raw.get("timestamp").and_then(Value::as_i64)
    }
    pub fn in_commit_timestamp(&self) -> Option<i64> {
        self.raw.get("inCommitTimestamp").and_then(Value::as_i64)
    }
    pub fn operation(&self) -> Option<&str> {
        self.str_field("operation")
    }
    pub fn operation_parameters(&self) -> Option<&Value> {
        self.raw.get("operationParameters")
    }
    pub fn operation_metrics(&self) -> Option<&Value> {
        self.raw.get("operationMetrics")
    }
    /// `engineInfo` (Spark, Databricks) or `clientVersion` (delta-rs).
    pub fn engine(&self) -> Option<&str> {
        self.str_field("engineInfo")
            .or_else(|| self.str_field("clientVersion"))
    }
    pub fn user_id(&self) -> Option<&str> {
        self.str_field("userId")
    }
    pub fn user_name(&self) -> Option<&str> {
        self.str_field("userName")
    }
    pub fn job(&self) -> Option<&Value> {
        self.raw.get("job")
    }
    pub fn notebook(&self) -> Option<&Value> {
        self.raw.get("notebook")
    }
    pub fn cluster_id(&self) -> Option<&str> {
        self.str_field("clusterId")
    }
    pub fn txn_id(&self) -> Option<&str> {
        self.str_field("txnId")
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTxn {
    app_id: String,
    version: i64,
    last_updated: Option<i64>,
}

/// A `txn` action: an application's idempotency marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    app_id: String,
    version: i64,
    last_updated: Option<i64>,
}

impl From<RawTxn> for Txn {
    fn from(raw: RawTxn) -> Self {
        Txn {
            app_id: raw.app_id,
            version: raw.version,
            last_updated: raw.last_updated,
        }
    }
}

impl Txn {
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
    pub fn version(&self) -> i64 {
        self.version
    }
    pub fn last_updated(&self) -> Option<i64> {
        self.last_updated
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDomainMetadata {
    domain: String,
    configuration: String,
    removed: bool,
}

/// A `domainMetadata` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainMetadata {
    domain: String,
    configuration: String,
    removed: bool,
}

impl From<RawDomainMetadata> for DomainMetadata {
    fn from(raw: RawDomainMetadata) -> Self {
        DomainMetadata {
            domain: raw.domain,
            configuration: raw.configuration,
            removed: raw.removed,
        }
    }
}

impl DomainMetadata {
    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn configuration(&self) -> &str {
        &self.configuration
    }
    pub fn removed(&self) -> bool {
        self.removed
    }
}
