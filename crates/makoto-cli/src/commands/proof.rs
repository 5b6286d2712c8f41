use std::io::Write;

use anyhow::Context;
use makoto_core::proof::FileProof;
use makoto_delta::windows::RecordProof;
use serde_json::{Value, json};

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
    let mut bytes = std::fs::read(&args.proof)
        .with_context(|| format!("proof {}: cannot read", args.proof.display()))?;
    // The one newline `makoto prove` ends the file with; nothing else is stripped.
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let value: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("proof {}: not JSON", args.proof.display()))?;
    let is_record = ["format", "kind"].iter().any(|k| {
        value
            .get(k)
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("makoto-record-proof/"))
    });
    // The verdict: the text line and the JSON report of a proof that holds, or why it does not.
    let verdict: Result<(String, Value), String> = if is_record {
        RecordProof::from_json_bytes(&bytes)
            .and_then(|p| p.verify(&trust))
            .map(|r| {
                (
                    format!(
                        "PROOF VERIFIED: record {} of version {} is record {} of {} in window {} (Merkle root {}), signed with key {}",
                        r.index, r.version, r.position, r.leaf_count, r.window_id, r.merkle_root, r.keyid
                    ),
                    json!({"verified": true, "window": r.window_id, "version": r.version,
                           "index": r.index, "position": r.position, "leafCount": r.leaf_count,
                           "merkleRoot": r.merkle_root.to_hex(), "keyid": r.keyid}),
                )
            })
            .map_err(|e| e.to_string())
    } else {
        FileProof::from_json_bytes(&bytes)
            .and_then(|p| p.verify(&trust))
            .map(|v| {
                let (p, f) = (v.value(), &v.value().file);
                (
                    format!(
                        "PROOF VERIFIED: {} ({} bytes, SHA-256 {}) is a live file of {}@v{} (state {}), attested with key {}",
                        f.path(),
                        f.size(),
                        f.sha256().map_or("unknown".to_owned(), |h| h.to_hex()),
                        p.table,
                        p.version,
                        p.state_digest,
                        v.keyid()
                    ),
                    json!({
                        "verified": true,
                        "table": p.table,
                        "version": p.version,
                        "stateDigest": p.state_digest.to_hex(),
                        "file": f.to_json(),
                        "keyid": v.keyid().as_str(),
                    }),
                )
            })
            .map_err(|e| e.to_string())
    };
    match verdict {
        Ok((line, report)) => {
            if args.json {
                writeln!(out, "{report}")?;
            } else {
                writeln!(out, "{line}")?;
            }
            Ok(EXIT_OK)
        }
        Err(reason) => {
            if args.json {
                writeln!(out, "{}", json!({"verified": false, "reason": reason}))?;
            } else {
                writeln!(out, "PROOF DOES NOT VERIFY: {reason}")?;
            }
            Ok(EXIT_FINDINGS)
        }
    }
}
