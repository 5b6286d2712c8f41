//! Makoto attestations of Delta commits: the predicate built from a commit's facts, the signed
//! envelope, the attestation digest and the chain.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::commit_predicate::{
    AttestorRef, AvailabilityBlock, BaselineBlock, ChangeEntry, ChangesBlock, CheckpointFileRef,
    CommitRef, DeltaBlock, DvEntry, InputDelta, InputEntry, InputVerification, Origin,
    OriginMetadata, OriginPredicate, Party, PreviousRef, ProtocolRef, SchemaRef, StateRef,
    TableRef, TransformMetadata, TransformPredicate, TransformSpec,
};
use crate::delta::{ActionCounts, DeletionVector, Protocol, TimestampSource};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::{KeyId, Signer};
use crate::reader_view::ReaderViewDigest;
use crate::state::STATE_ALGORITHM;
use crate::statement::{Statement, Subject};
use crate::{Error, Sha256Digest, canonical};

pub const ORIGIN_V1: &str = "https://makoto.dev/origin/v1";
pub const TRANSFORM_V1: &str = "https://makoto.dev/transform/v1";
pub const STREAM_WINDOW_V1: &str = "https://makoto.dev/stream-window/v1";

/// Prefix of `transform.type` for Delta operations (`…/write`, `…/merge`, …).
pub const DELTA_TRANSFORM_TYPE_PREFIX: &str = "https://makoto.dev/transforms/delta/";

/// At most this many file changes are listed inside a statement; beyond it the statement keeps
/// only their digest and counts and the list lives in `system.makoto.files`.
pub const INLINE_CHANGES_LIMIT: usize = 1000;

/// Version of the `predicate.delta` block layout: 2 adds `readerView` (format 1 statements,
/// made before reader views were attested, still verify).
pub const DELTA_BLOCK_FORMAT: u32 = 2;

named_enum! {
    /// Makoto assurance level.
    pub enum MakotoLevel ("Makoto level") {
        /// Provenance recorded (unsigned, or signed without a time-stamp or a bound identity).
        L1 = "L1",
        /// Signed, RFC 3161 time-stamped, and the producer identity bound to the key.
        L2 = "L2",
        /// Signed by an isolated, hardened attestor with keys in hardware (not offered yet).
        L3 = "L3",
    }
}

/// What was done to an attestation, for the level it earns ([`MakotoLevel::earned`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelEvidence {
    /// Signed (by the attestor), or verified under a trusted key (by a verifier).
    pub signed: bool,
    /// An RFC 3161 token covers the signature (requested, or verified).
    pub timestamped: bool,
    /// The statement names the producer identity the key is bound to (stated, or verified).
    pub identity_bound: bool,
}

impl MakotoLevel {
    /// The level `evidence` earns: L2 needs a signature, a time-stamp and a bound identity
    /// (Makoto's L2 requirements); anything less is L1. L3 (an isolated attestor with keys in
    /// hardware) is never earned yet. See docs/levels.md.
    pub fn earned(evidence: LevelEvidence) -> Self {
        if evidence.signed && evidence.timestamped && evidence.identity_bound {
            MakotoLevel::L2
        } else {
            MakotoLevel::L1
        }
    }
}

/// `urn:makoto:attestation:sha256:<hex>`: a location-independent reference to an attestation
/// by the digest of its statement payload.
pub fn attestation_ref(digest: &Sha256Digest) -> String {
    format!("urn:makoto:attestation:sha256:{digest}")
}

/// `<table>@v<N>`.
pub fn subject_name(table_uri: &str, version: u64) -> String {
    format!("{table_uri}@v{version}")
}

named_enum! {
    /// What happened to a file in a commit.
    pub enum ChangeKind ("file action") {
        Add = "add",
        Remove = "remove",
        Cdc = "cdc",
    }
}

/// One file a commit adds, removes or writes as change data, with its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    kind: ChangeKind,
    path: String,
    size: Option<u64>,
    sha256: Option<Sha256Digest>,
    data_change: bool,
    partition_values: BTreeMap<String, Option<String>>,
    num_records: Option<u64>,
    /// Boxed: few changes carry one, and a verifier holds every change of a table's history.
    deletion_vector: Option<Box<(DeletionVector, Option<Sha256Digest>)>>,
}

