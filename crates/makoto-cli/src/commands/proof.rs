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
    let store =
        AttestationStore::open_existing(Location::existing(&args.warehouse)?, storage.clone())
            .await?;
    let (bytes, what, version) = match (&args.record, &args.file, args.version) {
        (Some(record), _, _) => {
            let (v, i) = record
                .split_once(':')
                .and_then(|(v, i)| Some((v.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
                .ok_or_else(|| {
                    anyhow::anyhow!("--record {record:?}: expected VERSION:INDEX, e.g. 12:0")
                })?;
            let source = makoto_delta::SourceTable::open(table.clone(), &storage)?;
            let proof = makoto_delta::windows::prove_record(
                &source,
                &store,
                makoto_core::window::RecordPos {
                    version: v,
                    index: i,
                },
            )
            .await?;
            (serde_json::to_vec_pretty(&proof)?, format!("record {i}"), v)
        }
        (None, Some(file), Some(version)) => {
            let proof = makoto_delta::proof::prove(&store, &table.as_uri(), file, version).await?;
            (proof.to_json_bytes()?, file.clone(), version)
        }
        _ => anyhow::bail!("give --file PATH --version N, or --record VERSION:INDEX"),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote the proof for {what} in {table}@v{version} to {}",
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
    if let Ok(record) = serde_json::from_slice::<makoto_delta::windows::RecordProof>(&bytes) {
        return Ok(
            match makoto_delta::windows::verify_record_proof(&record, &trust) {
                Ok(window) => {
                    if args.json {
                        writeln!(
                            out,
                            "{}",
                            json!({"verified": true, "window": window, "version": record.version,
                                   "index": record.index, "position": record.position,
                                   "merkleRoot": record.merkle_root})
                        )?;
                    } else {
                        writeln!(
                            out,
                            "PROOF VERIFIED: record {} of version {} is record {} of {} in window {} (Merkle root {})",
                            record.index,
                            record.version,
                            record.position,
                            record.leaf_count,
                            window,
                            record.merkle_root
                        )?;
                    }
                    EXIT_OK
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
                    EXIT_FINDINGS
                }
            },
        );
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
