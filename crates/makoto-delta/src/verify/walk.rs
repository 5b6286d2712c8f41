//! The walk over the versions of the log: every commit compared with its attestation and
//! replayed into the state and reader view, and every other artifact a reader may use at a
//! version (checkpoints, `.crc` files, log compactions) compared with the attested view of
//! that version. A missing or unreadable artifact is reported and never switches the other
//! checks off: where commits are gone, the walk starts again from a checkpoint that matches
//! the attestations of its version.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use makoto_core::Sha256Digest;
use makoto_core::attestation::ChangeKind;
use makoto_core::attested::{AttestedBaseline, AttestedCommit};
use makoto_core::delta::{Action, Commit, DeletionVector, commit_file_name};
use makoto_core::reader_view::{ReaderView, ReaderViewDigest};
use makoto_core::state::{DvEntry, FileEntry, StateTree, leaf_key};

use super::VerifyMode;
use super::chain::CheckedRow;
use super::findings::{Finding, FindingKind};
use super::replay::{Changes, CommitPrefetch, Replay, compare_commit, read_commit};
use crate::Error;
use crate::checkpoint::{self, CheckpointRef};
use crate::log::{LogFiles, SourceTable};
use makoto_core::reader_view::{Check, Claimed, Expected, parse_checksum};
use object_store::ObjectStoreExt;

/// The largest commit file read when no attestation says how large it should be.
pub(crate) const MAX_UNATTESTED_COMMIT: u64 = 256 << 20;
/// The most checkpoint bytes read for a version of `n` files: `n × PER_FILE + FIXED` (an
/// `add` with statistics takes well under 1 KiB in Parquet), or `MAX_UNATTESTED` when no
/// attestation gives `n`.
const CHECKPOINT_BYTES_PER_FILE: u64 = 16 << 10;
const CHECKPOINT_BYTES_FIXED: u64 = 64 << 20;
const MAX_UNATTESTED_CHECKPOINT: u64 = 1 << 30;

/// When the walk drops parts of its two trees (the replayed state and the reader view) from
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Never (the default): both trees stay whole, and memory follows the table's live
    /// files.
    Never,
    /// Once a tree holds more than `files` live files, at least `changed` files were added or
    /// removed in it since it was last evicted (or a check loaded it whole), and the
    /// warehouse stores its pages at the version walked (attest stores them at the end of
    /// each of its batches): its subtrees are dropped, leaving their hashes. They are loaded
    /// again from the warehouse, each checked against its hash, when a commit touches them
    /// or a check needs the whole tree. Each eviction encodes the pages changed since the
    /// last one, to learn their ids.
    Above { files: u64, changed: u64 },
}

impl Eviction {
    /// Above `files` live files, after 8,192 changed: each eviction encodes the changed pages
    /// once, so evicting after every few changes would cost more than it saves.
    pub fn above(files: u64) -> Self {
        Eviction::Above {
            files,
            changed: 8_192,
        }
    }
}

/// How much of one tree is in memory.
#[derive(Debug, Default, Clone, Copy)]
struct Paging {
    /// Files added or removed since the tree was last evicted.
    changed: u64,
    /// Some subtrees are stubs, to be loaded before they are read.
    partial: bool,
    /// It was loaded whole for a check since it was last evicted.
    reloaded: bool,
}

impl Paging {
    fn due(&self, files: u64, eviction: Eviction) -> bool {
        match eviction {
            Eviction::Never => false,
            Eviction::Above { files: n, changed } => {
                files > n && (self.changed >= changed || self.reloaded)
            }
        }
    }
}

/// How the reader view of the verified version was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReaderViewCoverage {
    /// Replayed from attested commits (or a checkpoint matching a signed digest) and equal to
    /// the signed reader-view digest of the version.
    Signed,
    /// Replayed from attested commits; the attestation predates signed reader views, so the
    /// view is bound by the signed commit digests only.
    Derived,
    /// Not established.
    None,
}

/// Everything the walk needs.
pub(crate) struct WalkInput<'a> {
    pub source: &'a SourceTable,
    pub log: &'a LogFiles,
    pub chain: &'a BTreeMap<u64, CheckedRow>,
    pub changes: &'a BTreeMap<u64, super::replay::Changes>,
    /// Trusted attestations of every version, for checks by signed digest.
    pub trusted: &'a BTreeMap<u64, Arc<AttestedCommit>>,
    pub from: u64,
    pub target: u64,
    pub baseline: Option<&'a AttestedBaseline>,
    /// The state a `--since-last` run resumes from (the reader view is then checked by digest).
    pub resumed: Option<StateTree>,
    /// Where the pages of a resumed state are, and those the attestations stored.
    pub pages: &'a crate::pages::PageStore,
    pub eviction: Eviction,
    /// Deep mode also keeps what its data check needs: every path the log references, and
    /// the version that added each live file.
    pub mode: VerifyMode,
}

