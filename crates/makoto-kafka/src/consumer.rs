//! Checking records one at a time, as a consumer reads them, against the signed windows.
//!
//! A record is verified once the window its offset falls in is published and holds its
//! leaf; until then it is pending. Some records never will be: their window is published and
//! holds another record, their headers contradict them, or their window was skipped while
//! later ones were published. [`WindowIndex::check`] says which, and why.

use std::collections::BTreeMap;

use makoto_core::verify::{TrustedKeys, Verified};
use rskafka::record::Record;
use serde::Serialize;

use crate::report::{self, KafkaFindingKind};
use crate::statement::KafkaWindow;
use crate::{Error, Topic, published};

/// Where a consumed record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RecordStatus {
    /// Its window is published, signed by a trusted key, and holds exactly this record.
    Verified,
    /// Its window is not published yet: check again later.
    Pending,
    /// It will never verify (the finding kind says why).
    Failed(KafkaFindingKind),
}

/// One record's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordCheck {
    pub status: RecordStatus,
    pub partition: i32,
    pub offset: i64,
    /// The window its offset falls in, once the partition's window size is known.
    pub window: Option<u64>,
    /// Whether it carried the makoto headers.
    pub headered: bool,
    pub detail: String,
}

/// The verified windows of a topic, by partition and window number.
#[derive(Debug, Default)]
pub struct WindowIndex {
    /// The topic name the windows attest (the source, when checking a mirror).
    attested_as: String,
    windows: BTreeMap<i32, BTreeMap<u64, Verified<KafkaWindow>>>,
    policies: BTreeMap<i32, report::Policies>,
    /// For partitions without a window yet.
    topic_policy: Option<crate::HeaderPolicy>,
}

impl WindowIndex {
    /// The windows published for `attested` (read from its cluster's `makoto.dbom`) whose
    /// signatures verify with `trust`. Statements that do not verify are left out: records
    /// they would cover stay pending.
    pub async fn load(attested: &Topic, trust: &TrustedKeys) -> Result<Self, Error> {
        let (found, _) = published(attested, trust).await?;
        let mut windows: BTreeMap<i32, BTreeMap<u64, Verified<KafkaWindow>>> = BTreeMap::new();
        for ((p, k), (w, _)) in found {
            windows.entry(p).or_default().insert(k, w);
        }
        Ok(Self::indexed(attested.name(), windows))
    }

    /// Built from windows already verified (for tests and callers that hold them).
    pub fn from_windows(
        attested_as: &str,
        windows: impl IntoIterator<Item = Verified<KafkaWindow>>,
    ) -> Self {
        let mut by: BTreeMap<i32, BTreeMap<u64, Verified<KafkaWindow>>> = BTreeMap::new();
        for w in windows {
            let v = w.value();
            let (p, k) = (v.partition, v.window);
            by.entry(p).or_default().insert(k, w);
        }
        Self::indexed(attested_as, by)
    }

    fn indexed(
        attested_as: &str,
        windows: BTreeMap<i32, BTreeMap<u64, Verified<KafkaWindow>>>,
    ) -> Self {
        let topic_policy = report::topic_policy(
            windows
                .values()
                .flat_map(|w| w.values().map(Verified::value)),
        );
        let policies = windows
            .iter()
            .map(|(p, w)| {
                (
                    *p,
                    report::Policies::new(w.values().map(Verified::value), topic_policy),
                )
            })
            .collect();
        WindowIndex {
            attested_as: attested_as.to_owned(),
            windows,
            policies,
            topic_policy,
        }
    }

    /// How many windows the index holds.
    pub fn len(&self) -> usize {
        self.windows.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the record read at `offset` of `partition`.
    pub fn check(&self, partition: i32, offset: i64, record: &Record) -> RecordCheck {
        let windows = self.windows.get(&partition);
        let size = windows
            .and_then(|w| w.values().next())
            .map(|w| w.value().window_records);
        let window = size.map(|n| u64::try_from(offset).unwrap_or(0) / n.max(1));
        let out = |status, headered, detail: String| RecordCheck {
            status,
            partition,
            offset,
            window,
            headered,
            detail,
        };
        let policy = self
            .policies
            .get(&partition)
            .map_or(self.topic_policy, |p| p.at(window));
        let headered =
            match report::check_headers(&self.attested_as, partition, offset, size, record, policy)
            {
                Ok(h) => h,
                Err((kind, detail)) => return out(RecordStatus::Failed(kind), true, detail),
            };
        let (Some(k), Some(windows)) = (window, windows) else {
            return out(
                RecordStatus::Pending,
                headered,
                format!("no window of partition {partition} is published yet"),
            );
        };
        let Some(w) = windows.get(&k).map(Verified::value) else {
            if windows.keys().any(|later| *later > k) {
                return out(
                    RecordStatus::Failed(KafkaFindingKind::WindowChainBroken),
                    headered,
                    format!("window {k} was never published, but later windows were"),
                );
            }
            return out(
                RecordStatus::Pending,
                headered,
                format!("window {k} is not published yet"),
            );
        };
        let start = i64::try_from(k.saturating_mul(w.window_records)).unwrap_or(i64::MAX);
        let position = usize::try_from(offset.saturating_sub(start)).unwrap_or(usize::MAX);
        match w.leaves.get(position) {
            Some(leaf) if *leaf == w.encoding.leaf(record) => out(
                RecordStatus::Verified,
                headered,
                format!("{} position {position}", w.id),
            ),
            Some(_) => out(
                RecordStatus::Failed(KafkaFindingKind::RecordAltered),
                headered,
                format!(
                    "{} position {position} holds another record ({} leaves)",
                    w.id,
                    w.encoding.as_str()
                ),
            ),
            None => out(
                RecordStatus::Failed(KafkaFindingKind::RecordInjected),
                headered,
                format!(
                    "{} holds {} records; position {position} is not among them",
                    w.id,
                    w.leaves.len()
                ),
            ),
        }
    }
}

/// Every record of a topic checked as a consumer would ([`check_topic`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub topic: String,
    pub attested_as: String,
    /// Windows published for `attested_as` that verify with the trusted keys.
    pub windows: u64,
    pub records: u64,
    pub verified: u64,
    pub pending: u64,
    /// Records without the makoto headers where their window's policy allows it.
    pub without_headers: u64,
    /// Records that will never verify, with why.
    pub failed: Vec<RecordCheck>,
}

