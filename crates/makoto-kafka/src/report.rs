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

/// One partition's records checked against its attested windows as they are read: header
/// checks record by record, and each window's leaves recomputed from its offsets and compared
/// with its signed leaves once the reading has passed it. Only the leaves of windows still
/// being read are held, never the records.
pub(crate) struct PartitionCheck<'a> {
    attested_as: &'a str,
    partition: i32,
    /// The partition's windows in window order.
    windows: Vec<&'a KafkaWindow>,
    policies: Policies,
    /// `window_records` of the first window: which window a record's policy comes from.
    n: Option<u64>,
    /// Window indexes by first offset, and how many of them have been opened.
    by_start: Vec<usize>,
    opened: usize,
    /// Windows opened and not yet passed, with the leaves read so far.
    open: Vec<(usize, Vec<Sha256Digest>)>,
    /// Per window, once passed: where its leaves differ from the signed ones, if anywhere.
    changes: Vec<Option<(merkle::LeafChange, usize)>>,
    header_findings: Vec<KafkaFinding>,
    without_headers: u64,
}

/// Offsets `[start, end)` of a window.
fn range(w: &KafkaWindow) -> (i64, i64) {
    let n = i64::try_from(w.window_records).unwrap_or(i64::MAX);
    let start = i64::try_from(w.window)
        .unwrap_or(i64::MAX)
        .saturating_mul(n);
    (start, start.saturating_add(n))
}

