//! Stream windows: records that append-only commits add, grouped into bounded windows, each
//! committed to by an RFC 6962 Merkle root ([`crate::merkle`]) and chained to the previous
//! window. A window is attested by one `https://makoto.dev/stream-window/v1` statement.
//!
//! Since `predicate.delta.formatVersion` 2 the statement also signs where each commit's
//! records are among the leaves (`predicate.delta.commits`, [`CommitSpan`]), so that a record
//! proof binds the record's `version:index` to its leaf position ([`AttestedWindow::locate`]).
//! Statements of format 1 sign only the first and last record.

use std::fmt;
use std::str::FromStr;

use crate::attestation::{STREAM_WINDOW_V1, rfc3339};
use serde::Deserialize;

use crate::statement::{Statement, Subject};
use crate::stream_window::{
    Aggregates, Chain, Collector, DeltaBlock, DeltaSource, Integrity, MerkleTree, Statistics,
    StreamRef, StreamWindowPredicate, Verification, WindowShape,
};
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
        let bad = |reason: &str| Error::InvalidWindowSpec {
            spec: s.to_owned(),
            reason: reason.to_owned(),
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RecordPos {
    pub version: u64,
    pub index: u64,
}

impl FromStr for RecordPos {
    type Err = Error;

    /// `VERSION:INDEX`, e.g. `12:0`: the INDEX-th record (from 0) that commit VERSION appended.
    fn from_str(s: &str) -> Result<Self, Error> {
        s.split_once(':')
            .and_then(|(v, i)| {
                Some(RecordPos {
                    version: v.parse().ok()?,
                    index: i.parse().ok()?,
                })
            })
            .ok_or_else(|| Error::InvalidRecordPosition {
                input: s.to_owned(),
            })
    }
}

/// A run of consecutive records of one commit inside a window: leaves
/// `position .. position + records` are the records `first_index .. first_index + records` of
/// commit `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpan {
    pub version: u64,
    pub first_index: u64,
    pub position: u64,
    pub records: u64,
}

/// The commit spans of a window whose leaves are the records at `positions`, in leaf order.
pub fn commit_spans(positions: impl IntoIterator<Item = RecordPos>) -> Vec<CommitSpan> {
    let mut spans: Vec<CommitSpan> = Vec::new();
    for (leaf, pos) in (0u64..).zip(positions) {
        match spans.last_mut() {
            Some(s) if s.version == pos.version && s.first_index + s.records == pos.index => {
                s.records += 1;
            }
            _ => spans.push(CommitSpan {
                version: pos.version,
                first_index: pos.index,
                position: leaf,
                records: 1,
            }),
        }
    }
    spans
}

