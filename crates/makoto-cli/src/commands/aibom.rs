use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use makoto_core::aibom::verify_aibom;
use makoto_core::{Sha256Digest, StreamHasher};
use makoto_delta::aibom::{self, Inference, Model, Training};
use makoto_delta::gate::GateOptions;
use makoto_delta::identity;
use makoto_delta::keyfile::{load_trust, trust_or_own};

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::args::{AibomArgs, VerifyAibomArgs};

/// `makoto aibom`: builds, verifies and signs the AIBOM of a model version.
pub async fn run(
    ctx: &crate::context::Context,
    args: AibomArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let signer =
        crate::context::signer(Some(&args.key))?.context("--key is required to sign the AIBOM")?;
    let tsa = makoto_delta::tsa::TsaClient::for_run(args.tsa.as_deref(), true).await?;
    let trust = trust_or_own(args.trust.as_deref(), Some(signer.public_key()))?
        .context("no trusted key")?;
    let digest = match (&args.model_file, args.model_digest) {
        (Some(path), _) => hash_file(path)?,
        (None, Some(d)) => d,
        (None, None) => anyhow::bail!("give --model-file or --model-digest"),
    };
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let mut training = Vec::new();
    for t in &args.training {
        let (source, _) = identity::open_attested(&t.table, None, &store, ctx.storage()).await?;
        training.push(Training {
            source,
            version: t.version,
        });
    }
    let mut inference = Vec::new();
    for t in &args.inference {
        let (source, _) = identity::open_attested(t, None, &store, ctx.storage()).await?;
        inference.push(Inference {
            source,
            spec: args.windows.clone(),
            from: args.from,
            to: args.to,
        });
    }
    let options = GateOptions {
        mode: crate::args::verify_mode(args.log_only),
        storage: ctx.storage().clone(),
        ..GateOptions::default()
    };
    let model = Model {
        name: args.model,
        version: args.model_version,
        digest,
        mlflow_run_id: args.mlflow_run_id,
    };
    let predicate = match aibom::build(&store, &trust, model, &training, &inference, &options).await
    {
        Ok(p) => p,
        Err(
            e @ (makoto_delta::Error::AibomRefused { .. }
            | makoto_delta::Error::AttestationUntrusted { .. }),
        ) => {
            eprintln!("error: {e}");
            return Ok(EXIT_FINDINGS);
        }
        Err(e) => return Err(e.into()),
    };
    let mut envelope = aibom::sign(&predicate, signer.as_ref())?;
    if let Some(tsa) = &tsa {
        tsa.stamp(&mut envelope, "the AIBOM").await?;
    }
    let text = envelope.to_json();
    match &args.out {
        Some(p) => write_whole(p, &format!("{text}\n"))?,
        None => writeln!(out, "{text}")?,
    }
    Ok(EXIT_OK)
}

/// `makoto verify-aibom`: the offline check.
pub fn verify(args: VerifyAibomArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let trust = load_trust(&args.trust)?;
    let bytes = std::fs::read(&args.aibom)
        .with_context(|| format!("AIBOM {}: cannot read", args.aibom.display()))?;
    let report =
        verify_aibom(&bytes, &trust).with_context(|| format!("AIBOM {}", args.aibom.display()))?;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["verified"] = report.verified().into();
        writeln!(out, "{v}")?;
    } else if report.verified() {
        writeln!(
            out,
            "AIBOM VERIFIED: {} ({} training table versions, {} inference windows), signed by {}",
            report.model.as_deref().unwrap_or("?"),
            report.training_checked,
            report.windows_checked,
            report.signed_by.as_deref().unwrap_or("?")
        )?;
    } else {
        writeln!(
            out,
            "AIBOM DOES NOT VERIFY: {} problem(s)",
            report.problems.len()
        )?;
        for p in &report.problems {
            writeln!(out, "  {p}")?;
        }
    }
    Ok(if report.verified() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

fn hash_file(path: &Path) -> anyhow::Result<Sha256Digest> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("model file {}: cannot open", path.display()))?;
    let mut h = StreamHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("model file {}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().0)
}

/// Writes through a temporary name in the same directory, so the file is whole or absent.
fn write_whole(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-makoto");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
