//! Forensic verification of a table version against its attestations.
//!
//! `Verifier::run` checks, for table version `N` (latest, given, or current at a timestamp):
//! every attestation row of versions `0..=N` against its signed statement and the trusted keys,
//! the chain between them, every commit file against its attested digests, the state digest of
//! every version recomputed from the log and the attested file digests, every checkpoint
//! against the JSON log, `_last_checkpoint`, and (deep mode) the bytes of every file live at
//! `N` and files nobody references. It reports every finding, each with its kind, version,
//! file and attestation row; see `docs/verification.md`.

mod chain;
mod checkpoints;
mod data;
mod findings;
mod record;
mod replay;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use makoto_core::Sha256Digest;
use makoto_core::delta::{Action, Commit, TimestampSource};
use makoto_core::state::StateTree;
use makoto_core::verify::TrustedKeys;
use serde::Serialize;

pub use findings::{Finding, FindingKind, RowRef, Severity};
pub use record::RecordSigner;

use crate::Error;
use crate::location::StorageOptions;
use crate::log::SourceTable;
use crate::store::{AttestationStore, FileRow};
use chain::{check_row, select_chain};
use replay::{Replay, attested_changes, compare_commit, read_commit};

/// Which version to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Version(u64),
    /// The latest version whose commit time is at or before this instant.
    Timestamp(DateTime<Utc>),
}

/// How much to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Log and attestations, and the bytes of every file live at the version.
    Deep,
    /// Log and attestations only; data files are not read.
    LogOnly,
}

/// Whether unsigned (L1) attestations fail verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsignedRows {
    Fail,
    Warn,
}

/// Options of a verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub at: VersionSpec,
    pub mode: VerifyMode,
    pub unsigned: UnsignedRows,
    /// Files hashed at once in deep mode.
    pub parallelism: usize,
    pub storage: StorageOptions,
    /// This table's entry of a trusted head (`makoto head`): the attestation table must still
    /// hold that attestation.
    pub anchor: Option<makoto_core::head::HeadEntry>,
    /// Continue from the last recorded, signed, successful verification instead of version 0.
    pub since_last: bool,
    /// Record the outcome in `system.makoto.verifications` (`None`: do not).
    pub record: Option<record::RecordSigner>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            at: VersionSpec::Latest,
            mode: VerifyMode::Deep,
            unsigned: UnsignedRows::Fail,
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            storage: StorageOptions::default(),
            anchor: None,
            since_last: false,
            record: None,
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything checked matches the attestations.
    Verified,
    /// Nothing contradicts the attestations, but some of the version's data could not be
    /// checked because it was vacuumed (`data-unavailable`, `data-file-vacuumed`).
    Unverifiable,
    /// At least one error-severity finding.
    Failed,
}

impl Outcome {
    fn of(findings: &[Finding]) -> Self {
        if findings.iter().any(|f| f.severity == Severity::Error) {
            Outcome::Failed
        } else if findings.iter().any(|f| {
            matches!(
                f.kind,
                FindingKind::DataUnavailable
                    | FindingKind::DataFileVacuumed
                    | FindingKind::BaselineExpired
            )
        }) {
            Outcome::Unverifiable
        } else {
            Outcome::Verified
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub table: String,
    pub table_id: Option<String>,
    /// The verified version.
    pub version: u64,
    pub latest_version: u64,
    pub mode: VerifyMode,
    pub outcome: Outcome,
    /// `outcome` is `verified`: no error, and every file of the version was checked.
    pub verified: bool,
    pub findings: Vec<Finding>,
    pub attestation_rows: u64,
    pub commits_checked: u64,
    pub checkpoints_checked: u64,
    /// Stream windows checked (deep mode).
    pub windows_checked: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// The attested state digest of the verified version, when its attestation was found.
    pub state_digest: Option<String>,
    /// The attestation digest of the verified version's row.
    pub attestation_digest: Option<String>,
    /// With `since_last`: the version of the recorded verification this one continued from.
    pub since: Option<u64>,
    /// The verification was recorded in `system.makoto.verifications`.
    pub recorded: bool,
    /// Why it could not be recorded.
    pub record_error: Option<String>,
}

impl VerifyReport {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count()
    }
}

/// Verifies one table of a warehouse against trusted keys.
#[derive(Debug)]
pub struct Verifier<'a> {
    source: &'a SourceTable,
    store: &'a AttestationStore,
    trust: &'a TrustedKeys,
    options: VerifyOptions,
}

