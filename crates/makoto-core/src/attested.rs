//! Reading back what a commit statement attests: the `predicate.delta` block and the Makoto
//! fields, parsed into typed values, plus a structural check of the statement against the
//! parts of the Makoto schemas it must satisfy.

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

use crate::attestation::{
    ChangeKind, FileChange, InputCheck, MakotoLevel, ORIGIN_V1, TRANSFORM_V1,
};
use crate::commit_predicate::{
    BaselineBlock, ChangeEntry, InputEntry, OriginPredicate, TransformPredicate,
};
use crate::delta::Protocol;
use crate::reader_view::ReaderViewDigest;
use crate::statement::Statement;
use crate::{Error, Sha256Digest};

/// One file change as attested (statement entry or `system.makoto.files` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedChange {
    pub kind: ChangeKind,
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<Sha256Digest>,
    pub dv_unique_id: Option<String>,
    pub dv_sha256: Option<Sha256Digest>,
    pub dv_size_in_bytes: Option<u64>,
    pub dv_cardinality: Option<u64>,
}

/// An input of a transform statement: the previous version of the same table, or a version of
/// another table read by a cross-table transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedInput {
    pub name: String,
    /// Table and version, when `name` is a subject name `<table_uri>@v<N>`.
    pub table_version: Option<(String, u64)>,
    pub digest: Sha256Digest,
    /// The input's attestation digest, from `attestationRef`.
    pub attestation: Option<Sha256Digest>,
    pub level: Option<MakotoLevel>,
    /// How a cross-table input was checked before it was read; `None` for the previous version.
    pub check: Option<InputCheck>,
}

/// Splits a subject name `<table_uri>@v<N>`.
pub fn parse_subject_name(name: &str) -> Option<(String, u64)> {
    let (uri, v) = name.rsplit_once("@v")?;
    if uri.is_empty() || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((uri.to_owned(), v.parse().ok()?))
}

/// Parses `urn:makoto:attestation:sha256:<hex>`.
pub fn parse_attestation_ref(r: &str) -> Option<Sha256Digest> {
    r.strip_prefix("urn:makoto:attestation:sha256:")?
        .parse()
        .ok()
}

impl From<&InputEntry> for AttestedInput {
    fn from(i: &InputEntry) -> Self {
        AttestedInput {
            name: i.name.clone(),
            table_version: parse_subject_name(&i.name),
            digest: i.digest.sha256,
            attestation: i.attestation_ref.as_deref().and_then(parse_attestation_ref),
            level: i.makoto_level,
            check: i.delta.as_ref().and_then(|d| InputCheck::parse(&d.check)),
        }
    }
}

/// The facts of one attested commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCommit {
    predicate_type: String,
    subject_name: String,
    state_root: Sha256Digest,
    table_uri: String,
    table_id: String,
    table_name: Option<String>,
    version: u64,
    timestamp_ms: i64,
    commit_file_digest: Sha256Digest,
    commit_actions_digest: Sha256Digest,
    commit_size: Option<u64>,
    changes_digest: Sha256Digest,
    changes: Option<Vec<AttestedChange>>,
    live_files: u64,
    live_bytes: u64,
    previous: Option<(u64, Sha256Digest)>,
    attested_at_ms: Option<i64>,
    protocol: Protocol,
    schema_digest: Sha256Digest,
    inputs: Vec<AttestedInput>,
    live_unavailable: u64,
    unavailable_files: Vec<String>,
    baseline: Option<AttestedBaseline>,
    reader_view: Option<ReaderViewDigest>,
    /// `(transform.type, transform.name)` of a transform statement.
    transform: Option<(String, String)>,
}

/// The checkpoint a chain starts from (see `attestation::Baseline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedBaseline {
    pub checkpoint_version: u64,
    /// `(path, size, sha256)` of every checkpoint file.
    pub checkpoint_files: Vec<(String, u64, Sha256Digest)>,
    pub first_available_commit: u64,
}

impl TryFrom<&BaselineBlock> for AttestedBaseline {
    type Error = Error;

    fn try_from(b: &BaselineBlock) -> Result<Self, Error> {
        if b.kind != "checkpoint" {
            return Err(bad("delta.baseline.kind"));
        }
        if b.checkpoint_files.is_empty() {
            return Err(bad("delta.baseline.checkpointFiles"));
        }
        Ok(AttestedBaseline {
            checkpoint_version: b.checkpoint_version,
            checkpoint_files: b
                .checkpoint_files
                .iter()
                .map(|f| (f.path.clone(), f.size, f.sha256))
                .collect(),
            first_available_commit: b.first_available_commit,
        })
    }
}

fn bad(what: &str) -> Error {
    Error::InvalidStatement {
        reason: format!("{what} is missing or malformed"),
    }
}

impl From<&ChangeEntry> for AttestedChange {
    fn from(c: &ChangeEntry) -> Self {
        let dv = c.deletion_vector.as_ref();
        AttestedChange {
            kind: c.action,
            path: c.path.clone(),
            size: c.size,
            sha256: c.sha256,
            dv_unique_id: dv.map(|d| d.unique_id.clone()),
            dv_sha256: dv.and_then(|d| d.sha256),
            dv_size_in_bytes: dv.map(|d| d.size_in_bytes),
            dv_cardinality: dv.map(|d| d.cardinality),
        }
    }
}

