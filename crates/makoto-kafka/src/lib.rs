//! Makoto stream-window attestations for Kafka topics.
//!
//! - [`MakotoProducer`] adds three headers to every record it sends: `makoto.content_hash`
//!   (hex SHA-256 of the value), `makoto.window_id` (the window the record's offset falls
//!   in: `offset / window_records`, monotonic per partition) and `makoto.signature` (the
//!   subject of that window's signed statement, where a consumer finds it).
//! - [`attest`] reads a topic partition by partition, closes a window every `window_records`
//!   offsets, and publishes each window's signed `stream-window/v1` statement (a DSSE envelope)
//!   to the topic [`DBOM_TOPIC`]. Window `k` of a partition holds offsets
//!   `[k·N, (k+1)·N)`; its Merkle tree (RFC 6962) is over the records' key, value, timestamp
//!   and headers ([`RecordEncoding::Record2`]). The statement names its [`HeaderPolicy`]:
//!   whether records must carry the makoto headers, or come from producers nobody can change.
//! - [`verify`] re-reads the partitions and reports injected, altered, dropped or reordered
//!   records by partition, offset and window, following each window's signed policy and
//!   encoding.
//! - [`WindowIndex`] checks records one at a time as a consumer reads them: verified, pending
//!   (its window is not published yet), or never to be verified, and why.
//! - [`record_windows`] appends the published windows a warehouse lacks to
//!   `system.makoto.windows`, exactly once per partition, so SQL sees them beside Delta windows.
//!
//! ```no_run
//! # async fn demo() -> Result<(), makoto_kafka::Error> {
//! let topic = makoto_kafka::Topic::connect("127.0.0.1:9092", "ticks").await?;
//! let mut producer = makoto_kafka::MakotoProducer::new(&topic, 0, 1000).await?;
//! producer.send(None, b"{\"px\": 101.5}".to_vec()).await?;
//! # Ok(())
//! # }
//! ```

mod consumer;
mod encoding;
mod report;
mod statement;
mod warehouse;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use makoto_core::Sha256Digest;
use makoto_core::keys::Signer;
use makoto_core::verify::{TrustedKeys, Verified};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;

pub use consumer::{CheckReport, RecordCheck, RecordStatus, WindowIndex, check_topic};
pub use encoding::{HeaderPolicy, RecordEncoding, record2_bytes};
pub use report::{KafkaFinding, KafkaFindingKind, VerifyReport};
/// A Kafka record as this crate reads and checks it.
pub use rskafka::record::Record;
pub use statement::{KafkaWindow, read_statement, subject, verify_statement};
pub use warehouse::record_windows;

/// Header with the hex SHA-256 of the record's value.
pub const CONTENT_HASH_HEADER: &str = "makoto.content_hash";
/// Header with the record's window number in its partition (decimal).
pub const WINDOW_ID_HEADER: &str = "makoto.window_id";
/// Header naming the signed window that covers the record: the window statement's subject,
/// `kafka://<topic>/<partition>#window/records=<N>/<k>`.
pub const SIGNATURE_HEADER: &str = "makoto.signature";
/// Topic the window attestations are published to.
pub const DBOM_TOPIC: &str = "makoto.dbom";

/// Errors of the Kafka layer. Each names the brokers, topic and partition concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("kafka {brokers}: {reason}")]
    Connect { brokers: String, reason: String },
    #[error("kafka {brokers} topic {topic} partition {partition}: {reason}")]
    Partition {
        brokers: String,
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("kafka {brokers}: topic {topic} does not exist")]
    NoTopic { brokers: String, topic: String },
    #[error("kafka {brokers} topic {topic}: {reason}")]
    Statement {
        brokers: String,
        topic: String,
        reason: String,
    },
    #[error("window attestation: {reason}")]
    Core { reason: String },
    /// A published window that cannot become a `system.makoto.windows` row.
    #[error("{stream} window {window}: {reason}")]
    WindowRow {
        stream: String,
        window: u64,
        reason: String,
    },
    #[error("another run recorded windows of {stream} at the same time; run again")]
    RecordConflict { stream: String },
    #[error(transparent)]
    Warehouse(#[from] makoto_delta::Error),
}

/// A topic on a cluster.
pub struct Topic {
    client: Arc<Client>,
    brokers: String,
    name: String,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Topic({}/{})", self.brokers, self.name)
    }
}

