//! Checkpoint baselines: where a table's first commits were removed by log cleanup before it
//! was ever attested, its chain starts from a checkpoint. The checkpoint's live files become
//! the changes of the baseline version (as `add`s), its protocol and metadata the starting
//! context, and the checkpoint files' digests are recorded so verification can tell a
//! rewritten checkpoint.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use makoto_core::Sha256Digest;
use makoto_core::attestation::CheckpointFile;
use makoto_core::delta::Commit;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};

use crate::Error;
use crate::location::StorageOptions;
use crate::log::SourceTable;

/// Characters re-encoded when a decoded path is written back into a log line: `%` (so that
/// decoding gives back the same name) and controls.
const LOG_PATH: &AsciiSet = &CONTROLS.add(b'%');

/// The state of a checkpoint version, as a commit that adds every live file.
#[derive(Debug)]
pub struct CheckpointState {
    pub version: u64,
    /// `protocol`, `metaData` and one `add` per live file.
    pub commit: Commit,
}

/// Reads the live files, protocol and metadata of `version` through its checkpoint (delta-rs
/// reads the checkpoint — classic, multi-part or v2 with sidecars — and no commit after it).
pub async fn checkpoint_state(
    source: &SourceTable,
    options: &StorageOptions,
    version: u64,
) -> Result<CheckpointState, Error> {
    let uri = source.uri().to_owned();
    let fail = |e: String| Error::InvalidLog {
        table: uri.clone(),
        version,
        reason: format!("cannot read the checkpoint: {e}"),
    };
    let table = deltalake::DeltaTableBuilder::from_url(source.location().url().clone())
        .map_err(|e| fail(e.to_string()))?
        .with_storage_options(options.0.clone())
        .with_version(version)
        .load()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let snapshot = table.snapshot().map_err(|e| fail(e.to_string()))?;
    let mut lines: Vec<String> = Vec::new();
    let protocol = serde_json::to_value(snapshot.protocol()).map_err(|e| fail(e.to_string()))?;
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(|e| fail(e.to_string()))?;
    lines.push(json!({ "protocol": protocol }).to_string());
    lines.push(json!({ "metaData": metadata }).to_string());
    let views: Vec<_> = table
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut adds: Vec<(String, String)> = Vec::with_capacity(views.len());
    for f in views {
        let path = f.path().into_owned();
        let mut add = json!({
            "path": utf8_percent_encode(&path, LOG_PATH).to_string(),
            "size": f.size(),
            "partitionValues": f.partition_values_map().into_iter().collect::<BTreeMap<_, _>>(),
            "modificationTime": f.modification_time(),
            "dataChange": true,
        });
        if let Some(m) = add.as_object_mut() {
            if let Some(dv) = f.deletion_vector_descriptor() {
                m.insert(
                    "deletionVector".into(),
                    serde_json::to_value(dv).map_err(|e| fail(e.to_string()))?,
                );
            }
            if let Some(stats) = f.stats() {
                m.insert("stats".into(), Value::String(stats));
            }
        }
        adds.push((path, json!({ "add": add }).to_string()));
    }
    adds.sort();
    lines.extend(adds.into_iter().map(|(_, l)| l));
    let commit =
        Commit::parse(version, lines.join("\n").as_bytes()).map_err(|e| fail(e.to_string()))?;
    Ok(CheckpointState { version, commit })
}

/// Hashes the checkpoint files of `version` (`names` as listed in `_delta_log/`), sorted.
pub async fn checkpoint_files(
    source: &SourceTable,
    version: u64,
    names: &[String],
) -> Result<Vec<CheckpointFile>, Error> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = format!("_delta_log/{name}");
        let fail = |e: object_store::Error| Error::InvalidLog {
            table: source.uri().to_owned(),
            version,
            reason: format!("cannot read checkpoint file {path}: {e}"),
        };
        let bytes = source
            .store()
            .get(&Path::from(path.as_str()))
            .await
            .map_err(fail)?
            .bytes()
            .await
            .map_err(fail)?;
        out.push(CheckpointFile {
            size: bytes.len() as u64,
            sha256: Sha256Digest::of(&bytes),
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
