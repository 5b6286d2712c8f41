use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use makoto_core::verify::TrustedKeys;
use makoto_delta::{Location, SourceTable, Verifier, VerifyOptions, keyfile};
use serde_json::json;

use super::attest::{AttestRequest, attest, print_summary, summary_json};
use crate::args::DemoArgs;

/// The sample table shipped in `data/`, found from the working directory or the source tree.
fn sample_table(requested: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(requested);
    if p.join("_delta_log").is_dir() {
        return Ok(p);
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(requested);
    if in_tree.join("_delta_log").is_dir() {
        return Ok(in_tree);
    }
    bail!("sample table {requested} not found (run from the repository root, or pass --table)")
}

pub async fn run(
    ctx: &crate::context::Context,
    args: DemoArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let table = sample_table(&args.table)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let prefix = args.dir.join("demo");
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    let created_key = if key_path.exists() {
        None
    } else {
        Some(keyfile::generate(
            &prefix,
            makoto_core::keys::Algorithm::Ed25519,
        )?)
    };
    let warehouse = args.dir.join("warehouse");
    let summary = attest(
        ctx,
        AttestRequest {
            table: table.display().to_string(),
            warehouse: warehouse.display().to_string(),
            key: Some(makoto_core::key_source::KeySource::File(key_path.clone())),
            to_version: None,
            batch_size: makoto_delta::attest::DEFAULT_BATCH_COMMITS,
            batch_bytes: makoto_delta::attest::DEFAULT_BATCH_BYTES,
            parallelism: None,
            quiet: args.json,
            windows: None,
            tsa: None,
            identity: None,
        },
    )
    .await?
    .summary;

    // Verify the sample, deeply, against the demo's public key.
    let public = keyfile::load_public_key(&pub_path)?;
    let trusted = TrustedKeys::new(vec![public.clone()]);
    let storage = ctx.storage().clone();
    let store = ctx
        .existing_warehouse(&warehouse.display().to_string())
        .await?;
    let source = SourceTable::open(Location::existing(&table.display().to_string())?, &storage)?;
    let report = Verifier::new(&source, &store, &trusted, VerifyOptions::default())
        .run()
        .await?;
    if !report.verified {
        bail!(
            "the sample does not verify: {} findings, first: {:?}",
            report.findings.len(),
            report.findings.first().map(|f| &f.detail)
        );
    }

    let session = makoto_sql::MakotoSession::open(
        &Location::create(&warehouse.display().to_string())?,
        &storage,
    )
    .await?;
    let query = format!(
        "SELECT version, operation, level, substr(state_digest, 1, 12) AS state, files_added, files_removed, live_files \
         FROM system.makoto.attestations WHERE table_uri = '{}' ORDER BY version",
        summary.table_uri.replace('\'', "''")
    );
    let batches = session.sql(&query).await?;

    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "sampleTable": table.display().to_string(),
                "key": key_path.display().to_string(),
                "publicKey": pub_path.display().to_string(),
                "keyid": public.keyid().as_str(),
                "keyCreated": created_key.is_some(),
                "warehouse": summary.warehouse,
                "summary": summary_json(&summary)?,
                "rowsVerified": report.attestation_rows,
                "verified": report.verified,
            })
        )?;
        return Ok(super::EXIT_OK);
    }

    writeln!(
        out,
        "Makoto demo: attesting the sample Delta table {}",
        table.display()
    )?;
    if let Some(k) = &created_key {
        writeln!(
            out,
            "created signing key {} (keyid {})",
            k.private_key.display(),
            k.keyid
        )?;
    } else {
        writeln!(
            out,
            "using signing key {} (keyid {})",
            key_path.display(),
            public.keyid()
        )?;
    }
    writeln!(out)?;
    print_summary(&summary, out)?;
    writeln!(out)?;
    writeln!(
        out,
        "makoto verify (deep, trusting {}):",
        pub_path.display()
    )?;
    super::verify::print_report(&report, out)?;
    writeln!(out)?;
    writeln!(out, "system.makoto.attestations (SQL: {query})")?;
    writeln!(out, "{}", makoto_sql::format_table(&batches)?)?;
    writeln!(out)?;
    writeln!(out, "Next:")?;
    writeln!(
        out,
        "  run it again: nothing new to attest, the job is idempotent"
    )?;
    writeln!(
        out,
        "  attest your own table: cargo run -- attest <TABLE> --warehouse {} --key {}",
        warehouse.display(),
        key_path.display()
    )?;
    writeln!(
        out,
        "  read the attestations with another Delta reader: python3 -c \"import deltalake; print(deltalake.DeltaTable('{}/system/makoto/attestations').to_pandas())\"",
        warehouse.display()
    )?;
    writeln!(
        out,
        "  verify any version: cargo run -- verify {} --warehouse {} --trust {} --version 4",
        table.display(),
        warehouse.display(),
        pub_path.display()
    )?;
    writeln!(
        out,
        "  check the signatures independently (Python securesystemslib): python3 scripts/check_attestations.py {} {}",
        warehouse.display(),
        pub_path.display()
    )?;
    Ok(super::EXIT_OK)
}
