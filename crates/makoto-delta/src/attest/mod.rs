//! The attest job: every new commit of a table becomes one signed attestation row.
//!
//! A run reads the last attested version of the table from `system.makoto.attestations`
//! (its `txn` application transaction), then works through the newer commits in batches. For
//! each batch it reads and parses the commits, hashes every data, change-data and
//! deletion-vector file they add (in parallel, streamed), updates the state tree commit by
//! commit, builds and signs one statement per commit, and then writes, in this order: the new
//! state-tree pages, the file rows (one commit to `system.makoto.files` with its own `txn`),
//! and the attestation rows (one commit to `system.makoto.attestations` whose `txn` records the
//! batch's last version). A batch's two commits run beside the next batch's reading, hashing
//! and signing ([`write`]); writes still happen in batch order. A run that dies anywhere
//! leaves no attestation row for an unfinished batch; the next run redoes the batch, reusing
//! file rows already written only if they agree with what it recomputes. Two runs at once conflict on the `txn`; the loser
//! starts over from what the winner wrote.

mod context;
mod observer;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use makoto_core::Sha256Digest;
use makoto_core::attestation::{
    Attestation, AttestorInfo, AvailabilityStatus, Baseline, CommitFacts, CrossTableTransform,
    DataAvailability, LevelEvidence, MakotoLevel, Prepared, PreviousAttestation,
    build_commit_payload,
};
use makoto_core::attested::AttestedCommit;
use makoto_core::delta::{Commit, DeletionVector, TimestampSource, commit_file_name};
use makoto_core::dsse::Envelope;
use makoto_core::keys::{KeyId, Signer};
use makoto_core::reader_view::{
    ReaderFile, ReaderViewDigest, TableFacts, apply_actions, touched_keys,
};
use makoto_core::state::{Digest, StateTree, apply_commit, leaf_key, needed_digests};
use makoto_core::statement::Statement;

pub use observer::{Event, NoObserver, Observer, Phase};

use crate::Error;
use crate::baseline::CheckpointState;
use crate::hashing::{FileHasher, HashFailure, HashRequest, Hashed};
use crate::location::StorageOptions;
use crate::log::{LogListing, SourceTable};
use crate::store::{AttestationRow, AttestationStore, FileRow, attestations_app_id};
use context::TableContext;
use write::{BatchWrite, Writing, Written};

/// Default commits per batch (see [`AttestOptions::batch_size`]), chosen from measurements
/// of the 10,001-commit benchmark (`docs/performance.md`, (b)).
pub const DEFAULT_BATCH_COMMITS: usize = 2000;

/// Default commit-file bytes per batch (see [`AttestOptions::batch_bytes`]).
pub const DEFAULT_BATCH_BYTES: u64 = 4 << 20;

/// The last version of the batch that starts at `from`: at most `max_commits` commits and
/// `max_bytes` of commit files (`size_of` a version's commit file), at least one commit, never
/// past `target`.
fn batch_end(
    from: u64,
    target: u64,
    max_commits: usize,
    max_bytes: u64,
    size_of: impl Fn(u64) -> u64,
) -> u64 {
    let last = target.min(from.saturating_add(max_commits.max(1) as u64 - 1));
    let mut bytes = 0u64;
    for v in from..=last {
        bytes = bytes.saturating_add(size_of(v));
        if bytes > max_bytes && v > from {
            return v - 1;
        }
    }
    last
}

/// Tuning and limits of a run.
#[derive(Debug, Clone)]
pub struct AttestOptions {
    /// Attest up to this version instead of the latest.
    pub to_version: Option<u64>,
    /// Commits attested per write to the system tables, at most.
    pub batch_size: usize,
    /// Commit-file bytes per batch, at most (a batch always takes at least one commit). With
    /// `batch_size`, bounds what a run holds in memory: a batch's parsed commits, hashes, rows
    /// and the state pages it touches.
    pub batch_bytes: u64,
    /// Above this many live files, the state and reader-view trees drop the pages they stored
    /// after each batch instead of keeping the whole table in memory (pages a later batch
    /// touches are read again).
    pub evict_above_files: u64,
    /// Files hashed at once.
    pub parallelism: usize,
    /// Commit files read at once.
    pub read_concurrency: usize,
    /// How many times to start over after losing a race with another run.
    pub max_attempts: u32,
    pub storage: StorageOptions,
    /// Cross-table transforms that wrote given versions (`makoto transform`): recorded as the
    /// inputs of those versions' statements.
    pub transforms: BTreeMap<u64, CrossTableTransform>,
    /// An RFC 3161 time-stamp authority: the last signature of every batch is time-stamped
    /// (one request per batch; the chain carries the proof to the batch's earlier versions).
    pub tsa: Option<crate::tsa::TsaClient>,
    /// The attestor's identity, named as each statement's collector or executor id (a trust
    /// file binds it to the key).
    pub identity: Option<String>,
}

impl Default for AttestOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        AttestOptions {
            to_version: None,
            batch_size: DEFAULT_BATCH_COMMITS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            evict_above_files: 200_000,
            parallelism: (cores * 2).max(2),
            read_concurrency: 16,
            max_attempts: 20,
            storage: StorageOptions::default(),
            transforms: BTreeMap::new(),
            tsa: None,
            identity: None,
        }
    }
}

/// One attested version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestedVersion {
    pub version: u64,
    pub operation: Option<String>,
    pub predicate_type: String,
    pub state_digest: Sha256Digest,
    pub attestation_digest: Sha256Digest,
    pub files_added: u64,
    pub files_removed: u64,
    /// Files this commit references whose bytes were already deleted (VACUUM).
    pub unavailable_files: Vec<String>,
    /// The `data_availability` column.
    pub data_availability: AvailabilityStatus,
    /// The checkpoint version the chain starts from, for a baseline attestation.
    #[serde(rename = "baselineCheckpoint")]
    pub baseline: Option<u64>,
}

