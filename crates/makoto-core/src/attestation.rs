//! Makoto attestations of Delta commits: the predicate built from a commit's facts, the signed
//! envelope, the attestation digest and the chain.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

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

/// Makoto assurance level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MakotoLevel {
    /// Provenance recorded, unsigned.
    L1,
    /// Signed provenance.
    L2,
    /// Signed by an isolated, hardened attestor.
    L3,
}

impl MakotoLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            MakotoLevel::L1 => "L1",
            MakotoLevel::L2 => "L2",
            MakotoLevel::L3 => "L3",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "L1" => Some(MakotoLevel::L1),
            "L2" => Some(MakotoLevel::L2),
            "L3" => Some(MakotoLevel::L3),
            _ => None,
        }
    }
}

impl serde::Serialize for MakotoLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for AvailabilityStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for MakotoLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// What happened to a file in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Add,
    Remove,
    Cdc,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Remove => "remove",
            ChangeKind::Cdc => "cdc",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(ChangeKind::Add),
            "remove" => Some(ChangeKind::Remove),
            "cdc" => Some(ChangeKind::Cdc),
            _ => None,
        }
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
    deletion_vector: Option<(DeletionVector, Option<Sha256Digest>)>,
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
            deletion_vector,
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
        self.deletion_vector.as_ref()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "action": self.kind.as_str(),
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256.map(|d| d.to_hex()),
            "dataChange": self.data_change,
            "partitionValues": self.partition_values,
            "numRecords": self.num_records,
            "deletionVector": self.deletion_vector.as_ref().map(|(dv, sha)| {
                let mut d = dv.descriptor_json();
                if let Some(m) = d.as_object_mut() {
                    m.insert("uniqueId".into(), json!(dv.unique_id()));
                    m.insert("file".into(), json!(dv.file()));
                    m.insert("sha256".into(), json!(sha.map(|s| s.to_hex())));
                }
                d
            }),
        })
    }
}

/// SHA-256 of the canonical JSON array of a commit's file changes, in log order.
pub fn changes_digest(changes: &[FileChange]) -> Sha256Digest {
    let v = Value::Array(changes.iter().map(FileChange::to_json).collect());
    Sha256Digest::of(&canonical::to_vec(&v))
}

/// The attestation this one chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousAttestation {
    pub version: u64,
    pub state_root: Sha256Digest,
    pub digest: Sha256Digest,
    pub level: MakotoLevel,
}

/// How an input of a cross-table transform was checked before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputCheck {
    /// Attestation chain verified and every live data file rehashed.
    VerifiedDeep,
    /// Attestation chain verified against the log; data files not rehashed.
    VerifiedLogOnly,
    /// Read without verification (`--allow-unattested`).
    Unverified,
}

impl InputCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            InputCheck::VerifiedDeep => "verified-deep",
            InputCheck::VerifiedLogOnly => "verified-log-only",
            InputCheck::Unverified => "unverified",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verified-deep" => Some(InputCheck::VerifiedDeep),
            "verified-log-only" => Some(InputCheck::VerifiedLogOnly),
            "unverified" => Some(InputCheck::Unverified),
            _ => None,
        }
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

/// A transform that read other tables and wrote one commit of this table (`makoto transform`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTableTransform {
    pub name: String,
    /// The SQL query (or a pipeline's description of its code).
    pub query: String,
    /// `append` or `overwrite`.
    pub mode: String,
    pub inputs: Vec<TransformInput>,
    pub policy: InputPolicy,
    pub started_ms: i64,
    pub finished_ms: i64,
}

/// `transform.type` of cross-table SQL transforms.
pub const SQL_TRANSFORM_TYPE: &str = "https://makoto.dev/transforms/sql";

/// Who produced the attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestorInfo {
    pub name: String,
    pub version: String,
    pub deltalake_version: String,
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

/// Whether every data file of a version was hashed when it was first attested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvailabilityStatus {
    /// Every file's bytes were hashed.
    Complete,
    /// Some files were already deleted (VACUUM) and carry no digest.
    Unavailable,
}

impl AvailabilityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AvailabilityStatus::Complete => "complete",
            AvailabilityStatus::Unavailable => "unavailable",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "complete" => Some(AvailabilityStatus::Complete),
            "unavailable" => Some(AvailabilityStatus::Unavailable),
            _ => None,
        }
    }
}

