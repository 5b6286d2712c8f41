use std::io::Write;

use anyhow::Context;
use makoto_core::keys::Signer;
use makoto_core::verify::TrustedKeys;
use makoto_delta::dbom::{self, DbomVerification};
use makoto_delta::gate::GateOptions;
use makoto_delta::{AttestationStore, Location, StorageOptions, VerifyMode, keyfile};

use super::EXIT_OK;
use crate::args::DbomArgs;
use makoto_delta::keyfile::load_trust;

pub async fn run(args: DbomArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let key = args
        .key
        .as_deref()
        .map(keyfile::load_signing_key)
        .transpose()?;
    let trust = match (&args.trust, &key) {
        (Some(p), _) => Some(load_trust(p)?),
        (None, Some(k)) => Some(TrustedKeys::new(vec![k.public_key().clone()])),
        (None, None) => None,
    };
    let storage = StorageOptions::default();
    let store =
        AttestationStore::open_existing(Location::existing(&args.warehouse)?, storage.clone())
            .await?;
    let source =
        super::attested_table(&args.table, args.attested_as.as_deref(), &store, &storage).await?;
    let verification = match &trust {
        Some(t) => DbomVerification::Trusted(
            t,
            GateOptions {
                mode: if args.log_only {
                    VerifyMode::LogOnly
                } else {
                    VerifyMode::Deep
                },
                storage,
                ..GateOptions::default()
            },
        ),
        None => DbomVerification::NotVerified,
    };
    let doc = dbom::build(&store, &source, args.version, verification).await?;
    let text = match &key {
        Some(k) => dbom::sign(&doc, k)?.to_json(),
        None => serde_json::to_string_pretty(&doc)?,
    };
    match &args.out {
        Some(p) => std::fs::write(p, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", p.display()))?,
        None => writeln!(out, "{text}")?,
    }
    if trust.is_none() {
        eprintln!(
            "note: no --trust or --key given: the DBOM's verification summary says the chain was not verified"
        );
    }
    Ok(EXIT_OK)
}
