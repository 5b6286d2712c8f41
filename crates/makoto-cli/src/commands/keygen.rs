use std::io::Write;

use anyhow::Context;
use makoto_delta::keyfile;
use makoto_delta::signer::Custody;
use serde_json::json;

use crate::args::{KeygenArgs, PubkeyArgs};

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

/// Writes the public half of `--key`; for a PKCS#11 key, read from the token.
pub fn pubkey(args: PubkeyArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let opened = makoto_delta::signer::open(&args.key)?;
    let public = opened.signer.public_key();
    let pem = public.to_spki_pem()?;
    let custody = match opened.custody {
        Custody::File => "file",
        Custody::ExtractableToken => "pkcs11-extractable",
        Custody::HardwareToken => "pkcs11",
    };
    if let Some(path) = &args.out {
        keyfile::write_public_key(path, public)?;
    }
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "keyid": public.keyid().as_str(),
                "algorithm": public.algorithm().name(),
                "custody": custody,
                "publicKey": pem,
            })
        )?;
    } else if args.out.is_none() {
        write!(out, "{pem}")?;
    }
    eprintln!(
        "keyid {} ({}, {custody}) of {}",
        public.keyid(),
        public.algorithm(),
        args.key
    );
    Ok(super::EXIT_OK)
}