impl AttestedVersion {
    /// What the run reports of `attestation`, made of the commit `facts` describe.
    pub fn of_commit(facts: &CommitFacts, attestation_digest: Sha256Digest) -> Self {
        let counts = facts.counts();
        AttestedVersion {
            version: facts.version,
            operation: facts.operation.clone(),
            predicate_type: facts.predicate_type().to_owned(),
            state_digest: facts.state_root,
            attestation_digest,
            files_added: counts.files_added,
            files_removed: counts.files_removed,
            unavailable_files: facts.availability.unavailable_files.clone(),
            data_availability: facts.availability.status(),
            baseline: facts.baseline.as_ref().map(|b| b.checkpoint_version),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct AttestSummary {
    pub table_uri: String,
    pub table_id: Option<String>,
    pub warehouse: String,
    /// Latest version of the table when the run looked.
    pub latest_version: u64,
    /// Last attested version when the run's final attempt began: after a concurrent run
    /// (`concurrent_runs > 0`) it includes what that run, and this one's earlier attempts,
    /// attested.
    pub previously_attested: Option<u64>,
    pub attested: Vec<AttestedVersion>,
    pub level: MakotoLevel,
    pub keyid: Option<KeyId>,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub concurrent_runs: u32,
    pub run_id: String,
    /// The newest row this run committed, for the next run of the same table.
    pub tip: Option<ChainHint>,
}

/// How far a table is attested after a run: the newer of the last version the run attested
/// itself and the tip its final attempt found. A run that lost a race attested some batches
/// and then found a concurrent run had gone further.
fn through(own: Option<u64>, tip: Option<u64>) -> Option<u64> {
    own.max(tip)
}

/// The newest attestation row of a table as a run of this process committed it. A service
/// hands it to the table's next run ([`Attestor::with_hint`]), which then starts from it
/// instead of reading the attestations table. Only a committed run makes one, and a stale one
/// costs a retry, never a wrong row: each append is still checked against the attestations
/// table's `txn` for the table, and a mismatch starts the run over without the hint.
#[derive(Debug, Clone)]
pub struct ChainHint(AttestationRow);

impl ChainHint {
    /// The attested version the hint stands at.
    pub fn version(&self) -> u64 {
        self.0.version
    }
}

/// The run as front ends report it (`makoto attest --json`, the Python report): camelCase
/// keys, digests in hex, plus `attestedThrough`.
impl serde::Serialize for AttestSummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("AttestSummary", 13)?;
        m.serialize_field("table", &self.table_uri)?;
        m.serialize_field("tableId", &self.table_id)?;
        m.serialize_field("warehouse", &self.warehouse)?;
        m.serialize_field("latestVersion", &self.latest_version)?;
        m.serialize_field("previouslyAttested", &self.previously_attested)?;
        m.serialize_field("attestedThrough", &self.attested_through())?;
        m.serialize_field("level", &self.level)?;
        m.serialize_field("keyid", &self.keyid)?;
        m.serialize_field("filesHashed", &self.files_hashed)?;
        m.serialize_field("bytesHashed", &self.bytes_hashed)?;
        m.serialize_field("concurrentRuns", &self.concurrent_runs)?;
        m.serialize_field("runId", &self.run_id)?;
        m.serialize_field("attested", &self.attested)?;
        m.end()
    }
}

impl AttestSummary {
    /// Last version attested (by this run or an earlier one).
    pub fn attested_through(&self) -> Option<u64> {
        through(
            self.attested.last().map(|a| a.version),
            self.previously_attested,
        )
    }
}

/// The attest job for one table.
pub struct Attestor {
    source: SourceTable,
    store: AttestationStore,
    signer: Option<Arc<dyn Signer>>,
    options: AttestOptions,
    observer: Arc<dyn Observer>,
    info: AttestorInfo,
    run_id: String,
    hint: Option<ChainHint>,
}

impl std::fmt::Debug for Attestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor")
            .field("table", &self.source.uri())
            .field("warehouse", &self.store.warehouse().as_uri())
            .field(
                "keyid",
                &self.signer.as_ref().map(|s| s.keyid().to_string()),
            )
            .finish()
    }
}

/// Where the previous attestation left the table: the tip of its chain.
struct ChainTip {
    row: Option<AttestationRow>,
    statement: Option<Statement>,
}

struct RunState {
    ctx: Option<TableContext>,
    tree: StateTree,
    /// The reader view: table facts, and the reader-file tree (paged like the state tree).
    facts: TableFacts,
    reader: StateTree<ReaderFile>,
    /// Live files whose bytes were gone when they were first attested.
    live_unavailable: u64,
    /// The checkpoint the chain starts from, until its version is attested.
    baseline: Option<PendingBaseline>,
    previous: Option<PreviousAttestation>,
    files_hashed: u64,
    bytes_hashed: u64,
    attested: Vec<AttestedVersion>,
    /// The newest row committed by this run.
    committed: Option<AttestationRow>,
}

/// A checkpoint baseline about to be attested.
struct PendingBaseline {
    state: CheckpointState,
    info: Baseline,
}

/// Digests of the files a batch references, and the files whose bytes were already gone.
struct Hashes<'a> {
    hashed: &'a mut HashMap<String, Hashed>,
    unavailable: &'a mut HashSet<String>,
    batch: &'a [Commit],
    later: &'a mut LaterRemoves,
}

/// What a batch planned to hash: the version that first uses each file, and which files are
/// change data.
struct HashPlan {
    first_use: HashMap<String, u64>,
    cdc_paths: HashSet<String>,
    /// The batch's first version.
    from: u64,
}

/// First removal of each path (data or DV file) in the commits after a batch, read once per
/// batch and only when some file turns out to be missing.
type LaterRemoves = Option<HashMap<String, u64>>;

/// `liveFilesUnavailable` of the statement a run continues from.
fn statement_live_unavailable(statement: &Statement) -> u64 {
    AttestedCommit::from_statement(statement).map_or(0, |a| a.live_unavailable())
}

struct BatchOutput {
    /// One per commit, in order; each one's `envelope` is set from `signatures` once they
    /// are all made ([`BatchOutput::seal`]).
    attestation_rows: Vec<AttestationRow>,
    file_rows: Vec<FileRow>,
    attested: Vec<AttestedVersion>,
    signatures: Signatures,
}

impl BatchOutput {
    /// Waits for every signature of the batch and puts each envelope in its row.
    async fn seal(&mut self) -> Result<(), Error> {
        let envelopes = std::mem::take(&mut self.signatures).finish().await?;
        if envelopes.len() != self.attestation_rows.len() {
            return Err(Error::Task {
                reason: format!(
                    "{} envelopes signed for {} attestation rows",
                    envelopes.len(),
                    self.attestation_rows.len()
                ),
            });
        }
        for (row, envelope) in self.attestation_rows.iter_mut().zip(envelopes) {
            row.envelope = envelope;
        }
        Ok(())
    }
}

