//! Which attested table a table directory is: its own URI when attestations name it, else the
//! URI its Delta table id was attested under (an evidence copy, a restored backup, the table
//! seen as `s3a://` or through a mount).

use makoto_core::delta::Action;

use crate::Error;
use crate::log::SourceTable;
use crate::store::AttestationStore;

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
}

/// Resolves the identity of `source` in `store`, and returns the source to verify (renamed
/// with [`SourceTable::attested_as`] when found by table id). Several URIs for one table id is
/// an error: the caller must choose with `--as`.
pub async fn resolve(
    source: SourceTable,
    store: &AttestationStore,
) -> Result<(SourceTable, Identity), Error> {
    if !store.attestation_rows(source.uri()).await?.is_empty() {
        return Ok((source, Identity::Own));
    }
    let Some(table_id) = table_id(&source).await? else {
        return Ok((source, Identity::Unattested { table_id: None }));
    };
    let mut uris: Vec<String> = store
        .all_attestation_rows()
        .await?
        .into_iter()
        .filter(|r| r.table_id == table_id)
        .map(|r| r.table_uri)
        .collect();
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