impl FileChange {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: ChangeKind,
        path: String,
        size: Option<u64>,
        sha256: Option<Sha256Digest>,
        data_change: bool,
        partition_values: BTreeMap<String, Option<String>>,
        num_records: Option<u64>,
        deletion_vector: Option<(DeletionVector, Option<Sha256Digest>)>,
    ) -> Self {
        FileChange {
            kind,
            path,
            size,
            sha256,
            data_change,
            partition_values,
            num_records,
            deletion_vector: deletion_vector.map(Box::new),
        }
    }
    pub fn kind(&self) -> ChangeKind {
        self.kind
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn size(&self) -> Option<u64> {
        self.size
    }
    pub fn sha256(&self) -> Option<Sha256Digest> {
        self.sha256
    }
    pub fn data_change(&self) -> bool {
        self.data_change
    }
    pub fn partition_values(&self) -> &BTreeMap<String, Option<String>> {
        &self.partition_values
    }
    pub fn num_records(&self) -> Option<u64> {
        self.num_records
    }
    /// The deletion vector and the SHA-256 of its file (`None` for inline vectors).
    pub fn deletion_vector(&self) -> Option<&(DeletionVector, Option<Sha256Digest>)> {
        self.deletion_vector.as_deref()
    }

    /// The change as the statement lists it (`delta.changes.entries[]`).
    pub fn to_entry(&self) -> ChangeEntry {
        ChangeEntry {
            action: self.kind,
            path: self.path.clone(),
            size: self.size,
            sha256: self.sha256,
            data_change: self.data_change,
            partition_values: self.partition_values.clone(),
            num_records: self.num_records,
            deletion_vector: self.deletion_vector.as_deref().map(|(dv, sha)| DvEntry {
                storage_type: dv.storage().code().to_owned(),
                path_or_inline_dv: dv.path_or_inline().to_owned(),
                offset: dv.offset(),
                size_in_bytes: dv.size_in_bytes(),
                cardinality: dv.cardinality(),
                unique_id: dv.unique_id(),
                file: dv.file().map(str::to_owned),
                sha256: *sha,
            }),
        }
    }
}

/// SHA-256 of the canonical JSON array of a commit's file changes, in log order.
pub fn changes_digest(changes: &[FileChange]) -> Sha256Digest {
    // The canonical array written into the hash entry by entry: the same bytes as
    // `canonical::to_vec` of the whole array, without holding it (a commit may change millions
    // of files).
    let mut hasher = crate::StreamHasher::new();
    let mut entry = Vec::new();
    hasher.update(b"[");
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        entry.clear();
        // `json!` of a value whose serialization cannot fail (string keys, no custom errors).
        canonical::write_value(&json!(change.to_entry()), &mut entry);
        hasher.update(&entry);
    }
    hasher.update(b"]");
    hasher.finish().0
}

/// The attestation this one chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousAttestation {
    pub version: u64,
    pub state_root: Sha256Digest,
    pub digest: Sha256Digest,
    pub level: MakotoLevel,
}

named_enum! {
    /// How an input of a cross-table transform was checked before it was read.
    pub enum InputCheck ("input check") {
        /// Attestation chain verified and every live data file rehashed.
        VerifiedDeep = "verified-deep",
        /// Attestation chain verified against the log; data files not rehashed.
        VerifiedLogOnly = "verified-log-only",
        /// Read without verification (`--allow-unattested`).
        Unverified = "unverified",
    }
}

/// The attestation of a transform input, as found in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputAttestation {
    pub state_root: Sha256Digest,
    pub digest: Sha256Digest,
    pub level: MakotoLevel,
}

/// A Delta table version a transform read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformInput {
    /// The name the query used for the table.
    pub alias: String,
    pub table_uri: String,
    pub version: u64,
    /// SHA-256 of the input's commit file at `version`.
    pub commit_file_digest: Sha256Digest,
    /// Its attestation; `None` when it had none (allowed only by [`InputPolicy::AllowUnattested`]).
    pub attestation: Option<InputAttestation>,
    pub check: InputCheck,
}

/// What a transform does with inputs that are not attested and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputPolicy {
    RequireVerified,
    AllowUnattested,
}