/// `predicate.delta.formatVersion` of the window statements written now.
pub const WINDOW_FORMAT_VERSION: u64 = 2;

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
    /// Where each commit's records are among the leaves ([`commit_spans`] of the records).
    pub commits: Vec<CommitSpan>,
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
    check_spans(&w.commits, w.leaves.len() as u64, w.first, w.last).map_err(|e| {
        Error::InvalidStatement {
            reason: format!("window {id}: commits: {e}"),
        }
    })?;
    let genesis = w
        .previous
        .as_ref()
        .map_or(id.clone(), |p| p.genesis_id.clone());
    let span = u64::try_from(w.last_timestamp_ms - w.first_timestamp_ms).unwrap_or(0);
    let duration = match w.spec {
        WindowSpec::Duration { millis } => millis,
        _ => span,
    };
    let predicate = StreamWindowPredicate {
        stream: StreamRef {
            id: w.table_uri.clone(),
            source: w.table_uri.clone(),
            topic: w.table_id.clone(),
            partitions: None,
        },
        window: WindowShape {
            kind: "tumbling".into(),
            duration: iso_duration(duration),
            alignment: "event-time".into(),
        },
        integrity: Integrity {
            merkle_tree: MerkleTree::rfc6962(w.leaves.len() as u64, root),
            chain: Chain {
                chain_length: w.sequence,
                genesis_window_id: genesis,
                previous_window_id: w.previous.as_ref().map(|p| p.id.clone()),
                previous_merkle_root: w.previous.as_ref().map(|p| p.root),
            },
        },
        aggregates: Some(Aggregates {
            statistics: Statistics {
                min_timestamp: rfc3339(w.first_timestamp_ms)?,
                max_timestamp: rfc3339(w.last_timestamp_ms)?,
            },
        }),
        collector: Collector {
            id: attestor.to_owned(),
        },
        verification: Verification {
            merkle_proof_available: true,
        },
        source: DeltaSource {
            delta: DeltaBlock {
                format_version: WINDOW_FORMAT_VERSION,
                table_id: w.table_id.clone(),
                spec: w.spec.to_string(),
                record_encoding: RECORD_ENCODING.into(),
                first: w.first,
                last: w.last,
                commits: Some(w.commits.clone()),
                first_timestamp_ms: w.first_timestamp_ms,
                last_timestamp_ms: w.last_timestamp_ms,
                attested_at: rfc3339(w.attested_at_ms)?,
            },
        },
    };
    let predicate = serde_json::to_value(&predicate).map_err(|e| Error::InvalidStatement {
        reason: format!("window {id}: {e}"),
    })?;
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
    /// `predicate.delta.formatVersion` (1 or 2).
    pub format_version: u64,
    /// `predicate.delta.commits` (format 2); `None` for format 1, which does not sign it.
    pub commits: Option<Vec<CommitSpan>>,
}

/// Checks that `commits` describe exactly the leaves `0..leaf_count`, from `first` to `last`:
/// spans in leaf order, contiguous from position 0, each of at least one record, one per
/// commit in increasing version order, every span but the first starting at record 0.
fn check_spans(
    commits: &[CommitSpan],
    leaf_count: u64,
    first: RecordPos,
    last: RecordPos,
) -> Result<(), String> {
    let mut next = 0u64;
    let mut previous: Option<u64> = None;
    for (k, c) in commits.iter().enumerate() {
        if c.records == 0 {
            return Err(format!("commits[{k}] holds no record"));
        }
        if c.position != next {
            return Err(format!(
                "commits[{k}] starts at leaf {}, the previous spans end at leaf {next}",
                c.position
            ));
        }
        if previous.is_some_and(|v| c.version <= v) {
            return Err(format!("commits[{k}]: versions are not increasing"));
        }
        if k > 0 && c.first_index != 0 {
            return Err(format!(
                "commits[{k}] starts at record {} of version {} (only the first span may start after record 0)",
                c.first_index, c.version
            ));
        }
        c.first_index
            .checked_add(c.records)
            .ok_or_else(|| format!("commits[{k}]: record index overflows"))?;
        next = next
            .checked_add(c.records)
            .ok_or_else(|| format!("commits[{k}]: leaf position overflows"))?;
        previous = Some(c.version);
    }
    if next != leaf_count {
        return Err(format!(
            "the spans hold {next} records, the tree {leaf_count} leaves"
        ));
    }
    let (Some(a), Some(b)) = (commits.first(), commits.last()) else {
        return Err("no span".into());
    };
    if (RecordPos {
        version: a.version,
        index: a.first_index,
    }) != first
    {
        return Err("the first span does not start at the first record".into());
    }
    if (RecordPos {
        version: b.version,
        index: b.first_index + b.records - 1,
    }) != last
    {
        return Err("the last span does not end at the last record".into());
    }
    Ok(())
}

