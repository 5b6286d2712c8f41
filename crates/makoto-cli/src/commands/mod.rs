mod attest;
mod check;
mod dbom;
mod demo;
mod head;
mod kafka;
mod keygen;
mod proof;
mod sql;
mod transform;
mod verify;

use std::io::Write;

use crate::args::{Cli, Command};

/// Exit status: the run did its job.
pub const EXIT_OK: u8 = 0;
/// Exit status: verification found a problem.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: could not run.
pub const EXIT_ERROR: u8 = 2;

pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Keygen(a) => keygen::run(a, out),
        Command::Attest(a) => attest::run(a, out).await,
        Command::Verify(a) => verify::run(a, out).await,
        Command::Prove(a) => proof::prove(a, out).await,
        Command::VerifyProof(a) => proof::verify(a, out),
        Command::Head(a) => head::run(a, out).await,
        Command::Sql(a) => sql::run(a, out).await,
        Command::Transform(a) => transform::run(a, out).await,
        Command::Check(a) => check::run(a, out).await,
        Command::Dbom(a) => dbom::run(a, out).await,
        Command::Demo(a) => demo::run(a, out).await,
        Command::Kafka(c) => kafka::run(c, out).await,
    }
}

/// Opens the table to check and names it as the table its attestations are about: `--as`,
/// else its own URI, else the URI its Delta table id was attested under (said on stderr).
pub(crate) async fn attested_table(
    table: &str,
    attested_as: Option<&str>,
    store: &makoto_delta::AttestationStore,
    storage: &makoto_delta::StorageOptions,
) -> anyhow::Result<makoto_delta::SourceTable> {
    use makoto_delta::identity::{self, Identity};
    let source =
        makoto_delta::SourceTable::open(makoto_delta::Location::existing(table)?, storage)?;
    if let Some(uri) = attested_as {
        return Ok(source.attested_as(makoto_delta::Location::named(uri)?.as_uri()));
    }
    let (source, identity) = identity::resolve(source, store).await?;
    if let Identity::ByTableId {
        table_id,
        attested_uri,
    } = &identity
    {
        eprintln!(
            "note: nothing is attested under {table}; its table id {table_id} was attested under {attested_uri}, which is what is checked (choose with --as)"
        );
    }
    Ok(source)
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