impl InputPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            InputPolicy::RequireVerified => "require-verified",
            InputPolicy::AllowUnattested => "allow-unattested",
        }
    }
}

/// What wrote a transform's output commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    /// `makoto transform`: a SQL query, written by makoto (`transform.type` [`SQL_TRANSFORM_TYPE`]).
    Sql,
    /// A pipeline's own code (the Python `makoto.transform` block) wrote the commits with a
    /// writer of its choice (`transform.type` [`PIPELINE_TRANSFORM_TYPE`]).
    Pipeline,
}

/// A transform that read other tables and wrote commits of this table (`makoto transform`, or
/// a pipeline's block between pinning its inputs and attesting its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTableTransform {
    pub kind: TransformKind,
    pub name: String,
    /// The SQL query, or the pipeline's description of its code.
    pub query: String,
    /// `append` or `overwrite` for SQL; `external` for a pipeline (its writer chose).
    pub mode: String,
    pub inputs: Vec<TransformInput>,
    pub policy: InputPolicy,
    pub started_ms: i64,
    pub finished_ms: i64,
}

/// `transform.type` of cross-table SQL transforms.
pub const SQL_TRANSFORM_TYPE: &str = "https://makoto.dev/transforms/sql";
/// `transform.type` of commits a pipeline's own code wrote between pinning and attesting.
pub const PIPELINE_TRANSFORM_TYPE: &str = "https://makoto.dev/transforms/pipeline";

/// Who produced the attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestorInfo {
    pub name: String,
    pub version: String,
    pub deltalake_version: String,
    /// The attestor's identity (`attest --identity`, e.g. `spiffe://…` or
    /// `https://…/jobs/nightly`): named as the statement's collector or executor id, which a
    /// trust file binds to the signing key.
    pub identity: Option<String>,
}

/// Everything known about one commit, gathered from the log and the data files.
#[derive(Debug, Clone)]
pub struct CommitFacts {
    pub table_uri: String,
    pub table_id: String,
    pub table_name: Option<String>,
    pub version: u64,
    pub timestamp_ms: i64,
    pub timestamp_source: TimestampSource,
    pub commit_path: String,
    pub commit_size: u64,
    pub commit_file_digest: Sha256Digest,
    pub commit_actions_digest: Sha256Digest,
    pub action_counts: ActionCounts,
    pub operation: Option<String>,
    pub operation_parameters: Option<Value>,
    pub engine: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub job: Option<Value>,
    pub notebook: Option<Value>,
    pub cluster_id: Option<String>,
    pub txn_id: Option<String>,
    pub protocol: Protocol,
    pub schema_digest: Sha256Digest,
    pub changes: Vec<FileChange>,
    pub state_root: Sha256Digest,
    pub live_files: u64,
    pub live_bytes: u64,
    pub previous: Option<PreviousAttestation>,
    /// Set when the commit was written by a cross-table transform.
    pub transform: Option<CrossTableTransform>,
    /// When the attestation is made (signed inside the statement; key validity windows are
    /// checked against it).
    pub attested_at_ms: i64,
    /// Files whose bytes were gone when this version was first attested.
    pub availability: DataAvailability,
    /// Set when the chain starts from a checkpoint because earlier commits were cleaned up.
    pub baseline: Option<Baseline>,
    /// What readers of this version see besides the file bytes.
    pub reader_view: ReaderViewDigest,
}

/// Which of a version's data could be hashed when it was first attested.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataAvailability {
    /// Files (data, change data, deletion vectors) this commit references whose bytes were
    /// already deleted (VACUUM) when it was attested, in log order.
    pub unavailable_files: Vec<String>,
    /// Live files of the version whose digest is unknown for that reason (carried from earlier
    /// versions until they are removed).
    pub live_unavailable: u64,
}

impl DataAvailability {
    pub fn is_complete(&self) -> bool {
        self.unavailable_files.is_empty() && self.live_unavailable == 0
    }
    /// The `data_availability` column: `complete` or `unavailable`.
    pub fn status(&self) -> AvailabilityStatus {
        if self.is_complete() {
            AvailabilityStatus::Complete
        } else {
            AvailabilityStatus::Unavailable
        }
    }
}

