//! Reading back what a commit statement attests: the `predicate.delta` block and the Makoto
//! fields, parsed into typed values, plus a structural check of the statement against the
//! parts of the Makoto schemas it must satisfy.

use chrono::DateTime;
use serde_json::Value;

use crate::attestation::{ChangeKind, InputCheck, MakotoLevel, ORIGIN_V1, TRANSFORM_V1};
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

fn input_from_json(v: &Value) -> Result<AttestedInput, Error> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("predicate.inputs[].name"))?;
    Ok(AttestedInput {
        name: name.to_owned(),
        table_version: parse_subject_name(name),
        digest: digest_at(v, &["digest", "sha256"])?,
        attestation: v
            .get("attestationRef")
            .and_then(Value::as_str)
            .and_then(parse_attestation_ref),
        level: v
            .get("makotoLevel")
            .and_then(Value::as_str)
            .and_then(MakotoLevel::parse),
        check: v
            .get("delta")
            .and_then(|d| d.get("check"))
            .and_then(Value::as_str)
            .and_then(InputCheck::parse),
    })
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
}

/// The checkpoint a chain starts from (see `attestation::Baseline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedBaseline {
    pub checkpoint_version: u64,
    /// `(path, size, sha256)` of every checkpoint file.
    pub checkpoint_files: Vec<(String, u64, Sha256Digest)>,
    pub first_available_commit: u64,
}

fn baseline_from_json(b: &Value) -> Result<AttestedBaseline, Error> {
    if b.get("kind").and_then(Value::as_str) != Some("checkpoint") {
        return Err(bad("delta.baseline.kind"));
    }
    let files = b
        .get("checkpointFiles")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("delta.baseline.checkpointFiles"))?
        .iter()
        .map(|f| {
            Ok((
                f.get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("delta.baseline.checkpointFiles[].path"))?
                    .to_owned(),
                u64_at(f, "size")?,
                digest_at(f, &["sha256"])?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if files.is_empty() {
        return Err(bad("delta.baseline.checkpointFiles"));
    }
    Ok(AttestedBaseline {
        checkpoint_version: u64_at(b, "checkpointVersion")?,
        checkpoint_files: files,
        first_available_commit: u64_at(b, "firstAvailableCommit")?,
    })
}

fn bad(what: &str) -> Error {
    Error::InvalidStatement {
        reason: format!("{what} is missing or malformed"),
    }
}

fn digest_at(v: &Value, path: &[&str]) -> Result<Sha256Digest, Error> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).ok_or_else(|| bad(&path.join(".")))?;
    }
    cur.as_str()
        .ok_or_else(|| bad(&path.join(".")))?
        .parse()
        .map_err(|_| bad(&path.join(".")))
}

fn u64_at(v: &Value, key: &str) -> Result<u64, Error> {
    v.get(key).and_then(Value::as_u64).ok_or_else(|| bad(key))
}

fn opt_digest(v: Option<&Value>) -> Result<Option<Sha256Digest>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some),
        Some(_) => Err(bad("sha256")),
    }
}