/// Reads every record of `topic` and checks each against the windows published for
/// `attested_as` that verify with `trust`.
pub async fn check_topic(
    topic: &Topic,
    attested_as: &str,
    trust: &TrustedKeys,
) -> Result<CheckReport, Error> {
    let index = WindowIndex::load(&topic.sibling(attested_as), trust).await?;
    let partitions = topic.partitions().await?.ok_or_else(|| Error::NoTopic {
        brokers: topic.brokers.clone(),
        topic: topic.name().to_owned(),
    })?;
    let mut report = CheckReport {
        topic: topic.name().to_owned(),
        attested_as: attested_as.to_owned(),
        windows: index.len() as u64,
        records: 0,
        verified: 0,
        pending: 0,
        without_headers: 0,
        failed: Vec::new(),
    };
    for p in partitions {
        let mut reader = topic.reader(p, 0).await?;
        while let Some(batch) = reader.next_batch().await? {
            for r in batch {
                let c = index.check(p, r.offset, &r.record);
                report.records += 1;
                if !c.headered {
                    report.without_headers += 1;
                }
                match c.status {
                    RecordStatus::Verified => report.verified += 1,
                    RecordStatus::Pending => report.pending += 1,
                    RecordStatus::Failed(_) => report.failed.push(c),
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::HeaderPolicy;
    use crate::statement::testing::record;

    fn window(k: u64, records: &[Record], headers: HeaderPolicy) -> Verified<KafkaWindow> {
        crate::statement::testing::window(k, records, None, headers)
    }

    fn status(index: &WindowIndex, offset: i64, r: &Record) -> RecordStatus {
        index.check(0, offset, r).status
    }

    #[test]
    fn records_are_verified_pending_or_failed_by_their_window() {
        let w0: Vec<Record> = (0..3).map(record).collect();
        let w2: Vec<Record> = (6..9).map(record).collect();
        let index = WindowIndex::from_windows(
            "t",
            [
                window(0, &w0, HeaderPolicy::Optional),
                window(2, &w2, HeaderPolicy::Optional),
            ],
        );
        assert_eq!(index.len(), 2);
        assert_eq!(status(&index, 1, &w0[1]), RecordStatus::Verified);
        assert!(!index.check(0, 1, &w0[1]).headered);
        // Another record at that offset, or a key or timestamp rewritten.
        assert_eq!(
            status(&index, 1, &w0[2]),
            RecordStatus::Failed(KafkaFindingKind::RecordAltered)
        );
        let mut rekeyed = w0[1].clone();
        rekeyed.key = None;
        assert_eq!(
            status(&index, 1, &rekeyed),
            RecordStatus::Failed(KafkaFindingKind::RecordAltered)
        );
        // Window 1 was skipped though window 2 was published; window 3 is not published yet.
        assert_eq!(
            status(&index, 4, &record(4)),
            RecordStatus::Failed(KafkaFindingKind::WindowChainBroken)
        );
        assert_eq!(status(&index, 9, &record(9)), RecordStatus::Pending);
        // Another partition: nothing published there yet; it follows the topic's policy.
        assert_eq!(index.check(1, 0, &w0[0]).status, RecordStatus::Pending);
        let empty = WindowIndex::from_windows("t", []);
        assert_eq!(status(&empty, 0, &w0[0]), RecordStatus::Pending);
    }

    #[test]
    fn headers_follow_the_signed_policy() {
        let mut headered = record(0);
        headered.headers = crate::MakotoProducer::headers("t", 0, b"v\0", 0, 3);
        let plain = vec![headered.clone(), record(1), record(2)];
        let required = WindowIndex::from_windows("t", [window(0, &plain, HeaderPolicy::Required)]);
        assert_eq!(status(&required, 0, &headered), RecordStatus::Verified);
        assert!(required.check(0, 0, &headered).headered);
        assert_eq!(
            status(&required, 1, &plain[1]),
            RecordStatus::Failed(KafkaFindingKind::RecordInjected)
        );
        let optional = WindowIndex::from_windows("t", [window(0, &plain, HeaderPolicy::Optional)]);
        assert_eq!(status(&optional, 1, &plain[1]), RecordStatus::Verified);
        // Present headers are checked under either policy.
        let mut wrong_hash = headered.clone();
        wrong_hash.value = Some(b"other".to_vec());
        assert_eq!(
            status(&optional, 0, &wrong_hash),
            RecordStatus::Failed(KafkaFindingKind::ContentHashMismatch)
        );
        let mut elsewhere = record(3);
        elsewhere.headers = crate::MakotoProducer::headers("t", 0, b"v\x03", 0, 3);
        assert_eq!(
            status(&optional, 3, &elsewhere),
            RecordStatus::Failed(KafkaFindingKind::WindowRefMismatch)
        );
    }
}
