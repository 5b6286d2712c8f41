use std::io::Write;

use makoto_core::attestation::MakotoLevel;
use makoto_delta::VersionSpec;
use makoto_delta::gate::{self, GateOptions, Upstream};

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::args::CheckArgs;
use makoto_delta::keyfile::load_trust;

pub(crate) fn level(n: u8) -> MakotoLevel {
    match n {
        1 => MakotoLevel::L1,
        2 => MakotoLevel::L2,
        _ => MakotoLevel::L3,
    }
}

pub async fn run(
    ctx: &crate::context::Context,
    args: CheckArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let trust = load_trust(&args.trust)?;
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let source = ctx.attested_table(&args.target, &store).await?;
    let options = GateOptions {
        at: args
            .version
            .map_or(VersionSpec::Latest, VersionSpec::Version),
        min_level: level(args.min_level),
        upstream: if args.upstream {
            Upstream::Check
        } else {
            Upstream::Ignore
        },
        mode: crate::args::verify_mode(args.log_only),
        storage: ctx.storage().clone(),
        ..GateOptions::default()
    };
    let report = gate::check(&store, &trust, &source, &options).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else if report.passed {
        writeln!(
            out,
            "PASS {}@v{}: attested at or above {} and verified{}",
            report.table,
            report.version,
            report.min_level,
            if args.upstream {
                format!(
                    ", with {} upstream table version(s) in {} other table(s)",
                    report.upstream_versions,
                    report.checked.len().saturating_sub(1)
                )
            } else {
                String::new()
            }
        )?;
    } else {
        writeln!(
            out,
            "FAIL {}@v{}: {} reason(s)",
            report.table,
            report.version,
            report.reasons.len()
        )?;
        for r in &report.reasons {
            writeln!(out, "  - {r}")?;
        }
    }
    Ok(if report.passed {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
