//! Which attested table a table directory is: its own URI when attestations name it, else the
//! URI its Delta table id was attested under (an evidence copy, a restored backup, the table
//! seen as `s3a://` or through a mount).

use makoto_core::delta::Action;

use crate::log::SourceTable;
use crate::store::AttestationStore;
use crate::{Error, Location, StorageOptions};

/// How the attested identity of a table was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Attestations name the table's own URI.
    Own,
    /// No attestation names the table's URI; its table id was attested under this URI.
    ByTableId {
        table_id: String,
        attested_uri: String,
    },
    /// Nothing was attested under its URI or its table id.
    Unattested { table_id: Option<String> },
    /// The caller named the attested URI (`--as`): nothing was looked up.
    Named { attested_uri: String },
}

/// Opens the table at `table` as the table its attestations name: `attested_as` when given
/// (a copy taken as the table attested under that URI), else as [`resolve`] finds it. Every
/// front end that checks a table (verify, check, dbom, prove) opens it this way.
pub async fn open_attested(
    table: &str,
    attested_as: Option<&str>,
    store: &AttestationStore,
    storage: &StorageOptions,
) -> Result<(SourceTable, Identity), Error> {
    let source = SourceTable::open(Location::existing(table)?, storage)?;
    match attested_as {
        Some(uri) => {
            let attested_uri = Location::named(uri)?.as_uri();
            Ok((
                source.attested_as(attested_uri.clone()),
                Identity::Named { attested_uri },
            ))
        }
        None => resolve(source, store).await,
    }
}

/// Resolves the identity of `source` in `store`, and returns the source to verify (renamed
/// with [`SourceTable::attested_as`] when found by table id). Several URIs for one table id is
/// an error: the caller must choose with `--as`.
pub async fn resolve(
    source: SourceTable,
    store: &AttestationStore,
) -> Result<(SourceTable, Identity), Error> {
    if store.attestation_count(source.uri()).await? > 0 {
        return Ok((source, Identity::Own));
    }
    let Some(table_id) = table_id(&source).await? else {
        return Ok((source, Identity::Unattested { table_id: None }));
    };
    let mut uris: Vec<String> = store
        .all_attestation_rows_each(|rows| {
            let mut uris: Vec<String> = (rows.into_iter())
                .filter(|r| r.table_id == table_id)
                .map(|r| r.table_uri)
                .collect();
            uris.dedup();
            uris
        })
        .await?;
    uris.sort();
    uris.dedup();
    match uris.len() {
        0 => Ok((
            source,
            Identity::Unattested {
                table_id: Some(table_id),
            },
        )),
        1 => {
            let attested_uri = uris.remove(0);
            Ok((
                source.attested_as(attested_uri.clone()),
                Identity::ByTableId {
                    table_id,
                    attested_uri,
                },
            ))
        }
        _ => Err(Error::AmbiguousTable {
            table: source.uri().to_owned(),
            table_id,
            candidates: uris,
        }),
    }
}

/// The table id (`metaData.id`) of the table: from the first commit that has one, else from
/// the newest checkpoint.
pub async fn table_id(source: &SourceTable) -> Result<Option<String>, Error> {
    let log = source.list_log(0).await?;
    for v in log.commits().keys().take(16) {
        let bytes = source.read_commit_bytes(*v).await?;
        if let Ok(c) = source.parse_commit(*v, &bytes)
            && let Some(m) = c.metadata()
        {
            return Ok(Some(m.id().to_owned()));
        }
    }
    for (v, names) in log.checkpoints().iter().rev() {
        let (groups, _) = crate::checkpoint::group(*v, names);
        if let Some(first) = groups.first()
            && let Ok(content) = crate::checkpoint::read(source, first).await
            && let Some(id) = content.actions.iter().find_map(|a| match a {
                Action::Metadata(m) => Some(m.id().to_owned()),
                _ => None,
            })
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}
