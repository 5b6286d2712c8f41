//! The cross-check with a real reader: delta-rs opens the table at the verified version, as
//! polars, DuckDB and Python `deltalake` do, and what it sees (files, partition values,
//! deletion vectors, statistics, schema, properties, protocol) must be the attested reader
//! view. It catches any artifact or parsing rule the walk does not model.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use makoto_core::Sha256Digest;
use makoto_core::delta::Action;
use makoto_core::reader_view::{
    ReaderFile, ReaderView, loosely_equal, metadata_json, protocol_json,
};
use makoto_core::state::{Leaf, root_of_leaves};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};

use super::{Finding, FindingKind};

/// Characters re-encoded when a decoded path is written back as a log path.
const LOG_PATH: &AsciiSet = &CONTROLS.add(b'%');

/// What delta-rs sees at a version.
#[derive(Debug)]
pub(crate) struct ReaderSees {
    pub protocol: Value,
    pub metadata: Value,
    pub files: SeenFiles,
}

/// How much of each live file delta-rs saw is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Its key and its leaf hash in the reader view's tree: 64 bytes a file, enough to tell
    /// whether delta-rs sees the attested files (the root of those pairs is the view's root).
    Digests,
    /// The whole entry, to say how the files differ.
    Whole,
}

/// The live files delta-rs sees.
#[derive(Debug)]
pub(crate) enum SeenFiles {
    /// Each file's key and leaf hash (`SHA-256(0x00 ‖ canonical entry)`), in key order.
    Digests(Vec<(Sha256Digest, Sha256Digest)>),
    Whole(BTreeMap<Sha256Digest, ReaderFile>),
}

impl SeenFiles {
    fn new(detail: Detail) -> Self {
        match detail {
            Detail::Digests => SeenFiles::Digests(Vec::new()),
            Detail::Whole => SeenFiles::Whole(BTreeMap::new()),
        }
    }

    fn insert(&mut self, file: ReaderFile) {
        match self {
            SeenFiles::Digests(v) => {
                v.push((file.key(), file.leaf_hash()));
            }
            SeenFiles::Whole(m) => {
                m.insert(file.key(), file);
            }
        }
    }

    fn finish(&mut self) {
        if let SeenFiles::Digests(v) = self {
            v.sort_unstable();
        }
    }

    fn clear(&mut self) {
        match self {
            SeenFiles::Digests(v) => v.clear(),
            SeenFiles::Whole(m) => m.clear(),
        }
    }
}

/// Whether only the digests of what delta-rs sees were kept and they are not the attested
/// files' (then the version is opened again with [`Detail::Whole`] to say how they differ).
pub(crate) fn digests_differ(sees: &ReaderSees, view: &ReaderView) -> bool {
    match &sees.files {
        SeenFiles::Digests(seen) => !same_digests(seen, view),
        SeenFiles::Whole(_) => false,
    }
}

/// Whether judging `sees` reads the attested view's entries one by one (the whole view must
/// then be in memory): only when delta-rs's whole entries were kept.
pub(crate) fn compares_entries(sees: &ReaderSees) -> bool {
    matches!(sees.files, SeenFiles::Whole(_))
}

/// `seen` (sorted by key) holds exactly the attested entries, byte for byte: as many files,
/// none twice, and the same root over their leaf hashes as the view's tree, so no entry of
/// the view has to be in memory.
fn same_digests(seen: &[(Sha256Digest, Sha256Digest)], view: &ReaderView) -> bool {
    u64::try_from(seen.len()).is_ok_and(|n| n == view.files.files())
        && seen.windows(2).all(|w| w[0].0 != w[1].0)
        && root_of_leaves(seen) == view.files.root()
}

