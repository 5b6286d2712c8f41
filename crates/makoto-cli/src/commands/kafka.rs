use std::io::Write;

use serde_json::json;

use super::{EXIT_FINDINGS, EXIT_OK, short};
use crate::args::{KafkaAttestArgs, KafkaCommand, KafkaVerifyArgs};
use makoto_delta::keyfile::load_trust;

pub async fn run(
    ctx: &crate::context::Context,
    cmd: KafkaCommand,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    match cmd {
        KafkaCommand::Attest(a) => attest(ctx, a, out).await,
        KafkaCommand::Verify(a) => verify(a, out).await,
        KafkaCommand::Check(a) => check(a, out).await,
    }
}

async fn attest(
    ctx: &crate::context::Context,
    args: KafkaAttestArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let signer = match &args.key {
        Some(key) => Some(makoto_delta::signer::open(key)?.signer),
        None => {
            eprintln!("warning: no --key (or MAKOTO_KEY): publishing unsigned windows (Makoto L1)");
            None
        }
    };
    let tsa = makoto_delta::tsa::TsaClient::for_run(args.tsa.as_deref(), signer.is_some()).await?;
    let topic = makoto_kafka::Topic::connect(&args.brokers, &args.topic).await?;
    let windows = makoto_kafka::attest(
        &topic,
        args.window_records,
        args.headers,
        signer.as_deref(),
        tsa.as_ref(),
    )
    .await?;
    let unheadered: u64 = windows.iter().map(|w| w.unheadered).sum();
    if unheadered > 0 && args.headers == makoto_kafka::HeaderPolicy::Required {
        eprintln!(
            "warning: {unheadered} records of {} carry no makoto headers; under --headers required `makoto kafka verify` reports them as record-injected (attest with --headers optional for producers that cannot add them)",
            args.topic
        );
    }
    let recorded = match &args.warehouse {
        Some(w) => {
            let store = ctx.warehouse(w).await?;
            let signer = signer.as_deref();
            Some(makoto_kafka::record_windows(&topic, &store, signer).await?)
        }
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
                "headers": args.headers.as_str(),
                "recordEncoding": makoto_kafka::RecordEncoding::Record2.as_str(),
                "unheaderedRecords": unheadered,
                "published": windows.iter().map(|w| json!({
                    "partition": w.partition,
                    "window": w.window,
                    "firstOffset": w.first_offset,
                    "lastOffset": w.last_offset,
                    "leafCount": w.leaf_count,
                    "unheaderedRecords": w.unheadered,
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
            "{} {} ({} windows attested for {}, {} time-stamped; {} records read, {} in attested windows, {} without makoto headers)",
            if report.verified {
                "VERIFIED"
            } else {
                "NOT VERIFIED"
            },
            report.topic,
            report.windows_checked,
            report.attested_as,
            report.windows_timestamped,
            report.records_checked,
            report.records_covered,
            report.records_without_headers
        )?;
        if report.windows_checked == 0 {
            writeln!(
                out,
                "no window attested for {} verifies with the trusted keys: nothing is covered",
                report.attested_as
            )?;
        }
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

async fn check(args: KafkaVerifyArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let trust = load_trust(&args.trust)?;
    let topic = makoto_kafka::Topic::connect(&args.brokers, &args.topic).await?;
    let attested_as = args.as_topic.as_deref().unwrap_or(&args.topic);
    let report = makoto_kafka::check_topic(&topic, attested_as, &trust).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "{}: {} records read, {} verified, {} pending (window not published yet), {} failed ({} windows attested for {})",
            report.topic,
            report.records,
            report.verified,
            report.pending,
            report.failed.len(),
            report.windows,
            report.attested_as
        )?;
        for c in &report.failed {
            let kind = match c.status {
                makoto_kafka::RecordStatus::Failed(k) => k.code(),
                _ => "-",
            };
            writeln!(
                out,
                "{:<22} partition {:>4} offset {:>8} window {:>6}  {}",
                kind,
                c.partition,
                c.offset,
                c.window.map_or("-".into(), |w| w.to_string()),
                c.detail
            )?;
        }
    }
    Ok(if report.failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