/// What the walk established.
pub(crate) struct WalkOutput {
    pub replay: Replay,
    pub view: Option<ReaderView>,
    /// The state of the target version was established and compared with its attestation.
    pub target_covered: bool,
    pub reader_view: ReaderViewCoverage,
    pub referenced: HashSet<String>,
    pub checkpoints_checked: u64,
    pub checksums_checked: u64,
    pub compactions_checked: u64,
    pub commits_expired: u64,
    /// Pages of the two trees loaded again from the warehouse after they were evicted (or
    /// to resume a `--since-last` state).
    pub pages_loaded: u64,
}

/// The walk's own state.
struct Walk<'a> {
    input: WalkInput<'a>,
    findings: &'a mut Vec<Finding>,
    replay: Replay,
    /// The state tree holds the live files of the current version with attested digests.
    known: bool,
    view: Option<ReaderView>,
    /// The view is bound by signatures (replayed from attested commits, or a checkpoint
    /// matching a signed digest or signed bytes).
    view_bound: bool,
    view_signed_at_target: bool,
    /// Views kept for log compactions that start after them.
    snapshots: BTreeMap<u64, ReaderView>,
    out_counts: (u64, u64, u64),
    referenced: HashSet<String>,
    commits_expired: u64,
    last_step: Option<u64>,
    /// The commit of the current version is the attested one.
    commit_matched: bool,
    /// Checking artifacts of versions before the walk: never restart from them.
    no_seed: bool,
    prefetch: CommitPrefetch,
    state_paging: Paging,
    view_paging: Paging,
    pages_loaded: u64,
}

/// Evicts `tree` if the warehouse holds the page of its root, and with it (attest stores a
/// batch's pages before its rows) every page below. Returns whether it did.
async fn evict_if_stored<L: makoto_core::state::Leaf>(
    pages: &crate::pages::PageStore,
    tree: &mut StateTree<L>,
) -> Result<bool, Error> {
    if !pages.contains(&tree.root()).await? {
        return Ok(false);
    }
    let ids: Vec<Sha256Digest> = tree.unstored_pages().map(|(id, _)| id).collect();
    tree.mark_persisted(ids);
    tree.evict_persisted();
    Ok(true)
}

fn range_detail(a: u64, b: u64) -> String {
    if a == b {
        format!("version {a}")
    } else {
        format!("versions {a}..={b}")
    }
}

/// Runs the walk.
pub(crate) async fn walk(
    input: WalkInput<'_>,
    findings: &mut Vec<Finding>,
) -> Result<WalkOutput, Error> {
    let mut input = input;
    let resumed = input.resumed.take();
    let since_last = resumed.is_some();
    let tree = resumed.unwrap_or_default();
    let fresh = input.from == 0 && !since_last && input.baseline.is_none();
    let ahead = (input.from <= input.target)
        .then(|| input.log.commits().range(input.from..=input.target))
        .into_iter()
        .flatten()
        .map(|(v, m)| (*v, m.size));
    let prefetch = CommitPrefetch::start(input.source, ahead);
    let mut w = Walk {
        prefetch,
        state_paging: Paging {
            partial: since_last,
            ..Paging::default()
        },
        view_paging: Paging::default(),
        pages_loaded: 0,
        last_step: None,
        commit_matched: false,
        no_seed: false,
        findings,
        replay: Replay::new(tree, input.mode),
        known: fresh || since_last,
        view: fresh.then(ReaderView::default),
        view_bound: fresh,
        view_signed_at_target: false,
        snapshots: BTreeMap::new(),
        out_counts: (0, 0, 0),
        referenced: HashSet::new(),
        commits_expired: 0,
        input,
    };
    let target = w.input.target;
    let nothing_new = w.input.from > target;
    if since_last {
        w.check_earlier_artifacts().await?;
    }
    if !nothing_new {
        w.report_missing_commits();
        for v in w.versions() {
            w.step(v).await?;
        }
    }
    // A `--since-last` run with nothing after its base covers the base's version.
    let target_covered = (nothing_new && since_last)
        || (w.known
            && w.input
                .chain
                .get(&target)
                .is_some_and(|r| r.trusted && r.attested.is_some()));
    let reader_view = if !target_covered {
        ReaderViewCoverage::None
    } else if w.view_signed_at_target {
        ReaderViewCoverage::Signed
    } else if w.view_bound || since_last {
        ReaderViewCoverage::Derived
    } else {
        ReaderViewCoverage::None
    };
    Ok(WalkOutput {
        replay: w.replay,
        view: w.view,
        target_covered,
        reader_view,
        referenced: w.referenced,
        checkpoints_checked: w.out_counts.0,
        checksums_checked: w.out_counts.1,
        compactions_checked: w.out_counts.2,
        commits_expired: w.commits_expired,
        pages_loaded: w.pages_loaded,
    })
}

