//! What is in effect at a version: protocol, table id and name, schema digest; carried from
//! commit to commit and across runs through the last attested statement.

use makoto_core::Sha256Digest;
use makoto_core::attested::AttestedCommit;
use makoto_core::delta::{Commit, Protocol, ReaderFeatureSupport, check_reader_features};

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

    /// From the last attested statement.
    pub fn from_attested(attested: &AttestedCommit) -> Self {
        TableContext {
            protocol: attested.protocol().clone(),
            table_id: attested.table_id().to_owned(),
            table_name: attested.table_name().map(str::to_owned),
            schema_digest: attested.schema_digest(),
        }
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