impl From<&FileChange> for AttestedChange {
    fn from(c: &FileChange) -> Self {
        AttestedChange::from(&c.to_entry())
    }
}

impl AttestedCommit {
    /// Parses the Delta commit facts of an `origin/v1` or `transform/v1` statement.
    pub fn from_statement(statement: &Statement) -> Result<Self, Error> {
        let subject = statement.subject().first().ok_or_else(|| bad("subject"))?;
        let state_root: Sha256Digest = subject
            .sha256()
            .ok_or_else(|| bad("subject digest.sha256"))?
            .parse()?;
        let malformed = |e: serde_json::Error| Error::InvalidStatement {
            reason: format!("predicate: {e}"),
        };
        // Deserialized from the borrowed value: no copy of the predicate.
        let predicate = statement.predicate();
        let (d, inputs, transform) = match statement.predicate_type() {
            ORIGIN_V1 => {
                let p = OriginPredicate::deserialize(predicate).map_err(malformed)?;
                (p.delta, Vec::new(), None)
            }
            TRANSFORM_V1 => {
                let p = TransformPredicate::deserialize(predicate).map_err(malformed)?;
                let inputs = p.inputs.iter().map(AttestedInput::from).collect();
                (p.delta, inputs, Some((p.transform.kind, p.transform.name)))
            }
            _ => return Err(bad("predicateType")),
        };
        let attested_at_ms = d
            .attestor
            .attested_at
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| bad("delta.attestor.attestedAt"))
            })
            .transpose()?;
        let availability = d.data_availability.as_ref();
        Ok(AttestedCommit {
            predicate_type: statement.predicate_type().to_owned(),
            subject_name: subject.name().to_owned(),
            state_root,
            table_uri: d.table.uri,
            table_id: d.table.id,
            table_name: d.table.name,
            version: d.version,
            timestamp_ms: d.timestamp_ms,
            commit_file_digest: d.commit.digest.sha256,
            commit_actions_digest: d.commit.actions_digest.sha256,
            commit_size: d.commit.size,
            changes_digest: d.changes.digest.sha256,
            changes: d
                .changes
                .entries
                .map(|e| e.iter().map(AttestedChange::from).collect()),
            live_files: d.state.files,
            live_bytes: d.state.bytes,
            previous: d.previous_attestation.map(|p| (p.version, p.digest.sha256)),
            attested_at_ms,
            protocol: Protocol::new(
                d.protocol.min_reader_version,
                d.protocol.min_writer_version,
                d.protocol.reader_features,
                d.protocol.writer_features,
            ),
            schema_digest: d.schema_digest.sha256,
            inputs,
            live_unavailable: availability.map_or(0, |a| a.live_files_unavailable),
            unavailable_files: availability
                .map(|a| a.unavailable_files.clone())
                .unwrap_or_default(),
            baseline: d
                .baseline
                .as_ref()
                .map(AttestedBaseline::try_from)
                .transpose()?,
            reader_view: d
                .reader_view
                .as_ref()
                .map(ReaderViewDigest::from_json)
                .transpose()?,
            transform,
        })
    }

    /// The signed reader-view digest (`None` for statements made before reader views were
    /// attested, `formatVersion` 1).
    pub fn reader_view(&self) -> Option<&ReaderViewDigest> {
        self.reader_view.as_ref()
    }

    /// Live files of this version whose bytes were gone when they were first attested.
    pub fn live_unavailable(&self) -> u64 {
        self.live_unavailable
    }
    /// Files this commit references whose bytes were gone when it was attested.
    pub fn unavailable_files(&self) -> &[String] {
        &self.unavailable_files
    }
    /// The checkpoint the chain starts from, for the first attestation of a table whose early
    /// commits were cleaned up.
    pub fn baseline(&self) -> Option<&AttestedBaseline> {
        self.baseline.as_ref()
    }

    pub fn predicate_type(&self) -> &str {
        &self.predicate_type
    }
    pub fn subject_name(&self) -> &str {
        &self.subject_name
    }
    /// The attested state digest (the subject's sha256).
    pub fn state_root(&self) -> Sha256Digest {
        self.state_root
    }
    pub fn table_uri(&self) -> &str {
        &self.table_uri
    }
    pub fn table_id(&self) -> &str {
        &self.table_id
    }
    pub fn table_name(&self) -> Option<&str> {
        self.table_name.as_deref()
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    pub fn commit_file_digest(&self) -> Sha256Digest {
        self.commit_file_digest
    }
    /// Size in bytes of the attested commit file.
    pub fn commit_size(&self) -> Option<u64> {
        self.commit_size
    }
    pub fn commit_actions_digest(&self) -> Sha256Digest {
        self.commit_actions_digest
    }
    pub fn changes_digest(&self) -> Sha256Digest {
        self.changes_digest
    }
    /// The file changes when the statement lists them (commits of at most 1000 actions).
    pub fn changes(&self) -> Option<&[AttestedChange]> {
        self.changes.as_deref()
    }
    /// Moves the listed file changes out ([`changes`](Self::changes) is `None` afterwards),
    /// for a holder that keeps the commit longer than it needs the list: a verifier frees a
    /// table's change lists once it has applied them, while it keeps every commit.
    pub fn take_changes(&mut self) -> Option<Vec<AttestedChange>> {
        self.changes.take()
    }
    pub fn live_files(&self) -> u64 {
        self.live_files
    }
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }
    /// `(version, attestation digest)` of the attestation this one chains to.
    pub fn previous(&self) -> Option<(u64, Sha256Digest)> {
        self.previous
    }
    /// When the attestation was made, as signed in the statement.
    pub fn attested_at_ms(&self) -> Option<i64> {
        self.attested_at_ms
    }
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }
    pub fn schema_digest(&self) -> Sha256Digest {
        self.schema_digest
    }
    /// `transform.type` of a `transform/v1` statement.
    pub fn transform_type(&self) -> Option<&str> {
        self.transform.as_ref().map(|(t, _)| t.as_str())
    }
    /// `transform.name` of a `transform/v1` statement (the Delta operation, or the name of a
    /// cross-table transform).
    pub fn transform_name(&self) -> Option<&str> {
        self.transform.as_ref().map(|(_, n)| n.as_str())
    }
    /// The statement's inputs (empty for `origin/v1`).
    pub fn inputs(&self) -> &[AttestedInput] {
        &self.inputs
    }
}