named_enum! {
    /// Whether every data file of a version was hashed when it was first attested.
    pub enum AvailabilityStatus ("data availability") {
        /// Every file's bytes were hashed.
        Complete = "complete",
        /// Some files were already deleted (VACUUM) and carry no digest.
        Unavailable = "unavailable",
    }
}

/// A file of a checkpoint, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// Relative to the table root (`_delta_log/…`).
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// The start of a chain whose first commits were removed by log cleanup before they were
/// attested: the state of `checkpoint_version` is read from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub checkpoint_version: u64,
    /// Every file of the checkpoint (parts, v2 manifest, sidecars), sorted by path.
    pub checkpoint_files: Vec<CheckpointFile>,
    /// The oldest commit file still in the log when the baseline was taken.
    pub first_available_commit: u64,
}

impl Baseline {
    /// `predicate.delta.baseline`.
    pub fn to_block(&self) -> BaselineBlock {
        BaselineBlock {
            kind: "checkpoint".into(),
            checkpoint_version: self.checkpoint_version,
            checkpoint_files: self
                .checkpoint_files
                .iter()
                .map(|f| CheckpointFileRef {
                    path: f.path.clone(),
                    size: f.size,
                    sha256: f.sha256,
                })
                .collect(),
            first_available_commit: self.first_available_commit,
            reason: format!(
                "commit files before version {} were removed by log cleanup before the table was first attested; the chain starts from the checkpoint of version {}, whose live files are this version's changes, and earlier versions are not attested",
                self.first_available_commit, self.checkpoint_version
            ),
        }
    }
}

/// Totals over a commit's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeCounts {
    pub files_added: u64,
    pub files_removed: u64,
    pub cdc_files: u64,
    pub bytes_added: u64,
    pub bytes_removed: u64,
    /// Physical rows in the added files; `None` when a writer omitted statistics.
    pub records_added: Option<u64>,
}

impl CommitFacts {
    pub fn subject_name(&self) -> String {
        subject_name(&self.table_uri, self.version)
    }

    pub fn predicate_type(&self) -> &'static str {
        if self.previous.is_none() && self.transform.is_none() {
            ORIGIN_V1
        } else {
            TRANSFORM_V1
        }
    }

    pub fn counts(&self) -> ChangeCounts {
        let mut c = ChangeCounts {
            records_added: Some(0),
            ..ChangeCounts::default()
        };
        for ch in &self.changes {
            let size = ch.size.unwrap_or(0);
            match ch.kind {
                ChangeKind::Add => {
                    c.files_added += 1;
                    c.bytes_added += size;
                    c.records_added = match (c.records_added, ch.num_records) {
                        (Some(a), Some(b)) => Some(a + b),
                        _ => None,
                    };
                }
                ChangeKind::Remove => {
                    c.files_removed += 1;
                    c.bytes_removed += size;
                }
                ChangeKind::Cdc => c.cdc_files += 1,
            }
        }
        c
    }
}

pub(crate) fn rfc3339(ms: i64) -> Result<String, Error> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| Error::InvalidStatement {
            reason: format!("timestamp {ms} ms is out of range"),
        })
}

fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// `Apache-Spark/3.5.0 Delta-Lake/3.0.0` → `{"Apache-Spark": "3.5.0", "Delta-Lake": "3.0.0"}`.
fn engine_versions(engine: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for token in engine.split_whitespace() {
        if let Some((name, version)) = token.split_once('/') {
            m.insert(name.to_owned(), json!(version));
        }
    }
    if m.is_empty() && !engine.is_empty() {
        m.insert("engine".into(), json!(engine));
    }
    m
}

fn platform(engine: Option<&str>) -> &'static str {
    match engine {
        Some(e) if e.contains("Databricks") => "databricks",
        Some(e) if e.contains("Apache-Spark") => "spark",
        Some(e) if e.starts_with("delta-rs") => "delta-rs",
        Some(_) => "other",
        None => "unknown",
    }
}