impl fmt::Display for AvailabilityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    pub fn to_json(&self) -> Value {
        json!({
            "kind": "checkpoint",
            "checkpointVersion": self.checkpoint_version,
            "checkpointFiles": self.checkpoint_files.iter().map(|f| json!({
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256.to_hex(),
            })).collect::<Vec<_>>(),
            "firstAvailableCommit": self.first_available_commit,
            "reason": format!(
                "commit files before version {} were removed by log cleanup before the table was first attested; the chain starts from the checkpoint of version {}, whose live files are this version's changes, and earlier versions are not attested",
                self.first_available_commit, self.checkpoint_version
            ),
        })
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
fn cross_input_json(i: &TransformInput) -> Value {
    let mut v = json!({
        "name": subject_name(&i.table_uri, i.version),
        "delta": {
            "alias": i.alias,
            "tableUri": i.table_uri,
            "version": i.version,
            "check": i.check.as_str(),
            "commitDigest": {"sha256": i.commit_file_digest.to_hex()},
            "digestOf": if i.attestation.is_some() { "tableState" } else { "commitFile" },
        },
    });
    if let Some(m) = v.as_object_mut() {
        match &i.attestation {
            Some(a) => {
                m.insert("digest".into(), json!({"sha256": a.state_root.to_hex()}));
                m.insert("attestationRef".into(), json!(attestation_ref(&a.digest)));
                m.insert("makotoLevel".into(), json!(a.level.as_str()));
            }
            None => {
                m.insert(
                    "digest".into(),
                    json!({"sha256": i.commit_file_digest.to_hex()}),
                );
            }
        }
    }
    v
}

/// Builds the in-toto statement for one commit: `origin/v1` for the first attested version of
/// a table, `transform/v1` (with the previous version as input) for every later one.
pub fn build_commit_statement(
    facts: &CommitFacts,
    attestor: &AttestorInfo,
) -> Result<Statement, Error> {
    let ts = rfc3339(facts.timestamp_ms)?;
    let counts = facts.counts();
    let inline = facts.changes.len() <= INLINE_CHANGES_LIMIT;
    let mut changes = json!({
        "digest": {"sha256": changes_digest(&facts.changes).to_hex()},
        "filesAdded": counts.files_added,
        "filesRemoved": counts.files_removed,
        "cdcFiles": counts.cdc_files,
        "bytesAdded": counts.bytes_added,
        "bytesRemoved": counts.bytes_removed,
        "recordsAdded": counts.records_added,
        "entriesInline": inline,
    });
    if inline && let Some(m) = changes.as_object_mut() {
        m.insert(
            "entries".into(),
            Value::Array(facts.changes.iter().map(FileChange::to_json).collect()),
        );
    }
    let mut delta = json!({
        "formatVersion": DELTA_BLOCK_FORMAT,
        "table": {"uri": facts.table_uri, "id": facts.table_id, "name": facts.table_name},
        "version": facts.version,
        "timestamp": ts,
        "timestampMs": facts.timestamp_ms,
        "timestampSource": facts.timestamp_source.as_str(),
        "commit": {
            "path": facts.commit_path,
            "size": facts.commit_size,
            "digest": {"sha256": facts.commit_file_digest.to_hex()},
            "actionsDigest": {"sha256": facts.commit_actions_digest.to_hex()},
            "actionCounts": facts.action_counts,
        },
        "protocol": {
            "minReaderVersion": facts.protocol.min_reader_version(),
            "minWriterVersion": facts.protocol.min_writer_version(),
            "readerFeatures": facts.protocol.reader_features(),
            "writerFeatures": facts.protocol.writer_features(),
        },
        "schemaDigest": {"sha256": facts.schema_digest.to_hex()},
        "state": {
            "algorithm": STATE_ALGORITHM,
            "root": facts.state_root.to_hex(),
            "files": facts.live_files,
            "bytes": facts.live_bytes,
        },
        "changes": changes,
        "readerView": facts.reader_view.to_json(),
        "previousAttestation": facts.previous.as_ref().map(|p| json!({
            "version": p.version,
            "digest": {"sha256": p.digest.to_hex()},
        })),

        "attestor": {
            "name": attestor.name,
            "version": attestor.version,
            "deltalake": attestor.deltalake_version,
            "attestedAt": rfc3339(facts.attested_at_ms)?,
        },
    });
    if let Some(d) = delta.as_object_mut() {
        // Only present when they apply, so complete commits keep their statement shape.
        if !facts.availability.is_complete() {
            d.insert(
                "dataAvailability".into(),
                json!({
                    "status": facts.availability.status().as_str(),
                    "unavailableFiles": facts.availability.unavailable_files,
                    "liveFilesUnavailable": facts.availability.live_unavailable,
                }),
            );
        }
        if let Some(b) = &facts.baseline {
            d.insert("baseline".into(), b.to_json());
        }
    }

    let engine = facts.engine.as_deref();
    let versions = engine.map(engine_versions).unwrap_or_default();
    let executor_id = engine.unwrap_or("unknown").to_owned();
    let mut identity = Map::new();
    if let Some(u) = &facts.user_id {
        identity.insert("userId".into(), json!(u));
    }
    if let Some(u) = &facts.user_name {
        identity.insert("userName".into(), json!(u));
    }
    if let Some(j) = &facts.job {
        identity.insert("job".into(), j.clone());
    }
    if let Some(n) = &facts.notebook {
        identity.insert("notebook".into(), n.clone());
    }
    if let Some(c) = &facts.cluster_id {
        identity.insert("clusterId".into(), json!(c));
    }

    let subject = Subject::new(
        facts.subject_name(),
        BTreeMap::from([("sha256".to_owned(), facts.state_root.to_hex())]),
    );

    let mut predicate = match (&facts.previous, &facts.transform) {
        (None, None) => {
            let mut collector = json!({"id": executor_id, "platform": platform(engine)});
            if let Some(c) = collector.as_object_mut() {
                if !versions.is_empty() {
                    c.insert("version".into(), Value::Object(versions));
                }
                c.extend(identity);
            }
            let mut metadata = json!({"bytesCollected": counts.bytes_added});
            if let (Some(r), Some(m)) = (counts.records_added, metadata.as_object_mut()) {
                m.insert("recordsCollected".into(), json!(r));
            }
            json!({
                "origin": {
                    "source": facts.table_uri,
                    "collectionTimestamp": ts,
                },
                "collector": collector,
                "schema": {
                    "format": "delta",
                    "schemaDigest": {"sha256": facts.schema_digest.to_hex()},
                },
                "metadata": metadata,
            })
        }
        (prev, cross) => {
            let operation = facts.operation.as_deref().unwrap_or("UNKNOWN");
            let mut transform = match cross {
                None => json!({
                    "type": format!("{DELTA_TRANSFORM_TYPE_PREFIX}{}", slug(operation)),
                    "name": operation,
                }),
                Some(c) => json!({
                    "type": SQL_TRANSFORM_TYPE,
                    "name": c.name,
                    "parameters": {
                        "query": c.query,
                        "mode": c.mode,
                        "inputPolicy": c.policy.as_str(),
                        "deltaOperation": operation,
                    },
                }),
            };
            if let (None, Some(p @ Value::Object(_)), Some(t)) = (
                cross,
                &facts.operation_parameters,
                transform.as_object_mut(),
            ) {
                t.insert("parameters".into(), p.clone());
            }
            let mut inputs = Vec::new();
            if let Some(prev) = prev {
                inputs.push(json!({
                    "name": subject_name(&facts.table_uri, prev.version),
                    "digest": {"sha256": prev.state_root.to_hex()},
                    "attestationRef": attestation_ref(&prev.digest),
                    "makotoLevel": prev.level.as_str(),
                }));
            }
            for i in cross.iter().flat_map(|c| &c.inputs) {
                inputs.push(cross_input_json(i));
            }
            let mut executor = json!({"id": executor_id, "platform": platform(engine)});
            if let Some(e) = executor.as_object_mut() {
                if !versions.is_empty() {
                    e.insert("version".into(), Value::Object(versions));
                }
                e.extend(identity);
            }
            let (started, finished) = match cross {
                Some(c) => (rfc3339(c.started_ms)?, rfc3339(c.finished_ms)?),
                None => (ts.clone(), ts.clone()),
            };
            let mut metadata = json!({
                "startedOn": started,
                "finishedOn": finished,
                "bytesOutput": counts.bytes_added,
            });
            if let Some(m) = metadata.as_object_mut() {
                if let Some(r) = counts.records_added {
                    m.insert("recordsOutput".into(), json!(r));
                }
                if let Some(id) = &facts.txn_id {
                    m.insert("invocationId".into(), json!(id));
                }
            }
            let mut predicate = json!({
                "inputs": inputs,
                "transform": transform,
                "executor": executor,
                "metadata": metadata,
            });
            if let (Some(c), Some(p)) = (cross, predicate.as_object_mut()) {
                p.insert(
                    "verification".into(),
                    json!({"inputHashVerified": c.inputs.iter().all(|i| i.check != InputCheck::Unverified)}),
                );
            }
            predicate
        }
    };
    if let Some(p) = predicate.as_object_mut() {
        p.insert("delta".into(), delta);
    }
    Ok(Statement::new(
        vec![subject],
        facts.predicate_type(),
        predicate,
    ))
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
    /// Serializes `statement` canonically and signs it when a signer is given.
    pub fn seal(statement: Statement, signer: Option<&dyn Signer>) -> Result<Self, Error> {
        let payload = statement.to_payload();
        let digest = Sha256Digest::of(&payload);
        let (envelope, level, keyid) = match signer {
            Some(s) => (
                Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, s)?,
                MakotoLevel::L2,
                Some(s.keyid().clone()),
            ),
            None => (
                Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, payload),
                MakotoLevel::L1,
                None,
            ),
        };
        Ok(Attestation {
            statement,
            envelope,
            digest,
            level,
            keyid,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
