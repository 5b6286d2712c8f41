use std::io::Write;

use makoto_core::keys::Signer;
use makoto_delta::keyfile;
use serde_json::json;

use super::{EXIT_FINDINGS, EXIT_OK, short};
use crate::args::{KafkaAttestArgs, KafkaCommand, KafkaVerifyArgs};
use makoto_delta::keyfile::load_trust;

pub async fn run(cmd: KafkaCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cmd {
        KafkaCommand::Attest(a) => attest(a, out).await,
        KafkaCommand::Verify(a) => verify(a, out).await,
    }
}

async fn attest(args: KafkaAttestArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let signer = match &args.key {
        Some(path) => Some(keyfile::load_signing_key(path)?),
        None => {
            eprintln!("warning: no --key (or MAKOTO_KEY): publishing unsigned windows (Makoto L1)");
            None
        }
    };
    let topic = makoto_kafka::Topic::connect(&args.brokers, &args.topic).await?;
    let windows = makoto_kafka::attest(
        &topic,
        args.window_records,
        signer.as_ref().map(|s| s as &dyn Signer),
    )
    .await?;
    let recorded = match &args.warehouse {
        Some(w) => Some(record_in_warehouse(&topic, w, signer.as_ref()).await?),
        None => None,
    };
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "topic": args.topic,
                "warehouseRowsWritten": recorded,
                "windowRecords": args.window_records,
                "published": windows.iter().map(|w| json!({
                    "partition": w.partition,
                    "window": w.window,
                    "firstOffset": w.first_offset,
                    "lastOffset": w.last_offset,
                    "leafCount": w.leaf_count,
                    "merkleRoot": w.root.to_hex(),
                    "attestationDigest": w.attestation_digest.to_hex(),
                })).collect::<Vec<_>>(),
            })
        )?;
    } else {
        writeln!(
            out,
            "published {} window attestations of {} to {}",
            windows.len(),
            args.topic,
            makoto_kafka::DBOM_TOPIC
        )?;
        for w in &windows {
            writeln!(
                out,
                "  partition {:>3} window {:>6}  offsets {}..={}  {} records  root {}",
                w.partition,
                w.window,
                w.first_offset,
                w.last_offset,
                w.leaf_count,
                short(&w.root.to_hex())
            )?;
        }
    }
    if let (Some(n), Some(w), false) = (recorded, &args.warehouse, args.json) {
        writeln!(out, "recorded {n} new windows in {w}/system/makoto/windows")?;
    }
    Ok(EXIT_OK)
}

/// Appends the topic's published windows that the warehouse does not hold yet (per partition,
/// exactly once through the windows table's `txn`), so a run that published but failed to
/// record catches up.
async fn record_in_warehouse(
    topic: &makoto_kafka::Topic,
    warehouse: &str,
    signer: Option<&makoto_core::keys::SigningKeyPair>,
) -> anyhow::Result<u64> {
    use makoto_delta::store::{AppendOutcome, windows_app_id};
    let own = signer.map(|s| makoto_core::verify::TrustedKeys::new(vec![s.public_key().clone()]));
    let (windows, _) = makoto_kafka::published(topic, own.as_ref()).await?;
    let store = makoto_delta::AttestationStore::create(
        makoto_delta::Location::create(warehouse)?,
        makoto_delta::StorageOptions::default(),
    )
    .await?;
    let run_id = uuid_like();
    let mut written = 0u64;
    let mut by_stream: std::collections::BTreeMap<
        (i32, u64),
        Vec<(&makoto_kafka::KafkaWindow, &String)>,
    > = Default::default();
    for ((p, _), (w, env)) in &windows {
        by_stream
            .entry((*p, w.window_records))
            .or_default()
            .push((w, env));
    }
    for ((p, n), list) in by_stream {
        let uri = format!("kafka://{}/{p}", topic.name());
        let spec = format!("records={n}");
        let table = store.load_windows().await?;
        let done =
            makoto_delta::AttestationStore::txn_version(&table, &windows_app_id(&uri, &spec))
                .await?
                .unwrap_or(0);
        let rows: Vec<makoto_delta::WindowRow> = list
            .iter()
            .filter(|(w, _)| w.window + 1 > done)
            .map(|(w, env)| {
                let payload_digest = makoto_core::dsse::Envelope::from_json(env.as_bytes())
                    .map(|e| makoto_core::Sha256Digest::of(e.payload()))
                    .unwrap_or(makoto_core::Sha256Digest::ZERO);
                let keyid = serde_json::from_str::<serde_json::Value>(env)
                    .ok()
                    .and_then(|v| v["signatures"][0]["keyid"].as_str().map(str::to_owned));
                makoto_delta::WindowRow {
                    table_uri: uri.clone(),
                    table_id: topic.name().to_owned(),
                    spec: spec.clone(),
                    sequence: w.window + 1,
                    window_id: w.id.clone(),
                    first_version: w
                        .first_offset
                        .and_then(|o| u64::try_from(o).ok())
                        .unwrap_or(0),
                    first_index: 0,
                    last_version: w
                        .last_offset
                        .and_then(|o| u64::try_from(o).ok())
                        .unwrap_or(0),
                    last_index: 0,
                    first_timestamp_ms: w.min_timestamp_ms.unwrap_or(0),
                    last_timestamp_ms: w.max_timestamp_ms.unwrap_or(0),
                    leaf_count: w.leaves.len() as u64,
                    merkle_root: w.root,
                    previous_window_id: w
                        .previous
                        .map(|(k, _)| makoto_kafka::subject(topic.name(), p, n, k)),
                    previous_merkle_root: w.previous.map(|(_, r)| r),
                    attestation_digest: payload_digest,
                    keyid,
                    envelope: (*env).clone(),
                    attested_at_us: chrono::Utc::now().timestamp_micros(),
                    run_id: run_id.clone(),
                }
            })
            .collect();
        let Some(last) = rows.last().map(|r| r.sequence) else {
            continue;
        };
        match store
            .append_windows(table, &rows, &uri, &spec, last, &run_id)
            .await?
        {
            AppendOutcome::Committed { .. } => written += rows.len() as u64,
            AppendOutcome::Conflict => {
                anyhow::bail!("another run recorded windows of {uri} at the same time; run again")
            }
        }
    }
    Ok(written)
}

fn uuid_like() -> String {
    format!("kafka-{}", chrono::Utc::now().timestamp_micros())
}

async fn verify(args: KafkaVerifyArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let trust = load_trust(&args.trust)?;
    let topic = makoto_kafka::Topic::connect(&args.brokers, &args.topic).await?;
    let attested_as = args.as_topic.as_deref().unwrap_or(&args.topic);
    let report = makoto_kafka::verify(&topic, attested_as, &trust).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "{} {} ({} windows attested for {}, {} records read)",
            if report.verified {
                "VERIFIED"
            } else {
                "NOT VERIFIED"
            },
            report.topic,
            report.windows_checked,
            report.attested_as,
            report.records_checked
        )?;
        for f in &report.findings {
            writeln!(
                out,
                "{:<22} partition {:>4} offset {:>8} window {:>6}  {}",
                f.kind.code(),
                f.partition.map_or("-".into(), |p| p.to_string()),
                f.offset.map_or("-".into(), |o| o.to_string()),
                f.window.map_or("-".into(), |w| w.to_string()),
                f.detail
            )?;
        }
    }
    Ok(if report.verified {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
