use std::io::Write;

use anyhow::Context;
use makoto_delta::dbom::{self, DbomVerification};
use makoto_delta::gate::GateOptions;

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::args::DbomArgs;

pub async fn run(
    ctx: &crate::context::Context,
    args: DbomArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let key = crate::context::signer(args.key.as_ref())?;
    let tsa = makoto_delta::tsa::TsaClient::for_run(args.tsa.as_deref(), key.is_some()).await?;
    let trust = makoto_delta::keyfile::trust_or_own(
        args.trust.as_deref(),
        key.as_ref().map(|k| k.public_key()),
    )?;
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let source = ctx.attested_table(&args.target, &store).await?;
    let verification = match &trust {
        Some(t) => DbomVerification::Trusted(
            t,
            GateOptions {
                mode: crate::args::verify_mode(args.log_only),
                storage: ctx.storage().clone(),
                ..GateOptions::default()
            },
        ),
        None => DbomVerification::NotVerified,
    };
    let doc = match dbom::build(&store, &source, args.version, verification).await {
        Ok(doc) => doc,
        Err(e @ makoto_delta::Error::AttestationUntrusted { .. }) => {
            eprintln!("error: {e}");
            return Ok(EXIT_FINDINGS);
        }
        Err(e) => return Err(e.into()),
    };
    let text = match &key {
        Some(k) => {
            let mut envelope = dbom::sign(&doc, k.as_ref())?;
            if let Some(tsa) = &tsa {
                tsa.stamp(&mut envelope, "the DBOM").await?;
            }
            envelope.to_json()
        }
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
