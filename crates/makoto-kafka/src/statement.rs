//! The `stream-window/v1` statement of a Kafka window, and reading it back.

use std::collections::BTreeMap;

use makoto_core::attestation::STREAM_WINDOW_V1;
use makoto_core::dsse::Envelope;
use makoto_core::statement::{Statement, Subject};
use makoto_core::stream_window::{
    Aggregates, Chain, Collector, Integrity, MerkleTree, Statistics, StreamRef,
    StreamWindowPredicate, Verification, WindowShape,
};
use makoto_core::verify::{TrustedKeys, Verified};
use makoto_core::{Sha256Digest, merkle};
use rskafka::record::Record;
use serde::{Deserialize, Serialize};

use crate::CONTENT_HASH_HEADER;
use crate::encoding::{HeaderPolicy, RecordEncoding};

/// `kafka://<topic>/<partition>#window/records=<N>/<k>`.
pub fn subject(topic: &str, partition: i32, n: u64, k: u64) -> String {
    format!("kafka://{topic}/{partition}#window/records={n}/{k}")
}

/// Whether a `makoto.dbom` record's key is the subject of a window of a topic other than
/// `topic`. Such records are skipped unparsed when `topic`'s windows are looked up, so that a
/// lookup costs what the topic's own windows cost, not every topic's. The key is not signed:
/// it only saves work. Records without a key, or with a key that is not a window subject,
/// are parsed as before, and a parsed statement still counts only if its signed topic is
/// `topic`.
pub(crate) fn key_names_other_topic(key: Option<&[u8]>, topic: &str) -> bool {
    let named = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.strip_prefix("kafka://"))
        .and_then(|rest| rest.split_once('/'))
        .filter(|(_, after)| after.contains("#window/records="))
        .map(|(named, _)| named);
    named.is_some_and(|named| named != topic)
}

pub(crate) struct WindowInput<'a> {
    pub topic: String,
    pub brokers: String,
    pub partition: i32,
    pub window_records: u64,
    pub window: u64,
    pub records: Vec<(i64, &'a Record)>,
    /// `(window number, root)` of the previous window of the partition.
    pub previous: Option<(u64, Sha256Digest)>,
    pub encoding: RecordEncoding,
    pub headers: HeaderPolicy,
}

