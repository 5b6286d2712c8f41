use std::io::Write;

use anyhow::Context;
use makoto_core::proof::FileProof;
use makoto_delta::{AttestationStore, Location, StorageOptions};
use serde_json::json;

use super::verify::load_trust;
use super::{EXIT_FINDINGS, EXIT_OK};
use crate::args::{ProveArgs, VerifyProofArgs};

pub async fn prove(args: ProveArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let storage = StorageOptions::default();
    let table = Location::existing(&args.table)?;
    let store = AttestationStore::open(Location::existing(&args.warehouse)?, storage).await?;
    let proof =
        makoto_delta::proof::prove(&store, &table.as_uri(), &args.file, args.version).await?;
    let bytes = proof.to_json_bytes()?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote the proof for {} in {}@v{} to {}",
                args.file,
                table,
                args.version,
                path.display()
            );
        }
        None => {
            out.write_all(&bytes)?;
            writeln!(out)?;
        }
    }
    Ok(EXIT_OK)
}

pub fn verify(args: VerifyProofArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let trust = load_trust(&args.trust)?;
    let mut bytes = std::fs::read(&args.proof)
        .with_context(|| format!("proof {}: cannot read", args.proof.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let result = FileProof::from_json_bytes(&bytes).and_then(|p| p.verify(&trust));
    match result {
        Ok(v) => {
            let f = &v.value().file;
            if args.json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "verified": true,
                        "table": v.value().table,
                        "version": v.value().version,
                        "stateDigest": v.value().state_digest.to_hex(),
                        "file": f.to_json(),
                        "keyid": v.keyid().as_str(),
                    })
                )?;
            } else {
                writeln!(
                    out,
                    "PROOF VERIFIED: {} ({} bytes, SHA-256 {}) is a live file of {}@v{} (state {}), attested with key {}",
                    f.path(),
                    f.size(),
                    f.sha256().map_or(
                        "unknown (vacuumed before it was attested)".to_owned(),
                        |h| h.to_hex()
                    ),
                    v.value().table,
                    v.value().version,
                    v.value().state_digest,
                    v.keyid()
                )?;
            }
            Ok(EXIT_OK)
        }
        Err(e) => {
            if args.json {
                writeln!(
                    out,
                    "{}",
                    json!({"verified": false, "reason": e.to_string()})
                )?;
            } else {
                writeln!(out, "PROOF DOES NOT VERIFY: {e}")?;
            }
            Ok(EXIT_FINDINGS)
        }
    }
}
