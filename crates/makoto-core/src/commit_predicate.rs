//! The predicates of commit statements as serde shapes: `origin/v1` for the first attested
//! version of a table, `transform/v1` for every later one. [`crate::attestation`] fills them in
//! to build a statement and [`crate::attested`] reads a statement back through the same types.
//!
//! A member that statements have always written as an explicit `null` when unknown is an
//! `Option` that serializes as `null`; a member that is absent unless it applies is skipped
//! when `None`. Either way the canonical bytes of a statement are what they always were.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Sha256Digest;
use crate::attestation::{ChangeKind, MakotoLevel};

/// `{"sha256": "<hex>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSet {
    pub sha256: Sha256Digest,
}

impl From<Sha256Digest> for DigestSet {
    fn from(sha256: Sha256Digest) -> Self {
        DigestSet { sha256 }
    }
}

/// The predicate of an `origin/v1` statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginPredicate {
    pub origin: Origin,
    pub collector: Party,
    pub schema: SchemaRef,
    pub metadata: OriginMetadata,
    pub delta: DeltaBlock,
}

/// `predicate.origin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    pub source: String,
    /// RFC 3339.
    pub collection_timestamp: String,
}

/// `predicate.schema` of an origin statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRef {
    /// `delta`.
    pub format: String,
    pub schema_digest: DigestSet,
}

/// `predicate.metadata` of an origin statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OriginMetadata {
    pub bytes_collected: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_collected: Option<u64>,
}

/// The predicate of a `transform/v1` statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformPredicate {
    pub inputs: Vec<InputEntry>,
    pub transform: TransformSpec,
    pub executor: Party,
    pub metadata: TransformMetadata,
    /// Cross-table transforms only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<InputVerification>,
    pub delta: DeltaBlock,
}

/// An entry of `predicate.inputs`: the previous version of the table, or a version of another
/// table a cross-table transform read (then with its `delta` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputEntry {
    /// `<table_uri>@v<N>`.
    pub name: String,
    /// The input's attested state digest, or for an unattested input its commit file's.
    pub digest: DigestSet,
    /// `urn:makoto:attestation:sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub makoto_level: Option<MakotoLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<InputDelta>,
}

/// `inputs[].delta` of a cross-table input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDelta {
    pub alias: String,
    pub table_uri: String,
    pub version: u64,
    /// `verified-deep`, `verified-log-only` or `unverified`.
    pub check: String,
    pub commit_digest: DigestSet,
    /// `tableState` or `commitFile`: what `digest` is the digest of.
    pub digest_of: String,
}

/// `predicate.transform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// The Delta operation's parameters, or the SQL transform's query, mode and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `predicate.metadata` of a transform statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformMetadata {
    pub started_on: String,
    pub finished_on: String,
    pub bytes_output: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_output: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
}

/// `predicate.verification` of a cross-table transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputVerification {
    pub input_hash_verified: bool,
}

/// `predicate.collector` (origin) or `predicate.executor` (transform): the writing engine and
/// who ran it, as far as the commit says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    /// The attestor's identity when it was given one, else the writing engine.
    pub id: String,
    pub platform: String,
    /// The writing engine (commitInfo.engineInfo), when `id` holds the attestor's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Component versions parsed from the engine string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// `predicate.delta`: the Delta facts of the commit, the same in both predicate types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaBlock {
    pub format_version: u32,
    pub table: TableRef,
    pub version: u64,
    /// RFC 3339.
    pub timestamp: String,
    pub timestamp_ms: i64,
    pub timestamp_source: String,
    pub commit: CommitRef,
    pub protocol: ProtocolRef,
    pub schema_digest: DigestSet,
    pub state: StateRef,
    pub changes: ChangesBlock,
    /// Format 2; absent from format 1 statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_view: Option<Value>,
    pub previous_attestation: Option<PreviousRef>,
    pub attestor: AttestorRef,
    /// Only when some data files were gone when the version was first attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_availability: Option<AvailabilityBlock>,
    /// Only for a chain that starts from a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineBlock>,
}

/// `delta.table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRef {
    pub uri: String,
    pub id: String,
    pub name: Option<String>,
}

/// `delta.commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRef {
    pub path: String,
    pub size: Option<u64>,
    pub digest: DigestSet,
    pub actions_digest: DigestSet,
    pub action_counts: BTreeMap<String, u64>,
}

/// `delta.protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolRef {
    pub min_reader_version: u32,
    pub min_writer_version: u32,
    #[serde(default)]
    pub reader_features: Vec<String>,
    #[serde(default)]
    pub writer_features: Vec<String>,
}

/// `delta.state`: the state tree of the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    pub algorithm: String,
    pub root: Sha256Digest,
    pub files: u64,
    pub bytes: u64,
}

/// `delta.changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesBlock {
    pub digest: DigestSet,
    pub files_added: u64,
    pub files_removed: u64,
    pub cdc_files: u64,
    pub bytes_added: u64,
    pub bytes_removed: u64,
    pub records_added: Option<u64>,
    pub entries_inline: bool,
    /// The changes themselves, up to [`crate::attestation::INLINE_CHANGES_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<ChangeEntry>>,
}

/// One file change: an entry of `delta.changes.entries`, and the unit the changes digest is
/// computed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEntry {
    pub action: ChangeKind,
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<Sha256Digest>,
    pub data_change: bool,
    pub partition_values: BTreeMap<String, Option<String>>,
    pub num_records: Option<u64>,
    pub deletion_vector: Option<DvEntry>,
}