impl Topic {
    pub async fn connect(brokers: &str, topic: &str) -> Result<Self, Error> {
        let client = ClientBuilder::new(brokers.split(',').map(str::to_owned).collect())
            .client_id("makoto")
            .build()
            .await
            .map_err(|e| Error::Connect {
                brokers: brokers.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Topic {
            client: Arc::new(client),
            brokers: brokers.to_owned(),
            name: topic.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// A handle on another topic of the same cluster.
    pub fn sibling(&self, name: &str) -> Topic {
        Topic {
            client: Arc::clone(&self.client),
            brokers: self.brokers.clone(),
            name: name.to_owned(),
        }
    }

    /// Creates the topic with `partitions` partitions (replication factor 1).
    pub async fn create(&self, partitions: i32) -> Result<(), Error> {
        let controller = self
            .client
            .controller_client()
            .map_err(|e| self.err(-1, e))?;
        controller
            .create_topic(&self.name, partitions, 1, 5_000)
            .await
            .map_err(|e| self.err(-1, e))
    }

    fn err(&self, partition: i32, e: impl std::fmt::Display) -> Error {
        Error::Partition {
            brokers: self.brokers.clone(),
            topic: self.name.clone(),
            partition,
            reason: e.to_string(),
        }
    }

    /// The topic's partitions; `None` when it does not exist.
    pub async fn partitions(&self) -> Result<Option<BTreeSet<i32>>, Error> {
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|e| Error::Connect {
                brokers: self.brokers.clone(),
                reason: e.to_string(),
            })?;
        Ok(topics
            .into_iter()
            .find(|t| t.name == self.name)
            .map(|t| t.partitions))
    }

    async fn partition(&self, p: i32) -> Result<PartitionClient, Error> {
        self.client
            .partition_client(self.name.clone(), p, UnknownTopicHandling::Error)
            .await
            .map_err(|e| self.err(p, e))
    }

    /// Writes a record to partition `p` as is (no makoto headers); returns its offset.
    pub async fn send_raw(&self, p: i32, record: Record) -> Result<i64, Error> {
        let client = self.partition(p).await?;
        let offsets = client
            .produce(vec![record], Compression::NoCompression)
            .await
            .map_err(|e| self.err(p, e))?;
        offsets
            .first()
            .copied()
            .ok_or_else(|| self.err(p, "no offset returned"))
    }

    /// Every record of partition `p` from offset `from` to the current end (the high
    /// watermark fetch responses report; some brokers answer ListOffsets(latest) with the
    /// start of the last batch).
    pub async fn read(&self, p: i32, from: i64) -> Result<Vec<RecordAndOffset>, Error> {
        let mut reader = self.reader(p, from).await?;
        let mut out = Vec::new();
        while let Some(batch) = reader.next_batch().await? {
            out.extend(batch);
        }
        Ok(out)
    }

    /// Reads partition `p` from offset `from` one fetch at a time, so that a caller holds no
    /// more of the partition than it chooses to keep.
    pub(crate) async fn reader(&self, p: i32, from: i64) -> Result<PartitionReader<'_>, Error> {
        let client = self.partition(p).await?;
        let start = client
            .get_offset(OffsetAt::Earliest)
            .await
            .map_err(|e| self.err(p, e))?
            .max(from);
        let latest = client
            .get_offset(OffsetAt::Latest)
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(PartitionReader {
            topic: self,
            partition: p,
            client,
            next: start,
            // An empty partition (some brokers answer a fetch of it with no topic at all).
            done: latest == 0,
        })
    }
}

/// A partition read in order, a fetch response (at most 8 MB) at a time.
pub(crate) struct PartitionReader<'a> {
    topic: &'a Topic,
    partition: i32,
    client: PartitionClient,
    next: i64,
    done: bool,
}

impl PartitionReader<'_> {
    /// The next records, in offset order, each offset once and never one read before;
    /// `None` once the end the broker reported is reached.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<Vec<RecordAndOffset>>, Error> {
        if self.done {
            return Ok(None);
        }
        let (mut batch, high_watermark) = self
            .client
            .fetch_records(self.next, 1..8_000_000, 100)
            .await
            .map_err(|e| self.topic.err(self.partition, e))?;
        let last = batch.iter().map(|r| r.offset).max();
        batch.retain(|r| r.offset >= self.next);
        batch.sort_by_key(|r| r.offset);
        batch.dedup_by_key(|r| r.offset);
        match last {
            Some(l) if l >= self.next && l + 1 < high_watermark => self.next = l + 1,
            _ => self.done = true,
        }
        Ok(Some(batch))
    }
}

