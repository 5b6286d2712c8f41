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
mod log_reads;
mod reader_engine;
mod readers;
mod replay;
pub mod timestamps;
mod verifications;
mod walk;
mod windows;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use makoto_core::Sha256Digest;
use makoto_core::attestation::{LevelEvidence, MakotoLevel};
use makoto_core::attested::AttestedCommit;
use makoto_core::state::StateTree;
use makoto_core::verify::TrustedKeys;
use serde::Serialize;

pub use findings::{Finding, FindingKind, RowRef, Severity};
pub use verifications::{RecordSigner, host_name};
pub use walk::{Eviction, ReaderViewCoverage};

use crate::Error;
use crate::location::StorageOptions;
use crate::log::SourceTable;
use crate::store::AttestationStore;
use chain::{CheckedRow, select_chain};
use replay::{attested_changes, read_commit};

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

/// The rows, versions and chain a verification covers.
struct Scope {
    attestation_rows: u64,
    /// What RFC 3161 time-stamps showed for the target version.
    timestamps: timestamps::TimestampCoverage,
    /// Attestations whose signature verified (or unsigned ones accepted), by version.
    trusted: BTreeMap<u64, Arc<AttestedCommit>>,
    target: u64,
    /// The earlier verification a `--since-last` run continues from.
    base: Option<verifications::Base>,
    /// The checkpoint a chain starts from when early commits were cleaned up.
    baseline: Option<makoto_core::attested::AttestedBaseline>,
    /// First version checked.
    from: u64,
    /// One checked row per version `from..=target`.
    chain: BTreeMap<u64, chain::CheckedRow>,
}

/// What the phases after the chain found.
struct Checked {
    latest: u64,
    walked: walk::WalkOutput,
    files_hashed: u64,
    bytes_hashed: u64,
    windows_checked: u64,
    windows_purged: u64,
    windows_timestamped: u64,
    cross_checked: bool,
}

/// Attestation rows read before they are checked together.
const CHECKED_TOGETHER: usize = 1024;

/// Whether a real reader opens the verified version beside makoto's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReaderCheck {
    /// delta-rs opens the version and must see the attested reader view (`reader-mismatch`).
    /// On a long log without checkpoints this costs what any reader pays to open it.
    #[default]
    DeltaRs,
    /// Not opened: only makoto's own checks run, and the coverage says so.
    Skip,
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
    pub anchor: Option<makoto_core::verify::Verified<makoto_core::head::HeadEntry>>,
    /// Continue from the last recorded, signed, successful verification instead of version 0.
    pub since_last: bool,
    /// Record the outcome in `system.makoto.verifications` (`None`: do not).
    pub record: Option<verifications::RecordSigner>,
    pub reader_check: ReaderCheck,
    /// When the walk drops parts of its trees from memory, to load them again from the
    /// warehouse's stored pages.
    pub eviction: Eviction,
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
            reader_check: ReaderCheck::default(),
            eviction: Eviction::Never,
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
    /// Failed on any error; verified only when the version was covered and nothing that
    /// leaves part of it unchecked was found; unverifiable otherwise.
    fn of(findings: &[Finding], coverage: &Coverage) -> Self {
        if findings.iter().any(|f| f.severity == Severity::Error) {
            Outcome::Failed
        } else if !coverage.version_checked
            || coverage.reader_view == ReaderViewCoverage::None
            || findings.iter().any(|f| f.kind.leaves_unchecked())
        {
            Outcome::Unverifiable
        } else {
            Outcome::Verified
        }
    }
}

impl FindingKind {
    /// Warnings that mean part of the version could not be checked.
    pub fn leaves_unchecked(self) -> bool {
        matches!(
            self,
            FindingKind::DataUnavailable
                | FindingKind::DataFileVacuumed
                | FindingKind::BaselineExpired
                | FindingKind::ReaderViewUnattested
                | FindingKind::CheckpointUnverifiable
                | FindingKind::VersionUnverifiable
                | FindingKind::LogListingFailed
        )
    }
}