/// A cross-table input: `digest` is the input's attested state digest, or — for an unattested
/// input read under `allow-unattested` — the SHA-256 of its commit file, as `delta.digestOf` says.
fn cross_input(i: &TransformInput) -> InputEntry {
    let delta = InputDelta {
        alias: i.alias.clone(),
        table_uri: i.table_uri.clone(),
        version: i.version,
        check: i.check.as_str().to_owned(),
        commit_digest: i.commit_file_digest.into(),
        digest_of: if i.attestation.is_some() {
            "tableState"
        } else {
            "commitFile"
        }
        .to_owned(),
    };
    InputEntry {
        name: subject_name(&i.table_uri, i.version),
        digest: i
            .attestation
            .as_ref()
            .map_or(i.commit_file_digest, |a| a.state_root)
            .into(),
        attestation_ref: i.attestation.as_ref().map(|a| attestation_ref(&a.digest)),
        makoto_level: i.attestation.as_ref().map(|a| a.level),
        delta: Some(delta),
    }
}

/// `predicate.delta` of a commit's statement.
fn delta_block(facts: &CommitFacts, attestor: &AttestorInfo) -> Result<DeltaBlock, Error> {
    let counts = facts.counts();
    let inline = facts.changes.len() <= INLINE_CHANGES_LIMIT;
    let p = &facts.protocol;
    Ok(DeltaBlock {
        format_version: DELTA_BLOCK_FORMAT,
        table: TableRef {
            uri: facts.table_uri.clone(),
            id: facts.table_id.clone(),
            name: facts.table_name.clone(),
        },
        version: facts.version,
        timestamp: rfc3339(facts.timestamp_ms)?,
        timestamp_ms: facts.timestamp_ms,
        timestamp_source: facts.timestamp_source.as_str().to_owned(),
        commit: CommitRef {
            path: facts.commit_path.clone(),
            size: Some(facts.commit_size),
            digest: facts.commit_file_digest.into(),
            actions_digest: facts.commit_actions_digest.into(),
            action_counts: facts.action_counts.clone(),
        },
        protocol: ProtocolRef {
            min_reader_version: p.min_reader_version(),
            min_writer_version: p.min_writer_version(),
            reader_features: p.reader_features().to_vec(),
            writer_features: p.writer_features().to_vec(),
        },
        schema_digest: facts.schema_digest.into(),
        state: StateRef {
            algorithm: STATE_ALGORITHM.to_owned(),
            root: facts.state_root,
            files: facts.live_files,
            bytes: facts.live_bytes,
        },
        changes: ChangesBlock {
            digest: changes_digest(&facts.changes).into(),
            files_added: counts.files_added,
            files_removed: counts.files_removed,
            cdc_files: counts.cdc_files,
            bytes_added: counts.bytes_added,
            bytes_removed: counts.bytes_removed,
            records_added: counts.records_added,
            entries_inline: inline,
            entries: inline.then(|| facts.changes.iter().map(FileChange::to_entry).collect()),
        },
        reader_view: Some(facts.reader_view.to_json()),
        previous_attestation: facts.previous.as_ref().map(|p| PreviousRef {
            version: p.version,
            digest: p.digest.into(),
        }),
        attestor: AttestorRef {
            name: attestor.name.clone(),
            version: attestor.version.clone(),
            deltalake: attestor.deltalake_version.clone(),
            attested_at: Some(rfc3339(facts.attested_at_ms)?),
        },
        // Only present when they apply, so complete commits keep their statement shape.
        data_availability: (!facts.availability.is_complete()).then(|| AvailabilityBlock {
            status: facts.availability.status().as_str().to_owned(),
            unavailable_files: facts.availability.unavailable_files.clone(),
            live_files_unavailable: facts.availability.live_unavailable,
        }),
        baseline: facts.baseline.as_ref().map(Baseline::to_block),
    })
}

/// The writing engine and the identity the commit records: the origin's collector or the
/// transform's executor.
fn party(facts: &CommitFacts, identity: Option<&str>) -> Party {
    let engine = facts.engine.as_deref();
    let versions = engine.map(engine_versions).unwrap_or_default();
    Party {
        id: identity.or(engine).unwrap_or("unknown").to_owned(),
        engine: identity.and(engine).map(str::to_owned),
        platform: platform(engine).to_owned(),
        version: (!versions.is_empty()).then_some(versions),
        user_id: facts.user_id.clone(),
        user_name: facts.user_name.clone(),
        job: facts.job.clone(),
        notebook: facts.notebook.clone(),
        cluster_id: facts.cluster_id.clone(),
    }
}

