//! The reader view of a version built from the log as a reader builds it: the newest
//! complete checkpoint at or before it, then the commits after.

use makoto_core::reader_view::ReaderView;

use crate::Error;
use crate::log::SourceTable;

/// The reader view of `version`. Used by the attestor when it continues a chain whose last
/// statement carries no reader view (made before reader views were attested) or whose stored
/// facts are gone; the result is checked against what was attested by the caller.
pub async fn view_at(source: &SourceTable, version: u64) -> Result<ReaderView, Error> {
    let uri = source.uri().to_owned();
    let log = source.list_log(0).await?;
    let mut view = ReaderView::default();
    let mut start = 0;
    for (v, names) in log.checkpoints().range(..=version).rev() {
        let (groups, _) = crate::checkpoint::group(*v, names);
        let Some(first) = groups.first() else {
            continue;
        };
        match crate::checkpoint::read(source, first).await {
            Ok(content) => {
                let commit = crate::baseline::as_commit(*v, content.actions);
                view.apply(&commit)
                    .map_err(|e| Error::core(format!("{uri} checkpoint {v}"), e))?;
                start = v + 1;
                break;
            }
            Err(e) => {
                tracing::warn!(table = %uri, version = v, error = %e, "checkpoint unreadable; trying an older one")
            }
        }
    }
    if start <= version {
        let commits = source.read_commits(start..=version, 16).await?;
        for c in &commits {
            view.apply(c)
                .map_err(|e| Error::core(format!("{uri} version {}", c.version()), e))?;
        }
    }
    Ok(view)
}