/// The `formatVersion` of windows that name their header policy (`kafka-record/2` leaves).
const FORMAT_VERSION: u64 = 2;

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds the statement of one window (the bytes signed are its canonical payload), and
/// returns it with the window's Merkle root.
pub(crate) fn build_statement(
    w: &WindowInput<'_>,
) -> Result<(Statement, Sha256Digest), makoto_core::Error> {
    let leaves: Vec<Sha256Digest> = w.records.iter().map(|(_, r)| w.encoding.leaf(r)).collect();
    let root = merkle::root(&leaves);
    let id = subject(&w.topic, w.partition, w.window_records, w.window);
    let unheadered = w
        .records
        .iter()
        .filter(|(_, r)| !r.headers.contains_key(CONTENT_HASH_HEADER))
        .count();
    let min = w.records.iter().map(|(_, r)| r.timestamp).min();
    let max = w.records.iter().map(|(_, r)| r.timestamp).max();
    let span_ms = match (min, max) {
        (Some(a), Some(b)) => (b - a).num_milliseconds().max(0),
        _ => 0,
    };
    let predicate = StreamWindowPredicate {
        stream: StreamRef {
            id: format!("kafka://{}", w.topic),
            source: format!("kafka://{}/{}", w.brokers, w.topic),
            topic: w.topic.clone(),
            partitions: Some(vec![w.partition.to_string()]),
        },
        window: WindowShape {
            kind: "tumbling".into(),
            duration: format!("PT{}.{:03}S", span_ms / 1000, span_ms % 1000),
            alignment: "processing-time".into(),
        },
        integrity: Integrity {
            merkle_tree: MerkleTree::rfc6962(leaves.len() as u64, root),
            chain: Chain {
                chain_length: w.window + 1,
                genesis_window_id: subject(&w.topic, w.partition, w.window_records, 0),
                previous_window_id: w
                    .previous
                    .map(|(k, _)| subject(&w.topic, w.partition, w.window_records, k)),
                previous_merkle_root: w.previous.map(|(_, r)| r),
            },
        },
        aggregates: min.zip(max).map(|(a, b)| Aggregates {
            statistics: Statistics {
                min_timestamp: rfc3339(a),
                max_timestamp: rfc3339(b),
            },
        }),
        collector: Collector {
            id: "https://makoto.dev/attestors/makoto".into(),
        },
        verification: Verification {
            merkle_proof_available: true,
        },
        source: KafkaSource {
            kafka: KafkaBlock {
                format_version: if w.encoding == RecordEncoding::Value1 {
                    1
                } else {
                    FORMAT_VERSION
                },
                topic: w.topic.clone(),
                partition: w.partition,
                window_records: w.window_records,
                window: w.window,
                first_offset: w.records.first().map(|(o, _)| *o),
                last_offset: w.records.last().map(|(o, _)| *o),
                record_encoding: w.encoding,
                headers: (w.encoding != RecordEncoding::Value1).then_some(w.headers),
                unheadered_records: unheadered as u64,
                leaves: leaves.clone(),
                attested_at: rfc3339(chrono::Utc::now()),
            },
        },
    };
    let predicate =
        serde_json::to_value(&predicate).map_err(|e| makoto_core::Error::InvalidStatement {
            reason: format!("window {id}: {e}"),
        })?;
    let statement = Statement::new(
        vec![Subject::new(
            id,
            BTreeMap::from([("sha256".to_owned(), root.to_hex())]),
        )],
        STREAM_WINDOW_V1,
        predicate,
    );
    Ok((statement, root))
}

/// The Kafka source block of a window statement: `{"kafka": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KafkaSource {
    kafka: KafkaBlock,
}

/// `predicate.kafka`. The offsets are written as `null` when absent, as they always were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KafkaBlock {
    format_version: u64,
    topic: String,
    partition: i32,
    window_records: u64,
    window: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    record_encoding: RecordEncoding,
    /// Absent in format 1 (headers were always required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    headers: Option<HeaderPolicy>,
    unheadered_records: u64,
    leaves: Vec<Sha256Digest>,
    attested_at: String,
}

/// A window statement read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaWindow {
    pub id: String,
    pub topic: String,
    pub partition: i32,
    pub window_records: u64,
    pub window: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub root: Sha256Digest,
    pub leaves: Vec<Sha256Digest>,
    /// `(window number, root)` of the previous window.
    pub previous: Option<(u64, Sha256Digest)>,
    /// Earliest and latest record timestamp, ms since the epoch.
    pub min_timestamp_ms: Option<i64>,
    pub max_timestamp_ms: Option<i64>,
    /// What the leaves are computed over.
    pub encoding: RecordEncoding,
    /// Whether the window's records must carry the makoto headers.
    pub headers: HeaderPolicy,
}

/// Verifies an envelope published to `makoto.dbom` with `trust` and reads its window.
pub fn verify_statement(
    bytes: &[u8],
    trust: &TrustedKeys,
) -> Result<Verified<KafkaWindow>, String> {
    let env = Envelope::from_json(bytes).map_err(|e| e.to_string())?;
    makoto_core::verify::verify_statement(&env, trust)
        .map_err(|e| e.to_string())?
        .try_map(|s| window_of(&s))
}

/// Reads the window of an envelope published to `makoto.dbom` without checking its signature:
/// for unsigned (L1) runs continuing their own chain, never for verification.
pub fn read_statement(bytes: &[u8]) -> Result<KafkaWindow, String> {
    let env = Envelope::from_json(bytes).map_err(|e| e.to_string())?;
    window_of(&Statement::from_payload(env.payload()).map_err(|e| e.to_string())?)
}