/// Opens the table with delta-rs at `version`. Runs on its own task beside the walk.
///
/// The live files are streamed out of a lazy snapshot's log replay: the eager snapshot a
/// `DeltaTable` loads keeps every replayed batch (one per commit file) for the whole check,
/// about 120 MB on a log of ten thousand commits. The lazy replay parses only `numRecords` out
/// of statistics that a checkpoint holds as `stats_parsed` alone, where the eager one parses
/// them all. So when delta-rs has read a Parquet file and a file's statistics come back as no
/// more than a record count, the version is opened again the eager way, and that view is the
/// one compared.
pub(crate) async fn open(
    url: url::Url,
    options: HashMap<String, String>,
    version: u64,
    detail: Detail,
) -> Result<ReaderSees, String> {
    let root = url.clone();
    let cache = log_read_cache(&url, &options)?;
    cache.prefetch(version).await;
    let table = deltalake::DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| e.to_string())?
        .with_storage_backend(Arc::new(cache.clone()), url)
        .with_storage_options(options)
        .build()
        .map_err(|e| e.to_string())?;
    let store = Arc::new(super::reader_engine::CrossCheckLogStore::new(
        table.log_store(),
        cache,
    ));
    let snapshot = deltalake::kernel::Snapshot::try_new(store.as_ref(), Some(version))
        .await
        .map_err(|e| e.to_string())?;
    let mut sees = ReaderSees {
        protocol: protocol_json_of(snapshot.protocol())?,
        metadata: metadata_json_of(snapshot.metadata())?,
        files: SeenFiles::new(detail),
    };
    let mut views = snapshot.file_views(store.as_ref(), None);
    let mut stats = StatsRead::Whole;
    while let Some(f) = views.try_next().await.map_err(|e| e.to_string())? {
        let file_stats = f.stats();
        // The flag first: statistics are parsed only once a checkpoint could have held them.
        if store.has_read_parquet()
            && stats_read(file_stats.as_deref()) == StatsRead::RecordCountOnly
        {
            stats = StatsRead::RecordCountOnly;
            break;
        }
        insert_file(&root, &f, file_stats, &mut sees.files)?;
    }
    drop(views);
    if stats == StatsRead::RecordCountOnly {
        sees.files.clear();
        let mut table = deltalake::DeltaTable::new(store);
        table
            .load_version(version)
            .await
            .map_err(|e| e.to_string())?;
        let views: Vec<_> = table
            .get_active_add_actions_by_partitions(&[])
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        for f in views {
            insert_file(&root, &f, f.stats(), &mut sees.files)?;
        }
    }
    sees.files.finish();
    Ok(sees)
}

/// What a file view's statistics hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatsRead {
    /// Raw JSON statistics, whatever they hold.
    Whole,
    /// None, or nothing but `numRecords`: all the lazy replay parses out of `stats_parsed`.
    RecordCountOnly,
}

fn stats_read(stats: Option<&str>) -> StatsRead {
    let keys =
        stats.and_then(|s| serde_json::from_str::<HashMap<String, serde::de::IgnoredAny>>(s).ok());
    match keys {
        Some(k) if k.keys().any(|k| k != "numRecords") => StatsRead::Whole,
        _ => StatsRead::RecordCountOnly,
    }
}

fn parse_action(name: &str, v: Value) -> Result<Action, String> {
    Action::from_json(&json!({ name: v })).map_err(|e| format!("{name}: {e}"))
}

fn protocol_json_of(p: &impl serde::Serialize) -> Result<Value, String> {
    let v = serde_json::to_value(p).map_err(|e| e.to_string())?;
    Ok(match parse_action("protocol", v)? {
        Action::Protocol(p) => protocol_json(&p),
        _ => Value::Null,
    })
}

fn metadata_json_of(m: &impl serde::Serialize) -> Result<Value, String> {
    let v = serde_json::to_value(m).map_err(|e| e.to_string())?;
    Ok(match parse_action("metaData", v)? {
        Action::Metadata(m) => metadata_json(&m),
        _ => Value::Null,
    })
}

/// Adds what delta-rs sees of one live file (`stats`: its [`LogicalFileView::stats`], read once
/// by the caller), named as makoto names files: an absolute path under the root by its
/// relative path.
///
/// [`LogicalFileView::stats`]: deltalake::kernel::LogicalFileView::stats
fn insert_file(
    root: &url::Url,
    f: &deltalake::kernel::LogicalFileView,
    stats: Option<String>,
    files: &mut SeenFiles,
) -> Result<(), String> {
    let path = f.path().into_owned();
    let path = match crate::location::is_absolute(&path) {
        true => crate::location::under_root(root, &path).unwrap_or(path),
        false => path,
    };
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
                serde_json::to_value(dv).map_err(|e| e.to_string())?,
            );
        }
        if let Some(stats) = stats {
            m.insert("stats".into(), Value::String(stats));
        }
    }
    if let Action::Add(a) = parse_action("add", add)? {
        files.insert(ReaderFile::from_add(&a));
    }
    Ok(())
}

