//! Stream windows: records that append-only commits add, grouped into bounded windows, each
//! committed to by an RFC 6962 Merkle root ([`crate::merkle`]) and chained to the previous
//! window. A window is attested by one `https://makoto.dev/stream-window/v1` statement.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use crate::attestation::{STREAM_WINDOW_V1, rfc3339};
use crate::statement::{Statement, Subject};
use crate::{Error, Sha256Digest, merkle};

/// How records are grouped into windows (tumbling, non-overlapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    /// Every `n` records.
    Records(u64),
    /// The records of every `n` append-only commits.
    Commits(u64),
    /// Commit time buckets `[k·d, (k+1)·d)` milliseconds since the epoch.
    Duration { millis: u64 },
}

impl FromStr for WindowSpec {
    type Err = Error;

    /// `records=1000`, `commits=10`, `duration=15m` (`ms`, `s`, `m`, `h`, `d`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidStatement {
            reason: format!(
                "window spec {s:?}: {reason} (use records=N, commits=N or duration=D such as 5m)"
            ),
        };
        let (kind, value) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let positive = |v: &str| -> Result<u64, Error> {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("not a positive integer"))
        };
        match kind {
            "records" => Ok(WindowSpec::Records(positive(value)?)),
            "commits" => Ok(WindowSpec::Commits(positive(value)?)),
            "duration" => {
                let split = value
                    .find(|c: char| !c.is_ascii_digit())
                    .ok_or_else(|| bad("no unit"))?;
                let (n, unit) = value.split_at(split);
                let n = positive(n)?;
                let factor = match unit {
                    "ms" => 1,
                    "s" => 1000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => return Err(bad("unknown unit")),
                };
                Ok(WindowSpec::Duration {
                    millis: n.checked_mul(factor).ok_or_else(|| bad("too long"))?,
                })
            }
            _ => Err(bad("unknown kind")),
        }
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Records(n) => write!(f, "records={n}"),
            WindowSpec::Commits(n) => write!(f, "commits={n}"),
            WindowSpec::Duration { millis } if millis.is_multiple_of(86_400_000) => {
                write!(f, "duration={}d", millis / 86_400_000)
            }
            WindowSpec::Duration { millis } if millis.is_multiple_of(3_600_000) => {
                write!(f, "duration={}h", millis / 3_600_000)
            }
            WindowSpec::Duration { millis } if millis.is_multiple_of(60_000) => {
                write!(f, "duration={}m", millis / 60_000)
            }
            WindowSpec::Duration { millis } if millis.is_multiple_of(1000) => {
                write!(f, "duration={}s", millis / 1000)
            }
            WindowSpec::Duration { millis } => write!(f, "duration={millis}ms"),
        }
    }
}

/// ISO 8601 duration of `ms` milliseconds (`PT1.5S`, `PT900S`).
fn iso_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

/// Where a record is: the commit that added it and its index among that commit's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPos {
    pub version: u64,
    pub index: u64,
}

/// The previous window of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousWindow {
    pub id: String,
    pub root: Sha256Digest,
    pub sequence: u64,
    pub genesis_id: String,
}

/// One closed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFacts {
    pub table_uri: String,
    pub table_id: String,
    pub spec: WindowSpec,
    /// 1-based position in the chain.
    pub sequence: u64,
    pub first: RecordPos,
    pub last: RecordPos,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
    pub leaves: Vec<Sha256Digest>,
    pub previous: Option<PreviousWindow>,
    pub attested_at_ms: i64,
}

/// `<table_uri>#window/<spec>/<sequence>`.
pub fn window_id(table_uri: &str, spec: WindowSpec, sequence: u64) -> String {
    format!("{table_uri}#window/{spec}/{sequence}")
}

impl WindowFacts {
    pub fn id(&self) -> String {
        window_id(&self.table_uri, self.spec, self.sequence)
    }
    pub fn root(&self) -> Sha256Digest {
        merkle::root(&self.leaves)
    }
}

