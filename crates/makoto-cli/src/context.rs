//! What every command resolves the same way, built once per run: the storage options, the
//! warehouse (opened for reading, or created for writing), the table checked, and keys.

use std::sync::Arc;

use crate::args::AttestedTableArgs;
use makoto_core::key_source::KeySource;
use makoto_core::keys::Signer;
use makoto_delta::identity::{self, Identity};
use makoto_delta::{AttestationStore, Location, SourceTable, StorageOptions, signer};

/// The resolved environment of one `makoto` run.
#[derive(Debug, Default)]
pub(crate) struct Context {
    storage: StorageOptions,
}

impl Context {
    pub fn storage(&self) -> &StorageOptions {
        &self.storage
    }

    /// A warehouse the command only reads: it must exist, and nothing is created.
    pub async fn existing_warehouse(&self, uri: &str) -> anyhow::Result<AttestationStore> {
        Ok(AttestationStore::open_existing(Location::existing(uri)?, self.storage.clone()).await?)
    }

    /// A warehouse the command writes to: its system tables are created when missing.
    pub async fn warehouse(&self, uri: &str) -> anyhow::Result<AttestationStore> {
        Ok(AttestationStore::create(Location::create(uri)?, self.storage.clone()).await?)
    }

    /// Opens the table to check and names it as the table its attestations are about: `--as`,
    /// else its own URI, else the URI its Delta table id was attested under (said on stderr).
    pub async fn attested_table(
        &self,
        target: &AttestedTableArgs,
        store: &AttestationStore,
    ) -> anyhow::Result<SourceTable> {
        let table = &target.table;
        let (source, identity) =
            identity::open_attested(table, target.attested_as.as_deref(), store, &self.storage)
                .await?;
        if let Identity::ByTableId {
            table_id,
            attested_uri,
        } = &identity
        {
            eprintln!(
                "note: nothing is attested under {table}; its table id {table_id} was attested under {attested_uri}, which is what is checked (choose with --as)"
            );
        }
        Ok(source)
    }
}

/// The signer `--key` names (a key file or a PKCS#11 key), when one is given.
pub(crate) fn signer(key: Option<&KeySource>) -> anyhow::Result<Option<Arc<dyn Signer>>> {
    Ok(key.map(signer::open).transpose()?.map(|s| s.signer))
}