fn origin_predicate(
    facts: &CommitFacts,
    delta: DeltaBlock,
    identity: Option<&str>,
) -> Result<OriginPredicate, Error> {
    let counts = facts.counts();
    Ok(OriginPredicate {
        origin: Origin {
            source: facts.table_uri.clone(),
            collection_timestamp: rfc3339(facts.timestamp_ms)?,
        },
        collector: party(facts, identity),
        schema: SchemaRef {
            format: "delta".into(),
            schema_digest: facts.schema_digest.into(),
        },
        metadata: OriginMetadata {
            bytes_collected: counts.bytes_added,
            records_collected: counts.records_added,
        },
        delta,
    })
}

fn transform_predicate(
    facts: &CommitFacts,
    delta: DeltaBlock,
    identity: Option<&str>,
) -> Result<TransformPredicate, Error> {
    let counts = facts.counts();
    let cross = facts.transform.as_ref();
    let operation = facts.operation.as_deref().unwrap_or("UNKNOWN");
    let transform = match cross {
        None => TransformSpec {
            kind: format!("{DELTA_TRANSFORM_TYPE_PREFIX}{}", slug(operation)),
            name: operation.to_owned(),
            parameters: facts.operation_parameters.clone().filter(Value::is_object),
        },
        Some(c) => TransformSpec {
            kind: match c.kind {
                TransformKind::Sql => SQL_TRANSFORM_TYPE,
                TransformKind::Pipeline => PIPELINE_TRANSFORM_TYPE,
            }
            .to_owned(),
            name: c.name.clone(),
            parameters: Some(match c.kind {
                TransformKind::Sql => json!({
                    "query": c.query,
                    "mode": c.mode,
                    "inputPolicy": c.policy.as_str(),
                    "deltaOperation": operation,
                }),
                TransformKind::Pipeline => json!({
                    "description": c.query,
                    "inputPolicy": c.policy.as_str(),
                    "deltaOperation": operation,
                }),
            }),
        },
    };
    let previous = facts.previous.as_ref().map(|prev| InputEntry {
        name: subject_name(&facts.table_uri, prev.version),
        digest: prev.state_root.into(),
        attestation_ref: Some(attestation_ref(&prev.digest)),
        makoto_level: Some(prev.level),
        delta: None,
    });
    let inputs = previous
        .into_iter()
        .chain(cross.iter().flat_map(|c| &c.inputs).map(cross_input))
        .collect();
    let ts = rfc3339(facts.timestamp_ms)?;
    let (started_on, finished_on) = match cross {
        Some(c) => (rfc3339(c.started_ms)?, rfc3339(c.finished_ms)?),
        None => (ts.clone(), ts),
    };
    Ok(TransformPredicate {
        inputs,
        transform,
        executor: party(facts, identity),
        metadata: TransformMetadata {
            started_on,
            finished_on,
            bytes_output: counts.bytes_added,
            records_output: counts.records_added,
            invocation_id: facts.txn_id.clone(),
        },
        verification: cross.map(|c| InputVerification {
            input_hash_verified: c.inputs.iter().all(|i| i.check != InputCheck::Unverified),
        }),
        delta,
    })
}

/// The canonical payload of the statement for one commit ([`build_commit_statement`]), written
/// straight from the typed predicate ([`canonical::write_serialize`]), without a
/// `serde_json::Value` in between.
pub fn build_commit_payload(
    facts: &CommitFacts,
    attestor: &AttestorInfo,
) -> Result<Vec<u8>, Error> {
    let delta = delta_block(facts, attestor)?;
    let invalid = |e: serde_json::Error| Error::InvalidStatement {
        reason: format!("{}: {e}", facts.subject_name()),
    };
    let subject = commit_subject(facts);
    let identity = attestor.identity.as_deref();
    let predicate = match (&facts.previous, &facts.transform) {
        (None, None) => CommitPredicate::Origin(origin_predicate(facts, delta, identity)?),
        _ => CommitPredicate::Transform(transform_predicate(facts, delta, identity)?),
    };
    crate::statement::payload_with(&[subject], facts.predicate_type(), |out| {
        match &predicate {
            CommitPredicate::Origin(p) => canonical::write_serialize(p, out),
            CommitPredicate::Transform(p) => canonical::write_serialize(p, out),
        }
        .map_err(invalid)
    })
}