/// What a verification covered.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// The verified version's state was rebuilt (from its commits, or from a checkpoint that
    /// matches its attestation) and compared with its attestation.
    pub version_checked: bool,
    /// How the reader view of the verified version was established.
    pub reader_view: ReaderViewCoverage,
    /// Commit files compared with their attestations and replayed.
    pub commits: u64,
    /// Attested versions whose commit files log cleanup removed.
    pub commits_expired: u64,
    /// Checkpoints read and compared with the attested view of their version.
    pub checkpoints: u64,
    /// `.crc` files compared.
    pub checksums: u64,
    /// Log compaction files compared.
    pub compactions: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// delta-rs read the version and saw the attested view.
    pub delta_rs_cross_check: bool,
    /// The reader cross-check asked for (`skip`: delta-rs was not opened).
    pub reader_check: ReaderCheck,
    /// RFC 3161 time-stamps: whether a trusted token covers the version's attestation.
    pub timestamps: timestamps::TimestampCoverage,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The table as its attestations name it.
    pub table: String,
    /// Where it was read, when that is a copy (`--as`, or found by table id).
    pub copy: Option<String>,
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
    /// Of those, windows whose records later attested commits removed and VACUUM deleted:
    /// signature and chain checked, records not recomputed (`window-records-purged`).
    pub windows_purged: u64,
    /// Of those, windows whose signature carries a token that verifies under a trusted
    /// time-stamp authority.
    pub windows_timestamped: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Pages of the state tree and reader view loaded from the warehouse: those a
    /// `--since-last` run resumes from, and those the walk dropped from memory and read again
    /// ([`Eviction`]). Each is checked against its hash, so they are never evidence.
    pub state_pages_loaded: u64,
    /// What was covered, in detail.
    pub coverage: Coverage,
    /// The Makoto level the verified version's attestation earned here: L2 when a trusted key
    /// signed it, a trusted time-stamp covers it and the key's bound identity is the one it
    /// names; L1 otherwise. `None` when the verification failed ([levels.md]).
    pub level: Option<MakotoLevel>,
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

/// The delta-rs cross-check in flight; stopped when the verification ends without it.
struct CrossCheck(tokio::task::JoinHandle<Result<readers::ReaderSees, String>>);

