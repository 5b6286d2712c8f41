//! `makoto head`: a signed checkpoint of the latest attestation of every table.

use std::collections::BTreeMap;

use chrono::Utc;
use makoto_core::dsse::Envelope;
use makoto_core::head::{HeadEntry, sign_head};
use makoto_core::keys::Signer;

use crate::Error;
use crate::store::AttestationStore;

/// The latest attestation row of each table in the store.
pub async fn heads(store: &AttestationStore) -> Result<Vec<HeadEntry>, Error> {
    let mut latest: BTreeMap<String, HeadEntry> = BTreeMap::new();
    for r in store.all_attestation_rows().await? {
        let newer = latest
            .get(&r.table_uri)
            .is_none_or(|e| r.version > e.version);
        if newer {
            latest.insert(
                r.table_uri.clone(),
                HeadEntry {
                    table: r.table_uri,
                    table_id: r.table_id,
                    version: r.version,
                    attestation_digest: r.attestation_digest,
                    state_digest: r.state_digest,
                },
            );
        }
    }
    Ok(latest.into_values().collect())
}

/// Signs the current heads of the store, and time-stamps the signature when given a TSA.
pub async fn sign_current_head(
    store: &AttestationStore,
    signer: &dyn Signer,
    tsa: Option<&crate::tsa::TsaClient>,
) -> Result<(Envelope, Vec<HeadEntry>), Error> {
    let entries = heads(store).await?;
    let mut env = sign_head(&store.warehouse().as_uri(), Utc::now(), &entries, signer)
        .map_err(|e| Error::core("signing the head", e))?;
    if let Some(tsa) = tsa {
        tsa.stamp(&mut env, "the head").await?;
    }
    Ok((env, entries))
}