/// The `stream-window/v1` statement of a window. Its subject is the window id with the Merkle
/// root as digest.
pub fn build_window_statement(w: &WindowFacts, attestor: &str) -> Result<Statement, Error> {
    let root = w.root();
    let id = w.id();
    let genesis = w
        .previous
        .as_ref()
        .map_or(id.clone(), |p| p.genesis_id.clone());
    let mut chain = json!({"chainLength": w.sequence, "genesisWindowId": genesis});
    if let (Some(p), Some(c)) = (&w.previous, chain.as_object_mut()) {
        c.insert("previousWindowId".into(), json!(p.id));
        c.insert("previousMerkleRoot".into(), json!(p.root.to_hex()));
    }
    let span = u64::try_from(w.last_timestamp_ms - w.first_timestamp_ms).unwrap_or(0);
    let duration = match w.spec {
        WindowSpec::Duration { millis } => millis,
        _ => span,
    };
    let predicate = json!({
        "stream": {
            "id": w.table_uri,
            "source": w.table_uri,
            "topic": w.table_id,
        },
        "window": {
            "type": "tumbling",
            "duration": iso_duration(duration),
            "alignment": "event-time",
        },
        "integrity": {
            "merkleTree": {
                "algorithm": "sha256",
                "leafHashAlgorithm": "rfc6962-sha256",
                "leafCount": w.leaves.len(),
                "treeHeight": merkle::height(w.leaves.len()),
                "root": root.to_hex(),
            },
            "chain": chain,
        },
        "aggregates": {
            "statistics": {
                "minTimestamp": rfc3339(w.first_timestamp_ms)?,
                "maxTimestamp": rfc3339(w.last_timestamp_ms)?,
            },
        },
        "collector": {"id": attestor},
        "verification": {"merkleProofAvailable": true},
        "delta": {
            "formatVersion": 1,
            "tableId": w.table_id,
            "spec": w.spec.to_string(),
            "recordEncoding": RECORD_ENCODING,
            "first": {"version": w.first.version, "index": w.first.index},
            "last": {"version": w.last.version, "index": w.last.index},
            "firstTimestampMs": w.first_timestamp_ms,
            "lastTimestampMs": w.last_timestamp_ms,
            "attestedAt": rfc3339(w.attested_at_ms)?,
        },
    });
    Ok(Statement::new(
        vec![Subject::new(
            id,
            std::collections::BTreeMap::from([("sha256".to_owned(), root.to_hex())]),
        )],
        STREAM_WINDOW_V1,
        predicate,
    ))
}

/// Name of the record encoding (documented in docs/streams.md).
pub const RECORD_ENCODING: &str = "makoto-record-json/1";

/// What a window statement attests, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedWindow {
    pub id: String,
    pub spec: String,
    pub sequence: u64,
    pub root: Sha256Digest,
    pub leaf_count: u64,
    pub first: RecordPos,
    pub last: RecordPos,
    pub previous_id: Option<String>,
    pub previous_root: Option<Sha256Digest>,
}

impl AttestedWindow {
    pub fn from_statement(s: &Statement) -> Result<Self, Error> {
        let bad = |what: &str| Error::InvalidStatement {
            reason: format!("stream-window statement: {what} is missing or malformed"),
        };
        if s.predicate_type() != STREAM_WINDOW_V1 {
            return Err(bad("predicateType"));
        }
        let p = s.predicate();
        let tree = &p["integrity"]["merkleTree"];
        let chain = &p["integrity"]["chain"];
        let d = &p["delta"];
        let pos = |v: &Value| -> Result<RecordPos, Error> {
            Ok(RecordPos {
                version: v["version"]
                    .as_u64()
                    .ok_or_else(|| bad("delta.first/last"))?,
                index: v["index"].as_u64().ok_or_else(|| bad("delta.first/last"))?,
            })
        };
        let subject = s.subject().first().ok_or_else(|| bad("subject"))?;
        let root: Sha256Digest = tree["root"]
            .as_str()
            .ok_or_else(|| bad("merkleTree.root"))?
            .parse()?;
        if subject.sha256() != Some(root.to_hex().as_str()) {
            return Err(bad("subject digest (must be the Merkle root)"));
        }
        Ok(AttestedWindow {
            id: subject.name().to_owned(),
            spec: d["spec"]
                .as_str()
                .ok_or_else(|| bad("delta.spec"))?
                .to_owned(),
            sequence: chain["chainLength"]
                .as_u64()
                .ok_or_else(|| bad("chain.chainLength"))?,
            root,
            leaf_count: tree["leafCount"]
                .as_u64()
                .ok_or_else(|| bad("merkleTree.leafCount"))?,
            first: pos(&d["first"])?,
            last: pos(&d["last"])?,
            previous_id: chain["previousWindowId"].as_str().map(str::to_owned),
            previous_root: chain["previousMerkleRoot"]
                .as_str()
                .map(str::parse)
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for (s, spec) in [
            ("records=1000", WindowSpec::Records(1000)),
            ("commits=3", WindowSpec::Commits(3)),
            ("duration=15m", WindowSpec::Duration { millis: 900_000 }),
            ("duration=250ms", WindowSpec::Duration { millis: 250 }),
        ] {
            assert_eq!(s.parse::<WindowSpec>().unwrap(), spec);
            assert_eq!(spec.to_string(), s);
        }
        for bad in [
            "records=0",
            "rows=3",
            "duration=5",
            "duration=5w",
            "records",
        ] {
            assert!(bad.parse::<WindowSpec>().is_err(), "{bad}");
        }
        assert_eq!(iso_duration(1500), "PT1.500S");
    }
}