impl CrossCheck {
    /// Waits for it to end, whatever it found. A verification that fails while delta-rs is
    /// opening the table waits for it: the runtime shutting down under it would make the
    /// kernel's engine panic on its way out.
    async fn settle(mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for CrossCheck {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Trusted attestations of versions after the last commit of the log (ascending `attested`):
/// commits were removed or the table replaced.
fn attested_beyond_log(attested: impl Iterator<Item = u64>, latest: u64) -> Option<Finding> {
    let mut beyond = attested.filter(|v| *v > latest);
    let first = beyond.next()?;
    let last = beyond.last().unwrap_or(first);
    Some(
        Finding::new(
            FindingKind::CommitMissing,
            format!("versions {first}..={last} are attested but the log ends at version {latest}: commits were removed or the table replaced"),
        )
        .at(first),
    )
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
        // delta-rs opens the table from the start, beside everything else, when the version
        // is known before the attestations are read.
        let mut cross_check = match self.options.at {
            VersionSpec::Latest => Some(latest),
            VersionSpec::Version(v) if v <= latest => Some(v),
            _ => None,
        }
        .map(|t| (t, self.start_cross_check(&log, t)));
        let outcome = self.phases(uri, log, latest, &mut cross_check).await;
        if outcome.is_err()
            && let Some((_, Some(in_flight))) = cross_check
        {
            in_flight.settle().await;
        }
        outcome
    }

    /// The phases of [`Self::run`]. `cross_check` is the delta-rs open in flight for the
    /// version it names; one started here for another version is kept there too, so that
    /// `run` can let it finish when a phase fails.
    async fn phases(
        &self,
        uri: String,
        log: crate::log::LogFiles,
        latest: u64,
        cross_check: &mut Option<(u64, Option<CrossCheck>)>,
    ) -> Result<VerifyReport, Error> {
        let clock = std::time::Instant::now();
        let phase = |name: &str| {
            let elapsed_ms = clock.elapsed().as_millis() as u64;
            tracing::debug!(phase = name, elapsed_ms, "verify phase done");
        };
        let mut findings: Vec<Finding> = log
            .errors()
            .iter()
            .map(|e| Finding::new(FindingKind::LogListingFailed, e.clone()).file("_delta_log"))
            .collect();

        let mut scope = self.scope(&uri, &log, latest, &mut findings).await?;
        phase("rows checked");
        let changes = self.file_changes(&uri, &mut scope, &mut findings).await?;
        phase("file rows");
        let target = scope.target;
        if cross_check.as_ref().is_none_or(|(t, _)| *t != target) {
            *cross_check = Some((target, self.start_cross_check(&log, target)));
        }
        let input = |eviction| walk::WalkInput {
            source: self.source,
            log: &log,
            chain: &scope.chain,
            changes: &changes,
            trusted: &scope.trusted,
            from: scope.from,
            target,
            baseline: scope.baseline.as_ref(),
            resumed: scope
                .base
                .as_ref()
                .map(|b| StateTree::resume(b.state_digest, b.live_files, b.live_bytes)),
            pages: self.store.pages(),
            eviction,
            mode: self.options.mode,
        };
        let before = findings.len();
        let eviction = self.options.eviction;
        let mut walked = match self
            .walk(input(eviction), scope.base.is_some(), &mut findings)
            .await
        {
            // An evicted page the warehouse does not give back as stored: walk again keeping
            // the trees whole (the warehouse's pages are a cache here, never evidence).
            Err(e) if eviction != Eviction::Never && e.is_unusable_page() => {
                tracing::warn!(table = %uri, error = %e, "a state page the walk dropped cannot be loaded again; walking again with whole trees");
                findings.truncate(before);
                self.walk(input(Eviction::Never), scope.base.is_some(), &mut findings)
                    .await?
            }
            walked => walked?,
        };
        // The change lists are spent once the walk has applied them (they were taken out of
        // the chain's rows): freed before the deep check loads and hashes the live files.
        drop(changes);
        phase("walk");

        if target == latest {
            walk::unattested_beyond(&log, latest, &mut findings);
        }
        checkpoints::check_last_checkpoint(self.source, &log, &mut findings).await;
        if !walked.target_covered {
            findings.push(
                Finding::new(
                    FindingKind::VersionUnverifiable,
                    format!("version {target} could not be rebuilt from the log and compared with its attestation"),
                )
                .at(target),
            );
        }
        let (files_hashed, bytes_hashed) = self
            .check_data(&log, latest, &scope, &mut walked, &mut findings)
            .await?;
        // Stream windows whose records end at or before the verified version.
        let mut windows_checked = 0;
        let mut windows_purged = 0;
        let mut windows_timestamped = 0;
        if self.options.mode == VerifyMode::Deep {
            let w = windows::verify_windows(self.source, self.store, self.trust, target).await?;
            findings.extend(w.findings);
            windows_checked = w.windows;
            windows_purged = w.purged;
            windows_timestamped = w.timestamped;
        }
        phase("deep+windows");
        let in_flight = cross_check.take().and_then(|(_, c)| c);
        let cross_checked = self
            .end_cross_check(in_flight, &mut walked, target, &mut findings)
            .await?;
        phase("cross-check");
        let checked = Checked {
            latest,
            walked,
            files_hashed,
            bytes_hashed,
            windows_checked,
            windows_purged,
            windows_timestamped,
            cross_checked,
        };
        self.report(uri, scope, checked, findings).await
    }

    /// Phase 1: every attestation row checked once, the version to verify, where the check
    /// starts (an earlier verification to continue from, or a checkpoint baseline) and the
    /// chain of rows from there to the target. Findings of rows out of scope are dropped.
    async fn scope(
        &self,
        uri: &str,
        log: &crate::log::LogFiles,
        latest: u64,
        findings: &mut Vec<Finding>,
    ) -> Result<Scope, Error> {
        let allow_unsigned = self.options.unsigned == UnsignedRows::Warn;
        // Checked as they are read, some thousand rows at a time (enough to share among the
        // cores, as files of one row each come uncompacted): a checked row no longer holds its
        // envelope text, which is most of a row.
        let check = |rows| chain::check_rows(rows, uri, self.trust, allow_unsigned);
        let mut pending = Vec::new();
        let mut checked_all = self
            .store
            .attestation_rows_each(uri, |rows| {
                pending.extend(rows);
                match pending.len() >= CHECKED_TOGETHER {
                    true => check(std::mem::take(&mut pending)),
                    false => Vec::new(),
                }
            })
            .await?;
        checked_all.extend(check(pending));
        checked_all.sort_by_key(|(c, _)| c.row.version);
        let attestation_rows = checked_all.len() as u64;
        let trusted = trusted_attestations(&checked_all);
        let checked: Vec<&CheckedRow> = checked_all.iter().map(|(c, _)| c).collect();
        let rows: Vec<&crate::store::AttestationRow> = checked.iter().map(|c| &c.row).collect();
        let target = self.resolve_version(latest, &trusted)?;

        // A copy is verified in full and not recorded: a record names the attested table, and
        // `--since-last` on it must not continue from what a copy showed.
        let is_copy = self.source.copy_location().is_some();
        let mut base = if self.options.since_last && !is_copy {
            verifications::find_base(
                self.store,
                uri,
                self.trust,
                target,
                self.options.mode,
                &rows,
            )
            .await?
        } else {
            None
        };
        // Continuing needs signed reader views for the checkpoint and checksum checks of the
        // versions not replayed; without them, verify everything.
        // Log compactions are checked against the replayed view before them, which a
        // continued run does not have: with any in the log, verify everything too.
        if base.is_some()
            && (trusted
                .range(..=target)
                .any(|(_, a)| a.reader_view().is_none())
                || !log.compactions().is_empty())
        {
            base = None;
        }
        let from = base.as_ref().map_or(0, |b| b.version + 1);

        if target == latest {
            findings.extend(attested_beyond_log(trusted.keys().copied(), latest));
        }
        if let Some(anchor) = &self.options.anchor {
            check_anchor(anchor.value(), &checked, findings);
        }
        if let Some(b) = &base {
            b.check_still_attested(&checked, findings);
        }
        drop((rows, checked));
        // A chain that starts from a checkpoint (earlier commits cleaned up before the first
        // attestation): its first, trusted row says so.
        let baseline = if base.is_some() {
            None
        } else {
            trusted.values().next().and_then(|a| {
                a.baseline()
                    .filter(|b| b.checkpoint_version == a.version())
                    .cloned()
            })
        };
        let from = baseline.as_ref().map_or(from, |b| b.checkpoint_version);
        if baseline.is_some() && target < from {
            return Err(Error::InvalidLog {
                table: uri.to_owned(),
                version: target,
                reason: format!(
                    "version {target} is before the checkpoint baseline at version {from}: its commits were removed by log cleanup before the table was first attested, so it cannot be verified"
                ),
            });
        }
        let timestamps = timestamps::check(&checked_all, self.trust, from, target, findings);
        timestamps::check_columns(&checked_all, from, target, findings);
        let in_scope = |c: &CheckedRow| (from..=target).contains(&c.row.version);
        for (c, f) in &mut checked_all {
            if in_scope(c) {
                findings.append(f);
            }
        }
        let chain = select_chain(
            checked_all
                .into_iter()
                .map(|(c, _)| c)
                .filter(|c| in_scope(c)),
            from,
            target,
            base.as_ref().map(|b| b.attestation_digest),
            baseline.as_ref().map(|b| b.checkpoint_version),
            findings,
        );
        Ok(Scope {
            attestation_rows,
            timestamps,
            trusted,
            target,
            base,
            baseline,
            from,
            chain,
        })
    }

    /// Phase 2: the attested file changes of every version in scope (from the statements, or
    /// from `system.makoto.files` for commits too large to list inline).
    async fn file_changes(
        &self,
        uri: &str,
        scope: &mut Scope,
        findings: &mut Vec<Finding>,
    ) -> Result<BTreeMap<u64, replay::Changes>, Error> {
        let files_table = self.store.load_files().await?;
        // Each row is turned into the change it records as it is read: a row's own columns
        // (table, run, its partition values as text) are not kept for a whole table.
        let mut by_version: BTreeMap<u64, replay::VersionRows> = BTreeMap::new();
        let (from, to) = (scope.from, scope.target);
        self.store
            .file_rows_each(&files_table, uri, from, to, |rows| {
                for r in rows {
                    by_version.entry(r.version).or_default().push(&r);
                }
                Vec::<()>::new()
            })
            .await?;
        Ok(attested_changes(&mut scope.chain, by_version, findings))
    }

    /// Phase 3: the walk, and in deep mode the live files of the target loaded whole again
    /// (those added since the base of a `--since-last` run) for phase 4 to hash.
    async fn walk(
        &self,
        input: walk::WalkInput<'_>,
        since_base: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<walk::WalkOutput, Error> {
        let mut walked = walk::walk(input, findings).await?;
        if self.options.mode == VerifyMode::Deep && walked.target_covered {
            let (pages, tree) = (self.store.pages(), &mut walked.replay.tree);
            let loaded = if since_base {
                let keys: Vec<Sha256Digest> = walked.replay.added_at.keys().copied().collect();
                pages.load_paths(tree, &keys).await?
            } else {
                pages.load_all(tree).await?
            };
            walked.pages_loaded += loaded as u64;
        }
        Ok(walked)
    }

    /// Phase 4 (deep mode, once the target was rebuilt): every live data file rehashed, and
    /// files in the table directory that no version references. Returns files and bytes
    /// hashed.
    async fn check_data(
        &self,
        log: &crate::log::LogFiles,
        latest: u64,
        scope: &Scope,
        walked: &mut walk::WalkOutput,
        findings: &mut Vec<Finding>,
    ) -> Result<(u64, u64), Error> {
        if self.options.mode != VerifyMode::Deep || !walked.target_covered {
            return Ok((0, 0));
        }
        let removed_later = self
            .removed_later(
                log,
                scope.target,
                latest,
                &scope.trusted,
                &mut walked.referenced,
            )
            .await?;
        let mut live = walked.replay.live_files();
        if scope.base.is_some() {
            // Files live since the base verification were checked by it.
            live.retain(|f| walked.replay.added_at.contains_key(&f.entry.key()));
        }
        let hashed = data::check_live_files(
            self.source,
            live,
            &removed_later,
            self.options.parallelism,
            findings,
        )
        .await;
        if scope.base.is_none() {
            let cutoff = scope
                .chain
                .values()
                .filter_map(|r| DateTime::<Utc>::from_timestamp_micros(r.row.attested_at_us))
                .max();
            data::check_unreferenced(self.source, &walked.referenced, cutoff, findings).await?;
        }
        Ok(hashed)
    }

    /// Phase 5: what delta-rs read, judged against the rebuilt reader view.
    async fn end_cross_check(
        &self,
        cross_check: Option<CrossCheck>,
        walked: &mut walk::WalkOutput,
        target: u64,
        findings: &mut Vec<Finding>,
    ) -> Result<bool, Error> {
        let end = match cross_check {
            Some(mut handle) => match (&mut handle.0).await {
                Ok(opened) => readers::CrossCheckEnd::Opened(opened),
                Err(e) => readers::CrossCheckEnd::Aborted(e.to_string()),
            },
            None if self.options.reader_check == ReaderCheck::Skip => {
                readers::CrossCheckEnd::Skipped
            }
            None => readers::CrossCheckEnd::NotOpened(
                "the log holds a commit file too large to read safely; not opened".to_owned(),
            ),
        };
        let end = match (end, walked.view.as_ref()) {
            (readers::CrossCheckEnd::Opened(Ok(sees)), Some(view))
                if readers::digests_differ(&sees, view) =>
            {
                readers::CrossCheckEnd::Opened(
                    readers::open(
                        self.source.location().url().clone(),
                        self.options.storage.0.clone(),
                        target,
                        readers::Detail::Whole,
                    )
                    .await,
                )
            }
            (end, _) => end,
        };
        if let (readers::CrossCheckEnd::Opened(Ok(sees)), Some(view)) = (&end, &mut walked.view)
            && readers::compares_entries(sees)
        {
            walked.pages_loaded += self.store.pages().load_all(&mut view.files).await? as u64;
        }
        let (finding, cross_checked) =
            readers::judge(end, walked.view.as_ref(), walked.target_covered, target);
        findings.extend(finding);
        Ok(cross_checked)
    }

    /// Last phase: the outcome from the findings and the coverage, the verified state kept for
    /// `--since-last`, and the verification record.
    async fn report(
        &self,
        uri: String,
        scope: Scope,
        checked: Checked,
        findings: Vec<Finding>,
    ) -> Result<VerifyReport, Error> {
        let Checked {
            latest,
            mut walked,
            files_hashed,
            bytes_hashed,
            windows_checked,
            windows_purged,
            windows_timestamped,
            cross_checked,
        } = checked;
        let head = scope.chain.get(&scope.target);
        let mut findings = merge_missing(findings);
        findings.sort_by_key(|f| (f.version, f.kind));
        let coverage = Coverage {
            version_checked: walked.target_covered,
            reader_view: walked.reader_view,
            commits: walked.replay.commits_checked,
            commits_expired: walked.commits_expired,
            checkpoints: walked.checkpoints_checked,
            checksums: walked.checksums_checked,
            compactions: walked.compactions_checked,
            files_hashed,
            bytes_hashed,
            delta_rs_cross_check: cross_checked,
            reader_check: self.options.reader_check,
            timestamps: scope.timestamps.clone(),
        };
        let outcome = Outcome::of(&findings, &coverage);
        let verified = outcome == Outcome::Verified;
        if verified && walked.replay.known && self.options.record.is_some() {
            // Keep the verified state's pages so a later --since-last can resume from it.
            verifications::persist_state(self.store, &mut walked.replay.tree).await?;
        }
        let is_copy = self.source.copy_location().is_some();
        let mut report = VerifyReport {
            copy: self.source.copy_location(),
            table: uri,
            table_id: head.map(|r| r.row.table_id.clone()),
            version: scope.target,
            latest_version: latest,
            mode: self.options.mode,
            outcome,
            verified,
            findings,
            attestation_rows: scope.attestation_rows,
            commits_checked: walked.replay.commits_checked,
            checkpoints_checked: walked.checkpoints_checked,
            windows_checked,
            windows_purged,
            windows_timestamped,
            files_hashed,
            bytes_hashed,
            state_pages_loaded: walked.pages_loaded,
            level: (outcome != Outcome::Failed).then(|| {
                MakotoLevel::earned(LevelEvidence {
                    signed: head.is_some_and(|r| r.trusted && r.row.keyid.is_some()),
                    timestamped: coverage.timestamps.covered,
                    identity_bound: head.is_some_and(|r| r.identity_bound),
                })
            }),
            coverage,
            state_digest: head
                .and_then(|r| r.attested.as_deref())
                .map(|a| a.state_root().to_hex()),
            attestation_digest: head
                .and_then(|r| r.payload_digest)
                .map(|d: Sha256Digest| d.to_hex()),
            since: scope.base.as_ref().map(|b| b.version),
            recorded: false,
            record_error: None,
        };
        if is_copy && self.options.record.is_some() {
            report.record_error =
                Some("not recorded: a copy was verified, not the attested table itself".into());
        } else if let Some(mode) = &self.options.record {
            match verifications::write_record(self.store, self.trust, &report, mode).await {
                Ok(()) => report.recorded = true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the verification");
                    report.record_error = Some(e.to_string());
                }
            }
        }
        Ok(report)
    }

    /// delta-rs opening the table at `target` on its own task — unless the log holds a commit
    /// file too large to read safely (reported by the walk), which delta-rs would read whole.
    fn start_cross_check(&self, log: &crate::log::LogFiles, target: u64) -> Option<CrossCheck> {
        if self.options.reader_check == ReaderCheck::Skip {
            return None;
        }
        let oversized = log
            .commits()
            .range(..=target)
            .any(|(_, m)| m.size > walk::MAX_UNATTESTED_COMMIT);
        (!oversized).then(|| {
            CrossCheck(tokio::spawn(readers::open(
                self.source.location().url().clone(),
                self.options.storage.0.clone(),
                target,
                readers::Detail::Digests,
            )))
        })
    }

    /// What the attested commits after the verified version remove: such a removal (VACUUM
    /// later) explains a file of the verified version that is gone. Only commits whose bytes
    /// are the ones a trusted attestation signed count; anything else explains nothing.
    async fn removed_later(
        &self,
        log: &crate::log::LogFiles,
        target: u64,
        latest: u64,
        trusted: &BTreeMap<u64, Arc<AttestedCommit>>,
        referenced: &mut HashSet<String>,
    ) -> Result<HashMap<String, u64>, Error> {
        let mut removed_later: HashMap<String, u64> = HashMap::new();
        if target >= latest {
            return Ok(removed_later);
        }
        for (v, _) in log.commits().range(target + 1..=latest) {
            let Some(att) = trusted.get(v) else { continue };
            let (bytes, commit) = read_commit(self.source, *v).await?;
            if Sha256Digest::of(&bytes) != att.commit_file_digest() {
                continue;
            }
            if let Some(c) = commit {
                walk::note_references(&c, referenced);
                for r in c.removes() {
                    removed_later
                        .entry(r.path().as_str().to_owned())
                        .or_insert(*v);
                }
            }
        }
        Ok(removed_later)
    }

    /// The version to verify. `--timestamp` goes through the signed commit timestamps of
    /// trusted attestations, never through times in the log.
    fn resolve_version(
        &self,
        latest: u64,
        trusted: &BTreeMap<u64, Arc<AttestedCommit>>,
    ) -> Result<u64, Error> {
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
                for (v, a) in trusted.range(..=latest) {
                    if a.timestamp_ms() <= t.timestamp_millis() {
                        found = Some(*v);
                    } else {
                        break;
                    }
                }
                found.ok_or_else(|| Error::InvalidLog {
                    table: self.source.uri().to_owned(),
                    version: 0,
                    reason: format!(
                        "no version with a trusted attestation was committed at or before {t}"
                    ),
                })
            }
        }
    }
}

