use std::io::Write;

use anyhow::Context;
use makoto_delta::proof::{ProofOutcome, verify_proof};
use serde_json::json;

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::args::{ProveArgs, VerifyProofArgs};
use makoto_delta::keyfile::load_trust;

pub async fn prove(
    ctx: &crate::context::Context,
    args: ProveArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let source = ctx.attested_table(&args.target, &store).await?;
    let table = source.uri().to_owned();
    let (bytes, what, version) = match (&args.record, &args.file, args.version) {
        (Some(record), _, _) => {
            let proof = makoto_delta::windows::prove_record(&source, &store, *record).await?;
            (
                proof.to_json_bytes()?,
                format!("record {}", record.index),
                record.version,
            )
        }
        (None, Some(file), Some(version)) => {
            let proof = makoto_delta::proof::prove(&store, &table, file, version).await?;
            (proof.to_json_bytes()?, file.clone(), version)
        }
        _ => anyhow::bail!("give --file PATH --version N, or --record VERSION:INDEX"),
    };
    // The proof file is the canonical JSON followed by one newline (docs/verification.md#proofs).
    let mut bytes = bytes;
    bytes.push(b'\n');
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote the proof for {what} in {table}@v{version} to {}",
                path.display()
            );
        }
        None => out.write_all(&bytes)?,
    }
    Ok(EXIT_OK)
}

/// Exit 0 the proof holds, 1 it does not, 2 it could not be read: an unreadable trust file
/// or proof file, or a proof file that is not JSON at all (not UTF-8, a syntax error).
pub fn verify(args: VerifyProofArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let trust = load_trust(&args.trust)?;
    let bytes = std::fs::read(&args.proof)
        .with_context(|| format!("proof {}: cannot read", args.proof.display()))?;
    let outcome =
        verify_proof(&bytes, &trust).with_context(|| format!("proof {}", args.proof.display()))?;
    match outcome {
        ProofOutcome::Verified { summary, report } => {
            if args.json {
                writeln!(out, "{report}")?;
            } else {
                writeln!(out, "PROOF VERIFIED: {summary}")?;
            }
            Ok(EXIT_OK)
        }
        ProofOutcome::Invalid { reason } => {
            if args.json {
                writeln!(out, "{}", json!({"verified": false, "reason": reason}))?;
            } else {
                writeln!(out, "PROOF DOES NOT VERIFY: {reason}")?;
            }
            Ok(EXIT_FINDINGS)
        }
    }
}