fn is_hex64(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str)
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn is_rfc3339(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str)
        .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok())
}

fn is_str(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some()
}

/// Checks a commit statement against what the structured Makoto schemas
/// (`statement-v1`, `origin/v1`, `transform/v1`, `common/definitions`) require of the fields
/// Makoto writes, and that its `predicate.delta` block parses. Returns the problems found.
pub fn check_commit_statement(statement: &Statement) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{what} is missing or malformed"));
        }
    };
    let p = statement.predicate();
    need(
        statement.subject().iter().all(|s| !s.digest().is_empty())
            && !statement.subject().is_empty(),
        "subject[].digest",
    );
    match statement.predicate_type() {
        ORIGIN_V1 => {
            let o = p.get("origin");
            need(o.is_some_and(Value::is_object), "predicate.origin");
            need(
                is_str(o.and_then(|o| o.get("source"))),
                "predicate.origin.source",
            );
            need(
                is_rfc3339(o.and_then(|o| o.get("collectionTimestamp"))),
                "predicate.origin.collectionTimestamp",
            );
            need(
                is_str(p.get("collector").and_then(|c| c.get("id"))),
                "predicate.collector.id",
            );
            if let Some(sd) = p.get("schema").and_then(|s| s.get("schemaDigest")) {
                need(
                    is_hex64(sd.get("sha256")),
                    "predicate.schema.schemaDigest.sha256",
                );
            }
        }
        TRANSFORM_V1 => {
            let inputs = p.get("inputs").and_then(Value::as_array);
            need(inputs.is_some_and(|i| !i.is_empty()), "predicate.inputs");
            for input in inputs.into_iter().flatten() {
                need(is_str(input.get("name")), "predicate.inputs[].name");
                need(
                    is_hex64(input.get("digest").and_then(|d| d.get("sha256"))),
                    "predicate.inputs[].digest.sha256",
                );
                if let Some(l) = input.get("makotoLevel") {
                    need(
                        l.as_str().and_then(MakotoLevel::parse).is_some(),
                        "predicate.inputs[].makotoLevel",
                    );
                }
            }
            let t = p.get("transform");
            need(
                is_str(t.and_then(|t| t.get("type"))),
                "predicate.transform.type",
            );
            need(
                is_str(t.and_then(|t| t.get("name"))),
                "predicate.transform.name",
            );
            need(
                is_str(p.get("executor").and_then(|e| e.get("id"))),
                "predicate.executor.id",
            );
            for k in ["startedOn", "finishedOn"] {
                if let Some(v) = p.get("metadata").and_then(|m| m.get(k)) {
                    need(is_rfc3339(Some(v)), &format!("predicate.metadata.{k}"));
                }
            }
        }
        other => problems.push(format!(
            "predicateType {other:?} is not a Makoto commit attestation"
        )),
    }
    let format = p
        .get("delta")
        .and_then(|d| d.get("formatVersion"))
        .and_then(Value::as_u64);
    let reader_view = p.get("delta").and_then(|d| d.get("readerView"));
    match format {
        Some(1) => {}
        Some(2) if reader_view.is_some_and(Value::is_object) => {}
        Some(2) => problems
            .push("predicate.delta.readerView (required by formatVersion 2) is missing".to_owned()),
        _ => problems.push("predicate.delta.formatVersion is not 1 or 2".to_owned()),
    }
    if let Err(e) = AttestedCommit::from_statement(statement) {
        problems.push(e.to_string());
    }
    problems
}