/// The attestations whose signature verifies under a trusted key, by version (the first of
/// several for one version; the chain reports forks).
fn trusted_attestations(
    checked: &[(CheckedRow, Vec<Finding>)],
) -> BTreeMap<u64, Arc<AttestedCommit>> {
    let mut out = BTreeMap::new();
    for (c, _) in checked {
        if c.trusted
            && let Some(a) = &c.attested
            && a.version() == c.row.version
        {
            out.entry(a.version()).or_insert_with(|| Arc::clone(a));
        }
    }
    out
}

/// The attestation a trusted head recorded must still be in the table.
fn check_anchor(
    anchor: &makoto_core::head::HeadEntry,
    rows: &[&CheckedRow],
    findings: &mut Vec<Finding>,
) {
    let at_version: Vec<&CheckedRow> = rows
        .iter()
        .copied()
        .filter(|c| c.row.version == anchor.version)
        .collect();
    let present = at_version
        .iter()
        .any(|c| c.payload_digest == Some(anchor.attestation_digest));
    if present {
        return;
    }
    let max = rows.iter().map(|c| c.row.version).max();
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
                            .map(|c| c.row.attestation_digest.to_hex())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )
            .at(anchor.version),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestations_beyond_the_log_are_one_finding_at_the_first() {
        assert!(attested_beyond_log([0, 1, 2].into_iter(), 2).is_none());
        let f = attested_beyond_log([0, 1, 2, 3, 4, 5].into_iter(), 2).unwrap();
        assert_eq!((f.kind, f.version), (FindingKind::CommitMissing, Some(3)));
        assert!(
            f.detail
                .starts_with("versions 3..=5 are attested but the log ends at version 2")
        );
        let one = attested_beyond_log([7].into_iter(), 2).unwrap();
        assert!(one.detail.starts_with("versions 7..=7"), "{}", one.detail);
    }

    #[test]
    fn missing_attestations_merge_into_ranges() {
        let missing = |v| Finding::new(FindingKind::AttestationMissing, "x").at(v);
        let other = Finding::new(FindingKind::CommitMissing, "gap").at(9);
        let merged = merge_missing(vec![missing(1), missing(2), missing(3), missing(5), other]);
        let details: Vec<(&str, Option<u64>)> = merged
            .iter()
            .map(|f| (f.detail.as_str(), f.version))
            .collect();
        assert!(
            details.contains(&("no attestation rows for versions 1..=3", Some(1))),
            "{details:?}"
        );
        assert!(
            details.contains(&("no attestation row for version 5", Some(5))),
            "{details:?}"
        );
        assert!(details.contains(&("gap", Some(9))), "{details:?}");
        assert_eq!(merged.len(), 3);
    }
}