/// The offset the partition's next record gets.
async fn next_offset(
    topic: &Topic,
    client: &PartitionClient,
    partition: i32,
) -> Result<i64, Error> {
    let latest = client
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(|e| topic.err(partition, e))?;
    // Some brokers (Tansu) answer Latest with the start of the last batch + 1: read on from
    // there to find the real end.
    Ok(match latest {
        0 => 0,
        l => topic
            .read(partition, l - 1)
            .await?
            .last()
            .map_or(l, |r| r.offset + 1),
    })
}

impl Topic {
    /// The offset the next record written to `partition` gets (what a producer that is the
    /// partition's only writer predicts its window ids from).
    pub async fn next_offset(&self, partition: i32) -> Result<i64, Error> {
        let client = self.partition(partition).await?;
        next_offset(self, &client, partition).await
    }
}

/// Sends records to one partition with the makoto headers.
#[derive(Debug)]
pub struct MakotoProducer {
    client: PartitionClient,
    window_records: u64,
    next_offset: i64,
}

impl MakotoProducer {
    /// `window_records` must be the `--window-records` the topic is attested with.
    pub async fn new(topic: &Topic, partition: i32, window_records: u64) -> Result<Self, Error> {
        let client = topic.partition(partition).await?;
        let next_offset = next_offset(topic, &client, partition).await?;
        Ok(MakotoProducer {
            client,
            window_records: window_records.max(1),
            next_offset,
        })
    }

    /// The headers of a record with this value at this offset of `topic`'s `partition`.
    pub fn headers(
        topic: &str,
        partition: i32,
        value: &[u8],
        offset: i64,
        window_records: u64,
    ) -> BTreeMap<String, Vec<u8>> {
        let n = window_records.max(1);
        let window = u64::try_from(offset).unwrap_or(0) / n;
        BTreeMap::from([
            (
                CONTENT_HASH_HEADER.to_owned(),
                Sha256Digest::of(value).to_hex().into_bytes(),
            ),
            (WINDOW_ID_HEADER.to_owned(), window.to_string().into_bytes()),
            (
                SIGNATURE_HEADER.to_owned(),
                statement::subject(topic, partition, n, window).into_bytes(),
            ),
        ])
    }

    /// Sends one record; returns its offset. The window header assumes this producer is the
    /// partition's only writer (as the offsets it predicts must be the ones assigned).
    pub async fn send(&mut self, key: Option<Vec<u8>>, value: Vec<u8>) -> Result<i64, Error> {
        let headers = Self::headers(
            self.client.topic(),
            self.client.partition(),
            &value,
            self.next_offset,
            self.window_records,
        );
        let record = Record {
            key,
            value: Some(value),
            headers,
            timestamp: chrono::Utc::now(),
        };
        let offsets = self
            .client
            .produce(vec![record], Compression::NoCompression)
            .await
            .map_err(|e| Error::Partition {
                brokers: String::new(),
                topic: self.client.topic().to_owned(),
                partition: self.client.partition(),
                reason: e.to_string(),
            })?;
        let offset = offsets.first().copied().unwrap_or(self.next_offset);
        self.next_offset = offset + 1;
        Ok(offset)
    }
}

/// One window published by [`attest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedWindow {
    pub partition: i32,
    pub window: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub leaf_count: u64,
    /// Records of the window without the makoto headers.
    pub unheadered: u64,
    pub root: Sha256Digest,
    pub attestation_digest: Sha256Digest,
}

/// Statements found in [`DBOM_TOPIC`] for a topic, by partition and window number, each with
/// its envelope JSON.
pub type Published<T> = BTreeMap<(i32, u64), (T, String)>;

/// The windows published for `topic` whose statements verify with `trust`. Statements that name
/// the topic but do not verify are returned as findings.
pub async fn published(
    topic: &Topic,
    trust: &TrustedKeys,
) -> Result<(Published<Verified<KafkaWindow>>, Vec<KafkaFinding>), Error> {
    scan(
        topic,
        |b| statement::verify_statement(b, trust),
        Verified::value,
    )
    .await
}

/// The windows a run continues from: those signed by `signer`'s key or, for an unsigned (L1)
/// run, every window as published.
pub(crate) async fn own_windows(
    topic: &Topic,
    signer: Option<&dyn Signer>,
) -> Result<Published<KafkaWindow>, Error> {
    match signer {
        Some(s) => {
            let trust = TrustedKeys::new(vec![s.public_key().clone()]);
            let (windows, _) = published(topic, &trust).await?;
            Ok(windows
                .into_iter()
                .map(|(k, (w, envelope))| (k, (w.into_inner(), envelope)))
                .collect())
        }
        None => Ok(scan(topic, statement::read_statement, |w| w).await?.0),
    }
}

