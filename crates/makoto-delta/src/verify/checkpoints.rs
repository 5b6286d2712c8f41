//! Checkpoints against the JSON log: every checkpoint's live files must be the ones the JSON
//! commits give at its version, and `_last_checkpoint` must point to a real checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;

use super::findings::{Finding, FindingKind};
use super::replay::LiveKey;
use crate::location::StorageOptions;
use crate::log::{LogFiles, SourceTable};

/// The live files of `version` as delta-rs reads them (through the checkpoint at that version).
async fn live_set_from_checkpoint(
    source: &SourceTable,
    options: &StorageOptions,
    version: u64,
) -> Result<BTreeSet<LiveKey>, String> {
    let table = deltalake::DeltaTableBuilder::from_url(source.location().url().clone())
        .map_err(|e| e.to_string())?
        .with_storage_options(options.0.clone())
        .with_version(version)
        .load()
        .await
        .map_err(|e| e.to_string())?;
    let views: Vec<_> = table
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(views
        .into_iter()
        .map(|f| {
            let dv = f.deletion_vector_descriptor().map(|d| {
                let code = match d.storage_type {
                    deltalake::kernel::StorageType::UuidRelativePath => "u",
                    deltalake::kernel::StorageType::Inline => "i",
                    deltalake::kernel::StorageType::AbsolutePath => "p",
                };
                match d.offset {
                    Some(o) => format!("{code}{}@{o}", d.path_or_inline_dv),
                    None => format!("{code}{}", d.path_or_inline_dv),
                }
            });
            (
                f.path().into_owned(),
                dv,
                u64::try_from(f.size()).unwrap_or(0),
            )
        })
        .collect())
}

fn sample(set: &BTreeSet<&LiveKey>) -> String {
    set.iter()
        .take(3)
        .map(|(p, _, _)| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares each checkpoint with the replayed live set at its version.
pub(crate) async fn check_checkpoints(
    source: &SourceTable,
    options: &StorageOptions,
    log: &LogFiles,
    replayed: &BTreeMap<u64, BTreeSet<LiveKey>>,
    findings: &mut Vec<Finding>,
) -> u64 {
    let mut checked = 0;
    for (version, expected) in replayed {
        let names = log.checkpoints().get(version).cloned().unwrap_or_default();
        let file = format!("_delta_log/{}", names.first().cloned().unwrap_or_default());
        match live_set_from_checkpoint(source, options, *version).await {
            Err(e) => findings.push(
                Finding::new(
                    FindingKind::CheckpointUnreadable,
                    format!("delta-rs cannot read the table at version {version}: {e}"),
                )
                .at(*version)
                .file(file),
            ),
            Ok(actual) => {
                checked += 1;
                if &actual != expected {
                    let extra: BTreeSet<&LiveKey> = actual.difference(expected).collect();
                    let missing: BTreeSet<&LiveKey> = expected.difference(&actual).collect();
                    findings.push(
                        Finding::new(
                            FindingKind::CheckpointMismatch,
                            format!(
                                "the checkpoint lists {} files, the JSON log {}; {} only in the checkpoint ({}), {} only in the log ({})",
                                actual.len(),
                                expected.len(),
                                extra.len(),
                                sample(&extra),
                                missing.len(),
                                sample(&missing)
                            ),
                        )
                        .at(*version)
                        .file(file),
                    );
                }
            }
        }
    }
    checked
}

/// `_last_checkpoint` is a hint; an empty or stale one is harmless (readers list the log), one
/// that names a checkpoint that does not exist is not.
pub(crate) async fn check_last_checkpoint(
    source: &SourceTable,
    log: &LogFiles,
    findings: &mut Vec<Finding>,
) {
    let path = Path::from("_delta_log/_last_checkpoint");
    let Ok(result) = source.store().get(&path).await else {
        return;
    };
    let Ok(bytes) = result.bytes().await else {
        return;
    };
    let Ok(hint) = serde_json::from_slice::<Value>(&bytes) else {
        return;
    };
    let Some(version) = hint.get("version").and_then(Value::as_u64) else {
        return;
    };
    let bad = |detail: String| {
        Finding::new(FindingKind::LastCheckpointInvalid, detail)
            .at(version)
            .file("_delta_log/_last_checkpoint")
    };
    if log.latest_commit().is_some_and(|l| version > l) {
        findings.push(bad(format!(
            "points to version {version}, beyond the last commit"
        )));
        return;
    }
    match log.checkpoints().get(&version) {
        None => findings.push(bad(format!(
            "points to version {version}, which has no checkpoint file"
        ))),
        Some(files) => {
            if let Some(parts) = hint.get("parts").and_then(Value::as_u64)
                && parts as usize != files.len()
            {
                findings.push(bad(format!(
                    "says the checkpoint at version {version} has {parts} parts, there are {}",
                    files.len()
                )));
            }
        }
    }
}
