//! Checkpoint baselines: where a table's first commits were removed by log cleanup before it
//! was ever attested, its chain starts from a checkpoint. The checkpoint's live files become
//! the changes of the baseline version (as `add`s), its protocol and metadata the starting
//! context, and the checkpoint files' digests are recorded so verification can tell a
//! rewritten checkpoint.

use makoto_core::Sha256Digest;
use makoto_core::attestation::CheckpointFile;
use makoto_core::delta::{Action, Commit};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::Error;
use crate::location::StorageOptions;
use crate::log::SourceTable;

/// The state of a checkpoint version, as a commit that adds every live file.
#[derive(Debug)]
pub struct CheckpointState {
    pub version: u64,
    /// `protocol`, `metaData`, `txn` and `domainMetadata` actions, then one `add` per live file
    /// sorted by decoded path.
    pub commit: Commit,
}

/// Reads the live files and table facts of `version` from its checkpoint (classic,
/// multi-part or v2 with sidecars; the first complete one when there are several), as a
/// reader that starts from that checkpoint does.
pub async fn checkpoint_state(
    source: &SourceTable,
    _options: &StorageOptions,
    version: u64,
) -> Result<CheckpointState, Error> {
    let uri = source.uri().to_owned();
    let fail = |e: String| Error::InvalidLog {
        table: uri.clone(),
        version,
        reason: format!("cannot read the checkpoint: {e}"),
    };
    let log = source.list_log(version).await?;
    let names = log.checkpoints().get(&version).cloned().unwrap_or_default();
    let (groups, _) = crate::checkpoint::group(version, &names);
    let first = groups
        .first()
        .ok_or_else(|| fail("no complete checkpoint at this version".to_owned()))?;
    let content = crate::checkpoint::read(source, first).await.map_err(fail)?;
    Ok(CheckpointState {
        version,
        commit: as_commit(version, content.actions),
    })
}

/// The actions of a checkpoint as one commit: table facts first, then the adds sorted by
/// decoded path.
pub fn as_commit(version: u64, actions: Vec<Action>) -> Commit {
    let (mut adds, mut out): (Vec<Action>, Vec<Action>) = actions
        .into_iter()
        .partition(|a| matches!(a, Action::Add(_)));
    adds.sort_by(|a, b| match (a, b) {
        (Action::Add(x), Action::Add(y)) => x.path().as_str().cmp(y.path().as_str()),
        _ => std::cmp::Ordering::Equal,
    });
    out.extend(adds);
    Commit::from_actions(version, out)
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