/// Commits whose statements are built, signed on the blocking pool in groups of
/// [`Signatures::GROUP`] while the next statements are built: a signature is a third of the
/// CPU time of a small commit's attestation (docs/performance.md (b)), and nothing in the
/// chain waits for it (the attestation digest covers the payload only).
#[derive(Default)]
struct Signatures {
    waiting: Vec<(String, u64, Prepared)>,
    signing: Vec<tokio::task::JoinHandle<Result<Vec<String>, Error>>>,
}

impl Signatures {
    const GROUP: usize = 64;

    fn push(&mut self, uri: &str, version: u64, prepared: Prepared) {
        self.waiting.push((uri.to_owned(), version, prepared));
        if self.waiting.len() >= Self::GROUP {
            self.start();
        }
    }

    fn start(&mut self) {
        let group = std::mem::take(&mut self.waiting);
        if group.is_empty() {
            return;
        }
        self.signing.push(tokio::task::spawn_blocking(move || {
            group
                .into_iter()
                .map(|(uri, version, prepared)| {
                    prepared
                        .sign()
                        .map(|envelope| envelope.to_json())
                        .map_err(|e| Error::core(format!("signing {uri} version {version}"), e))
                })
                .collect()
        }));
    }

    /// Every envelope's JSON, in the order the commits were pushed.
    async fn finish(mut self) -> Result<Vec<String>, Error> {
        self.start();
        let mut envelopes = Vec::new();
        let mut first_error = None;
        // Every group is awaited, also after an error, so that none is left signing.
        for task in self.signing {
            match task.await {
                Ok(Ok(group)) => envelopes.extend(group),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::Task {
                        reason: format!("signing: {e}"),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(envelopes),
        }
    }
}

enum Progress {
    Done,
    Restart,
}

/// What earlier attempts of the same run (before a restart) achieved.
#[derive(Default)]
struct Totals {
    files_hashed: u64,
    bytes_hashed: u64,
    attested: Vec<AttestedVersion>,
}

impl Totals {
    fn absorb(&mut self, state: &mut RunState) {
        self.files_hashed += std::mem::take(&mut state.files_hashed);
        self.bytes_hashed += std::mem::take(&mut state.bytes_hashed);
        self.attested.append(&mut state.attested);
    }

    fn fill(&mut self, summary: &mut AttestSummary) {
        summary.attested = std::mem::take(&mut self.attested);
        summary.files_hashed = self.files_hashed;
        summary.bytes_hashed = self.bytes_hashed;
    }
}

pub fn attestor_version() -> String {
    format!(
        "makoto {} (deltalake {})",
        env!("CARGO_PKG_VERSION"),
        deltalake::crate_version()
    )
}

impl Attestor {
    pub fn new(
        source: SourceTable,
        store: AttestationStore,
        signer: Option<Arc<dyn Signer>>,
        options: AttestOptions,
    ) -> Self {
        let identity = options.identity.clone();
        Attestor {
            source,
            store,
            signer,
            options,
            observer: Arc::new(NoObserver),
            info: AttestorInfo {
                name: "makoto".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                deltalake_version: deltalake::crate_version().into(),
                identity,
            },
            run_id: uuid::Uuid::new_v4().to_string(),
            hint: None,
        }
    }

    /// Starts the first attempt from `hint` (the tip an earlier run of this process committed)
    /// rather than from the attestations table. A hint for another table is ignored.
    pub fn with_hint(mut self, hint: Option<ChainHint>) -> Self {
        self.hint = hint.filter(|h| h.0.table_uri == self.source.uri());
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// What this run does to each attestation: signed with a key, time-stamped by a TSA, and
    /// naming the attestor's identity.
    fn evidence(&self) -> LevelEvidence {
        LevelEvidence {
            signed: self.signer.is_some(),
            timestamped: self.options.tsa.is_some(),
            identity_bound: self.info.identity.is_some(),
        }
    }

    fn level(&self) -> MakotoLevel {
        MakotoLevel::earned(self.evidence())
    }

    fn emit(&self, event: Event<'_>) -> Result<(), Error> {
        observer::emit(self.observer.as_ref(), event)
    }

    /// Attests every unattested version up to the latest (or `to_version`).
    pub async fn run(&self) -> Result<AttestSummary, Error> {
        if let (Some(tsa), None) = (&self.options.tsa, &self.signer) {
            return Err(Error::Tsa {
                url: tsa.url().to_owned(),
                reason: format!(
                    "attesting {} without a key: a time-stamp covers a signature, give a signing key",
                    self.source.uri()
                ),
            });
        }
        let mut concurrent = 0u32;
        let mut totals = Totals::default();
        loop {
            let hint = if concurrent == 0 {
                self.hint.as_ref()
            } else {
                None
            };
            match self.attempt(&mut totals, hint).await? {
                (Progress::Done, summary) => {
                    let mut s = summary;
                    s.concurrent_runs = concurrent;
                    return Ok(s);
                }
                (Progress::Restart, _) => {
                    concurrent += 1;
                    self.emit(Event::ConcurrentRun {
                        attempt: concurrent,
                    })?;
                    if concurrent >= self.options.max_attempts {
                        return Err(Error::TooManyConflicts {
                            table: self.source.uri().to_owned(),
                            attempts: concurrent,
                        });
                    }
                }
            }
        }
    }

    async fn read_chain_tip(&self, hint: Option<&ChainHint>) -> Result<ChainTip, Error> {
        let uri = self.source.uri();
        if let Some(ChainHint(row)) = hint {
            let store_name = self.store.attestations_location().as_uri();
            let statement = self.check_head_row(row, &store_name)?;
            return Ok(ChainTip {
                row: Some(row.clone()),
                statement: Some(statement),
            });
        }
        let table = self.store.load_attestations().await?;
        let Some(version) = self
            .store
            .read_txn(&table, &attestations_app_id(uri))
            .await?
        else {
            return Ok(ChainTip {
                row: None,
                statement: None,
            });
        };
        let store_name = self.store.attestations_location().as_uri();
        let row = self
            .store
            .attestation_row(&table, uri, version)
            .await?
            .ok_or_else(|| Error::StoreCorrupt {
                store: store_name.clone(),
                reason: format!(
                    "the txn of {uri} says version {version} is attested but its row is missing"
                ),
            })?;
        let statement = self.check_head_row(&row, &store_name)?;
        Ok(ChainTip {
            row: Some(row),
            statement: Some(statement),
        })
    }

    /// The last row is the base of the chain: its columns must agree with its signed payload,
    /// and its signature must verify when it was made with this run's key.
    fn check_head_row(&self, row: &AttestationRow, store: &str) -> Result<Statement, Error> {
        let corrupt = |reason: String| Error::StoreCorrupt {
            store: store.to_owned(),
            reason: format!(
                "row {}@v{}: {reason}; run `makoto verify`",
                row.table_uri, row.version
            ),
        };
        let env =
            Envelope::from_json(row.envelope.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
        if Sha256Digest::of(env.payload()) != row.attestation_digest {
            return Err(corrupt(
                "attestation_digest does not match the envelope payload".into(),
            ));
        }
        let statement =
            Statement::from_payload(env.payload()).map_err(|e| corrupt(e.to_string()))?;
        let subject_digest = statement.subject().first().and_then(|s| s.sha256());
        if subject_digest != Some(row.state_digest.to_hex().as_str()) {
            return Err(corrupt(
                "state_digest does not match the signed subject".into(),
            ));
        }
        if let Some(signer) = &self.signer
            && row.keyid.as_ref() == Some(signer.keyid())
        {
            let trusted = makoto_core::verify::TrustedKeys::new(vec![signer.public_key().clone()]);
            makoto_core::verify::verify_statement(&env, &trusted)
                .map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(statement)
    }

    async fn attempt(
        &self,
        totals: &mut Totals,
        hint: Option<&ChainHint>,
    ) -> Result<(Progress, AttestSummary), Error> {
        let uri = self.source.uri().to_owned();
        let tip = self.read_chain_tip(hint).await?;
        let previously = tip.row.as_ref().map(|r| r.version);
        let start = previously.map_or(0, |v| v + 1);

        let listing = self.source.list_commits(start).await?;
        let latest = match (listing.latest(), &tip.row) {
            (Some(l), _) => l,
            (None, None) => {
                return Err(Error::NotADeltaTable { table: uri });
            }
            (None, Some(row)) => {
                if !self.source.commit_exists(row.version).await? {
                    return Err(Error::LogBehindAttestations {
                        table: uri,
                        attested: row.version,
                        latest: self.latest_anywhere().await?,
                    });
                }
                row.version
            }
        };
        let mut start = start;
        let mut baseline = None;
        if start == 0
            && let Some(first) = listing.first().filter(|f| *f > 0)
        {
            let pending = self.baseline(&listing, first).await?;
            start = pending.info.checkpoint_version;
            baseline = Some(pending);
        }
        let target = match self.options.to_version {
            Some(v) if v > latest => {
                return Err(Error::VersionNotFound {
                    table: uri,
                    requested: v,
                    latest,
                });
            }
            Some(v) => v,
            None => latest,
        };

        let mut summary = AttestSummary {
            table_uri: uri.clone(),
            table_id: tip.row.as_ref().map(|r| r.table_id.clone()),
            warehouse: self.store.warehouse().as_uri(),
            latest_version: latest,
            previously_attested: previously,
            attested: Vec::new(),
            level: self.level(),
            keyid: self.signer.as_ref().map(|s| s.keyid().clone()),
            files_hashed: 0,
            bytes_hashed: 0,
            concurrent_runs: 0,
            run_id: self.run_id.clone(),
            tip: tip.row.clone().map(ChainHint),
        };

        if baseline.is_some() && target < start {
            return Err(Error::LogCleaned {
                table: uri,
                first: listing.first().unwrap_or(start),
            });
        }
        if previously.is_some_and(|p| p >= target) {
            self.emit(Event::UpToDate {
                table: &uri,
                through: previously,
            })?;
            totals.fill(&mut summary);
            return Ok((Progress::Done, summary));
        }
        if let Some(row) = &tip.row {
            self.check_log_matches_head(row).await?;
        }
        self.emit(Event::Planned {
            table: &uri,
            from: start,
            to: target,
        })?;

        let mut state = match (&tip.row, &tip.statement) {
            (Some(row), Some(statement)) => RunState {
                ctx: Some(TableContext::from_attested(
                    &AttestedCommit::from_statement(statement).map_err(|e| {
                        Error::StoreCorrupt {
                            store: self.store.attestations_location().as_uri(),
                            reason: format!("row {}@v{}: {e}", row.table_uri, row.version),
                        }
                    })?,
                )),
                tree: StateTree::resume(row.state_digest, row.live_files, row.live_bytes),
                facts: TableFacts::default(),
                reader: StateTree::new(),
                live_unavailable: statement_live_unavailable(statement),
                baseline: None,
                previous: Some(PreviousAttestation {
                    version: row.version,
                    state_root: row.state_digest,
                    digest: row.attestation_digest,
                    level: row.level,
                }),
                files_hashed: 0,
                bytes_hashed: 0,
                attested: Vec::new(),
                committed: None,
            },
            _ => RunState {
                ctx: None,
                tree: StateTree::new(),
                facts: TableFacts::default(),
                reader: StateTree::new(),
                live_unavailable: 0,
                baseline: None,
                previous: None,
                files_hashed: 0,
                bytes_hashed: 0,
                attested: Vec::new(),
                committed: None,
            },
        };

        if let (Some(row), Some(statement)) = (&tip.row, &tip.statement) {
            let (facts, reader) = self.resume_reader(row, statement).await?;
            state.facts = facts;
            state.reader = reader;
        }
        state.baseline = baseline;
        if let Progress::Restart = self.batches(&mut state, &listing, start, target).await? {
            totals.absorb(&mut state);
            return Ok((Progress::Restart, summary));
        }
        totals.absorb(&mut state);
        totals.fill(&mut summary);
        summary.table_id = state.ctx.map(|c| c.table_id).or(summary.table_id);
        if let Some(row) = state.committed {
            summary.tip = Some(ChainHint(row));
        }
        Ok((Progress::Done, summary))
    }

    /// Attests versions `from..=target` batch by batch, each batch's write beside the next
    /// batch (`write`).
    async fn batches(
        &self,
        state: &mut RunState,
        listing: &LogListing,
        from: u64,
        target: u64,
    ) -> Result<Progress, Error> {
        let mut from = from;
        let mut writing: Option<Writing> = None;
        while from <= target {
            let to = batch_end(
                from,
                target,
                self.options.batch_size,
                self.options.batch_bytes,
                |v| listing.get(v).map_or(0, |m| m.size),
            );
            let attested_before = state.previous.as_ref().map(|p| p.version);
            let (output, written) = {
                let batch = self.attest_batch(state, listing, from, to);
                match writing.take() {
                    None => (batch.await, None),
                    Some(mut w) => {
                        tokio::pin!(batch);
                        tokio::select! {
                            output = &mut batch => (output, Some(w.finish().await)),
                            // A failed write stops the batch beside it at once.
                            done = w.wait() => match done {
                                Ok(Written::Committed { .. }) => (batch.await, Some(done)),
                                Ok(Written::Conflict) => return Ok(Progress::Restart),
                                Err(e) => return Err(e),
                            },
                        }
                    }
                }
            };
            if let Some(done) = written
                && let Progress::Restart = Self::record(state, done?)
            {
                return Ok(Progress::Restart);
            }
            let output = output?;
            self.emit(Event::Reached {
                phase: Phase::Signed,
                from,
                through: to,
            })?;
            writing = Some(
                self.start_write(state, output, attested_before, from, to)
                    .await?,
            );
            if state.tree.files() > self.options.evict_above_files {
                state.tree.evict_persisted();
                state.reader.evict_persisted();
            }
            from = to + 1;
        }
        if let Some(w) = writing.take()
            && let Progress::Restart = Self::record(state, w.finish().await?)
        {
            return Ok(Progress::Restart);
        }
        Ok(Progress::Done)
    }

    /// The checkpoint to start the chain from when commits before `first` are gone: the
    /// oldest checkpoint at or after `first` whose commit file is still there.
    async fn baseline(&self, listing: &LogListing, first: u64) -> Result<PendingBaseline, Error> {
        let uri = self.source.uri().to_owned();
        let log = self.source.list_log(first).await?;
        let Some((version, names)) = log
            .checkpoints()
            .iter()
            .find(|(v, _)| listing.get(**v).is_some())
        else {
            return Err(Error::LogCleaned { table: uri, first });
        };
        let state =
            crate::baseline::checkpoint_state(&self.source, &self.options.storage, *version)
                .await?;
        let checkpoint_files =
            crate::baseline::checkpoint_files(&self.source, *version, names).await?;
        tracing::warn!(
            table = %uri,
            first_commit = first,
            checkpoint = version,
            "commits before the first one in the log were cleaned up; starting the chain from a checkpoint baseline"
        );
        Ok(PendingBaseline {
            state,
            info: Baseline {
                checkpoint_version: *version,
                checkpoint_files,
                first_available_commit: first,
            },
        })
    }

    /// The reader view the chain continues from: the stored facts and the paged reader tree
    /// of the last statement; rebuilt from the log when that statement predates reader views
    /// (or its facts are gone), and then checked against what was attested.
    async fn resume_reader(
        &self,
        row: &AttestationRow,
        statement: &Statement,
    ) -> Result<(TableFacts, StateTree<ReaderFile>), Error> {
        let attested = AttestedCommit::from_statement(statement).ok();
        let signed = attested.as_ref().and_then(|a| a.reader_view().copied());
        if let Some(view) = signed
            && let Some(facts) = self.store.pages().get_facts(&view.facts).await?
        {
            return Ok((
                facts,
                StateTree::resume(view.files_root, view.files, row.live_bytes),
            ));
        }
        let uri = self.source.uri();
        let rebuilt = crate::view::view_at(&self.source, row.version).await?;
        let digest = rebuilt.digest();
        let mismatch = |what: String| Error::InvalidLog {
            table: uri.to_owned(),
            version: row.version,
            reason: format!(
                "the log no longer gives the attested version: {what}; run `makoto verify`"
            ),
        };
        match signed {
            Some(view) if view != digest => {
                return Err(mismatch(format!(
                    "reader view {} instead of {}",
                    digest.digest(),
                    view.digest()
                )));
            }
            _ if rebuilt.files.files() != row.live_files
                || rebuilt.files.bytes() != row.live_bytes =>
            {
                return Err(mismatch(format!(
                    "{} live files of {} bytes instead of {} of {}",
                    rebuilt.files.files(),
                    rebuilt.files.bytes(),
                    row.live_files,
                    row.live_bytes
                )));
            }
            _ => {}
        }
        tracing::info!(table = %uri, version = row.version, "reader view rebuilt from the log");
        Ok((rebuilt.facts, rebuilt.files))
    }

    async fn latest_anywhere(&self) -> Result<u64, Error> {
        Ok(self.source.list_commits(0).await?.latest().unwrap_or(0))
    }

    /// The commit the chain continues from must still be the one that was attested.
    async fn check_log_matches_head(&self, row: &AttestationRow) -> Result<(), Error> {
        if !self.source.commit_exists(row.version).await? {
            tracing::debug!(
                version = row.version,
                "attested commit file was cleaned up; cannot re-check it"
            );
            return Ok(());
        }
        let bytes = self.source.read_commit_bytes(row.version).await?;
        if Sha256Digest::of(&bytes) != row.commit_file_digest {
            return Err(Error::InvalidLog {
                table: self.source.uri().to_owned(),
                version: row.version,
                reason: format!(
                    "commit file {} is not the one attested (SHA-256 {} instead of {}); the log was rewritten or the table replaced — run `makoto verify`",
                    commit_file_name(row.version),
                    Sha256Digest::of(&bytes),
                    row.commit_file_digest
                ),
            });
        }
        Ok(())
    }

    async fn attest_batch(
        &self,
        state: &mut RunState,
        listing: &LogListing,
        from: u64,
        to: u64,
    ) -> Result<BatchOutput, Error> {
        let uri = self.source.uri().to_owned();
        let commits = self
            .source
            .read_commits(from..=to, self.options.read_concurrency)
            .await?;

        // Effective protocol/metadata per commit, and every file to hash.
        let mut contexts = Vec::with_capacity(commits.len());
        let mut requests: Vec<HashRequest> = Vec::new();
        let mut requested: HashSet<String> = HashSet::new();
        let mut first_use: HashMap<String, u64> = HashMap::new();
        let mut cdc_paths: HashSet<String> = HashSet::new();
        // How many requests the batch has made once each commit is planned.
        let mut planned_through: Vec<usize> = Vec::with_capacity(commits.len());
        for real in &commits {
            let commit = match &state.baseline {
                Some(b) if b.state.version == real.version() => &b.state.commit,
                _ => real,
            };
            let ctx = match state.ctx.take() {
                None => TableContext::from_first_commit(&uri, commit)?,
                Some(c) => c,
            };
            let mut ctx = ctx;
            ctx.apply(&uri, commit)?;
            contexts.push(ctx.clone());
            state.ctx = Some(ctx);

            let removed_paths: HashSet<&str> =
                commit.removes().map(|r| r.path().as_str()).collect();
            let mut want = |path: &str, size: Option<u64>| -> Result<(), Error> {
                if crate::location::is_absolute(path)
                    && crate::location::under_root(self.source.location().url(), path).is_none()
                {
                    return Err(Error::InvalidLog {
                        table: uri.clone(),
                        version: commit.version(),
                        reason: format!(
                            "file {path} has an absolute path outside the table root, which makoto does not attest"
                        ),
                    });
                }
                first_use.entry(path.to_owned()).or_insert(commit.version());
                if requested.insert(path.to_owned()) {
                    requests.push(HashRequest {
                        path: path.to_owned(),
                        expected_size: size,
                    });
                }
                Ok(())
            };
            for add in commit.adds() {
                if !removed_paths.contains(add.path().as_str()) {
                    want(add.path().as_str(), Some(add.size()))?;
                }
                if let Some(f) = add.deletion_vector().and_then(DeletionVector::file) {
                    want(f, None)?;
                }
            }
            for cdc in commit.cdc_files() {
                want(cdc.path().as_str(), Some(cdc.size()))?;
                cdc_paths.insert(cdc.path().as_str().to_owned());
            }
            planned_through.push(requests.len());
        }

        let total_bytes: u64 = requests.iter().filter_map(|r| r.expected_size).sum();
        self.emit(Event::HashingStarted {
            files: requests.len(),
            bytes: total_bytes,
        })?;
        let hasher = FileHasher::new(Arc::clone(self.source.store()), self.options.parallelism)
            .with_table_root(self.source.location().url().clone());
        let hashed_bytes = Arc::new(AtomicU64::new(0));
        let progress = {
            let (counter, observer) = (Arc::clone(&hashed_bytes), Arc::clone(&self.observer));
            Arc::new(move |n: u64| {
                counter.fetch_add(n, Ordering::Relaxed);
                let _ = observer.on_event(&Event::Hashed { bytes: n });
            })
        };
        let mut feed = hasher.hash_in_order(requests, progress);
        let mut hashes: HashMap<String, Hashed> = HashMap::with_capacity(requested.len());
        let mut unavailable: HashSet<String> = HashSet::new();
        let mut later: LaterRemoves = None;
        let plan = HashPlan {
            first_use,
            cdc_paths,
            from,
        };

        let mut out = BatchOutput {
            attestation_rows: Vec::with_capacity(commits.len()),
            file_rows: Vec::new(),
            attested: Vec::with_capacity(commits.len()),
            signatures: Signatures::default(),
        };
        let attested_at_us = Utc::now().timestamp_micros();
        let mut received = 0;
        for ((commit, ctx), planned) in commits.iter().zip(contexts).zip(planned_through) {
            let mut hashes = Hashes {
                hashed: &mut hashes,
                unavailable: &mut unavailable,
                batch: &commits,
                later: &mut later,
            };
            // The files this commit needs were requested with it or before it.
            while received < planned {
                let Some((path, result)) = feed.next().await else {
                    return Err(Error::Task {
                        reason: format!("hashing the files of {uri} ended early"),
                    });
                };
                received += 1;
                self.take_hashed(&mut hashes, &plan, listing, path, result)
                    .await?;
            }
            let baseline = match &state.baseline {
                Some(b) if b.state.version == commit.version() => state.baseline.take(),
                _ => None,
            };
            self.attest_commit(
                state,
                commit,
                baseline,
                &ctx,
                listing,
                &mut hashes,
                attested_at_us,
                &mut out,
            )
            .await?;
        }
        state.files_hashed += hashes.len() as u64;
        state.bytes_hashed += hashed_bytes.load(Ordering::Relaxed);
        out.seal().await?;
        if let Some(tsa) = &self.options.tsa {
            Self::timestamp_batch(tsa, &mut out).await?;
        }
        Ok(out)
    }

    /// Time-stamps the batch's last signature: its statement chains to every earlier one, so
    /// the token proves the whole batch existed by its `genTime` (docs/verification.md). Every
    /// row of the batch records that `genTime` and the version carrying the token.
    async fn timestamp_batch(
        tsa: &crate::tsa::TsaClient,
        out: &mut BatchOutput,
    ) -> Result<(), Error> {
        let Some(last) = out.attestation_rows.last_mut() else {
            return Ok(());
        };
        let context = format!("{} version {}", last.table_uri, last.version);
        let mut envelope = makoto_core::dsse::Envelope::from_json(last.envelope.as_bytes())
            .map_err(|e| Error::core(context.clone(), e))?;
        let token = tsa.stamp(&mut envelope, &context).await?;
        last.envelope = envelope.to_json();
        let carrier = last.version;
        let gen_time_us = token.gen_time().timestamp_micros();
        for row in &mut out.attestation_rows {
            row.timestamp_gen_time_us = Some(gen_time_us);
            row.timestamp_version = Some(carrier);
        }
        Ok(())
    }

    /// Takes one file's hashing result: its digest, or the fact that its bytes are gone (a
    /// vacuumed file), or the error that stops the run.
    async fn take_hashed(
        &self,
        hashes: &mut Hashes<'_>,
        plan: &HashPlan,
        listing: &LogListing,
        path: String,
        result: Result<Hashed, HashFailure>,
    ) -> Result<(), Error> {
        let first_use = plan.first_use.get(&path).copied().unwrap_or(plan.from);
        match result {
            Ok(h) => {
                hashes.hashed.insert(path, h);
            }
            // Change-data files are never live: VACUUM deletes them after the retention
            // period without any commit removing them.
            Err(HashFailure::Missing)
                if plan.cdc_paths.contains(&path)
                    || self
                        .removed_after(hashes.batch, listing, &path, first_use, hashes.later)
                        .await
                        .is_some() =>
            {
                tracing::warn!(file = %path, "data file was vacuumed before it was attested; recording it as unavailable");
                hashes.unavailable.insert(path);
            }
            Err(failure) => {
                return Err(self
                    .hash_error(hashes.batch, listing, path, first_use, failure)
                    .await);
            }
        }
        Ok(())
    }

    async fn hash_error(
        &self,
        commits: &[Commit],
        listing: &LogListing,
        path: String,
        version: u64,
        failure: HashFailure,
    ) -> Error {
        let table = self.source.uri().to_owned();
        match failure {
            HashFailure::Missing => {
                let removed_at = self
                    .removed_after(commits, listing, &path, version, &mut None)
                    .await;
                Error::FileMissing {
                    table,
                    version,
                    path,
                    removed_at,
                }
            }
            HashFailure::Storage(e) => Error::storage(format!("{table}/{path}"), e),
            HashFailure::Io(e) => Error::InvalidLog {
                table,
                version,
                reason: format!("cannot read file {path}: {e}"),
            },
            HashFailure::Task(reason) => Error::Task { reason },
        }
    }

    /// The first version after `version` whose commit removes `path` (or the deletion vector
    /// file `path`), looking in the batch and then in later commits: a file missing from
    /// storage that a later commit removed was vacuumed, not lost.
    async fn removed_after(
        &self,
        commits: &[Commit],
        listing: &LogListing,
        path: &str,
        version: u64,
        later: &mut LaterRemoves,
    ) -> Option<u64> {
        if let Some(c) = commits.iter().filter(|c| c.version() > version).find(|c| {
            c.removes().any(|r| {
                r.path().as_str() == path
                    || r.deletion_vector().and_then(DeletionVector::file) == Some(path)
            })
        }) {
            return Some(c.version());
        }
        if later.is_none() {
            let after = commits.last().map_or(version, Commit::version).max(version);
            let mut first: HashMap<String, u64> = HashMap::new();
            for v in after + 1..=listing.latest().unwrap_or(after) {
                let Ok(bytes) = self.source.read_commit_bytes(v).await else {
                    break;
                };
                let Ok(c) = self.source.parse_commit(v, &bytes) else {
                    break;
                };
                for r in c.removes() {
                    first.entry(r.path().as_str().to_owned()).or_insert(v);
                    if let Some(f) = r.deletion_vector().and_then(DeletionVector::file) {
                        first.entry(f.to_owned()).or_insert(v);
                    }
                }
            }
            *later = Some(first);
        }
        later.as_ref()?.get(path).copied()
    }

    #[allow(clippy::too_many_arguments)]
    async fn attest_commit(
        &self,
        state: &mut RunState,
        real: &Commit,
        baseline: Option<PendingBaseline>,
        ctx: &TableContext,
        listing: &LogListing,
        hashes: &mut Hashes<'_>,
        attested_at_us: i64,
        out: &mut BatchOutput,
    ) -> Result<(), Error> {
        let uri = self.source.uri().to_owned();
        let version = real.version();
        // A baseline's changes and state come from its checkpoint; everything about the
        // commit itself from the commit file.
        let commit = baseline.as_ref().map_or(real, |b| &b.state.commit);

        // Load the state pages this commit touches, hash what it needs, then apply it.
        let keys: Vec<Sha256Digest> = commit
            .removes()
            .map(|r| (r.path(), r.deletion_vector()))
            .chain(commit.adds().map(|a| (a.path(), a.deletion_vector())))
            .map(|(p, dv)| leaf_key(p.as_str(), dv.map(|d| d.unique_id()).as_deref()))
            .collect();
        self.store
            .pages()
            .load_paths(&mut state.tree, &keys)
            .await?;
        let at = |e| Error::core(format!("{uri} version {version}"), e);
        for (path, size) in needed_digests(&state.tree, commit).map_err(at)? {
            self.hash_now(hashes, &path, size, version, listing).await?;
        }
        let digest = |path: &str| match hashes.hashed.get(path) {
            Some(h) => Some(Digest::Hashed(*h)),
            None => hashes
                .unavailable
                .contains(path)
                .then_some(Digest::Unavailable),
        };
        let applied = match apply_commit(&mut state.tree, state.live_unavailable, commit, &digest) {
            Ok(a) => a,
            Err(makoto_core::Error::FileSizeMismatch {
                path,
                expected,
                actual,
                ..
            }) => {
                return Err(Error::FileSizeMismatch {
                    table: uri,
                    version,
                    path,
                    expected,
                    actual,
                });
            }
            Err(e) => return Err(at(e)),
        };
        state.live_unavailable = applied.live_unavailable;
        let (changes, unavailable_files) = (applied.changes, applied.unavailable_files);

        let reader_keys = touched_keys(commit.actions());
        self.store
            .pages()
            .load_paths(&mut state.reader, &reader_keys)
            .await?;
        apply_actions(&mut state.facts, &mut state.reader, commit.actions())
            .map_err(|e| Error::core(format!("{uri} version {version}"), e))?;
        let reader_view = ReaderViewDigest {
            files_root: state.reader.root(),
            files: state.reader.files(),
            facts: state.facts.digests(),
        };
        let (timestamp_ms, timestamp_source) = match real.timestamp() {
            Some(t) => t,
            None => match listing.get(version) {
                Some(meta) => (
                    meta.last_modified.timestamp_millis(),
                    TimestampSource::FileModificationTime,
                ),
                None => (0, TimestampSource::FileModificationTime),
            },
        };
        let info = real.commit_info();
        let facts = CommitFacts {
            table_uri: uri.clone(),
            table_id: ctx.table_id.clone(),
            table_name: ctx.table_name.clone(),
            version,
            timestamp_ms,
            timestamp_source,
            commit_path: format!("_delta_log/{}", commit_file_name(version)),
            commit_size: real.file_size(),
            commit_file_digest: real.file_digest(),
            commit_actions_digest: real.actions_digest(),
            action_counts: real.action_counts(),
            operation: info.and_then(|i| i.operation()).map(str::to_owned),
            operation_parameters: info.and_then(|i| i.operation_parameters()).cloned(),
            engine: info.and_then(|i| i.engine()).map(str::to_owned),
            user_id: info.and_then(|i| i.user_id()).map(str::to_owned),
            user_name: info.and_then(|i| i.user_name()).map(str::to_owned),
            job: info.and_then(|i| i.job()).cloned(),
            notebook: info.and_then(|i| i.notebook()).cloned(),
            cluster_id: info.and_then(|i| i.cluster_id()).map(str::to_owned),
            txn_id: info.and_then(|i| i.txn_id()).map(str::to_owned),
            protocol: ctx.protocol.clone(),
            schema_digest: ctx.schema_digest,
            changes,
            state_root: state.tree.root(),
            live_files: state.tree.files(),
            live_bytes: state.tree.bytes(),
            previous: state.previous.clone(),
            transform: self.options.transforms.get(&version).cloned(),
            attested_at_ms: attested_at_us.div_euclid(1000),
            availability: DataAvailability {
                unavailable_files,
                live_unavailable: state.live_unavailable,
            },
            baseline: baseline.map(|b| b.info),
            reader_view,
        };
        let payload = build_commit_payload(&facts, &self.info)
            .map_err(|e| Error::core(format!("{uri} version {version}"), e))?;
        let prepared = Attestation::prepare_payload(payload, self.signer.clone(), self.evidence());

        out.file_rows
            .extend(FileRow::of_commit(&facts, &self.run_id));
        out.attestation_rows.push(AttestationRow::of_commit(
            &facts,
            &prepared,
            attested_at_us,
            &self.run_id,
        ));
        out.attested
            .push(AttestedVersion::of_commit(&facts, prepared.digest()));
        state.previous = Some(PreviousAttestation {
            version,
            state_root: facts.state_root,
            digest: prepared.digest(),
            level: prepared.level(),
        });
        out.signatures.push(&uri, version, prepared);
        Ok(())
    }

    /// The digest of a file hashed for this batch, or hashed now if the plan did not include
    /// it (an add that was expected to carry its digest from a removed entry but could not).
    async fn hash_now(
        &self,
        hashes: &mut Hashes<'_>,
        path: &str,
        size: Option<u64>,
        version: u64,
        listing: &LogListing,
    ) -> Result<Option<Hashed>, Error> {
        if let Some(h) = hashes.hashed.get(path) {
            return Ok(Some(*h));
        }
        if hashes.unavailable.contains(path) {
            return Ok(None);
        }
        let hasher = FileHasher::new(Arc::clone(self.source.store()), 1)
            .with_table_root(self.source.location().url().clone());
        let mut r = hasher
            .hash_all(
                vec![HashRequest {
                    path: path.to_owned(),
                    expected_size: size,
                }],
                Arc::new(|_| {}),
            )
            .await;
        match r.remove(path) {
            Some(Ok(h)) => {
                hashes.hashed.insert(path.to_owned(), h);
                Ok(Some(h))
            }
            Some(Err(HashFailure::Missing))
                if self
                    .removed_after(hashes.batch, listing, path, version, hashes.later)
                    .await
                    .is_some() =>
            {
                hashes.unavailable.insert(path.to_owned());
                Ok(None)
            }
            Some(Err(f)) => Err(self
                .hash_error(hashes.batch, listing, path.to_owned(), version, f)
                .await),
            None => Err(Error::Task {
                reason: format!("no hash result for {path}"),
            }),
        }
    }

    /// Stores the pages a signed batch added to both trees (content-addressed: harmless if
    /// never referenced), then starts committing its rows (`write::BatchWrite`). Pages are
    /// written here rather than beside the next batch: they are most of a batch's memory,
    /// and cheap to write.
    async fn start_write(
        &self,
        state: &mut RunState,
        output: BatchOutput,
        attested_before: Option<u64>,
        from: u64,
        to: u64,
    ) -> Result<Writing, Error> {
        let ids = self
            .store
            .pages()
            .put_each(state.tree.unstored_pages())
            .await?;
        state.tree.mark_persisted(ids);
        let ids = self
            .store
            .pages()
            .put_each(state.reader.unstored_pages())
            .await?;
        state.reader.mark_persisted(ids);
        self.store.pages().put_facts(&state.facts).await?;
        self.emit(Event::Reached {
            phase: Phase::PagesWritten,
            from,
            through: to,
        })?;
        Ok(Writing::start(BatchWrite {
            store: self.store.clone(),
            observer: Arc::clone(&self.observer),
            uri: self.source.uri().to_owned(),
            run_id: self.run_id.clone(),
            output,
            attested_before,
            from,
            to,
        }))
    }

    /// Records what a batch's write committed.
    fn record(state: &mut RunState, written: Written) -> Progress {
        match written {
            Written::Committed { row, attested } => {
                state.committed = row.map(|r| *r);
                state.attested.extend(attested);
                Progress::Done
            }
            Written::Conflict => Progress::Restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_end, through};
    use rstest::rstest;

    #[rstest]
    #[case::nothing(None, None, None)]
    #[case::first_run(Some(9), None, Some(9))]
    #[case::up_to_date(None, Some(9), Some(9))]
    #[case::incremental(Some(12), Some(9), Some(12))]
    #[case::lost_a_race_after_attesting(Some(3), Some(9), Some(9))]
    fn attested_through_is_the_newer_of_own_and_tip(
        #[case] own: Option<u64>,
        #[case] tip: Option<u64>,
        #[case] expected: Option<u64>,
    ) {
        assert_eq!(through(own, tip), expected);
    }

    #[rstest]
    #[case::by_count(0, 10_000, 500, u64::MAX, 499)]
    #[case::by_target(0, 100, 500, u64::MAX, 100)]
    #[case::by_bytes(0, 10_000, 500, 2_500, 1)]
    #[case::bytes_exactly_full(0, 10_000, 500, 3_000, 2)]
    #[case::one_commit_over_budget(5, 10_000, 500, 10, 5)]
    #[case::single(7, 7, 500, 10, 7)]
    #[case::zero_commits_means_one(3, 100, 0, u64::MAX, 3)]
    fn batches_end_at_the_first_limit(
        #[case] from: u64,
        #[case] target: u64,
        #[case] max_commits: usize,
        #[case] max_bytes: u64,
        #[case] end: u64,
    ) {
        assert_eq!(
            batch_end(from, target, max_commits, max_bytes, |_| 1_000),
            end
        );
    }
}