fn commit_time(commit: &Commit, mtime: DateTime<Utc>) -> (i64, TimestampSource) {
    commit.timestamp().unwrap_or((
        mtime.timestamp_millis(),
        TimestampSource::FileModificationTime,
    ))
}

/// Merges per-version "attestation missing" findings into ranges.
fn merge_missing(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::with_capacity(findings.len());
    let mut run: Option<(u64, u64)> = None;
    let flush = |run: &mut Option<(u64, u64)>, out: &mut Vec<Finding>| {
        if let Some((a, b)) = run.take() {
            let detail = if a == b {
                format!("no attestation row for version {a}")
            } else {
                format!("no attestation rows for versions {a}..={b}")
            };
            out.push(Finding::new(FindingKind::AttestationMissing, detail).at(a));
        }
    };
    for f in findings {
        if f.kind == FindingKind::AttestationMissing
            && let Some(v) = f.version
        {
            match run {
                Some((a, b)) if b + 1 == v => run = Some((a, v)),
                _ => {
                    flush(&mut run, &mut out);
                    run = Some((v, v));
                }
            }
            continue;
        }
        out.push(f);
    }
    flush(&mut run, &mut out);
    out
}

impl<'a> Verifier<'a> {
    pub fn new(
        source: &'a SourceTable,
        store: &'a AttestationStore,
        trust: &'a TrustedKeys,
        options: VerifyOptions,
    ) -> Self {
        Verifier {
            source,
            store,
            trust,
            options,
        }
    }

