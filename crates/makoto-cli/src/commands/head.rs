use std::io::Write;

use anyhow::Context;
use makoto_delta::signer;

use super::EXIT_OK;
use crate::args::HeadArgs;

pub async fn run(
    ctx: &crate::context::Context,
    args: HeadArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let key = signer::open(&args.key)?.signer;
    let tsa = makoto_delta::tsa::TsaClient::for_run(args.tsa.as_deref(), true).await?;
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let (envelope, entries) =
        makoto_delta::head::sign_current_head(&store, key.as_ref(), tsa.as_ref()).await?;
    let json = envelope.to_json();
    match &args.out {
        Some(path) => std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?,
        None => writeln!(out, "{json}")?,
    }
    for e in &entries {
        eprintln!(
            "{}@v{} attestation {}",
            e.table, e.version, e.attestation_digest
        );
    }
    Ok(EXIT_OK)
}
