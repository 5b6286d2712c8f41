//! What is in effect at a version: protocol, table id and name, schema digest; carried from
//! commit to commit and across runs through the last attested statement.

use makoto_core::Sha256Digest;
use makoto_core::delta::{Commit, Protocol, ReaderFeatureSupport, check_reader_features};
use makoto_core::statement::Statement;
use serde_json::Value;

use crate::Error;

#[derive(Debug, Clone)]
pub(crate) struct TableContext {
    pub protocol: Protocol,
    pub table_id: String,
    pub table_name: Option<String>,
    pub schema_digest: Sha256Digest,
}

impl TableContext {
    /// From the first commit of a table (must carry protocol and metaData).
    pub fn from_first_commit(table: &str, commit: &Commit) -> Result<Self, Error> {
        let missing = |what: &str| Error::InvalidLog {
            table: table.to_owned(),
            version: commit.version(),
            reason: format!("the first commit has no {what} action"),
        };
        let protocol = commit
            .protocol()
            .ok_or_else(|| missing("protocol"))?
            .clone();
        let metadata = commit.metadata().ok_or_else(|| missing("metaData"))?;
        Ok(TableContext {
            protocol,
            table_id: metadata.id().to_owned(),
            table_name: metadata.name().map(str::to_owned),
            schema_digest: Sha256Digest::of(metadata.schema_string().as_bytes()),
        })
    }

    /// From the `predicate.delta` block of the last attested statement.
    pub fn from_statement(store: &str, statement: &Statement) -> Result<Self, Error> {
        let bad = |what: &str| Error::StoreCorrupt {
            store: store.to_owned(),
            reason: format!(
                "statement {} lacks {what}",
                statement.subject().first().map(|s| s.name()).unwrap_or("?")
            ),
        };
        let d = statement
            .predicate()
            .get("delta")
            .ok_or_else(|| bad("predicate.delta"))?;
        let p = d.get("protocol").ok_or_else(|| bad("delta.protocol"))?;
        let ver = |k: &str| -> Result<u32, Error> {
            p.get(k)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad(&format!("delta.protocol.{k}")))
        };
        let features = |k: &str| -> Vec<String> {
            p.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let protocol = Protocol::new(
            ver("minReaderVersion")?,
            ver("minWriterVersion")?,
            features("readerFeatures"),
            features("writerFeatures"),
        );
        let table = d.get("table").ok_or_else(|| bad("delta.table"))?;
        let schema_digest = d
            .get("schemaDigest")
            .and_then(|s| s.get("sha256"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("delta.schemaDigest"))?;
        Ok(TableContext {
            protocol,
            table_id: table
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("delta.table.id"))?
                .to_owned(),
            table_name: table.get("name").and_then(Value::as_str).map(str::to_owned),
            schema_digest,
        })
    }

    /// Applies the protocol and metaData actions of `commit`, refusing unsupported reader
    /// features and a change of table id.
    pub fn apply(&mut self, table: &str, commit: &Commit) -> Result<(), Error> {
        if let Some(p) = commit.protocol() {
            self.protocol = p.clone();
        }
        match check_reader_features(&self.protocol) {
            ReaderFeatureSupport::Supported => {}
            ReaderFeatureSupport::Unsupported { feature } => {
                return Err(Error::UnsupportedReaderFeature {
                    table: table.to_owned(),
                    version: commit.version(),
                    feature,
                });
            }
            ReaderFeatureSupport::UnsupportedReaderVersion { version } => {
                return Err(Error::UnsupportedReaderFeature {
                    table: table.to_owned(),
                    version: commit.version(),
                    feature: format!("minReaderVersion {version}"),
                });
            }
        }
        if let Some(m) = commit.metadata() {
            if m.id() != self.table_id {
                return Err(Error::TableReplaced {
                    table: table.to_owned(),
                    attested_id: self.table_id.clone(),
                    found_id: m.id().to_owned(),
                });
            }
            self.table_name = m.name().map(str::to_owned);
            self.schema_digest = Sha256Digest::of(m.schema_string().as_bytes());
        }
        Ok(())
    }
}