async fn scan<T>(
    topic: &Topic,
    parse: impl Fn(&[u8]) -> Result<T, String>,
    window: fn(&T) -> &KafkaWindow,
) -> Result<(Published<T>, Vec<KafkaFinding>), Error> {
    let dbom = topic.sibling(DBOM_TOPIC);
    let mut out = BTreeMap::new();
    let mut findings = Vec::new();
    let Some(partitions) = dbom.partitions().await? else {
        return Ok((out, findings));
    };
    for p in partitions {
        // A fetch at a time: other topics' statements are dropped as they are read.
        let mut reader = dbom.reader(p, 0).await?;
        while let Some(batch) = reader.next_batch().await? {
            for r in &batch {
                let Some(value) = r.record.value.as_deref() else {
                    continue;
                };
                if statement::key_names_other_topic(r.record.key.as_deref(), &topic.name) {
                    continue;
                }
                match parse(value) {
                    Ok(parsed) => {
                        let w = window(&parsed);
                        if w.topic == topic.name {
                            let key = (w.partition, w.window);
                            out.insert(key, (parsed, String::from_utf8_lossy(value).into_owned()));
                        }
                    }
                    Err(reason) => {
                        if report::mentions_topic(value, &topic.name) {
                            findings.push(KafkaFinding {
                                kind: KafkaFindingKind::WindowUntrusted,
                                partition: None,
                                offset: None,
                                window: None,
                                detail: format!("{DBOM_TOPIC} offset {}: {reason}", r.offset),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok((out, findings))
}

/// Closes the complete windows of every partition of `topic` not yet published and publishes
/// their signed statements to [`DBOM_TOPIC`] (created when missing), with `kafka-record/2`
/// leaves and `headers` as their signed policy. With a TSA, every window's signature is
/// time-stamped before it is published.
pub async fn attest(
    topic: &Topic,
    window_records: u64,
    headers: HeaderPolicy,
    signer: Option<&dyn Signer>,
    tsa: Option<&makoto_delta::tsa::TsaClient>,
) -> Result<Vec<PublishedWindow>, Error> {
    let n = window_records.max(1);
    let partitions = topic.partitions().await?.ok_or_else(|| Error::NoTopic {
        brokers: topic.brokers.clone(),
        topic: topic.name.clone(),
    })?;
    let existing = own_windows(topic, signer).await?;
    let dbom = topic.sibling(DBOM_TOPIC);
    if dbom.partitions().await?.is_none() {
        dbom.create(1).await?;
    }
    let publisher = Publisher {
        topic,
        dbom_client: dbom.partition(0).await?,
        n,
        headers,
        signer,
        tsa,
    };
    let mut out = Vec::new();
    for p in partitions {
        let last = existing
            .iter()
            .filter(|((pp, _), (w, _))| *pp == p && w.window_records == n)
            .map(|(_, (w, _))| w)
            .max_by_key(|w| w.window);
        let next_window = last.map_or(0, |w| w.window + 1);
        let mut previous = last.map(|w| (w.window, w.root));
        let from = i64::try_from(next_window.saturating_mul(n)).unwrap_or(i64::MAX);
        let mut reader = topic.reader(p, from).await?;
        // The window being filled: only one window's records are held at a time.
        let mut pending: Option<(u64, Vec<RecordAndOffset>)> = None;
        while let Some(batch) = reader.next_batch().await? {
            for r in batch {
                let k = u64::try_from(r.offset).unwrap_or(0) / n;
                // A record past a window completes it.
                if let Some((done, recs)) = pending.take_if(|(pk, _)| *pk != k) {
                    out.push(publisher.publish(p, done, &recs, &mut previous).await?);
                }
                pending.get_or_insert_with(|| (k, Vec::new())).1.push(r);
            }
        }
        // The last window is complete when it holds the window's last offset.
        if let Some((k, recs)) = pending {
            let end = recs.last().map_or(0, |r| r.offset.saturating_add(1));
            if i64::try_from((k + 1).saturating_mul(n)).unwrap_or(i64::MAX) <= end {
                out.push(publisher.publish(p, k, &recs, &mut previous).await?);
            }
        }
    }
    Ok(out)
}

/// What every window of one `attest` run is signed and published with.
struct Publisher<'a> {
    topic: &'a Topic,
    dbom_client: PartitionClient,
    n: u64,
    headers: HeaderPolicy,
    signer: Option<&'a dyn Signer>,
    tsa: Option<&'a makoto_delta::tsa::TsaClient>,
}

impl Publisher<'_> {
    /// Signs window `k` of partition `p` (its records `recs`, in offset order), chained to
    /// `previous`, publishes it to [`DBOM_TOPIC`] and makes it the new `previous`.
    async fn publish(
        &self,
        p: i32,
        k: u64,
        recs: &[RecordAndOffset],
        previous: &mut Option<(u64, Sha256Digest)>,
    ) -> Result<PublishedWindow, Error> {
        let topic = self.topic;
        let window = statement::WindowInput {
            topic: topic.name.clone(),
            brokers: topic.brokers.clone(),
            partition: p,
            window_records: self.n,
            window: k,
            records: recs.iter().map(|r| (r.offset, &r.record)).collect(),
            previous: *previous,
            encoding: RecordEncoding::Record2,
            headers: self.headers,
        };
        let (st, root) = statement::build_statement(&window).map_err(|e| Error::Core {
            reason: e.to_string(),
        })?;
        let att = makoto_core::attestation::Attestation::seal(st, self.signer).map_err(|e| {
            Error::Core {
                reason: e.to_string(),
            }
        })?;
        let unheadered = recs
            .iter()
            .filter(|r| !r.record.headers.contains_key(CONTENT_HASH_HEADER))
            .count() as u64;
        let subject = statement::subject(&topic.name, p, self.n, k);
        let mut envelope = att.envelope().clone();
        if let Some(tsa) = self.tsa {
            tsa.stamp(&mut envelope, &subject).await?;
        }
        self.dbom_client
            .produce(
                vec![Record {
                    key: Some(subject.into_bytes()),
                    value: Some(envelope.to_json().into_bytes()),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                }],
                Compression::NoCompression,
            )
            .await
            .map_err(|e| topic.sibling(DBOM_TOPIC).err(0, e))?;
        *previous = Some((k, root));
        Ok(PublishedWindow {
            partition: p,
            window: k,
            first_offset: recs.first().map_or(0, |r| r.offset),
            last_offset: recs.last().map_or(0, |r| r.offset),
            leaf_count: recs.len() as u64,
            unheadered,
            root,
            attestation_digest: att.digest(),
        })
    }
}

/// Re-reads `topic` and checks it against the windows attested for `attested_as` (normally
/// the same topic; another name verifies a mirror against its source's attestations).
pub async fn verify(
    topic: &Topic,
    attested_as: &str,
    trust: &TrustedKeys,
) -> Result<VerifyReport, Error> {
    let source = topic.sibling(attested_as);
    let (windows, mut findings) = published(&source, trust).await?;
    let partitions = topic.partitions().await?.ok_or_else(|| Error::NoTopic {
        brokers: topic.brokers.clone(),
        topic: topic.name.clone(),
    })?;
    let mut windows_timestamped = 0u64;
    for ((p, k), (w, envelope)) in &windows {
        match report::window_timestamp(envelope, w, trust) {
            Ok(true) => windows_timestamped += 1,
            Ok(false) => {}
            Err((kind, detail)) => findings.push(KafkaFinding {
                kind,
                partition: Some(*p),
                offset: None,
                window: Some(*k),
                detail,
            }),
        }
    }
    let mut records_checked = 0u64;
    let mut records_without_headers = 0u64;
    let mut records_covered = 0u64;
    let topic_policy = report::topic_policy(windows.values().map(|(w, _)| w.value()));
    for p in &partitions {
        let attested: Vec<&Verified<KafkaWindow>> = windows
            .iter()
            .filter(|((pp, _), _)| pp == p)
            .map(|(_, (w, _))| w)
            .collect();
        records_covered += attested
            .iter()
            .map(|w| w.value().leaves.len() as u64)
            .sum::<u64>();
        let mut check = report::PartitionCheck::new(attested_as, *p, &attested, topic_policy);
        let mut reader = topic.reader(*p, 0).await?;
        while let Some(batch) = reader.next_batch().await? {
            records_checked += batch.len() as u64;
            for r in &batch {
                check.record(r);
            }
        }
        records_without_headers += check.finish(&mut findings);
    }
    Ok(VerifyReport {
        topic: topic.name.clone(),
        attested_as: attested_as.to_owned(),
        windows_checked: windows.len() as u64,
        windows_timestamped,
        records_checked,
        records_covered,
        records_without_headers,
        verified: findings.is_empty() && !windows.is_empty(),
        findings,
    })
}