fn window_of(statement: &Statement) -> Result<KafkaWindow, String> {
    if statement.predicate_type() != STREAM_WINDOW_V1 {
        return Err("not a stream-window statement".into());
    }
    let p: StreamWindowPredicate<KafkaSource> =
        StreamWindowPredicate::deserialize(statement.predicate())
            .map_err(|e| format!("stream-window statement: {e}"))?;
    let (k, tree, chain) = (
        &p.source.kafka,
        &p.integrity.merkle_tree,
        &p.integrity.chain,
    );
    let headers = match (k.format_version, k.record_encoding, k.headers) {
        (1, RecordEncoding::Value1, None) => HeaderPolicy::Required,
        (FORMAT_VERSION, RecordEncoding::Record2, Some(policy)) => policy,
        (1 | FORMAT_VERSION, encoding, policy) => {
            return Err(format!(
                "stream-window statement: kafka.formatVersion {} does not go with recordEncoding {} and headers {}",
                k.format_version,
                encoding.as_str(),
                policy.map_or("(absent)", HeaderPolicy::as_str)
            ));
        }
        (v, _, _) => {
            return Err(format!(
                "stream-window statement: kafka.formatVersion {v} is not supported (1 or {FORMAT_VERSION})"
            ));
        }
    };
    let subject = statement
        .subject()
        .first()
        .ok_or("stream-window statement: no subject")?;
    if merkle::root(&k.leaves) != tree.root || subject.sha256() != Some(tree.root.to_hex().as_str())
    {
        return Err("the leaves, the Merkle root and the subject digest disagree".into());
    }
    let previous = match chain.previous()? {
        Some((id, root)) => {
            let pk = id
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("stream-window statement: chain.previousWindowId is malformed")?;
            Some((pk, root))
        }
        None => None,
    };
    let ts = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.timestamp_millis())
    };
    let stats = p.aggregates.as_ref().map(|a| &a.statistics);
    Ok(KafkaWindow {
        min_timestamp_ms: stats.and_then(|s| ts(&s.min_timestamp)),
        max_timestamp_ms: stats.and_then(|s| ts(&s.max_timestamp)),
        id: subject.name().to_owned(),
        topic: k.topic.clone(),
        partition: k.partition,
        window_records: k.window_records,
        window: k.window,
        first_offset: k.first_offset,
        last_offset: k.last_offset,
        root: tree.root,
        leaves: k.leaves.clone(),
        previous,
        encoding: k.record_encoding,
        headers,
    })
}