/// The two predicates a commit's statement can carry.
enum CommitPredicate<O, T> {
    Origin(O),
    Transform(T),
}

fn commit_subject(facts: &CommitFacts) -> Subject {
    Subject::new(
        facts.subject_name(),
        BTreeMap::from([("sha256".to_owned(), facts.state_root.to_hex())]),
    )
}

/// Builds the in-toto statement for one commit: `origin/v1` for the first attested version of
/// a table, `transform/v1` (with the previous version as input) for every later one. It is
/// read back from [`build_commit_payload`], so the two never differ.
pub fn build_commit_statement(
    facts: &CommitFacts,
    attestor: &AttestorInfo,
) -> Result<Statement, Error> {
    Statement::from_payload(&build_commit_payload(facts, attestor)?)
}

/// A statement sealed in a DSSE envelope: signed (L2) or not (L1).
#[derive(Debug, Clone)]
pub struct Attestation {
    statement: Statement,
    envelope: Envelope,
    digest: Sha256Digest,
    level: MakotoLevel,
    keyid: Option<KeyId>,
}

impl Attestation {
    /// Serializes `statement` canonically and signs it when a signer is given. Its level is
    /// L1: nothing time-stamps it or binds an identity ([`Attestation::seal_with`]).
    pub fn seal(statement: Statement, signer: Option<&dyn Signer>) -> Result<Self, Error> {
        Self::seal_with(statement, signer, LevelEvidence::default())
    }

    /// [`Attestation::seal`], for an attestor that will also time-stamp the signature and
    /// names its identity in the statement (`evidence`; its `signed` is whether `signer` is
    /// given): the level is what all of it earns.
    pub fn seal_with(
        statement: Statement,
        signer: Option<&dyn Signer>,
        evidence: LevelEvidence,
    ) -> Result<Self, Error> {
        let payload = statement.to_payload();
        let digest = Sha256Digest::of(&payload);
        let level = MakotoLevel::earned(LevelEvidence {
            signed: signer.is_some(),
            ..evidence
        });
        let (envelope, keyid) = match signer {
            Some(s) => (
                Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, s)?,
                Some(s.keyid().clone()),
            ),
            None => (Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, payload), None),
        };
        Ok(Attestation {
            statement,
            envelope,
            digest,
            level,
            keyid,
        })
    }

    /// Serializes `statement` and gives it its level, leaving the signature for
    /// [`Prepared::sign`]. The attestation digest covers the payload, not the signature, so a
    /// chain of statements can be built on one thread while others sign them.
    pub fn prepare(
        statement: &Statement,
        signer: Option<Arc<dyn Signer>>,
        evidence: LevelEvidence,
    ) -> Prepared {
        Self::prepare_payload(statement.to_payload(), signer, evidence)
    }

    /// [`Attestation::prepare`] of a statement already serialized canonically
    /// ([`build_commit_payload`]).
    pub fn prepare_payload(
        payload: Vec<u8>,
        signer: Option<Arc<dyn Signer>>,
        evidence: LevelEvidence,
    ) -> Prepared {
        Prepared {
            digest: Sha256Digest::of(&payload),
            level: MakotoLevel::earned(LevelEvidence {
                signed: signer.is_some(),
                ..evidence
            }),
            payload,
            signer,
        }
    }

    pub fn statement(&self) -> &Statement {
        &self.statement
    }
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
    /// SHA-256 of the statement payload: what the next attestation chains to.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }
    pub fn level(&self) -> MakotoLevel {
        self.level
    }
    pub fn keyid(&self) -> Option<&KeyId> {
        self.keyid.as_ref()
    }
}

/// A statement's payload with its digest and level, to be signed by the signer it names
/// ([`Attestation::prepare`]).
pub struct Prepared {
    payload: Vec<u8>,
    digest: Sha256Digest,
    level: MakotoLevel,
    signer: Option<Arc<dyn Signer>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("digest", &self.digest)
            .field("level", &self.level)
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// SHA-256 of the payload: the attestation digest the envelope will carry.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }
    pub fn level(&self) -> MakotoLevel {
        self.level
    }
    pub fn keyid(&self) -> Option<&KeyId> {
        self.signer.as_deref().map(Signer::keyid)
    }