impl Walk<'_> {
    fn attested(&self, v: u64) -> Option<&AttestedCommit> {
        self.input.chain.get(&v).and_then(|r| r.attested.as_deref())
    }

    fn signed_view(&self, v: u64) -> Option<(ReaderViewDigest, u64)> {
        self.input
            .trusted
            .get(&v)
            .and_then(|a| a.reader_view().map(|r| (*r, a.live_bytes())))
    }

    /// The versions with something to check, in order (bounded by the files listed, not by
    /// version numbers).
    fn versions(&self) -> BTreeSet<u64> {
        let (from, to) = (self.input.from, self.input.target);
        let log = self.input.log;
        let mut set: BTreeSet<u64> = log.commits().range(from..=to).map(|(v, _)| *v).collect();
        set.extend(log.checkpoints().range(from..=to).map(|(v, _)| *v));
        set.extend(log.checksums().range(from..=to).map(|(v, _)| *v));
        set.extend(
            log.compactions()
                .keys()
                .filter(|(x, y)| *y <= to && *x >= from)
                .map(|(_, y)| *y),
        );
        set.extend(self.input.chain.keys().copied());
        set.insert(to);
        set
    }

    /// Commit files absent from `from..=target`: an expired prefix (log cleanup, a warning when
    /// a checkpoint lets readers start after it) or gaps (errors), one finding per range.
    fn report_missing_commits(&mut self) {
        let (from, to) = (self.input.from, self.input.target);
        let commits = self.input.log.commits();
        // The prefix log cleanup removes is before the first commit file of the whole log.
        let first = commits.keys().next().copied();
        let prefix_end = match first {
            Some(f) if f > from => Some((f - 1).min(to)),
            None => Some(to),
            _ => None,
        };
        if let Some(end) = prefix_end {
            // Readers can start after the removed commits only from a checkpoint at or after
            // the last removed one.
            let restart = first.and_then(|f| {
                self.input
                    .log
                    .checkpoints()
                    .range(f - 1..)
                    .next()
                    .map(|(v, _)| *v)
            });
            let finding = match restart {
                Some(c) => {
                    self.commits_expired += end - from + 1;
                    Finding::new(
                        FindingKind::CommitExpired,
                        format!(
                            "the commit files of {} were removed by log cleanup; the log restarts from the checkpoint of version {c}",
                            range_detail(from, end)
                        ),
                    )
                    .warning()
                }
                None => Finding::new(
                    FindingKind::CommitMissing,
                    format!(
                        "the commit files of {} are gone from the log and no checkpoint after them lets a reader start there",
                        range_detail(from, end)
                    ),
                ),
            };
            self.findings.push(
                finding
                    .at(from)
                    .file(format!("_delta_log/{}", commit_file_name(from))),
            );
        }
        let mut prev: Option<u64> = None;
        for v in commits.range(from..=to).map(|(v, _)| *v) {
            if let Some(p) = prev
                && v > p + 1
            {
                self.findings.push(
                    Finding::new(
                        FindingKind::CommitMissing,
                        format!(
                            "the commit files of {} are gone from the log",
                            range_detail(p + 1, v - 1)
                        ),
                    )
                    .at(p + 1)
                    .file(format!("_delta_log/{}", commit_file_name(p + 1))),
                );
            }
            prev = Some(v);
        }
    }

    /// `--since-last`: the checkpoints and checksum files of the versions not walked again
    /// are still what readers may use; they are checked against the signed reader views.
    async fn check_earlier_artifacts(&mut self) -> Result<(), Error> {
        let until = self.input.from.min(self.input.target.saturating_add(1));
        let (known, view, bound) = (self.known, self.view.take(), self.view_bound);
        self.known = false;
        self.view_bound = false;
        self.no_seed = true;
        let versions: BTreeSet<u64> = self
            .input
            .log
            .checkpoints()
            .range(..until)
            .map(|(v, _)| *v)
            .chain(self.input.log.checksums().range(..until).map(|(v, _)| *v))
            .collect();
        for v in versions {
            if self.input.log.checkpoints().contains_key(&v) {
                self.checkpoints(v).await;
            }
            if let Some(name) = self.input.log.checksums().get(&v).cloned() {
                self.checksum(v, &name).await?;
            }
        }
        self.no_seed = false;
        self.known = known;
        self.view = view;
        self.view_bound = bound;
        Ok(())
    }

    async fn step(&mut self, v: u64) -> Result<(), Error> {
        let has_commit = self.input.log.commits().contains_key(&v);
        // The state carried is that of the previous version only if it was walked.
        if v != self.input.from && self.last_step != Some(v - 1) {
            self.lose();
        }
        self.last_step = Some(v);
        self.commit_matched = false;
        if has_commit {
            self.commit(v).await?;
        } else {
            self.lose();
        }
        let log = self.input.log;
        let compaction_next = log.compactions().keys().any(|(x, _)| *x == v + 1);
        if log.checkpoints().contains_key(&v) || log.checksums().contains_key(&v) || compaction_next
        {
            self.whole_view().await?;
        }
        if log.checkpoints().contains_key(&v) {
            self.checkpoints(v).await;
        }
        if let Some(name) = log.checksums().get(&v).cloned() {
            self.checksum(v, &name).await?;
        }
        self.compactions(v).await;
        self.compare_with_attestation(v);
        self.keep_snapshot(v);
        self.evict().await
    }

    /// Loads the evicted parts of the reader view: checkpoints, checksum files and kept
    /// snapshots compare every file.
    async fn whole_view(&mut self) -> Result<(), Error> {
        if let Some(view) = &mut self.view
            && self.view_paging.partial
        {
            self.pages_loaded += self.input.pages.load_all(&mut view.files).await? as u64;
            self.view_paging.partial = false;
            self.view_paging.reloaded = true;
        }
        Ok(())
    }

    /// Drops the subtrees of each tree that is due ([`Paging::due`]) and whose pages the
    /// warehouse holds at this version.
    async fn evict(&mut self) -> Result<(), Error> {
        let (eviction, pages) = (self.input.eviction, self.input.pages);
        if self.known
            && self.state_paging.due(self.replay.tree.files(), eviction)
            && evict_if_stored(pages, &mut self.replay.tree).await?
        {
            self.state_paging = Paging {
                partial: true,
                ..Paging::default()
            };
        }
        if let Some(view) = &mut self.view
            && self.view_paging.due(view.files.files(), eviction)
            && evict_if_stored(pages, &mut view.files).await?
        {
            self.view_paging = Paging {
                partial: true,
                ..Paging::default()
            };
        }
        Ok(())
    }

    fn lose(&mut self) {
        self.known = false;
        self.view = None;
        self.view_bound = false;
    }

    async fn commit(&mut self, v: u64) -> Result<(), Error> {
        // A planted or rewritten commit far larger than the attested one is reported without
        // being read: memory stays bounded on hostile input.
        let listed = self.input.log.commits().get(&v).map(|m| m.size);
        let limit = match self.attested(v).and_then(AttestedCommit::commit_size) {
            // Room for a re-serialization (other whitespace, key order) to be told apart.
            Some(attested) => Some((attested.saturating_mul(4).saturating_add(1 << 20), attested)),
            None => Some((MAX_UNATTESTED_COMMIT, 0)).filter(|_| self.attested(v).is_none()),
        };
        if let (Some(size), Some((max, attested))) = (listed, limit)
            && size > max
        {
            let path = format!("_delta_log/{}", commit_file_name(v));
            self.findings.push(
                if attested > 0 {
                    Finding::new(
                        FindingKind::CommitRewritten,
                        format!("the commit file has {size} bytes, the attested one {attested}: it was rewritten (not read)"),
                    )
                } else {
                    Finding::new(
                        FindingKind::CommitRewritten,
                        format!("an unattested commit file of {size} bytes, larger than makoto reads without an attestation ({MAX_UNATTESTED_COMMIT} bytes); not read"),
                    )
                }
                .at(v)
                .file(path),
            );
            self.lose();
            return Ok(());
        }
        let read = match self.prefetch.take(v).await {
            Some(read) => read,
            None => read_commit(self.input.source, v).await,
        };
        let (bytes, commit) = read?;
        let listed = self.input.changes.get(&v).and_then(Changes::listed);
        let matches = compare_commit(
            &bytes,
            commit.as_ref(),
            v,
            self.input.chain,
            listed,
            self.findings,
        );
        let Some(commit) = commit else {
            self.lose();
            return Ok(());
        };
        if self.input.mode == VerifyMode::Deep {
            note_references(&commit, &mut self.referenced);
        }
        if let (Some(m), Some(att)) = (commit.metadata(), self.attested(v))
            && m.id() != att.table_id()
        {
            self.findings.push(
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
        self.commit_matched = matches;
        if !self.known {
            return Ok(());
        }
        let keys = makoto_core::reader_view::touched_keys(commit.actions());
        if self.state_paging.partial {
            let pages = self.input.pages;
            self.pages_loaded += pages.load_paths(&mut self.replay.tree, &keys).await? as u64;
        }
        let chain = self.input.chain;
        let unavailable = chain
            .get(&v)
            .and_then(|r| r.attested.as_deref())
            .map_or(&[][..], AttestedCommit::unavailable_files);
        self.replay.apply(
            &commit,
            self.input.changes.get(&v).map(Changes::as_slice),
            unavailable,
        )?;
        if !self.replay.known {
            self.lose();
            return Ok(());
        }
        let changed = keys.len() as u64;
        self.state_paging.changed += changed;
        if let Some(view) = &mut self.view {
            if self.view_paging.partial {
                let pages = self.input.pages;
                self.pages_loaded += pages.load_paths(&mut view.files, &keys).await? as u64;
            }
            view.apply(&commit)
                .map_err(|e| Error::core(format!("reader view of version {v}"), e))?;
            self.view_paging.changed += changed;
        }
        if !matches {
            // The commit is not the attested one: what follows is not bound.
            self.view_bound = false;
        }
        Ok(())
    }

    fn compare_with_attestation(&mut self, v: u64) {
        let chain = self.input.chain;
        let Some(att) = chain.get(&v).and_then(|r| r.attested.as_deref()) else {
            return;
        };
        if !self.known {
            return;
        }
        let commit_ok = self.commit_matched || !self.input.log.commits().contains_key(&v);
        if commit_ok && self.replay.tree.root() != att.state_root() {
            self.findings.push(
                Finding::new(
                    FindingKind::StateMismatch,
                    format!(
                        "the log and the attested file digests give state {} ({} files), the attestation says {} ({} files)",
                        self.replay.tree.root(),
                        self.replay.tree.files(),
                        att.state_root(),
                        att.live_files()
                    ),
                )
                .at(v),
            );
        }
        let (Some(view), Some(signed)) = (&self.view, att.reader_view()) else {
            return;
        };
        let ours = view.digest();
        if ours == *signed {
            if v == self.input.target && self.view_bound {
                self.view_signed_at_target = true;
            }
            self.view_bound = true;
            return;
        }
        let parts: Vec<&str> = ours
            .differences(signed)
            .into_iter()
            .map(|c| c.as_str())
            .collect();
        self.findings.push(
            Finding::new(
                FindingKind::ReaderViewMismatch,
                format!(
                    "the reader view replayed from the log differs from the signed one in: {}",
                    parts.join(", ")
                ),
            )
            .at(v),
        );
        self.view_bound = false;
    }

    fn expected(&self, v: u64) -> Option<ExpectedOwned<'_>> {
        if self.known
            && self.view_bound
            && let Some(view) = &self.view
        {
            return Some(ExpectedOwned::Replayed(view));
        }
        self.signed_view(v)
            .map(|(view, live_bytes)| ExpectedOwned::Signed(view, live_bytes))
    }

    async fn checkpoints(&mut self, v: u64) {
        let names = self
            .input
            .log
            .checkpoints()
            .get(&v)
            .cloned()
            .unwrap_or_default();
        let (groups, _incomplete) = checkpoint::group(v, &names);
        let is_baseline = self
            .input
            .baseline
            .is_some_and(|b| b.checkpoint_version == v);
        let mut baseline_bytes_ok = false;
        if let Some(b) = self.input.baseline.filter(|_| is_baseline) {
            baseline_bytes_ok = self.check_baseline_files(b, &names).await;
        }
        let mut seeded = false;
        // At most this much checkpoint for the number of files the version has.
        let files = match (&self.view, self.known) {
            (Some(view), true) => Some(view.files.files()),
            _ => self
                .signed_view(v)
                .map(|(d, _)| d.files)
                .or_else(|| self.attested(v).map(AttestedCommit::live_files)),
        };
        let max_bytes = files.map_or(MAX_UNATTESTED_CHECKPOINT, |n| {
            n.saturating_mul(CHECKPOINT_BYTES_PER_FILE)
                .saturating_add(CHECKPOINT_BYTES_FIXED)
        });
        for cp in groups {
            let content = match checkpoint::read_bounded(self.input.source, &cp, max_bytes).await {
                Ok(c) => c,
                Err(e) => {
                    self.findings.push(
                        Finding::new(
                            if is_baseline {
                                FindingKind::BaselineChanged
                            } else {
                                FindingKind::CheckpointUnreadable
                            },
                            format!("the checkpoint cannot be read: {e}"),
                        )
                        .at(v)
                        .file(cp.display_path()),
                    );
                    continue;
                }
            };
            self.out_counts.0 += 1;
            let claimed = Claimed::from_actions(&content.actions, &content.parsed);
            let check = self.expected(v).map(|e| claimed.compare(e.as_expected()));
            let mismatch_kind = if is_baseline {
                FindingKind::BaselineChanged
            } else {
                FindingKind::CheckpointMismatch
            };
            if let Some(check) = &check {
                self.report(check, mismatch_kind, v, &cp);
            }
            if !self.known && !seeded && !self.no_seed {
                seeded = self
                    .seed(
                        v,
                        &cp,
                        &content,
                        &claimed,
                        check.as_ref(),
                        baseline_bytes_ok,
                    )
                    .await;
            }
        }
    }

    fn report(&mut self, check: &Check, kind: FindingKind, v: u64, cp: &CheckpointRef) {
        if !check.ok() {
            self.findings.push(
                Finding::new(
                    kind,
                    format!(
                        "readers of version {v} would see another table than the attested one: {}",
                        check.detail()
                    ),
                )
                .at(v)
                .file(cp.display_path()),
            );
        } else if let Some(why) = &check.uncertain {
            self.findings.push(
                Finding::new(FindingKind::CheckpointUnverifiable, why.clone())
                    .at(v)
                    .file(cp.display_path()),
            );
        }
    }

    /// The recorded baseline files must be there with their attested bytes. A baseline whose
    /// files are gone with nothing in their place expired; other files standing in their
    /// place are a changed baseline.
    async fn check_baseline_files(&mut self, b: &AttestedBaseline, names: &[String]) -> bool {
        let v = b.checkpoint_version;
        let wanted: Vec<String> = b
            .checkpoint_files
            .iter()
            .map(|(p, _, _)| p.trim_start_matches("_delta_log/").to_owned())
            .collect();
        let present: Vec<&String> = wanted.iter().filter(|w| names.contains(w)).collect();
        if present.is_empty() && names.is_empty() {
            self.findings.push(
                Finding::new(
                    FindingKind::BaselineExpired,
                    "the baseline checkpoint was removed by log cleanup; the baseline state cannot be recomputed",
                )
                .at(v)
                .file(format!("_delta_log/{}", wanted.first().cloned().unwrap_or_default())),
            );
            return false;
        }
        match crate::baseline::checkpoint_files(self.input.source, v, &wanted).await {
            Err(e) => {
                self.findings.push(
                    Finding::new(
                        FindingKind::BaselineChanged,
                        format!(
                            "the attested baseline checkpoint files are not all there ({e}); the log holds {} instead",
                            names.join(", ")
                        ),
                    )
                    .at(v),
                );
                false
            }
            Ok(now) => {
                let mut ok = true;
                for (f, (path, size, sha)) in now.iter().zip(&b.checkpoint_files) {
                    if f.sha256 != *sha || f.size != *size {
                        ok = false;
                        self.findings.push(
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
                ok
            }
        }
    }

    /// Starts the walk again at checkpoint version `v`: the live files must be the attested
    /// state of `v` (rebuilt from the attested change lists), and the reader view must match
    /// the signed digest of `v` (or, for attestations that predate reader views, the signed
    /// bytes of a baseline checkpoint).
    async fn seed(
        &mut self,
        v: u64,
        cp: &CheckpointRef,
        content: &checkpoint::CheckpointContent,
        claimed: &Claimed,
        check: Option<&Check>,
        baseline_bytes_ok: bool,
    ) -> bool {
        let Some(att) = self.attested(v).cloned() else {
            return false;
        };
        let Some((tree, added_at)) = self.attested_state(v, content) else {
            return false;
        };
        if tree.root() != att.state_root() {
            return false;
        }
        // The checkpoint's live files must be exactly the attested ones.
        let live: BTreeMap<Sha256Digest, u64> = tree
            .loaded_entries()
            .into_iter()
            .map(|e| (e.key(), e.size()))
            .collect();
        let ours: BTreeMap<Sha256Digest, u64> = claimed
            .files
            .as_ref()
            .map(|f| f.iter().map(|(k, r)| (*k, r.size())).collect())
            .unwrap_or_default();
        if live != ours {
            let extra = ours.keys().filter(|k| !live.contains_key(k)).count();
            let missing = live.keys().filter(|k| !ours.contains_key(k)).count();
            self.findings.push(
                Finding::new(
                    if self.input.baseline.is_some_and(|b| b.checkpoint_version == v) {
                        FindingKind::BaselineChanged
                    } else {
                        FindingKind::CheckpointMismatch
                    },
                    format!(
                        "the checkpoint lists {} live files, the attestations {}: {extra} not attested, {missing} attested ones missing",
                        ours.len(),
                        live.len()
                    ),
                )
                .at(v)
                .file(cp.display_path()),
            );
            return false;
        }
        let view_ok = check.is_some_and(Check::ok) && check.is_some_and(|c| c.uncertain.is_none());
        let signed = att.reader_view().is_some();
        if signed && !view_ok {
            return false;
        }
        let mut view = ReaderView::default();
        let commit = crate::baseline::as_commit(v, content.actions.clone());
        if view.apply(&commit).is_err() {
            return false;
        }
        self.replay.tree = tree;
        self.replay.added_at = added_at;
        self.known = true;
        self.view = Some(view);
        self.state_paging = Paging::default();
        self.view_paging = Paging::default();
        self.view_bound = signed || baseline_bytes_ok;
        if !self.view_bound {
            self.findings.push(
                Finding::new(
                    FindingKind::ReaderViewUnattested,
                    "the attestation of this version predates signed reader views and its commits are gone: the checkpoint's live files are the attested ones, but their partition values, statistics and the table's schema and properties cannot be checked",
                )
                .at(v)
                .file(cp.display_path()),
            );
        }
        true
    }

    /// The attested live files of version `v` with their digests, rebuilt from the attested
    /// change lists of `from..=v`; DV files are taken from the checkpoint's descriptors.
    #[allow(clippy::type_complexity)]
    fn attested_state(
        &self,
        v: u64,
        content: &checkpoint::CheckpointContent,
    ) -> Option<(StateTree, HashMap<Sha256Digest, (u64, Option<String>)>)> {
        let dv_files: HashMap<Sha256Digest, String> = content
            .adds()
            .filter_map(|a| {
                let d = a.deletion_vector()?;
                Some((
                    leaf_key(a.path().as_str(), Some(&d.unique_id())),
                    d.file()?.to_owned(),
                ))
            })
            .collect();
        let mut tree = StateTree::new();
        // Branches are hashed once, at the end.
        let mut batch = tree.batch();
        let mut added: HashMap<Sha256Digest, (u64, Option<String>)> = HashMap::new();
        let start = self.input.from;
        for version in start..=v {
            if !self.input.chain.contains_key(&version) {
                return None;
            }
            let changes = self.input.changes.get(&version)?.as_slice();
            let unavailable: Vec<String> = self
                .attested(version)
                .map(|a| a.unavailable_files().to_vec())
                .unwrap_or_default();
            for c in changes.iter().filter(|c| c.kind == ChangeKind::Remove) {
                let key = leaf_key(&c.path, c.dv_unique_id.as_deref());
                batch.remove(&key).ok()?;
                added.remove(&key);
            }
            for c in changes.iter().filter(|c| c.kind == ChangeKind::Add) {
                let dv = match (&c.dv_unique_id, c.dv_size_in_bytes, c.dv_cardinality) {
                    (Some(id), Some(s), Some(n)) => {
                        Some(DvEntry::new(id.clone(), s, n, c.dv_sha256))
                    }
                    _ => None,
                };
                let size = c.size?;
                let entry = match c.sha256 {
                    Some(sha) => FileEntry::new(c.path.clone(), size, sha, dv),
                    None if unavailable.contains(&c.path) => {
                        FileEntry::unavailable(c.path.clone(), size, dv)
                    }
                    None => return None,
                };
                let key = entry.key();
                batch.insert(entry).ok()?;
                added.insert(key, (version, dv_files.get(&key).cloned()));
            }
        }
        drop(batch);
        Some((tree, added))
    }

    async fn checksum(&mut self, v: u64, name: &str) -> Result<(), Error> {
        let path = format!("_delta_log/{name}");
        let Some(expected) = self.expected(v) else {
            return Ok(());
        };
        let bytes = match self
            .input
            .source
            .store()
            .get(&object_store::path::Path::from(path.as_str()))
            .await
        {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| Error::storage(path.clone(), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(Error::storage(path, e)),
        };
        let check = match parse_checksum(&bytes) {
            Ok(crc) => crc.compare(expected.as_expected()),
            Err(e) => Check {
                differences: vec![format!("not a valid version checksum: {e}")],
                uncertain: None,
            },
        };
        self.out_counts.1 += 1;
        if !check.ok() {
            self.findings.push(
                Finding::new(
                    FindingKind::ChecksumMismatch,
                    format!(
                        "readers that trust this checksum file would see another table: {}",
                        check.detail()
                    ),
                )
                .at(v)
                .file(path),
            );
        }
        Ok(())
    }

    /// Views kept at the versions before log compactions start.
    fn keep_snapshot(&mut self, v: u64) {
        let wanted = self
            .input
            .log
            .compactions()
            .keys()
            .any(|(x, _)| *x == v + 1);
        if wanted
            && self.view_bound
            && let Some(view) = &self.view
            && let Ok(s) = view.snapshot()
        {
            self.snapshots.insert(v, s);
        }
    }

    async fn compactions(&mut self, v: u64) {
        let ending: Vec<((u64, u64), String)> = self
            .input
            .log
            .compactions()
            .iter()
            .filter(|((_, y), _)| *y == v)
            .map(|(r, n)| (*r, n.clone()))
            .collect();
        for ((x, y), name) in ending {
            let path = format!("_delta_log/{name}");
            let start = if x == 0 {
                Some(ReaderView::default())
            } else {
                self.snapshots.remove(&(x - 1))
            };
            let expected: Option<ReaderViewDigest> = match (&self.view, self.view_bound) {
                (Some(view), true) => Some(view.digest()),
                _ => self.signed_view(y).map(|(d, _)| d),
            };
            let (Some(mut start), Some(expected)) = (start, expected) else {
                continue;
            };
            let result = async {
                let bytes = self
                    .input
                    .source
                    .store()
                    .get(&object_store::path::Path::from(path.as_str()))
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?;
                let commit = self
                    .input
                    .source
                    .parse_commit(y, &bytes)
                    .map_err(|e| e.to_string())?;
                makoto_core::reader_view::apply_reconciled(&mut start, commit.actions())
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(start.digest())
            }
            .await;
            self.out_counts.2 += 1;
            let detail = match result {
                Ok(d) if d == expected => continue,
                Ok(d) => format!(
                    "applied to {}, it gives another view of version {y} than the attested one ({})",
                    if x == 0 {
                        "the empty table".to_owned()
                    } else {
                        format!("version {}", x - 1)
                    },
                    d.differences(&expected)
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => format!("cannot be read: {e}"),
            };
            self.findings.push(
                Finding::new(FindingKind::CompactionMismatch, detail)
                    .at(y)
                    .file(path),
            );
        }
    }
}

/// An [`Expected`] with the signed digest held by value.
enum ExpectedOwned<'a> {
    Replayed(&'a ReaderView),
    Signed(ReaderViewDigest, u64),
}

impl ExpectedOwned<'_> {
    fn as_expected(&self) -> Expected<'_> {
        match self {
            ExpectedOwned::Replayed(v) => Expected::Replayed(v),
            ExpectedOwned::Signed(view, live_bytes) => Expected::Signed {
                view,
                live_bytes: *live_bytes,
            },
        }
    }
}

pub(crate) fn note_references(commit: &Commit, referenced: &mut HashSet<String>) {
    for a in commit.actions() {
        match a {
            Action::Add(x) => {
                referenced.insert(x.path().as_str().to_owned());
                if let Some(f) = x.deletion_vector().and_then(DeletionVector::file) {
                    referenced.insert(f.to_owned());
                }
            }
            Action::Remove(x) => {
                referenced.insert(x.path().as_str().to_owned());
                if let Some(f) = x.deletion_vector().and_then(DeletionVector::file) {
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

/// Unattested artifacts after the verified version: anything a reader could adopt as a newer
/// version (a checkpoint or compaction with no attested commit, a `.crc`).
pub(crate) fn unattested_beyond(log: &LogFiles, after: u64, findings: &mut Vec<Finding>) {
    let mut items: Vec<(u64, String)> = Vec::new();
    for (v, names) in log.checkpoints().range(after + 1..) {
        items.extend(names.iter().map(|n| (*v, n.clone())));
    }
    items.extend(
        log.checksums()
            .range(after + 1..)
            .map(|(v, n)| (*v, n.clone())),
    );
    items.extend(
        log.compactions()
            .iter()
            .filter(|((_, y), _)| *y > after)
            .map(|((_, y), n)| (*y, n.clone())),
    );
    let total = items.len();
    for (v, name) in items.into_iter().take(20) {
        findings.push(
            Finding::new(
                FindingKind::LogFileUnattested,
                format!(
                    "version {v} is not attested (the attested log ends at version {after}); a reader could adopt this file"
                ),
            )
            .at(v)
            .file(format!("_delta_log/{name}")),
        );
    }
    if total > 20 {
        findings.push(
            Finding::new(
                FindingKind::LogFileUnattested,
                format!("and {} more unattested log files", total - 20),
            )
            .at(after + 1),
        );
    }
}
