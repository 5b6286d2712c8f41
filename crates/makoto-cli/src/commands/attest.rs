use std::io::Write;
use std::sync::Arc;

use makoto_core::attestation::AvailabilityStatus;
use makoto_core::keys::Signer;
use makoto_core::window::WindowSpec;
use makoto_delta::windows::WindowSummary;
use makoto_delta::{AttestOptions, AttestSummary, Attestor, Location, SourceTable};
use serde_json::json;

use super::{EXIT_OK, human_bytes, short};
use crate::args::AttestArgs;
use crate::progress::TerminalProgress;

pub(crate) struct AttestRequest {
    pub table: String,
    pub warehouse: String,
    pub key: Option<makoto_core::key_source::KeySource>,
    pub to_version: Option<u64>,
    pub batch_size: usize,
    /// Commit-file bytes per batch, at most.
    pub batch_bytes: u64,
    pub parallelism: Option<usize>,
    pub quiet: bool,
    /// Also attest stream windows over the attested appends.
    pub windows: Option<WindowSpec>,
    /// RFC 3161 time-stamp authority URL.
    pub tsa: Option<String>,
    /// The attestor's identity.
    pub identity: Option<String>,
}

/// What one `attest` run did: the commits, and the windows when asked for.
pub(crate) struct AttestOutcome {
    pub summary: AttestSummary,
    pub windows: Option<WindowSummary>,
}

/// Loads the key and opens the table and the warehouse once, then attests the commits and,
/// with a window spec, the windows over them.
pub(crate) async fn attest(
    ctx: &crate::context::Context,
    req: AttestRequest,
) -> anyhow::Result<AttestOutcome> {
    let storage = ctx.storage().clone();
    let signer: Option<Arc<dyn Signer>> = crate::context::signer(req.key.as_ref())?;
    let table = SourceTable::open(Location::existing(&req.table)?, &storage)?;
    let tsa = makoto_delta::tsa::TsaClient::for_run(req.tsa.as_deref(), signer.is_some()).await?;
    let store = ctx.warehouse(&req.warehouse).await?;
    let mut options = AttestOptions {
        to_version: req.to_version,
        batch_size: req.batch_size.max(1),
        batch_bytes: req.batch_bytes,
        storage,
        tsa: tsa.clone(),
        identity: req.identity,
        ..AttestOptions::default()
    };
    if let Some(p) = req.parallelism {
        options.parallelism = p.max(1);
    }
    let progress = Arc::new(TerminalProgress::new(req.quiet));
    let attestor = Attestor::new(table.clone(), store.clone(), signer.clone(), options)
        .with_observer(progress.clone());
    let result = attestor.run().await;
    progress.finish();
    let summary = result?;
    let windows = match (req.windows, summary.attested_through(), &summary.table_id) {
        (Some(spec), Some(through), Some(table_id)) => Some(
            makoto_delta::windows::attest_windows(
                &table,
                &store,
                signer.as_deref(),
                spec,
                through,
                table_id,
                &summary.run_id,
                tsa.as_ref(),
            )
            .await?,
        ),
        _ => None,
    };
    Ok(AttestOutcome { summary, windows })
}

pub fn summary_json(s: &AttestSummary) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(s)?)
}

pub fn print_summary(s: &AttestSummary, out: &mut dyn Write) -> std::io::Result<()> {
    if s.attested.is_empty() {
        match s.previously_attested {
            Some(v) => writeln!(
                out,
                "{}: up to date (versions 0..={v} attested)",
                s.table_uri
            )?,
            None => writeln!(out, "{}: nothing to attest", s.table_uri)?,
        }
        return Ok(());
    }
    let first = s.attested.first().map_or(0, |a| a.version);
    let last = s.attested.last().map_or(0, |a| a.version);
    writeln!(
        out,
        "attested {} versions {first}..={last} of {} into {}",
        s.attested.len(),
        s.table_uri,
        s.warehouse
    )?;
    match &s.keyid {
        Some(k) if s.level == makoto_core::attestation::MakotoLevel::L1 => writeln!(
            out,
            "level L1 (signed with key {k}; L2 also needs --tsa and --identity, docs/levels.md)"
        )?,
        Some(k) => writeln!(
            out,
            "level {} (signed with key {k}, time-stamped, identity named)",
            s.level
        )?,
        None => writeln!(out, "level {} (unsigned)", s.level)?,
    }
    writeln!(
        out,
        "hashed {} files, {}",
        s.files_hashed,
        human_bytes(s.bytes_hashed)
    )?;
    writeln!(
        out,
        "{:>8}  {:<24} {:<10} {:<14} {:<14} {:>5} {:>5}",
        "version", "operation", "predicate", "state", "attestation", "+fil", "-fil"
    )?;
    for a in &s.attested {
        let pred = a.predicate_type.rsplit('/').nth(1).unwrap_or("?");
        writeln!(
            out,
            "{:>8}  {:<24} {:<10} {:<14} {:<14} {:>5} {:>5}",
            a.version,
            a.operation.as_deref().unwrap_or("-"),
            pred,
            short(&a.state_digest.to_hex()),
            short(&a.attestation_digest.to_hex()),
            a.files_added,
            a.files_removed
        )?;
    }
    if let Some(b) = s.attested.iter().find_map(|a| a.baseline) {
        writeln!(
            out,
            "baseline: earlier commits were removed by log cleanup; the chain starts from the checkpoint of version {b} (earlier versions are not attested)"
        )?;
    }
    let unavailable: Vec<u64> = s
        .attested
        .iter()
        .filter(|a| a.data_availability != AvailabilityStatus::Complete)
        .map(|a| a.version)
        .collect();
    if let (Some(first), Some(last)) = (unavailable.first(), unavailable.last()) {
        let files: usize = s.attested.iter().map(|a| a.unavailable_files.len()).sum();
        writeln!(
            out,
            "data unavailable: {} versions between {first} and {last} reference {files} files that were vacuumed before they were attested; their log facts are attested and `makoto verify` reports them as unverifiable, not tampered",
            unavailable.len()
        )?;
    }
    Ok(())
}

