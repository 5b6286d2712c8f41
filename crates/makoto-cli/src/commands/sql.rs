use std::io::{BufRead, IsTerminal, Write};

use makoto_core::verify::TrustedKeys;
use makoto_delta::Location;
use makoto_sql::{MakotoSession, OutputFormat, SessionOptions, format_batches};

use super::{EXIT_ERROR, EXIT_OK};
use crate::args::{Format, SqlArgs};
use makoto_delta::keyfile::load_trust;

async fn run_one(
    session: &MakotoSession,
    query: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let batches = session.sql(query).await?;
    let text = format_batches(&batches, format)?;
    if format == OutputFormat::Table && batches.iter().all(|b| b.num_rows() == 0) {
        writeln!(out, "{text}\n(0 rows)")?;
    } else {
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

pub async fn run(
    ctx: &crate::context::Context,
    args: SqlArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let tables = match &args.file_column {
        Some(c) => args
            .tables
            .into_iter()
            .map(|t| t.with_file_column(c.clone()))
            .collect(),
        None => args.tables,
    };
    let trust = match &args.trust {
        Some(p) => load_trust(p)?,
        None => TrustedKeys::default(),
    };
    let session = MakotoSession::open_with(
        &Location::existing(&args.warehouse)?,
        SessionOptions {
            storage: ctx.storage().clone(),
            trust,
            tables,
        },
    )
    .await?;
    let format = match args.format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
    };
    if let Some(q) = &args.sql {
        run_one(&session, q, format, out).await?;
        return Ok(EXIT_OK);
    }
    // Statements from standard input, each ended by ';'.
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!(
            "makoto sql: end statements with ';', \\q to quit. Tables: system.makoto.attestations, .files, .verifications, .lineage; makoto_lineage(table [, version])."
        );
    }
    let mut failed = false;
    let mut buf = String::new();
    let prompt = |buf: &str| {
        if interactive {
            eprint!(
                "{}",
                if buf.trim().is_empty() {
                    "makoto> "
                } else {
                    "   ...> "
                }
            );
        }
    };
    prompt(&buf);
    for line in stdin.lock().lines() {
        let line = line?;
        if buf.trim().is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        buf.push_str(&line);
        buf.push('\n');
        while let Some(end) = buf.find(';') {
            let stmt: String = buf.drain(..=end).collect();
            let stmt = stmt.trim().trim_end_matches(';').trim();
            if stmt.is_empty() {
                continue;
            }
            if let Err(e) = run_one(&session, stmt, format, out).await {
                failed = true;
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                if !interactive {
                    return Ok(EXIT_ERROR);
                }
            }
        }
        prompt(&buf);
    }
    let rest = buf.trim();
    if !rest.is_empty()
        && let Err(e) = run_one(&session, rest, format, out).await
    {
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        return Ok(EXIT_ERROR);
    }
    Ok(if failed && !interactive {
        EXIT_ERROR
    } else {
        EXIT_OK
    })
}