/// How the cross-check ended.
#[derive(Debug)]
pub(crate) enum CrossCheckEnd {
    /// Not asked for (`--reader-check skip`).
    Skipped,
    /// Not started, for this reason.
    NotOpened(String),
    /// delta-rs opened the version (or said why it could not).
    Opened(Result<ReaderSees, String>),
    /// The task did not finish.
    Aborted(String),
}

/// The finding the cross-check at `target` gives, and whether it counts as done: only a view
/// delta-rs opened, compared with the attested view of a version that was rebuilt.
pub(crate) fn judge(
    end: CrossCheckEnd,
    view: Option<&ReaderView>,
    covered: bool,
    target: u64,
) -> (Option<Finding>, bool) {
    let failed =
        |detail: String| Some(Finding::new(FindingKind::ReaderCrossCheckFailed, detail).at(target));
    match (end, view) {
        (CrossCheckEnd::Skipped, _) => (None, false),
        (CrossCheckEnd::Opened(Ok(sees)), Some(view)) if covered => {
            let diffs = differences(&sees, view);
            let finding = (!diffs.is_empty()).then(|| {
                Finding::new(
                    FindingKind::ReaderMismatch,
                    format!(
                        "delta-rs reads another table at version {target} than the attested one: {}",
                        makoto_core::reader_view::summarize(&diffs)
                    ),
                )
                .at(target)
            });
            (finding, true)
        }
        (CrossCheckEnd::Opened(Ok(_)), _) => (None, false),
        (CrossCheckEnd::Opened(Err(e)) | CrossCheckEnd::NotOpened(e), _) => (
            failed(format!("delta-rs cannot read version {target}: {e}")),
            false,
        ),
        (CrossCheckEnd::Aborted(e), _) => (
            failed(format!("the delta-rs cross-check did not finish: {e}")),
            false,
        ),
    }
}

/// The store delta-rs would open `url` with (the table's root store, as
/// [`crate::Location::log_store`] builds it), listing the log once and reading each small
/// commit once (see [`super::log_reads`]).
fn log_read_cache(
    url: &url::Url,
    options: &HashMap<String, String>,
) -> Result<super::log_reads::LogReadCache, String> {
    let location = crate::Location::from_url(url.clone());
    let root = location
        .log_store(&crate::StorageOptions(options.clone()))
        .map_err(|e| e.to_string())?
        .root_object_store(None);
    let log = object_store::path::Path::from_url_path(url.path())
        .map_err(|e| e.to_string())?
        .join("_delta_log");
    Ok(match location.local_dir() {
        Some(dir) => {
            super::log_reads::LogReadCache::with_local_log(root, log, dir.join("_delta_log"))
        }
        None => super::log_reads::LogReadCache::new(root, log),
    })
}

/// The differences between what delta-rs sees and the attested view.
pub(crate) fn differences(sees: &ReaderSees, view: &ReaderView) -> Vec<String> {
    let mut out = Vec::new();
    let same = |a: &Value, b: &Value| {
        makoto_core::canonical::to_vec(a) == makoto_core::canonical::to_vec(b)
    };
    if !same(&sees.protocol, view.facts.protocol()) {
        out.push("the protocol differs".to_owned());
    }
    for k in [
        "id",
        "schema",
        "partitionColumns",
        "configuration",
        "format",
    ] {
        let (a, b) = (
            sees.metadata.get(k).unwrap_or(&Value::Null),
            view.facts.metadata().get(k).unwrap_or(&Value::Null),
        );
        if !same(a, b) {
            out.push(format!("metaData.{k} differs"));
        }
    }
    match &sees.files {
        SeenFiles::Digests(seen) => {
            if !same_digests(seen, view) {
                out.push("the live files differ".to_owned());
            }
        }
        SeenFiles::Whole(files) => file_differences(files, view, &mut out),
    }
    out
}