    /// The DSSE envelope of the payload: signed if a signer was given, else unsigned (L1).
    pub fn sign(self) -> Result<Envelope, Error> {
        match self.signer.as_deref() {
            Some(s) => Envelope::sign(IN_TOTO_PAYLOAD_TYPE, self.payload, s),
            None => Ok(Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, self.payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier holds every change of the history it walks: a deletion vector, which few
    /// changes have, must not widen them all.
    #[test]
    fn a_change_stays_small() {
        assert!(std::mem::size_of::<FileChange>() <= 136);
    }

    #[test]
    fn a_prepared_statement_signs_as_sealing_it_does() {
        let statement = Statement::new(
            vec![Subject::new(
                "t@v1",
                BTreeMap::from([("sha256".to_owned(), "ab".repeat(32))]),
            )],
            "https://example.com/p",
            json!({"b": 1, "a": "x"}),
        );
        let key = Arc::new(crate::keys::SigningKeyPair::from_seed(&[7; 32]));
        let sealed = Attestation::seal(statement.clone(), Some(key.as_ref())).unwrap();
        let prepared =
            Attestation::prepare(&statement, Some(key.clone()), LevelEvidence::default());
        assert_eq!(prepared.digest(), sealed.digest());
        assert_eq!(prepared.level(), sealed.level());
        assert_eq!(prepared.keyid(), sealed.keyid());
        assert_eq!(
            prepared.sign().unwrap().to_json(),
            sealed.envelope().to_json()
        );

        let unsigned = Attestation::prepare(&statement, None, LevelEvidence::default());
        assert_eq!(
            unsigned.level(),
            MakotoLevel::earned(LevelEvidence::default())
        );
        assert!(unsigned.keyid().is_none());
        assert!(!unsigned.sign().unwrap().is_signed());
    }

    #[test]
    fn the_changes_digest_is_over_the_canonical_array() {
        let change = |kind, path: &str, sha: Option<&[u8]>| {
            FileChange::new(
                kind,
                path.into(),
                Some(3),
                sha.map(Sha256Digest::of),
                true,
                BTreeMap::from([("p".to_owned(), None)]),
                Some(1),
                None,
            )
        };
        let cases = [
            vec![],
            vec![change(ChangeKind::Add, "a \"q\".parquet", Some(b"x"))],
            vec![
                change(ChangeKind::Remove, "a.parquet", None),
                change(ChangeKind::Add, "é.parquet", Some(b"y")),
                change(ChangeKind::Cdc, "c.parquet", Some(b"z")),
            ],
        ];
        for changes in cases {
            let entries: Vec<ChangeEntry> = changes.iter().map(FileChange::to_entry).collect();
            let whole = canonical::to_vec(&serde_json::to_value(&entries).unwrap());
            assert_eq!(changes_digest(&changes), Sha256Digest::of(&whole));
        }
        assert_eq!(changes_digest(&[]), Sha256Digest::of(b"[]"));
    }

    #[test]
    fn l2_is_earned_only_with_all_three() {
        let all = LevelEvidence {
            signed: true,
            timestamped: true,
            identity_bound: true,
        };
        assert_eq!(MakotoLevel::earned(all), MakotoLevel::L2);
        for missing in [
            LevelEvidence {
                signed: false,
                ..all
            },
            LevelEvidence {
                timestamped: false,
                ..all
            },
            LevelEvidence {
                identity_bound: false,
                ..all
            },
            LevelEvidence::default(),
        ] {
            assert_eq!(MakotoLevel::earned(missing), MakotoLevel::L1, "{missing:?}");
        }
    }

    #[test]
    fn slugs_and_engines() {
        assert_eq!(slug("CREATE TABLE AS SELECT"), "create-table-as-select");
        assert_eq!(slug("MERGE"), "merge");
        assert_eq!(slug(""), "unknown");
        let v = engine_versions("Apache-Spark/3.5.0 Delta-Lake/3.0.0");
        assert_eq!(v.get("Delta-Lake"), Some(&json!("3.0.0")));
        assert_eq!(platform(Some("delta-rs.1.1.2")), "delta-rs");
    }
}
