//! `makoto export`: a table's attestations as Sigstore bundles (one per version) or one in-toto
//! JSON Lines file, written whole or not at all.

use std::path::{Path, PathBuf};

use makoto_core::dsse::Envelope;
use makoto_core::export::{intoto_jsonl_line, sigstore_bundle};

use crate::Error;
use crate::store::AttestationStore;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `<name>-v<N>.sigstore.json` per version: Sigstore bundle v0.3 with the DSSE envelope,
    /// the key hint and the RFC 3161 token where the envelope has one.
    SigstoreBundle,
    /// `<name>.intoto.jsonl`: one DSSE envelope per line, in version order.
    Jsonl,
}

/// The envelopes of `table_uri` (one version, or all), in version order.
pub async fn envelopes(
    store: &AttestationStore,
    table_uri: &str,
    version: Option<u64>,
) -> Result<Vec<(u64, Envelope)>, Error> {
    let mut rows = store.attestation_rows(table_uri).await?;
    rows.retain(|r| version.is_none_or(|v| r.version == v));
    rows.sort_by_key(|r| r.version);
    if rows.is_empty() {
        return Err(Error::NotAttested {
            table: table_uri.to_owned(),
            version,
        });
    }
    rows.into_iter()
        .map(|r| {
            Envelope::from_json(r.envelope.as_bytes())
                .map(|e| (r.version, e))
                .map_err(|e| Error::core(format!("{table_uri} version {}", r.version), e))
        })
        .collect()
}

fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("partial");
    let io = |e: std::io::Error| Error::InvalidLocation {
        input: path.display().to_string(),
        reason: format!("cannot write: {e}"),
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the envelopes of `table_uri` into `dir` (created when missing) in `format`; returns
/// the files written. Unsigned envelopes cannot be Sigstore bundles: exporting them in that
/// format is an error before anything is written.
pub async fn export(
    store: &AttestationStore,
    table_uri: &str,
    version: Option<u64>,
    format: ExportFormat,
    dir: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let found = envelopes(store, table_uri, version).await?;
    let name = table_uri
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("table");
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    match format {
        ExportFormat::SigstoreBundle => {
            for (v, env) in &found {
                let problem = |reason: String| Error::Export {
                    table: table_uri.to_owned(),
                    version: *v,
                    reason,
                };
                let bundle = sigstore_bundle(env).ok_or_else(|| {
                    problem(
                        "the attestation is unsigned; a Sigstore bundle needs a signature".into(),
                    )
                })?;
                let text =
                    serde_json::to_vec_pretty(&bundle).map_err(|e| problem(e.to_string()))?;
                files.push((dir.join(format!("{name}-v{v}.sigstore.json")), text));
            }
        }
        ExportFormat::Jsonl => {
            let mut text = String::new();
            for (_, env) in &found {
                text.push_str(&intoto_jsonl_line(env));
                text.push('\n');
            }
            files.push((dir.join(format!("{name}.intoto.jsonl")), text.into_bytes()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::InvalidLocation {
        input: dir.display().to_string(),
        reason: format!("cannot create directory: {e}"),
    })?;
    for (path, bytes) in &files {
        write_whole(path, bytes)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
