use std::io::Write;

use anyhow::Context;
use makoto_delta::keyfile;
use serde_json::json;

use crate::args::KeygenArgs;

pub fn run(args: KeygenArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let key = keyfile::generate(&args.prefix, args.algorithm.into())?;
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "keyid": key.keyid.as_str(),
                "algorithm": makoto_core::keys::Algorithm::from(args.algorithm).name(),
                "privateKey": key.private_key.display().to_string(),
                "publicKey": key.public_key.display().to_string(),
            })
        )
        .context("writing output")?;
    } else {
        writeln!(
            out,
            "keyid {} ({})",
            key.keyid,
            makoto_core::keys::Algorithm::from(args.algorithm)
        )
        .context("writing output")?;
        writeln!(
            out,
            "private key {} (mode 0600; keep it secret)",
            key.private_key.display()
        )?;
        writeln!(
            out,
            "public key  {} (give this to verifiers)",
            key.public_key.display()
        )?;
    }
    Ok(super::EXIT_OK)
}