impl AttestedWindow {
    pub fn from_statement(s: &Statement) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidStatement {
            reason: format!("stream-window statement: {reason}"),
        };
        let bad = |what: &str| invalid(format!("{what} is missing or malformed"));
        if s.predicate_type() != STREAM_WINDOW_V1 {
            return Err(bad("predicateType"));
        }
        let p: StreamWindowPredicate<DeltaSource> =
            StreamWindowPredicate::deserialize(s.predicate())
                .map_err(|e| invalid(e.to_string()))?;
        let (tree, chain, d) = (
            &p.integrity.merkle_tree,
            &p.integrity.chain,
            &p.source.delta,
        );
        let subject = s.subject().first().ok_or_else(|| bad("subject"))?;
        if subject.sha256() != Some(tree.root.to_hex().as_str()) {
            return Err(bad("subject digest (must be the Merkle root)"));
        }
        let previous = chain.previous().map_err(|e| invalid(e.to_owned()))?;
        let commits = match (d.format_version, &d.commits) {
            (1, None) => None,
            (1, Some(_)) => return Err(bad("delta.commits (not part of formatVersion 1)")),
            (2, Some(spans)) => {
                check_spans(spans, tree.leaf_count, d.first, d.last)
                    .map_err(|e| invalid(format!("delta.commits: {e}")))?;
                Some(spans.clone())
            }
            (2, None) => return Err(bad("delta.commits")),
            (v, _) => {
                return Err(invalid(format!(
                    "delta.formatVersion {v} is not supported (1 or 2)"
                )));
            }
        };
        Ok(AttestedWindow {
            id: subject.name().to_owned(),
            spec: d.spec.clone(),
            sequence: chain.chain_length,
            root: tree.root,
            leaf_count: tree.leaf_count,
            first: d.first,
            last: d.last,
            previous_id: previous.map(|(id, _)| id.to_owned()),
            previous_root: previous.map(|(_, root)| root),
            format_version: d.format_version,
            commits,
        })
    }

    /// The leaf position of record `pos` as the signed statement pins it, or why the statement
    /// does not pin it: format 2 from its commit spans; format 1 only for the first and last
    /// record, and for any record of a window that holds the records of a single commit.
    pub fn locate(&self, pos: RecordPos) -> Result<u64, String> {
        let at = |p: RecordPos| format!("{}:{}", p.version, p.index);
        if pos < self.first || pos > self.last {
            return Err(format!(
                "record {} is not in window {} (it holds records {} to {})",
                at(pos),
                self.id,
                at(self.first),
                at(self.last)
            ));
        }
        if let Some(spans) = &self.commits {
            return spans
                .iter()
                .find(|c| {
                    c.version == pos.version
                        && pos.index >= c.first_index
                        && pos.index - c.first_index < c.records
                })
                .map(|c| c.position + (pos.index - c.first_index))
                .ok_or_else(|| {
                    format!(
                        "window {} signs no record {} (version {} has no such record in it)",
                        self.id,
                        at(pos),
                        pos.version
                    )
                });
        }
        let last_leaf = self.leaf_count.checked_sub(1);
        if pos == self.first {
            return Ok(0);
        }
        if pos == self.last
            && let Some(l) = last_leaf
        {
            return Ok(l);
        }
        if self.first.version == self.last.version
            && self.last.index.checked_sub(self.first.index) == last_leaf
        {
            return Ok(pos.index - self.first.index);
        }
        Err(format!(
            "window {} has stream-window formatVersion 1: it signs only its first record ({}) and its last ({}), not which leaf holds each commit's records, so record {} cannot be tied to a leaf",
            self.id,
            at(self.first),
            at(self.last),
            at(pos)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_positions_parse() {
        assert_eq!(
            "12:0".parse::<RecordPos>().unwrap(),
            RecordPos {
                version: 12,
                index: 0
            }
        );
        for bad in ["12", "12:", ":0", "a:1", "1:-1", "1:2:3", ""] {
            let e = bad.parse::<RecordPos>().unwrap_err();
            assert!(e.to_string().contains("VERSION:INDEX"), "{bad}: {e}");
        }
    }

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

    fn pos(version: u64, index: u64) -> RecordPos {
        RecordPos { version, index }
    }

    /// Records 2:4..=2:9, 3:0..=3:2, 5:0 (a window that starts inside commit 2).
    fn facts() -> WindowFacts {
        let positions: Vec<RecordPos> = (4..10)
            .map(|i| pos(2, i))
            .chain((0..3).map(|i| pos(3, i)))
            .chain([pos(5, 0)])
            .collect();
        WindowFacts {
            table_uri: "file:///t".into(),
            table_id: "id".into(),
            spec: WindowSpec::Records(10),
            sequence: 2,
            first: positions[0],
            last: positions[9],
            first_timestamp_ms: 0,
            last_timestamp_ms: 0,
            leaves: positions
                .iter()
                .map(|p| merkle::leaf_hash(format!("{p:?}").as_bytes()))
                .collect(),
            commits: commit_spans(positions.iter().copied()),
            previous: Some(PreviousWindow {
                id: "file:///t#window/records=10/1".into(),
                root: Sha256Digest::of(b"r"),
                sequence: 1,
                genesis_id: "file:///t#window/records=10/1".into(),
            }),
            attested_at_ms: 0,
        }
    }

    /// The predicate as statements have always carried it (written out by hand, not by the
    /// serde types): a change here changes signed bytes.
    #[test]
    fn the_predicate_keeps_its_signed_shape() {
        let f = facts();
        let s = build_window_statement(&f, "https://makoto.dev/attestors/makoto").unwrap();
        let root = f.root().to_hex();
        let expected = json!({
            "stream": {"id": "file:///t", "source": "file:///t", "topic": "id"},
            "window": {"type": "tumbling", "duration": "PT0S", "alignment": "event-time"},
            "integrity": {
                "merkleTree": {
                    "algorithm": "sha256",
                    "leafHashAlgorithm": "rfc6962-sha256",
                    "leafCount": 10,
                    "treeHeight": 4,
                    "root": root,
                },
                "chain": {
                    "chainLength": 2,
                    "genesisWindowId": "file:///t#window/records=10/1",
                    "previousWindowId": "file:///t#window/records=10/1",
                    "previousMerkleRoot": Sha256Digest::of(b"r").to_hex(),
                },
            },
            "aggregates": {"statistics": {
                "minTimestamp": "1970-01-01T00:00:00.000Z",
                "maxTimestamp": "1970-01-01T00:00:00.000Z",
            }},
            "collector": {"id": "https://makoto.dev/attestors/makoto"},
            "verification": {"merkleProofAvailable": true},
            "delta": {
                "formatVersion": 2,
                "tableId": "id",
                "spec": "records=10",
                "recordEncoding": "makoto-record-json/1",
                "first": {"version": 2, "index": 4},
                "last": {"version": 5, "index": 0},
                "commits": [
                    {"version": 2, "firstIndex": 4, "position": 0, "records": 6},
                    {"version": 3, "firstIndex": 0, "position": 6, "records": 3},
                    {"version": 5, "firstIndex": 0, "position": 9, "records": 1},
                ],
                "firstTimestampMs": 0,
                "lastTimestampMs": 0,
                "attestedAt": "1970-01-01T00:00:00.000Z",
            },
        });
        assert_eq!(s.predicate(), &expected);
        let back = AttestedWindow::from_statement(&s).unwrap();
        assert_eq!(
            (back.sequence, back.leaf_count, back.first, back.last),
            (2, 10, f.first, f.last)
        );
        assert_eq!(back.commits.as_deref(), Some(f.commits.as_slice()));
    }

    #[test]
    fn format_2_pins_every_record_to_its_leaf() {
        let f = facts();
        assert_eq!(
            f.commits,
            vec![
                CommitSpan {
                    version: 2,
                    first_index: 4,
                    position: 0,
                    records: 6
                },
                CommitSpan {
                    version: 3,
                    first_index: 0,
                    position: 6,
                    records: 3
                },
                CommitSpan {
                    version: 5,
                    first_index: 0,
                    position: 9,
                    records: 1
                },
            ]
        );
        let s = build_window_statement(&f, "a").unwrap();
        assert_eq!(s.predicate()["delta"]["formatVersion"], 2);
        let w = AttestedWindow::from_statement(&s).unwrap();
        assert_eq!(w.locate(pos(2, 4)), Ok(0));
        assert_eq!(w.locate(pos(2, 9)), Ok(5));
        assert_eq!(w.locate(pos(3, 2)), Ok(8));
        assert_eq!(w.locate(pos(5, 0)), Ok(9));
        for p in [
            pos(2, 3),
            pos(3, 3),
            pos(4, 0),
            pos(5, 1),
            pos(1, 0),
            pos(9, 0),
        ] {
            assert!(w.locate(p).is_err(), "{p:?}");
        }
        // Spans that do not describe the leaves are refused, when signing and when reading.
        let mut broken = f.clone();
        broken.commits[1].records = 2;
        assert!(build_window_statement(&broken, "a").is_err());
        for edit in [
            json!([{"version": 2, "firstIndex": 4, "position": 0, "records": 10}]),
            json!([{"version": 2, "firstIndex": 4, "position": 1, "records": 6},
                   {"version": 3, "firstIndex": 0, "position": 7, "records": 3},
                   {"version": 5, "firstIndex": 0, "position": 10, "records": 1}]),
            json!([{"version": 2, "firstIndex": 4, "position": 0, "records": 6},
                   {"version": 3, "firstIndex": 1, "position": 6, "records": 3},
                   {"version": 5, "firstIndex": 0, "position": 9, "records": 1}]),
            json!([{"version": 2, "firstIndex": 4, "position": 0, "records": 6},
                   {"version": 5, "firstIndex": 0, "position": 6, "records": 3},
                   {"version": 5, "firstIndex": 0, "position": 9, "records": 1}]),
            json!([{"version": 2, "firstIndex": 4, "position": 0, "records": 6},
                   {"version": 3, "firstIndex": 0, "position": 6, "records": 3},
                   {"version": 5, "firstIndex": 0, "position": 9}]),
            json!(null),
        ] {
            let mut p = s.predicate().clone();
            p["delta"]["commits"] = edit.clone();
            let edited = Statement::new(s.subject().to_vec(), STREAM_WINDOW_V1, p);
            assert!(AttestedWindow::from_statement(&edited).is_err(), "{edit}");
        }
    }

    #[test]
    fn format_1_pins_only_what_it_signs() {
        let s = build_window_statement(&facts(), "a").unwrap();
        let v1 = |first: RecordPos, last: RecordPos| {
            let mut p = s.predicate().clone();
            p["delta"]["formatVersion"] = json!(1);
            p["delta"]["first"] = json!({"version": first.version, "index": first.index});
            p["delta"]["last"] = json!({"version": last.version, "index": last.index});
            if let Some(d) = p["delta"].as_object_mut() {
                d.remove("commits");
            }
            AttestedWindow::from_statement(&Statement::new(
                s.subject().to_vec(),
                STREAM_WINDOW_V1,
                p,
            ))
            .unwrap()
        };
        let w = v1(pos(2, 4), pos(5, 0));
        assert_eq!(w.format_version, 1);
        assert_eq!(w.locate(pos(2, 4)), Ok(0));
        assert_eq!(w.locate(pos(5, 0)), Ok(9));
        let err = w.locate(pos(2, 5)).unwrap_err();
        assert!(err.contains("formatVersion 1"), "{err}");
        assert!(w.locate(pos(3, 0)).is_err());
        // Ten records of one commit: every one is pinned.
        let one = v1(pos(7, 3), pos(7, 12));
        assert_eq!(one.locate(pos(7, 8)), Ok(5));
        assert!(one.locate(pos(7, 13)).is_err());
        // A format 1 statement does not carry commit spans.
        let mut p = s.predicate().clone();
        p["delta"]["formatVersion"] = json!(1);
        let st = Statement::new(s.subject().to_vec(), STREAM_WINDOW_V1, p);
        assert!(AttestedWindow::from_statement(&st).is_err());
    }
}