/// Parses a change entry as written by `FileChange::to_json`.
pub fn change_from_json(v: &Value) -> Result<AttestedChange, Error> {
    let kind = match v.get("action").and_then(Value::as_str) {
        Some("add") => ChangeKind::Add,
        Some("remove") => ChangeKind::Remove,
        Some("cdc") => ChangeKind::Cdc,
        _ => return Err(bad("changes.entries[].action")),
    };
    let dv = v.get("deletionVector").filter(|d| !d.is_null());
    Ok(AttestedChange {
        kind,
        path: v
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("changes.entries[].path"))?
            .to_owned(),
        size: v.get("size").and_then(Value::as_u64),
        sha256: opt_digest(v.get("sha256"))?,
        dv_unique_id: dv
            .and_then(|d| d.get("uniqueId"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        dv_sha256: opt_digest(dv.and_then(|d| d.get("sha256")))?,
        dv_size_in_bytes: dv
            .and_then(|d| d.get("sizeInBytes"))
            .and_then(Value::as_u64),
        dv_cardinality: dv
            .and_then(|d| d.get("cardinality"))
            .and_then(Value::as_u64),
    })
}

impl AttestedCommit {
    /// Parses the Delta commit facts of an `origin/v1` or `transform/v1` statement.
    pub fn from_statement(statement: &Statement) -> Result<Self, Error> {
        let subject = statement.subject().first().ok_or_else(|| bad("subject"))?;
        let state_root: Sha256Digest = subject
            .sha256()
            .ok_or_else(|| bad("subject digest.sha256"))?
            .parse()?;
        let d = statement
            .predicate()
            .get("delta")
            .ok_or_else(|| bad("predicate.delta"))?;
        let table = d.get("table").ok_or_else(|| bad("delta.table"))?;
        let p = d.get("protocol").ok_or_else(|| bad("delta.protocol"))?;
        let features = |k: &str| -> Vec<String> {
            p.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let pv = |k: &str| -> Result<u32, Error> {
            p.get(k)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad(k))
        };
        let changes = d.get("changes").ok_or_else(|| bad("delta.changes"))?;
        let entries = match changes.get("entries") {
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(change_from_json)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let state = d.get("state").ok_or_else(|| bad("delta.state"))?;
        let previous = match d.get("previousAttestation") {
            None | Some(Value::Null) => None,
            Some(prev) => Some((
                u64_at(prev, "version")?,
                digest_at(prev, &["digest", "sha256"])?,
            )),
        };
        let availability = d.get("dataAvailability").filter(|a| !a.is_null());
        let live_unavailable = match availability {
            None => 0,
            Some(a) => u64_at(a, "liveFilesUnavailable")?,
        };
        let unavailable_files = match availability {
            None => Vec::new(),
            Some(a) => a
                .get("unavailableFiles")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("delta.dataAvailability.unavailableFiles"))?
                .iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("delta.dataAvailability.unavailableFiles"))?,
        };
        let baseline = match d.get("baseline") {
            None | Some(Value::Null) => None,
            Some(b) => Some(baseline_from_json(b)?),
        };
        let reader_view = match d.get("readerView") {
            None | Some(Value::Null) => None,
            Some(r) => Some(ReaderViewDigest::from_json(r)?),
        };
        let attested_at_ms = d
            .get("attestor")
            .and_then(|a| a.get("attestedAt"))
            .and_then(Value::as_str)
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| bad("delta.attestor.attestedAt"))
            })
            .transpose()?;
        Ok(AttestedCommit {
            predicate_type: statement.predicate_type().to_owned(),
            subject_name: subject.name().to_owned(),
            state_root,
            table_uri: table
                .get("uri")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("delta.table.uri"))?
                .to_owned(),
            table_id: table
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("delta.table.id"))?
                .to_owned(),
            table_name: table.get("name").and_then(Value::as_str).map(str::to_owned),
            version: u64_at(d, "version")?,
            timestamp_ms: d
                .get("timestampMs")
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("delta.timestampMs"))?,
            commit_file_digest: digest_at(d, &["commit", "digest", "sha256"])?,
            commit_actions_digest: digest_at(d, &["commit", "actionsDigest", "sha256"])?,
            commit_size: d
                .get("commit")
                .and_then(|c| c.get("size"))
                .and_then(Value::as_u64),
            changes_digest: digest_at(d, &["changes", "digest", "sha256"])?,
            changes: entries,
            live_files: u64_at(state, "files")?,
            live_bytes: u64_at(state, "bytes")?,
            previous,
            attested_at_ms,
            protocol: Protocol::new(
                pv("minReaderVersion")?,
                pv("minWriterVersion")?,
                features("readerFeatures"),
                features("writerFeatures"),
            ),
            schema_digest: digest_at(d, &["schemaDigest", "sha256"])?,
            inputs: match statement.predicate().get("inputs") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(input_from_json)
                    .collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            },
            live_unavailable,
            unavailable_files,
            baseline,
            reader_view,
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