/// Signed and verified windows for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use makoto_core::keys::{Signer, SigningKeyPair};

    /// Record `i`: key `k<i>`, value `v<i>`, no headers, timestamp `1000 + i` ms.
    pub(crate) fn record(i: u8) -> Record {
        Record {
            key: Some(vec![b'k', i]),
            value: Some(vec![b'v', i]),
            headers: BTreeMap::new(),
            timestamp: chrono::DateTime::from_timestamp_millis(1_000 + i64::from(i)).unwrap(),
        }
    }

    /// Window `k` of partition 0 of topic `t` (3 records per window, starting at offset
    /// `3k`), chained to `previous`, signed and verified.
    pub(crate) fn window(
        k: u64,
        records: &[Record],
        previous: Option<(u64, Sha256Digest)>,
        headers: HeaderPolicy,
    ) -> Verified<KafkaWindow> {
        let key = SigningKeyPair::from_seed(&[9; 32]);
        let start = (k * 3) as i64;
        let input = WindowInput {
            topic: "t".into(),
            brokers: "b".into(),
            partition: 0,
            window_records: 3,
            window: k,
            records: records
                .iter()
                .enumerate()
                .map(|(i, r)| (start + i as i64, r))
                .collect(),
            previous,
            encoding: RecordEncoding::Record2,
            headers,
        };
        let env = makoto_core::attestation::Attestation::seal(
            build_statement(&input).unwrap().0,
            Some(&key),
        )
        .unwrap()
        .envelope()
        .to_json();
        verify_statement(
            env.as_bytes(),
            &TrustedKeys::new(vec![key.public_key().clone()]),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_key_naming_another_topics_window_is_skipped() {
        let key = |k: &str| Some(k.as_bytes().to_vec());
        let skip = |k: Option<Vec<u8>>| key_names_other_topic(k.as_deref(), "ticks");
        assert!(skip(key(&subject("orders", 0, 10, 3))));
        assert!(!skip(key(&subject("ticks", 0, 10, 3))));
        assert!(skip(key(&subject("ticks-mirror", 1, 10, 0))));
        assert!(!skip(None));
        assert!(!skip(key("")));
        assert!(!skip(key("kafka://orders/0")));
        assert!(!skip(key("something else")));
        assert!(!skip(Some(vec![0xff, 0xfe])));
    }

    use super::*;
    use serde_json::json;

    fn record(value: &str, ms: i64, headered: bool) -> Record {
        let headers = if headered {
            BTreeMap::from([(CONTENT_HASH_HEADER.to_owned(), b"x".to_vec())])
        } else {
            BTreeMap::new()
        };
        Record {
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers,
            timestamp: chrono::DateTime::from_timestamp_millis(ms).unwrap(),
        }
    }

    /// The predicate as Kafka window statements have always carried it (written out by hand,
    /// not by the serde types), and its parse.
    #[test]
    fn the_predicate_keeps_its_signed_shape_and_parses_back() {
        let (a, b) = (record("a", 1_000, true), record("b", 2_500, false));
        let previous_root = Sha256Digest::of(b"p");
        let input = WindowInput {
            topic: "orders".into(),
            brokers: "127.0.0.1:9092".into(),
            partition: 3,
            window_records: 2,
            window: 1,
            records: vec![(10, &a), (11, &b)],
            previous: Some((0, previous_root)),
            encoding: RecordEncoding::Value1,
            headers: HeaderPolicy::Required,
        };
        let s = build_statement(&input).unwrap().0;
        let leaves = [merkle::leaf_hash(b"a"), merkle::leaf_hash(b"b")];
        let root = merkle::root(&leaves);
        let mut p = s.predicate().clone();
        let attested_at = p["kafka"]["attestedAt"].take();
        assert!(attested_at.is_string());
        let expected = json!({
            "stream": {
                "id": "kafka://orders",
                "source": "kafka://127.0.0.1:9092/orders",
                "topic": "orders",
                "partitions": ["3"],
            },
            "window": {"type": "tumbling", "duration": "PT1.500S", "alignment": "processing-time"},
            "integrity": {
                "merkleTree": {
                    "algorithm": "sha256",
                    "leafHashAlgorithm": "rfc6962-sha256",
                    "leafCount": 2,
                    "treeHeight": 1,
                    "root": root.to_hex(),
                },
                "chain": {
                    "chainLength": 2,
                    "genesisWindowId": "kafka://orders/3#window/records=2/0",
                    "previousWindowId": "kafka://orders/3#window/records=2/0",
                    "previousMerkleRoot": previous_root.to_hex(),
                },
            },
            "aggregates": {"statistics": {
                "minTimestamp": "1970-01-01T00:00:01.000Z",
                "maxTimestamp": "1970-01-01T00:00:02.500Z",
            }},
            "collector": {"id": "https://makoto.dev/attestors/makoto"},
            "verification": {"merkleProofAvailable": true},
            "kafka": {
                "formatVersion": 1,
                "topic": "orders",
                "partition": 3,
                "windowRecords": 2,
                "window": 1,
                "firstOffset": 10,
                "lastOffset": 11,
                "recordEncoding": "kafka-value/1",
                "unheaderedRecords": 1,
                "leaves": leaves.iter().map(Sha256Digest::to_hex).collect::<Vec<_>>(),
                "attestedAt": null,
            },
        });
        assert_eq!(p, expected);

        let envelope = Envelope::unsigned(makoto_core::dsse::IN_TOTO_PAYLOAD_TYPE, s.to_payload());
        let back = read_statement(envelope.to_json().as_bytes()).unwrap();
        assert_eq!(
            (back.partition, back.window, back.first_offset, back.root),
            (3, 1, Some(10), root)
        );
        assert_eq!(back.previous, Some((0, previous_root)));
        assert_eq!(
            (back.min_timestamp_ms, back.max_timestamp_ms),
            (Some(1_000), Some(2_500))
        );
    }

    /// Format 2 names its encoding and policy; a statement whose format, encoding and policy
    /// do not go together is refused.
    #[test]
    fn format_2_names_encoding_and_policy_and_mismatches_are_refused() {
        let a = record("a", 1_000, false);
        let input = WindowInput {
            topic: "orders".into(),
            brokers: "b".into(),
            partition: 0,
            window_records: 1,
            window: 0,
            records: vec![(0, &a)],
            previous: None,
            encoding: RecordEncoding::Record2,
            headers: HeaderPolicy::Optional,
        };
        let s = build_statement(&input).unwrap().0;
        let k = &s.predicate()["kafka"];
        assert_eq!(
            (&k["formatVersion"], &k["recordEncoding"], &k["headers"]),
            (&json!(2), &json!("kafka-record/2"), &json!("optional"))
        );
        assert_eq!(
            k["leaves"][0],
            json!(RecordEncoding::Record2.leaf(&a).to_hex())
        );
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut st = s.to_json();
            edit(&mut st["predicate"]["kafka"]);
            let payload = serde_json::to_vec(&st).unwrap();
            let env = Envelope::unsigned(makoto_core::dsse::IN_TOTO_PAYLOAD_TYPE, payload);
            read_statement(env.to_json().as_bytes())
        };
        assert_eq!(with(&|_| {}).unwrap().headers, HeaderPolicy::Optional);
        for edit in [
            &(|k: &mut serde_json::Value| k["formatVersion"] = json!(1))
                as &dyn Fn(&mut serde_json::Value),
            &|k| k["recordEncoding"] = json!("kafka-value/1"),
            &|k| {
                k.as_object_mut().unwrap().remove("headers");
            },
            &|k| k["headers"] = json!("sometimes"),
            &|k| k["formatVersion"] = json!(3),
        ] {
            assert!(with(edit).is_err());
        }
    }

    #[test]
    fn only_a_trusted_signature_makes_a_verified_window() {
        use makoto_core::keys::{Signer, SigningKeyPair};
        let a = record("a", 1_000, true);
        let input = WindowInput {
            topic: "orders".into(),
            brokers: "b".into(),
            partition: 0,
            window_records: 1,
            window: 0,
            records: vec![(0, &a)],
            previous: None,
            encoding: RecordEncoding::Record2,
            headers: HeaderPolicy::Optional,
        };
        let (key, other) = (
            SigningKeyPair::from_seed(&[3; 32]),
            SigningKeyPair::from_seed(&[4; 32]),
        );
        let signed = makoto_core::attestation::Attestation::seal(
            build_statement(&input).unwrap().0,
            Some(&key),
        )
        .unwrap()
        .envelope()
        .to_json();
        let trust = |k: &SigningKeyPair| TrustedKeys::new(vec![k.public_key().clone()]);
        let verified = verify_statement(signed.as_bytes(), &trust(&key)).unwrap();
        assert_eq!(verified.keyid(), key.keyid());
        assert_eq!(verified.value().window, 0);
        assert_eq!(
            (verified.value().encoding, verified.value().headers),
            (RecordEncoding::Record2, HeaderPolicy::Optional)
        );
        assert!(verify_statement(signed.as_bytes(), &trust(&other)).is_err());
        let tampered = signed.replacen("\"payload\":\"", "\"payload\":\"e", 1);
        assert!(verify_statement(tampered.as_bytes(), &trust(&key)).is_err());
    }
}