impl<'a> PartitionCheck<'a> {
    pub(crate) fn new(
        attested_as: &'a str,
        partition: i32,
        windows: &[&'a Verified<KafkaWindow>],
        topic: Option<HeaderPolicy>,
    ) -> Self {
        let windows: Vec<&KafkaWindow> = windows.iter().map(|w| w.value()).collect();
        let mut by_start: Vec<usize> = (0..windows.len()).collect();
        by_start.sort_by_key(|&i| range(windows[i]).0);
        PartitionCheck {
            attested_as,
            partition,
            policies: Policies::new(windows.iter().copied(), topic),
            n: windows.first().map(|w| w.window_records),
            changes: vec![None; windows.len()],
            windows,
            by_start,
            opened: 0,
            open: Vec::new(),
            header_findings: Vec::new(),
            without_headers: 0,
        }
    }

    /// Checks the next record; records must come in offset order, each offset once.
    pub(crate) fn record(&mut self, r: &RecordAndOffset) {
        let k = self
            .n
            .map(|n| u64::try_from(r.offset).unwrap_or(0) / n.max(1));
        let policy = self.policies.at(k);
        let (p, offset) = (self.partition, r.offset);
        match check_headers(self.attested_as, p, offset, self.n, &r.record, policy) {
            Ok(true) => {}
            Ok(false) => self.without_headers += 1,
            Err((kind, detail)) => self.header_findings.push(KafkaFinding {
                kind,
                partition: Some(p),
                offset: Some(offset),
                window: k,
                detail,
            }),
        }
        while let Some(&i) = self.by_start.get(self.opened) {
            if range(self.windows[i]).0 > offset {
                break;
            }
            self.open.push((i, Vec::new()));
            self.opened += 1;
        }
        let (windows, changes) = (&self.windows, &mut self.changes);
        self.open.retain(|(i, leaves)| {
            let passed = range(windows[*i]).1 <= offset;
            if passed {
                changes[*i] = merkle::diff_leaves(&windows[*i].leaves, leaves);
            }
            !passed
        });
        for (i, leaves) in &mut self.open {
            leaves.push(self.windows[*i].encoding.leaf(&r.record));
        }
    }

    /// Ends the partition: every window not passed yet is compared with what was read of it.
    /// Adds the findings (header findings, then per window in window order a broken chain
    /// and a changed record; nothing after a window whose records shift later offsets) and
    /// returns how many records carried no makoto headers where their policy allows it.
    pub(crate) fn finish(mut self, findings: &mut Vec<KafkaFinding>) -> u64 {
        for (i, leaves) in std::mem::take(&mut self.open) {
            self.changes[i] = merkle::diff_leaves(&self.windows[i].leaves, &leaves);
        }
        for &i in &self.by_start[self.opened..] {
            self.changes[i] = merkle::diff_leaves(&self.windows[i].leaves, &[]);
        }
        findings.append(&mut self.header_findings);
        let p = self.partition;
        let mut previous: Option<&KafkaWindow> = None;
        for (w, change) in self.windows.iter().zip(&self.changes) {
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
            let Some((change, pos)) = *change else {
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
            let start = range(w).0;
            findings.push(KafkaFinding {
                kind,
                partition: Some(p),
                offset: Some(start.saturating_add(pos as i64)),
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
        self.without_headers
    }
}

#[cfg(test)]
mod tests {
    use rskafka::record::Record;

    use super::*;
    use crate::statement::testing::{record, window};

    /// Windows 0, 1, 2 of offsets 0..9, chained; the partition holds 0..11.
    fn windows() -> Vec<Verified<KafkaWindow>> {
        let mut out: Vec<Verified<KafkaWindow>> = Vec::new();
        for k in 0..3u8 {
            let recs: Vec<Record> = (k * 3..k * 3 + 3).map(record).collect();
            let previous = out.last().map(|w| (w.value().window, w.value().root));
            out.push(window(
                u64::from(k),
                &recs,
                previous,
                HeaderPolicy::Optional,
            ));
        }
        out
    }

    /// A finding as (kind, offset, window).
    type Found = (KafkaFindingKind, Option<i64>, Option<u64>);

    /// The findings, and the records counted without headers.
    fn check(windows: &[Verified<KafkaWindow>], records: Vec<(i64, Record)>) -> (Vec<Found>, u64) {
        let attested: Vec<&Verified<KafkaWindow>> = windows.iter().collect();
        let mut c = PartitionCheck::new("t", 0, &attested, Some(HeaderPolicy::Optional));
        for (offset, record) in records {
            c.record(&RecordAndOffset { record, offset });
        }
        let mut findings = Vec::new();
        let without = c.finish(&mut findings);
        let found = findings
            .into_iter()
            .map(|f| (f.kind, f.offset, f.window))
            .collect();
        (found, without)
    }

    fn partition() -> Vec<(i64, Record)> {
        (0..11u8).map(|i| (i64::from(i), record(i))).collect()
    }

    #[test]
    fn an_unchanged_partition_has_no_findings() {
        assert_eq!(check(&windows(), partition()), (vec![], 11));
    }

    #[test]
    fn a_changed_record_is_named_by_offset_and_window() {
        let mut records = partition();
        records[4].1 = record(40);
        assert_eq!(
            check(&windows(), records).0,
            vec![(KafkaFindingKind::RecordAltered, Some(4), Some(1))]
        );
    }

    #[test]
    fn a_dropped_record_stops_the_comparison_of_later_windows() {
        let mut records = partition();
        records.remove(4);
        records[6].1 = record(70);
        assert_eq!(
            check(&windows(), records).0,
            vec![(KafkaFindingKind::RecordDropped, Some(4), Some(1))]
        );
    }

    #[test]
    fn windows_whose_records_are_all_gone_are_dropped_records() {
        let records: Vec<(i64, Record)> = partition().into_iter().take(3).collect();
        assert_eq!(
            check(&windows(), records).0,
            vec![(KafkaFindingKind::RecordDropped, Some(3), Some(1))]
        );
        assert_eq!(
            check(&windows(), vec![]).0,
            vec![(KafkaFindingKind::RecordDropped, Some(0), Some(0))]
        );
    }

    #[test]
    fn a_gap_in_the_chain_is_reported() {
        let mut w = windows();
        w.remove(1);
        assert_eq!(
            check(&w, partition()).0,
            vec![(KafkaFindingKind::WindowChainBroken, None, Some(2))]
        );
    }
}