fn file_differences(
    files: &BTreeMap<Sha256Digest, ReaderFile>,
    view: &ReaderView,
    out: &mut Vec<String>,
) {
    let same = |a: &Value, b: &Value| {
        makoto_core::canonical::to_vec(a) == makoto_core::canonical::to_vec(b)
    };
    let attested: BTreeMap<Sha256Digest, &ReaderFile> = view
        .files
        .loaded_entries()
        .into_iter()
        .map(|f| (f.key(), f))
        .collect();
    for (k, f) in files {
        let Some(a) = attested.get(k) else {
            out.push(format!(
                "{} is live for delta-rs but not attested",
                f.path()
            ));
            continue;
        };
        if f.canonical_bytes() == a.canonical_bytes() {
            continue;
        }
        let (fj, aj) = (f.to_json(), a.to_json());
        let get = |v: &'_ Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        if f.size() != a.size() || !same(&get(&fj, "deletionVector"), &get(&aj, "deletionVector")) {
            out.push(format!("{}: size or deletion vector differs", f.path()));
        }
        let (fp, ap) = (get(&fj, "partitionValues"), get(&aj, "partitionValues"));
        if !loosely_equal(&fp, &ap) {
            out.push(format!(
                "{}: partition values {fp} for delta-rs, {ap} attested",
                f.path(),
            ));
        }
        let (fs, as_) = (get(&fj, "stats"), get(&aj, "stats"));
        if !fs.is_null() && !as_.is_null() && !loosely_equal(&fs, &as_) {
            out.push(format!("{}: statistics differ", f.path()));
        }
    }
    for (k, a) in &attested {
        if !files.contains_key(k) {
            out.push(format!(
                "attested live file {} is not live for delta-rs",
                a.path()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sees() -> ReaderSees {
        ReaderSees {
            protocol: Value::Null,
            metadata: Value::Null,
            files: SeenFiles::Whole(BTreeMap::new()),
        }
    }

    #[test]
    fn only_statistics_beyond_the_record_count_are_read_whole() {
        for (stats, read) in [
            (None, StatsRead::RecordCountOnly),
            (Some(r#"{"numRecords":3}"#), StatsRead::RecordCountOnly),
            (Some("{}"), StatsRead::RecordCountOnly),
            (Some("not json"), StatsRead::RecordCountOnly),
            (
                Some(r#"{"numRecords":3,"minValues":{"a":1}}"#),
                StatsRead::Whole,
            ),
            (Some(r#"{"nullCount":{"a":0}}"#), StatsRead::Whole),
        ] {
            assert_eq!(stats_read(stats), read, "{stats:?}");
        }
    }

    #[test]
    fn only_an_opened_view_of_a_rebuilt_version_counts() {
        assert!(matches!(
            judge(CrossCheckEnd::Skipped, None, true, 3),
            (None, false)
        ));
        // delta-rs opened it, but there is no rebuilt attested view to compare with.
        assert!(matches!(
            judge(CrossCheckEnd::Opened(Ok(sees())), None, true, 3),
            (None, false)
        ));
    }

    #[test]
    fn a_cross_check_that_did_not_run_is_a_finding_at_the_version() {
        for (end, needle) in [
            (
                CrossCheckEnd::NotOpened("too large".into()),
                "delta-rs cannot read version 7: too large",
            ),
            (
                CrossCheckEnd::Opened(Err("no such version".into())),
                "delta-rs cannot read version 7: no such version",
            ),
            (
                CrossCheckEnd::Aborted("cancelled".into()),
                "did not finish: cancelled",
            ),
        ] {
            let (finding, done) = judge(end, None, true, 7);
            let f = finding.unwrap();
            assert!(!done);
            assert_eq!(f.kind, FindingKind::ReaderCrossCheckFailed);
            assert_eq!(f.version, Some(7));
            assert!(f.detail.contains(needle), "{}", f.detail);
        }
    }
}
