//! The `https://makoto.dev/stream-window/v1` predicate as one serde shape: the same types build
//! a window statement's predicate and parse it back, for Delta appends ([`DeltaBlock`]) and
//! Kafka partitions (the `kafka` block of `makoto-kafka`).
//!
//! Optional members are omitted when absent, except where a statement has always carried an
//! explicit `null` (Kafka offsets): the canonical bytes of a statement do not change.

use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::window::{CommitSpan, RecordPos};

/// The predicate of a window statement. `B` is the source's own block, flattened beside the
/// common members (`{"delta": {...}}` or `{"kafka": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamWindowPredicate<B> {
    pub stream: StreamRef,
    pub window: WindowShape,
    pub integrity: Integrity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregates: Option<Aggregates>,
    pub collector: Collector,
    pub verification: Verification,
    #[serde(flatten)]
    pub source: B,
}

/// `predicate.stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRef {
    pub id: String,
    pub source: String,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<String>>,
}

/// `predicate.window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowShape {
    /// Always `tumbling`.
    #[serde(rename = "type")]
    pub kind: String,
    /// ISO 8601 duration.
    pub duration: String,
    /// `event-time` (Delta) or `processing-time` (Kafka).
    pub alignment: String,
}

/// `predicate.integrity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integrity {
    pub merkle_tree: MerkleTree,
    pub chain: Chain,
}

/// `predicate.integrity.merkleTree`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerkleTree {
    /// `sha256`.
    pub algorithm: String,
    /// `rfc6962-sha256`.
    pub leaf_hash_algorithm: String,
    pub leaf_count: u64,
    pub tree_height: u64,
    pub root: Sha256Digest,
}

impl MerkleTree {
    /// The RFC 6962 SHA-256 tree over `leaf_count` leaves with root `root`.
    pub fn rfc6962(leaf_count: u64, root: Sha256Digest) -> Self {
        MerkleTree {
            algorithm: "sha256".into(),
            leaf_hash_algorithm: "rfc6962-sha256".into(),
            leaf_count,
            tree_height: u64::from(crate::merkle::height(
                usize::try_from(leaf_count).unwrap_or(usize::MAX),
            )),
            root,
        }
    }
}

/// `predicate.integrity.chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    /// 1-based position of the window in its chain.
    pub chain_length: u64,
    pub genesis_window_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_window_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_merkle_root: Option<Sha256Digest>,
}

impl Chain {
    /// The previous window's id and root: both or neither.
    pub fn previous(&self) -> Result<Option<(&str, Sha256Digest)>, &'static str> {
        match (&self.previous_window_id, self.previous_merkle_root) {
            (Some(id), Some(root)) => Ok(Some((id, root))),
            (None, None) => Ok(None),
            _ => Err("chain.previousWindowId and chain.previousMerkleRoot come together"),
        }
    }
}

/// `predicate.aggregates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregates {
    pub statistics: Statistics,
}

/// `predicate.aggregates.statistics`: RFC 3339 times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub min_timestamp: String,
    pub max_timestamp: String,
}

/// `predicate.collector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collector {
    pub id: String,
}

/// `predicate.verification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub merkle_proof_available: bool,
}

/// The Delta source block: `{"delta": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaSource {
    pub delta: DeltaBlock,
}

/// `predicate.delta` of a window over a Delta table's appends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaBlock {
    /// 1 or 2; 2 adds `commits`.
    pub format_version: u64,
    pub table_id: String,
    /// `records=N`, `commits=N` or `duration=D`.
    pub spec: String,
    pub record_encoding: String,
    pub first: RecordPos,
    pub last: RecordPos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<Vec<CommitSpan>>,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
    /// RFC 3339.
    pub attested_at: String,
}
