mod aibom;
mod attest;
mod check;
mod dbom;
mod demo;
mod export;
mod head;
mod kafka;
mod keygen;
mod proof;
mod serve;
mod sql;
mod transform;
mod verify;

use std::io::Write;

use crate::args::{Cli, Command};
use crate::context::Context;

/// Exit status: the run did its job.
pub const EXIT_OK: u8 = 0;
/// Exit status: verification found a problem.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: could not run.
pub const EXIT_ERROR: u8 = 2;

pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    let ctx = &Context::default();
    match cli.command {
        Command::Keygen(a) => keygen::run(a, out),
        Command::Pubkey(a) => keygen::pubkey(a, out),
        Command::Attest(a) => attest::run(ctx, a, out).await,
        Command::Verify(a) => verify::run(ctx, a, out).await,
        Command::Prove(a) => proof::prove(ctx, a, out).await,
        Command::VerifyProof(a) => proof::verify(a, out),
        Command::Head(a) => head::run(ctx, a, out).await,
        Command::Sql(a) => sql::run(ctx, a, out).await,
        Command::Transform(a) => transform::run(ctx, a, out).await,
        Command::Check(a) => check::run(ctx, a, out).await,
        Command::Dbom(a) => dbom::run(ctx, a, out).await,
        Command::Aibom(a) => aibom::run(ctx, a, out).await,
        Command::VerifyAibom(a) => aibom::verify(a, out),
        Command::Export(a) => export::run(ctx, a, out).await,
        Command::Demo(a) => demo::run(ctx, a, out).await,
        Command::Kafka(c) => kafka::run(ctx, c, out).await,
        Command::Serve(a) => serve::run(ctx, a).await,
        Command::Maintain(a) => maintain(ctx, a, out).await,
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub(crate) fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// `makoto maintain`: compaction and checkpoints of the warehouse's system tables.
async fn maintain(
    ctx: &Context,
    args: crate::args::MaintainArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let retention_set = match args.retention {
        Some(r) => store.set_retention(r).await?,
        None => Vec::new(),
    };
    let tables = store.maintain().await?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "tables": tables,
                "retention": args.retention.map(|r| r.interval()),
                "retentionSetOn": retention_set,
            })
        )?;
    } else {
        if let Some(r) = args.retention {
            let set = if retention_set.is_empty() {
                "already set on every system table".to_owned()
            } else {
                format!("set on {}", retention_set.join(", "))
            };
            writeln!(out, "retention {}: {set}", r.interval())?;
        }
        for t in &tables {
            writeln!(
                out,
                "system.makoto.{}: {} -> {} files, checkpoint at version {}",
                t.table,
                t.files_before,
                t.files_after,
                t.checkpoint_version
                    .map_or_else(|| "-".to_owned(), |v| v.to_string())
            )?;
        }
    }
    Ok(EXIT_OK)
}
