//! `_last_checkpoint`, the hint readers start from: it must point to a real checkpoint at an
//! attested version.

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;

use super::findings::{Finding, FindingKind};
use crate::log::{LogFiles, SourceTable};

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
