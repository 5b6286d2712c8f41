//! What `makoto kafka verify` finds, by partition, offset and window.

use makoto_core::dsse::Envelope;
use makoto_core::verify::{TrustedKeys, Verified};
use makoto_core::{Sha256Digest, merkle};
use rskafka::record::RecordAndOffset;
use serde::Serialize;

use crate::encoding::HeaderPolicy;
use crate::statement::{self, KafkaWindow};
use crate::{CONTENT_HASH_HEADER, SIGNATURE_HEADER};

/// Kinds of Kafka findings; `code()` is the stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KafkaFindingKind {
    /// A record the attested window does not hold, or one without the makoto headers
    /// (written around the producer wrapper) where its window's policy requires them.
    RecordInjected,
    /// A record whose bytes differ from the attested ones.
    RecordAltered,
    /// An attested record is gone.
    RecordDropped,
    /// Two attested records swapped places.
    RecordsReordered,
    /// The value no longer matches its `makoto.content_hash` header.
    ContentHashMismatch,
    /// The record's `makoto.signature` header names another window than the one its offset
    /// falls in: the producer predicted its offset wrongly, or the record was moved.
    WindowRefMismatch,
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
            KafkaFindingKind::WindowRefMismatch => "window-ref-mismatch",
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
    /// Records the verified windows attest (what a VERIFIED covers).
    pub records_covered: u64,
    /// Records without the makoto headers where their window's signed policy allows it.
    pub records_without_headers: u64,
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

/// The policy a topic's windows were signed under, for partitions that have none yet:
/// `required` if any window says so, `optional` if all do, `None` with no window at all.
pub(crate) fn topic_policy<'a>(
    windows: impl IntoIterator<Item = &'a KafkaWindow>,
) -> Option<HeaderPolicy> {
    windows.into_iter().map(|w| w.headers).reduce(|a, b| {
        if a == HeaderPolicy::Required || b == HeaderPolicy::Required {
            HeaderPolicy::Required
        } else {
            a
        }
    })
}

/// The signed header policies of one partition's windows, looked up per record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies {
    by_window: std::collections::BTreeMap<u64, HeaderPolicy>,
    topic: Option<HeaderPolicy>,
}

impl Policies {
    pub(crate) fn new<'a>(
        partition: impl IntoIterator<Item = &'a KafkaWindow>,
        topic: Option<HeaderPolicy>,
    ) -> Self {
        Policies {
            by_window: partition
                .into_iter()
                .map(|w| (w.window, w.headers))
                .collect(),
            topic,
        }
    }

    /// The policy that governs a record at `window`: that window's, else the partition's
    /// latest window before it (records not yet attested follow the policy the partition is
    /// attested under), else its first window's, else the topic's. `None`: no window of the
    /// topic signed a policy yet.
    pub(crate) fn at(&self, window: Option<u64>) -> Option<HeaderPolicy> {
        window
            .and_then(|k| self.by_window.range(..=k).next_back())
            .or_else(|| self.by_window.iter().next())
            .map(|(_, p)| *p)
            .or(self.topic)
    }
}

/// What a record's makoto headers say against its value and its place, under `policy`:
/// `Ok(true)` when it carries them and they hold, `Ok(false)` when it carries none and the
/// policy allows that (or no policy was signed yet), otherwise the finding.
pub(crate) fn check_headers(
    attested_as: &str,
    partition: i32,
    offset: i64,
    window_records: Option<u64>,
    record: &rskafka::record::Record,
    policy: Option<HeaderPolicy>,
) -> Result<bool, (KafkaFindingKind, String)> {
    let value = record.value.as_deref().unwrap_or_default();
    let Some(h) = record.headers.get(CONTENT_HASH_HEADER) else {
        return match policy {
            None | Some(HeaderPolicy::Optional) => Ok(false),
            Some(HeaderPolicy::Required) => Err((
                KafkaFindingKind::RecordInjected,
                "record without makoto headers, and its window's policy requires them: not written through the makoto producer (attest with --headers optional for producers that cannot add them)"
                    .into(),
            )),
        };
    };
    if h.as_slice() != Sha256Digest::of(value).to_hex().as_bytes() {
        return Err((
            KafkaFindingKind::ContentHashMismatch,
            format!(
                "value SHA-256 {} but header {CONTENT_HASH_HEADER} says {}",
                Sha256Digest::of(value),
                String::from_utf8_lossy(&h[..h.len().min(80)])
            ),
        ));
    }
    if let (Some(named), Some(n)) = (record.headers.get(SIGNATURE_HEADER), window_records) {
        let k = u64::try_from(offset).unwrap_or(0) / n.max(1);
        let expected = statement::subject(attested_as, partition, n, k);
        if named.as_slice() != expected.as_bytes() {
            return Err((
                KafkaFindingKind::WindowRefMismatch,
                format!(
                    "header {SIGNATURE_HEADER} names {} but offset {offset} is in {expected}",
                    String::from_utf8_lossy(&named[..named.len().min(200)])
                ),
            ));
        }
    }
    Ok(true)
}

/// Checks one partition's records (in offset order, each offset once, as [`Topic::read`]
/// returns them) against its attested windows; returns how many records carried no makoto
/// headers where their window's policy allows it.
///
/// [`Topic::read`]: crate::Topic::read
pub(crate) fn check_partition(
    attested_as: &str,
    p: i32,
    records: &[RecordAndOffset],
    windows: &[&Verified<KafkaWindow>],
    topic: Option<HeaderPolicy>,
    findings: &mut Vec<KafkaFinding>,
) -> u64 {
    let windows: Vec<&KafkaWindow> = windows.iter().map(|w| w.value()).collect();
    let n = windows.first().map(|w| w.window_records);
    let window_of = |offset: i64| n.map(|n| u64::try_from(offset).unwrap_or(0) / n.max(1));
    let mut without_headers = 0;
    let policies = Policies::new(windows.iter().copied(), topic);
    for r in records {
        let k = window_of(r.offset);
        let policy = policies.at(k);
        match check_headers(attested_as, p, r.offset, n, &r.record, policy) {
            Ok(true) => {}
            Ok(false) => without_headers += 1,
            Err((kind, detail)) => findings.push(KafkaFinding {
                kind,
                partition: Some(p),
                offset: Some(r.offset),
                window: k,
                detail,
            }),
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
        // `records` are in offset order: the window's records are one slice of them.
        let from = records.partition_point(|r| r.offset < start);
        let to = records.partition_point(|r| r.offset < start.saturating_add(n));
        let now: Vec<Sha256Digest> = records[from..to.max(from)]
            .iter()
            .map(|r| w.encoding.leaf(&r.record))
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
    without_headers
}
