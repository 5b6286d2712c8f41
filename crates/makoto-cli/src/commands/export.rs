use std::io::Write;

use makoto_delta::export::{self, ExportFormat};

use super::EXIT_OK;
use crate::args::{ExportArgs, ExportFormatArg};

pub async fn run(
    ctx: &crate::context::Context,
    args: ExportArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let source = ctx.attested_table(&args.target, &store).await?;
    let format = match args.format {
        ExportFormatArg::SigstoreBundle => ExportFormat::SigstoreBundle,
        ExportFormatArg::Jsonl => ExportFormat::Jsonl,
    };
    let written = export::export(&store, source.uri(), args.version, format, &args.out).await?;
    for path in written {
        writeln!(out, "{}", path.display())?;
    }
    Ok(EXIT_OK)
}
