//! What `makoto kafka verify` finds, by partition, offset and window.

use makoto_core::dsse::Envelope;
use makoto_core::verify::{TrustedKeys, Verified};
use makoto_core::{Sha256Digest, merkle};
use rskafka::record::RecordAndOffset;
use serde::Serialize;

use crate::statement::KafkaWindow;
use crate::{CONTENT_HASH_HEADER, record_leaf};

/// Kinds of Kafka findings; `code()` is the stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KafkaFindingKind {
    /// A record without the makoto headers (written around the producer wrapper), or one
    /// the attested window does not hold.
    RecordInjected,
    /// A record whose bytes differ from the attested ones.
    RecordAltered,
    /// An attested record is gone.
    RecordDropped,
    /// Two attested records swapped places.
    RecordsReordered,
    /// The value no longer matches its `makoto.content_hash` header.
    ContentHashMismatch,
    /// Windows of a partition do not chain (missing or replaced window attestations).
    WindowChainBroken,
    /// A window attestation for this topic is not signed by a trusted key.
    WindowUntrusted,
    /// A window's RFC 3161 token does not parse or verify, or is over another signature.
    TimestampInvalid,
    /// A window's RFC 3161 token was signed by an authority the trust file does not list.
    TimestampUntrusted,
    /// A window's token dates its signature outside the signing key's validity window.
    KeyNotValid,
}

impl KafkaFindingKind {
    pub fn code(self) -> &'static str {
        match self {
            KafkaFindingKind::RecordInjected => "record-injected",
            KafkaFindingKind::RecordAltered => "record-altered",
            KafkaFindingKind::RecordDropped => "record-dropped",
            KafkaFindingKind::RecordsReordered => "records-reordered",
            KafkaFindingKind::ContentHashMismatch => "content-hash-mismatch",
            KafkaFindingKind::WindowChainBroken => "window-chain-broken",
            KafkaFindingKind::WindowUntrusted => "window-untrusted",
            KafkaFindingKind::TimestampInvalid => "timestamp-invalid",
            KafkaFindingKind::TimestampUntrusted => "timestamp-untrusted",
            KafkaFindingKind::KeyNotValid => "key-not-valid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaFinding {
    pub kind: KafkaFindingKind,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub window: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub topic: String,
    pub attested_as: String,
    pub windows_checked: u64,
    /// Windows whose signature carries a token that verifies under a trusted authority.
    pub windows_timestamped: u64,
    pub records_checked: u64,
    pub verified: bool,
    pub findings: Vec<KafkaFinding>,
}

/// Whether a verified window's envelope carries a token that verifies under the trust file's
/// authorities (`Ok(false)`: none, or no authority to check it with), or why it does not hold.
pub(crate) fn window_timestamp(
    envelope: &str,
    window: &Verified<KafkaWindow>,
    trust: &TrustedKeys,
) -> Result<bool, (KafkaFindingKind, String)> {
    use makoto_core::timestamp::{EnvelopeTimestamp, LinkProblem, envelope_timestamp};
    let env = Envelope::from_json(envelope.as_bytes())
        .map_err(|e| (KafkaFindingKind::WindowUntrusted, e.to_string()))?;
    let key = trust.key(window.keyid());
    match envelope_timestamp(&env, trust.timestamp_authorities(), key) {
        EnvelopeTimestamp::Verified(_) => Ok(true),
        EnvelopeTimestamp::Missing | EnvelopeTimestamp::Unchecked => Ok(false),
        EnvelopeTimestamp::Problem(p) => Err((
            match p {
                LinkProblem::Invalid(_) => KafkaFindingKind::TimestampInvalid,
                LinkProblem::Untrusted(_) => KafkaFindingKind::TimestampUntrusted,
                LinkProblem::KeyNotValid(_) => KafkaFindingKind::KeyNotValid,
            },
            p.to_string(),
        )),
    }
}

pub(crate) fn mentions_topic(value: &[u8], topic: &str) -> bool {
    let needle = format!("kafka://{topic}/");
    value
        .windows(needle.len().max(1))
        .any(|w| w == needle.as_bytes())
}

/// Checks one partition's records against its attested windows.
pub(crate) fn check_partition(
    p: i32,
    records: &[RecordAndOffset],
    windows: &[&Verified<KafkaWindow>],
    findings: &mut Vec<KafkaFinding>,
) {
    let windows: Vec<&KafkaWindow> = windows.iter().map(|w| w.value()).collect();
    let n = windows.first().map(|w| w.window_records);
    let window_of = |offset: i64| n.map(|n| u64::try_from(offset).unwrap_or(0) / n);
    for r in records {
        let value = r.record.value.as_deref().unwrap_or_default();
        match r.record.headers.get(CONTENT_HASH_HEADER) {
            None => findings.push(KafkaFinding {
                kind: KafkaFindingKind::RecordInjected,
                partition: Some(p),
                offset: Some(r.offset),
                window: window_of(r.offset),
                detail: "record without makoto headers: not written through the makoto producer"
                    .into(),
            }),
            Some(h) if h.as_slice() != Sha256Digest::of(value).to_hex().as_bytes() => findings
                .push(KafkaFinding {
                    kind: KafkaFindingKind::ContentHashMismatch,
                    partition: Some(p),
                    offset: Some(r.offset),
                    window: window_of(r.offset),
                    detail: format!(
                        "value SHA-256 {} but header {CONTENT_HASH_HEADER} says {}",
                        Sha256Digest::of(value),
                        String::from_utf8_lossy(h)
                    ),
                }),
            Some(_) => {}
        }
    }
    let mut previous: Option<&KafkaWindow> = None;
    for w in windows {
        if let Some(prev) = previous
            && (w.window != prev.window + 1 || w.previous != Some((prev.window, prev.root)))
        {
            findings.push(KafkaFinding {
                kind: KafkaFindingKind::WindowChainBroken,
                partition: Some(p),
                offset: None,
                window: Some(w.window),
                detail: format!(
                    "window {} points to {:?}, the previous attested window is {} ({})",
                    w.id, w.previous, prev.window, prev.root
                ),
            });
        }
        previous = Some(w);
        let n = i64::try_from(w.window_records).unwrap_or(i64::MAX);
        let start = i64::try_from(w.window).unwrap_or(0).saturating_mul(n);
        let now: Vec<Sha256Digest> = records
            .iter()
            .filter(|r| r.offset >= start && r.offset < start + n)
            .map(|r| record_leaf(&r.record))
            .collect();
        let Some((change, pos)) = merkle::diff_leaves(&w.leaves, &now) else {
            continue;
        };
        let kind = match change {
            merkle::LeafChange::Altered => KafkaFindingKind::RecordAltered,
            merkle::LeafChange::Inserted => KafkaFindingKind::RecordInjected,
            merkle::LeafChange::Dropped => KafkaFindingKind::RecordDropped,
            merkle::LeafChange::Reordered => KafkaFindingKind::RecordsReordered,
        };
        let shifts = matches!(
            change,
            merkle::LeafChange::Inserted | merkle::LeafChange::Dropped
        );
        findings.push(KafkaFinding {
            kind,
            partition: Some(p),
            offset: Some(start + pos as i64),
            window: Some(w.window),
            detail: format!(
                "window {}: position {pos} of {}{}",
                w.id,
                w.leaves.len(),
                if shifts {
                    "; later offsets of the partition are shifted by it and not compared"
                } else {
                    ""
                }
            ),
        });
        if shifts {
            break;
        }
    }
}