pub async fn run(
    ctx: &crate::context::Context,
    args: AttestArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    if let Some(service) = &args.via {
        return via(ctx, service, &args, out).await;
    }
    if args.key.is_none() {
        eprintln!(
            "warning: no --key (or MAKOTO_KEY): writing unsigned attestations (Makoto L1); L2 needs --key, --tsa and --identity"
        );
    }
    let AttestOutcome { summary, windows } = attest(
        ctx,
        AttestRequest {
            table: args.table,
            warehouse: args.warehouse.unwrap_or_default(),
            key: args.key,
            to_version: args.to_version,
            batch_size: args.batch_size,
            batch_bytes: args.batch_mib.saturating_mul(1 << 20),
            parallelism: args.parallelism,
            quiet: args.json,
            windows: args.windows,
            tsa: args.tsa,
            identity: args.identity,
        },
    )
    .await?;
    if args.json {
        let mut v = summary_json(&summary)?;
        if let (Some(w), Some(m)) = (&windows, v.as_object_mut()) {
            m.insert("windows".into(), windows_json(w));
        }
        writeln!(out, "{v}")?;
    } else {
        print_summary(&summary, out)?;
        if let Some(w) = &windows {
            match (w.closed.first(), w.closed.last()) {
                (Some(a), Some(b)) => writeln!(
                    out,
                    "windows {}: closed {} (sequence {}..={}, {} records); {} records in the open window",
                    w.spec,
                    w.closed.len(),
                    a.sequence,
                    b.sequence,
                    w.closed.iter().map(|c| c.leaf_count).sum::<u64>(),
                    w.open_records
                )?,
                _ => writeln!(
                    out,
                    "windows {}: none closed; {} records in the open window",
                    w.spec, w.open_records
                )?,
            }
        }
    }
    Ok(super::EXIT_OK)
}

fn windows_json(w: &WindowSummary) -> serde_json::Value {
    json!({
        "spec": w.spec,
        "openRecords": w.open_records,
        "closed": w.closed.iter().map(|c| json!({
            "id": c.id,
            "sequence": c.sequence,
            "merkleRoot": c.root.to_hex(),
            "leafCount": c.leaf_count,
            "first": {"version": c.first.version, "index": c.first.index},
            "last": {"version": c.last.version, "index": c.last.index},
        })).collect::<Vec<_>>(),
    })
}

/// `attest --via`: the service attests; this waits for its receipt.
async fn via(
    ctx: &crate::context::Context,
    service: &str,
    args: &AttestArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let token = std::env::var("MAKOTO_SERVICE_TOKEN").map_err(|_| {
        anyhow::anyhow!(
            "attest --via {service}: set MAKOTO_SERVICE_TOKEN to this job's bearer token"
        )
    })?;
    let table = SourceTable::open(Location::existing(&args.table)?, ctx.storage())?;
    let version = match args.to_version {
        Some(v) => v,
        None => table
            .list_log(0)
            .await?
            .latest_commit()
            .ok_or_else(|| anyhow::anyhow!("{}: no commit to attest", table.uri()))?,
    };
    let receipt =
        makoto_serve::client::request_attestation(service, &token, table.uri(), version, args.wait)
            .await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&receipt)?)?;
    } else {
        writeln!(
            out,
            "{} attested through version {} by {service} (asked for {}, as tenant {})",
            receipt.table, receipt.attested_version, receipt.version, receipt.tenant
        )?;
    }
    Ok(EXIT_OK)
}