    /// Runs the verification. An `Err` means it could not be done (exit code 2); findings,
    /// however serious, are in the report.
    pub async fn run(&self) -> Result<VerifyReport, Error> {
        let uri = self.source.uri().to_owned();
        let log = self.source.list_log(0).await?;
        let latest = log
            .latest_commit()
            .ok_or_else(|| Error::NotADeltaTable { table: uri.clone() })?;
        let target = self.resolve_version(&log, latest).await?;
        let mut findings = Vec::new();

        let rows = self.store.attestation_rows(&uri).await?;
        let attestation_rows = rows.len() as u64;
        let base = if self.options.since_last {
            record::find_base(
                self.store,
                &uri,
                self.trust,
                target,
                self.options.mode,
                &rows,
            )
            .await?
        } else {
            None
        };
        let from = base.as_ref().map_or(0, |b| b.version + 1);

        // Attestation rows, each on its own, then the chain.
        let attested_beyond: Vec<u64> = rows
            .iter()
            .map(|r| r.version)
            .filter(|v| *v > latest)
            .collect();
        if let (Some(first), Some(last)) =
            (attested_beyond.iter().min(), attested_beyond.iter().max())
            && target == latest
        {
            findings.push(
                Finding::new(
                    FindingKind::CommitMissing,
                    format!("versions {first}..={last} are attested but the log ends at version {latest}: commits were removed or the table replaced"),
                )
                .at(*first),
            );
        }
        if let Some(anchor) = &self.options.anchor {
            check_anchor(anchor, &rows, &mut findings);
        }
        if let Some(b) = &base {
            b.check_still_attested(&rows, &mut findings);
        }
        let lowest = rows.iter().map(|r| r.version).min();
        let lowest_rows: Vec<_> = rows
            .iter()
            .filter(|r| Some(r.version) == lowest)
            .cloned()
            .collect();
        let checked: Vec<_> = rows
            .into_iter()
            .filter(|r| r.version >= from && r.version <= target)
            .map(|r| {
                check_row(
                    r,
                    &uri,
                    self.trust,
                    self.options.unsigned == UnsignedRows::Warn,
                    &mut findings,
                )
            })
            .collect();
        // A chain that starts from a checkpoint (earlier commits cleaned up before the first
        // attestation): its first, trusted row says so.
        let baseline = if base.is_some() {
            None
        } else {
            lowest_rows
                .into_iter()
                .map(|r| check_row(r, &uri, self.trust, false, &mut Vec::new()))
                .filter(|c| c.trusted)
                .filter_map(|c| c.attested)
                .find_map(|a| {
                    a.baseline()
                        .filter(|b| b.checkpoint_version == a.version())
                        .cloned()
                })
        };
        let from = baseline.as_ref().map_or(from, |b| b.checkpoint_version);
        if baseline.is_some() && target < from {
            return Err(Error::InvalidLog {
                table: uri,
                version: target,
                reason: format!(
                    "version {target} is before the checkpoint baseline at version {from}: its commits were removed by log cleanup before the table was first attested, so it cannot be verified"
                ),
            });
        }
        let chain = select_chain(
            checked,
            from,
            target,
            base.as_ref().map(|b| b.attestation_digest),
            baseline.as_ref().map(|b| b.checkpoint_version),
            &mut findings,
        );

        // File rows and the attested changes of each version.
        let files_table = self.store.load_files().await?;
        let mut by_version: BTreeMap<u64, Vec<FileRow>> = BTreeMap::new();
        for r in self
            .store
            .file_rows(&files_table, &uri, from, target)
            .await?
        {
            by_version.entry(r.version).or_default().push(r);
        }
        let changes = attested_changes(&chain, &by_version, &mut findings);

        // Replay the log.
        let checkpoint_versions: HashSet<u64> = log
            .checkpoints()
            .keys()
            .copied()
            .filter(|c| (from..=target).contains(c))
            .collect();
        let first_commit = log.commits().keys().next().copied().unwrap_or(0);
        let tree = match &base {
            Some(b) => StateTree::resume(b.state_digest, b.live_files, b.live_bytes),
            None => StateTree::new(),
        };
        let mut replay = Replay::new(tree);
        let mut referenced: HashSet<String> = HashSet::new();
        for v in from..=target {
            if !log.commits().contains_key(&v) {
                if v < first_commit && log.checkpoints().keys().any(|c| *c >= v) {
                    findings.push(
                        Finding::new(
                            FindingKind::CommitExpired,
                            "the commit file was removed by log cleanup after a checkpoint",
                        )
                        .at(v)
                        .warning(),
                    );
                } else {
                    findings.push(
                        Finding::new(
                            FindingKind::CommitMissing,
                            "the commit file is gone from the log",
                        )
                        .at(v)
                        .file(format!(
                            "_delta_log/{}",
                            makoto_core::delta::commit_file_name(v)
                        )),
                    );
                }
                replay.known = false;
                continue;
            }
            let (bytes, commit) = read_commit(self.source, v).await?;
            let matches = compare_commit(&bytes, commit.as_ref(), v, &chain, &mut findings);
            let Some(commit) = commit else {
                replay.known = false;
                continue;
            };
            note_references(&commit, &mut referenced);
            if let (Some(m), Some(att)) = (
                commit.metadata(),
                chain.get(&v).and_then(|r| r.attested.as_ref()),
            ) && m.id() != att.table_id()
            {
                findings.push(
                    Finding::new(
                        FindingKind::TableReplaced,
                        format!(
                            "the log's table id is {}, the attested one {}",
                            m.id(),
                            att.table_id()
                        ),
                    )
                    .at(v),
                );
            }
            if base.is_some() && replay.known {
                let keys = touched_keys(&commit);
                self.store
                    .pages()
                    .load_paths(&mut replay.tree, &keys)
                    .await?;
            }
            let unavailable = chain
                .get(&v)
                .and_then(|r| r.attested.as_ref())
                .map(|a| a.unavailable_files().to_vec())
                .unwrap_or_default();
            let from_checkpoint = match &baseline {
                Some(b) if b.checkpoint_version == v => self.baseline_state(b, &mut findings).await,
                _ => None,
            };
            if baseline.as_ref().is_some_and(|b| b.checkpoint_version == v)
                && from_checkpoint.is_none()
            {
                replay.known = false;
                continue;
            }
            let unknown = replay.apply(
                from_checkpoint.as_ref().unwrap_or(&commit),
                changes.get(&v).map(Vec::as_slice),
                &unavailable,
            )?;
            if from_checkpoint.is_some() && !unknown.is_empty() {
                findings.push(
                    Finding::new(
                        FindingKind::BaselineChanged,
                        format!(
                            "the checkpoint now lists {} live files the baseline did not attest (e.g. {})",
                            unknown.len(),
                            unknown.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .at(v),
                );
            }
            if replay.known
                && matches
                && let Some(att) = chain.get(&v).and_then(|r| r.attested.as_ref())
                && replay.tree.root() != att.state_root()
            {
                findings.push(
                    Finding::new(
                        FindingKind::StateMismatch,
                        format!(
                            "the log and the attested file digests give state {} ({} files), the attestation says {} ({} files)",
                            replay.tree.root(),
                            replay.tree.files(),
                            att.state_root(),
                            att.live_files()
                        ),
                    )
                    .at(v),
                );
            }
            if checkpoint_versions.contains(&v) && replay.known && base.is_none() {
                replay.at_checkpoints.insert(v, replay.live_set());
            }
        }

        // Later commits: what they remove explains files missing at a past version.
        let mut removed_later: HashMap<String, u64> = HashMap::new();
        for v in target + 1..=latest {
            if !log.commits().contains_key(&v) {
                continue;
            }
            let (_, commit) = read_commit(self.source, v).await?;
            if let Some(c) = commit {
                note_references(&c, &mut referenced);
                for r in c.removes() {
                    removed_later
                        .entry(r.path().as_str().to_owned())
                        .or_insert(v);
                }
            }
        }

        let checkpoints_checked = checkpoints::check_checkpoints(
            self.source,
            &self.options.storage,
            &log,
            &replay.at_checkpoints,
            &mut findings,
        )
        .await;
        checkpoints::check_last_checkpoint(self.source, &log, &mut findings).await;

        let (mut files_hashed, mut bytes_hashed) = (0, 0);
        if self.options.mode == VerifyMode::Deep {
            let mut live = replay.live_files();
            if base.is_some() {
                // Files live since the base verification were checked by it.
                live.retain(|f| replay.added_at.contains_key(&f.entry.key()));
            }
            (files_hashed, bytes_hashed) = data::check_live_files(
                self.source,
                &live,
                &removed_later,
                self.options.parallelism,
                &mut findings,
            )
            .await;
            if base.is_none() {
                let cutoff = chain
                    .values()
                    .filter_map(|r| DateTime::<Utc>::from_timestamp_micros(r.row.attested_at_us))
                    .max();
                data::check_unreferenced(self.source, &referenced, cutoff, &mut findings).await?;
            }
        }

        // Stream windows whose records end at or before the verified version.
        let mut windows_checked = 0;
        if self.options.mode == VerifyMode::Deep {
            let (w, n) =
                crate::windows::verify_windows(self.source, self.store, self.trust, target).await?;
            findings.extend(w);
            windows_checked = n;
        }

        let head = chain.get(&target);
        let mut findings = merge_missing(findings);
        findings.sort_by_key(|f| (f.version, f.kind));
        let outcome = Outcome::of(&findings);
        let verified = outcome == Outcome::Verified;
        if verified && replay.known {
            // Keep the verified state's pages so a later --since-last can resume from it.
            record::persist_state(self.store, &mut replay.tree).await?;
        }
        let mut report = VerifyReport {
            table: uri,
            table_id: head.map(|r| r.row.table_id.clone()),
            version: target,
            latest_version: latest,
            mode: self.options.mode,
            outcome,
            verified,
            findings,
            attestation_rows,
            commits_checked: replay.commits_checked,
            checkpoints_checked,
            windows_checked,
            files_hashed,
            bytes_hashed,
            state_digest: head
                .and_then(|r| r.attested.as_ref())
                .map(|a| a.state_root().to_hex()),
            attestation_digest: head
                .and_then(|r| r.payload_digest)
                .map(|d: Sha256Digest| d.to_hex()),
            since: base.as_ref().map(|b| b.version),
            recorded: false,
            record_error: None,
        };
        if let Some(mode) = &self.options.record {
            match record::write_record(self.store, self.trust, &report, mode).await {
                Ok(()) => report.recorded = true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the verification");
                    report.record_error = Some(e.to_string());
                }
            }
        }
        Ok(report)
    }

    /// The live files of a baseline's checkpoint version as a commit of adds, after checking
    /// the checkpoint files against the attested digests.
    async fn baseline_state(
        &self,
        b: &makoto_core::attested::AttestedBaseline,
        findings: &mut Vec<Finding>,
    ) -> Option<Commit> {
        let v = b.checkpoint_version;
        let names: Vec<String> = b
            .checkpoint_files
            .iter()
            .map(|(p, _, _)| p.trim_start_matches("_delta_log/").to_owned())
            .collect();
        match crate::baseline::checkpoint_files(self.source, v, &names).await {
            Err(e) => {
                findings.push(
                    Finding::new(
                        FindingKind::BaselineExpired,
                        format!("the baseline checkpoint cannot be read: {e}"),
                    )
                    .at(v),
                );
                return None;
            }
            Ok(now) => {
                for (f, (path, size, sha)) in now.iter().zip(&b.checkpoint_files) {
                    if f.sha256 != *sha || f.size != *size {
                        findings.push(
                            Finding::new(
                                FindingKind::BaselineChanged,
                                format!(
                                    "attested {size} bytes with SHA-256 {sha}, now {} bytes with SHA-256 {}",
                                    f.size, f.sha256
                                ),
                            )
                            .at(v)
                            .file(path.clone()),
                        );
                    }
                }
            }
        }
        match crate::baseline::checkpoint_state(self.source, &self.options.storage, v).await {
            Ok(s) => Some(s.commit),
            Err(e) => {
                findings.push(
                    Finding::new(
                        FindingKind::BaselineChanged,
                        format!("the baseline checkpoint cannot be read: {e}"),
                    )
                    .at(v),
                );
                None
            }
        }
    }

    async fn resolve_version(&self, log: &crate::log::LogFiles, latest: u64) -> Result<u64, Error> {
        match self.options.at {
            VersionSpec::Latest => Ok(latest),
            VersionSpec::Version(v) if v <= latest => Ok(v),
            VersionSpec::Version(v) => Err(Error::VersionNotFound {
                table: self.source.uri().to_owned(),
                requested: v,
                latest,
            }),
            VersionSpec::Timestamp(t) => {
                let mut found = None;
                for (v, meta) in log.commits() {
                    let (_, commit) = read_commit(self.source, *v).await?;
                    let ts = commit
                        .as_ref()
                        .map_or(meta.last_modified.timestamp_millis(), |c| {
                            commit_time(c, meta.last_modified).0
                        });
                    if ts <= t.timestamp_millis() {
                        found = Some(*v);
                    } else {
                        break;
                    }
                }
                found.ok_or_else(|| Error::InvalidLog {
                    table: self.source.uri().to_owned(),
                    version: 0,
                    reason: format!("no version was committed at or before {t}"),
                })
            }
        }
    }
}

/// The attestation a trusted head recorded must still be in the table.
fn check_anchor(
    anchor: &makoto_core::head::HeadEntry,
    rows: &[crate::store::AttestationRow],
    findings: &mut Vec<Finding>,
) {
    let at_version: Vec<&crate::store::AttestationRow> = rows
        .iter()
        .filter(|r| r.version == anchor.version)
        .collect();
    let present = at_version.iter().any(|r| {
        makoto_core::dsse::Envelope::from_json(r.envelope.as_bytes())
            .is_ok_and(|e| Sha256Digest::of(e.payload()) == anchor.attestation_digest)
    });
    if present {
        return;
    }
    let max = rows.iter().map(|r| r.version).max();
    if at_version.is_empty() && max.is_none_or(|m| m < anchor.version) {
        findings.push(
            Finding::new(
                FindingKind::AttestationsTruncated,
                format!(
                    "the anchor records version {} (attestation {}); the attestation table ends at {}",
                    anchor.version,
                    anchor.attestation_digest,
                    max.map_or("no row".to_owned(), |m| format!("version {m}"))
                ),
            )
            .at(anchor.version),
        );
    } else {
        findings.push(
            Finding::new(
                FindingKind::AnchorMismatch,
                format!(
                    "the anchor records attestation {} for version {}; the table holds {}",
                    anchor.attestation_digest,
                    anchor.version,
                    if at_version.is_empty() {
                        "no row for that version".to_owned()
                    } else {
                        at_version
                            .iter()
                            .map(|r| r.attestation_digest.to_hex())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )
            .at(anchor.version),
        );
    }
}

fn touched_keys(commit: &Commit) -> Vec<Sha256Digest> {
    let id = |d: Option<&makoto_core::delta::DeletionVector>| {
        d.map(makoto_core::delta::DeletionVector::unique_id)
    };
    commit
        .removes()
        .map(|r| {
            makoto_core::state::leaf_key(r.path().as_str(), id(r.deletion_vector()).as_deref())
        })
        .chain(commit.adds().map(|a| {
            makoto_core::state::leaf_key(a.path().as_str(), id(a.deletion_vector()).as_deref())
        }))
        .collect()
}

fn note_references(commit: &Commit, referenced: &mut HashSet<String>) {
    for a in commit.actions() {
        match a {
            Action::Add(x) => {
                referenced.insert(x.path().as_str().to_owned());
                if let Some(f) = x.deletion_vector().and_then(|d| d.file()) {
                    referenced.insert(f.to_owned());
                }
            }
            Action::Remove(x) => {
                referenced.insert(x.path().as_str().to_owned());
                if let Some(f) = x.deletion_vector().and_then(|d| d.file()) {
                    referenced.insert(f.to_owned());
                }
            }
            Action::Cdc(x) => {
                referenced.insert(x.path().as_str().to_owned());
            }
            _ => {}
        }
    }
}