/// A change's deletion vector: the descriptor as in the log, plus its unique id, file and the
/// SHA-256 of that file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DvEntry {
    pub storage_type: String,
    pub path_or_inline_dv: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub size_in_bytes: u64,
    pub cardinality: u64,
    pub unique_id: String,
    pub file: Option<String>,
    pub sha256: Option<Sha256Digest>,
}

/// `delta.previousAttestation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousRef {
    pub version: u64,
    pub digest: DigestSet,
}

/// `delta.attestor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestorRef {
    pub name: String,
    pub version: String,
    pub deltalake: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_at: Option<String>,
}

/// `delta.dataAvailability`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityBlock {
    /// `unavailable`.
    pub status: String,
    pub unavailable_files: Vec<String>,
    pub live_files_unavailable: u64,
}

/// `delta.baseline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineBlock {
    /// `checkpoint`.
    pub kind: String,
    pub checkpoint_version: u64,
    pub checkpoint_files: Vec<CheckpointFileRef>,
    pub first_available_commit: u64,
    #[serde(default)]
    pub reason: String,
}

/// An entry of `delta.baseline.checkpointFiles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFileRef {
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delta_block() -> Value {
        let d = "ab".repeat(32);
        json!({
            "formatVersion": 2,
            "table": {"uri": "file:///t", "id": "id-1", "name": null},
            "version": 3,
            "timestamp": "2026-01-01T00:00:00.000Z",
            "timestampMs": 1_767_225_600_000i64,
            "timestampSource": "commitInfo",
            "commit": {
                "path": "_delta_log/00000000000000000003.json",
                "size": 812,
                "digest": {"sha256": d},
                "actionsDigest": {"sha256": d},
                "actionCounts": {"add": 1, "commitInfo": 1, "remove": 1},
            },
            "protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]},
            "schemaDigest": {"sha256": d},
            "state": {"algorithm": "makoto-state-tree/1", "root": d, "files": 1, "bytes": 10},
            "changes": {
                "digest": {"sha256": d},
                "filesAdded": 1, "filesRemoved": 1, "cdcFiles": 0,
                "bytesAdded": 10, "bytesRemoved": 10, "recordsAdded": null,
                "entriesInline": true,
                "entries": [
                    {"action": "add", "path": "a.parquet", "size": 10, "sha256": d,
                     "dataChange": false, "partitionValues": {"p": null}, "numRecords": null,
                     "deletionVector": {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^",
                        "offset": 1, "sizeInBytes": 36, "cardinality": 2, "uniqueId": "uab^-aqEH.-t@S}K{vb[*k^@1",
                        "file": "deletion_vector_x.bin", "sha256": d}},
                    {"action": "remove", "path": "a.parquet", "size": 10, "sha256": null,
                     "dataChange": false, "partitionValues": {}, "numRecords": null,
                     "deletionVector": null},
                ],
            },
            "previousAttestation": {"version": 2, "digest": {"sha256": d}},
            "attestor": {"name": "makoto", "version": "0.1.0", "deltalake": "1.1.3",
                "attestedAt": "2026-01-01T00:00:01.000Z"},
            "baseline": {"kind": "checkpoint", "checkpointVersion": 2,
                "checkpointFiles": [{"path": "_delta_log/2.checkpoint.parquet", "size": 5, "sha256": d}],
                "firstAvailableCommit": 2, "reason": "cleaned up"},
        })
    }

    /// What a statement holds, the types read and write back unchanged: optional members
    /// stay absent and explicit nulls stay null.
    #[test]
    fn a_transform_predicate_round_trips_byte_for_byte() {
        let d = "cd".repeat(32);
        let predicate = json!({
            "inputs": [
                {"name": "file:///t@v2", "digest": {"sha256": d},
                 "attestationRef": format!("urn:makoto:attestation:sha256:{d}"), "makotoLevel": "L2"},
                {"name": "file:///u@v7", "digest": {"sha256": d},
                 "delta": {"alias": "u", "tableUri": "file:///u", "version": 7, "check": "unverified",
                    "commitDigest": {"sha256": d}, "digestOf": "commitFile"}},
            ],
            "transform": {"type": "https://makoto.dev/transforms/sql", "name": "t",
                "parameters": {"query": "SELECT 1", "mode": "append"}},
            "executor": {"id": "delta-rs.0.1", "platform": "delta-rs", "userName": "ann"},
            "metadata": {"startedOn": "x", "finishedOn": "y", "bytesOutput": 10},
            "verification": {"inputHashVerified": false},
            "delta": delta_block(),
        });
        let parsed: TransformPredicate = serde_json::from_value(predicate.clone()).unwrap();
        assert_eq!(
            parsed.inputs[1].delta.as_ref().unwrap().digest_of,
            "commitFile"
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), predicate);
    }

    #[test]
    fn an_origin_predicate_round_trips_and_bad_members_are_errors() {
        let d = "ef".repeat(32);
        let mut predicate = json!({
            "origin": {"source": "file:///t", "collectionTimestamp": "2026-01-01T00:00:00.000Z"},
            "collector": {"id": "x", "platform": "other", "version": {"x": "1"}},
            "schema": {"format": "delta", "schemaDigest": {"sha256": d}},
            "metadata": {"bytesCollected": 0, "recordsCollected": 4},
            "delta": delta_block(),
        });
        let parsed: OriginPredicate = serde_json::from_value(predicate.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), predicate);
        predicate["delta"]["changes"]["entries"][0]["action"] = json!("rename");
        assert!(serde_json::from_value::<OriginPredicate>(predicate.clone()).is_err());
        predicate["delta"]["changes"]["entries"][0]["action"] = json!("add");
        predicate["delta"]["state"]["root"] = json!("not hex");
        assert!(serde_json::from_value::<OriginPredicate>(predicate).is_err());
    }
}
