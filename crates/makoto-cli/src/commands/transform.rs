use std::io::Write;
use std::sync::Arc;

use makoto_core::attestation::InputPolicy;
use makoto_core::keys::Signer;
use makoto_delta::{AttestOptions, Location};
use makoto_sql::transform::{SqlTransform, WriteMode};

use super::{EXIT_OK, short};
use crate::args::{Mode, TransformArgs};

pub async fn run(
    ctx: &crate::context::Context,
    args: TransformArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let signer: Arc<dyn Signer> = makoto_delta::signer::open(&args.key)?.signer;
    let trust =
        makoto_delta::keyfile::trust_or_own(args.trust.as_deref(), Some(signer.public_key()))?
            .unwrap_or_default();
    let inputs = args.inputs;
    SqlTransform::check_inputs(&inputs)?;
    // Before anything is written: a TSA that is down stops the run here.
    let tsa = makoto_delta::tsa::TsaClient::for_run(args.tsa.as_deref(), true).await?;
    let storage = ctx.storage().clone();
    let store = ctx.warehouse(&args.warehouse).await?;
    let transform = SqlTransform {
        name: args.name.clone().unwrap_or_else(|| "SQL transform".into()),
        query: args.sql.clone(),
        inputs,
        output: Location::create(&args.output)?,
        mode: match args.mode {
            Mode::Append => WriteMode::Append,
            Mode::Overwrite => WriteMode::Overwrite,
        },
        policy: if args.allow_unattested {
            InputPolicy::AllowUnattested
        } else {
            InputPolicy::RequireVerified
        },
        input_check: crate::args::verify_mode(args.log_only),
    };
    let outcome = transform
        .run(
            &store,
            &trust,
            Some(signer),
            AttestOptions {
                storage,
                tsa,
                identity: args.identity.clone(),
                ..AttestOptions::default()
            },
        )
        .await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&outcome)?)?;
        return Ok(EXIT_OK);
    }
    for i in &outcome.inputs {
        let note = if i.problems.is_empty() {
            String::new()
        } else {
            format!(" — {}", i.problems.join("; "))
        };
        writeln!(
            out,
            "input  {:<12} {}@v{} {} {}{note}",
            i.name,
            i.table_uri,
            i.version,
            i.check,
            i.level.as_deref().unwrap_or("unattested"),
        )?;
    }
    writeln!(
        out,
        "output {} : {} rows written; attested {} (state {}, attestation {}, {})",
        outcome.output,
        outcome.rows_written,
        outcome.subject,
        short(&outcome.state_digest),
        short(&outcome.attestation_digest),
        outcome.level
    )?;
    Ok(EXIT_OK)
}
