//! The `stream-window/v1` statement of a Kafka window, and reading it back.

use std::collections::BTreeMap;

use makoto_core::attestation::STREAM_WINDOW_V1;
use makoto_core::dsse::Envelope;
use makoto_core::statement::{Statement, Subject};
use makoto_core::verify::TrustedKeys;
use makoto_core::{Sha256Digest, merkle};
use rskafka::record::Record;
use serde_json::json;

use crate::{CONTENT_HASH_HEADER, record_leaf};

/// `kafka://<topic>/<partition>#window/records=<N>/<k>`.
pub fn subject(topic: &str, partition: i32, n: u64, k: u64) -> String {
    format!("kafka://{topic}/{partition}#window/records={n}/{k}")
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
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds the statement of one window (the bytes signed are its canonical payload).
pub(crate) fn build_statement(w: &WindowInput<'_>) -> Result<Statement, makoto_core::Error> {
    let leaves: Vec<Sha256Digest> = w.records.iter().map(|(_, r)| record_leaf(r)).collect();
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
    let mut chain = json!({
        "chainLength": w.window + 1,
        "genesisWindowId": subject(&w.topic, w.partition, w.window_records, 0),
    });
    if let (Some((k, r)), Some(c)) = (w.previous, chain.as_object_mut()) {
        c.insert(
            "previousWindowId".into(),
            json!(subject(&w.topic, w.partition, w.window_records, k)),
        );
        c.insert("previousMerkleRoot".into(), json!(r.to_hex()));
    }
    let mut predicate = json!({
        "stream": {
            "id": format!("kafka://{}", w.topic),
            "source": format!("kafka://{}/{}", w.brokers, w.topic),
            "topic": w.topic,
            "partitions": [w.partition.to_string()],
        },
        "window": {
            "type": "tumbling",
            "duration": format!("PT{}.{:03}S", span_ms / 1000, span_ms % 1000),
            "alignment": "processing-time",
        },
        "integrity": {
            "merkleTree": {
                "algorithm": "sha256",
                "leafHashAlgorithm": "rfc6962-sha256",
                "leafCount": leaves.len(),
                "treeHeight": merkle::height(leaves.len()),
                "root": root.to_hex(),
            },
            "chain": chain,
        },
        "collector": {"id": "https://makoto.dev/attestors/makoto"},
        "verification": {"merkleProofAvailable": true},
        "kafka": {
            "formatVersion": 1,
            "topic": w.topic,
            "partition": w.partition,
            "windowRecords": w.window_records,
            "window": w.window,
            "firstOffset": w.records.first().map(|(o, _)| *o),
            "lastOffset": w.records.last().map(|(o, _)| *o),
            "recordEncoding": "kafka-value/1",
            "unheaderedRecords": unheadered,
            "leaves": leaves.iter().map(Sha256Digest::to_hex).collect::<Vec<_>>(),
            "attestedAt": rfc3339(chrono::Utc::now()),
        },
    });
    if let (Some(a), Some(b), Some(p)) = (min, max, predicate.as_object_mut()) {
        p.insert(
            "aggregates".into(),
            json!({"statistics": {"minTimestamp": rfc3339(a), "maxTimestamp": rfc3339(b)}}),
        );
    }
    Ok(Statement::new(
        vec![Subject::new(
            id,
            BTreeMap::from([("sha256".to_owned(), root.to_hex())]),
        )],
        STREAM_WINDOW_V1,
        predicate,
    ))
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
}

/// Parses an envelope published to `makoto.dbom`; with `trust`, only a statement signed by one
/// of those keys is accepted.
pub fn parse_statement(bytes: &[u8], trust: Option<&TrustedKeys>) -> Result<KafkaWindow, String> {
    let env = Envelope::from_json(bytes).map_err(|e| e.to_string())?;
    let statement = match trust {
        Some(t) => makoto_core::verify::verify_statement(&env, t)
            .map_err(|e| e.to_string())?
            .value()
            .clone(),
        None => Statement::from_payload(env.payload()).map_err(|e| e.to_string())?,
    };
    if statement.predicate_type() != STREAM_WINDOW_V1 {
        return Err("not a stream-window statement".into());
    }
    let k = &statement.predicate()["kafka"];
    let bad = |what: &str| format!("stream-window statement: kafka.{what} missing or malformed");
    let leaves = k["leaves"]
        .as_array()
        .ok_or_else(|| bad("leaves"))?
        .iter()
        .map(|v| v.as_str().and_then(|s| s.parse().ok()))
        .collect::<Option<Vec<Sha256Digest>>>()
        .ok_or_else(|| bad("leaves"))?;
    let root: Sha256Digest = statement.predicate()["integrity"]["merkleTree"]["root"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("integrity.merkleTree.root"))?;
    let subject = statement.subject().first().ok_or_else(|| bad("subject"))?;
    if merkle::root(&leaves) != root || subject.sha256() != Some(root.to_hex().as_str()) {
        return Err("the leaves, the Merkle root and the subject digest disagree".into());
    }
    let chain = &statement.predicate()["integrity"]["chain"];
    let window = k["window"].as_u64().ok_or_else(|| bad("window"))?;
    let window_records = k["windowRecords"]
        .as_u64()
        .ok_or_else(|| bad("windowRecords"))?;
    let previous = match (
        chain["previousWindowId"].as_str(),
        chain["previousMerkleRoot"].as_str(),
    ) {
        (Some(id), Some(r)) => {
            let pk = id
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad("chain.previousWindowId"))?;
            Some((pk, r.parse().map_err(|_| bad("chain.previousMerkleRoot"))?))
        }
        _ => None,
    };
    let ts = |k: &str| {
        statement.predicate()["aggregates"]["statistics"][k]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
    };
    Ok(KafkaWindow {
        min_timestamp_ms: ts("minTimestamp"),
        max_timestamp_ms: ts("maxTimestamp"),
        id: subject.name().to_owned(),
        topic: k["topic"].as_str().ok_or_else(|| bad("topic"))?.to_owned(),
        partition: k["partition"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| bad("partition"))?,
        window_records,
        window,
        first_offset: k["firstOffset"].as_i64(),
        last_offset: k["lastOffset"].as_i64(),
        root,
        leaves,
        previous,
    })
}
