//! The reader view of a table version: everything a Delta reader can be influenced by.
//!
//! The state digest ([`crate::state`]) commits to the bytes of the live files. A reader also
//! depends on what the log says *about* them and about the table: partition values (they are
//! not in the data files), deletion vectors, statistics (data skipping: a forged minimum hides
//! a file from a filtered query), tags and row-tracking fields, the schema, partition columns,
//! configuration and format of `metaData`, the `protocol`, the live `domainMetadata` and the
//! set transactions. The reader view is that information, normalized so that the JSON log, a
//! checkpoint (classic, multi-part, v2) and a `.crc` file that say the same thing give the same
//! value, and committed to by one digest that attestations sign beside the state digest.
//!
//! - Each live file is a [`ReaderFile`] leaf of a sparse Merkle tree with the state tree's keys
//!   and construction, so an attestor updates it in `O(log n)` per file.
//! - [`TableFacts`] holds the other four components.
//! - [`ReaderViewDigest`] is the five component digests and their combination.
//!
//! `docs/digests.md` §10 specifies every normalization.

mod artifacts;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Value, json};

pub use artifacts::{Check, Checksum, Claimed, Expected, ParsedColumns, parse_checksum, summarize};

use crate::delta::{Action, AddFile, Commit, DeletionVector, Metadata, Protocol};
use crate::state::{Leaf, StateTree, leaf_key};
use crate::{Error, Sha256Digest, canonical};

/// Name of the reader-view construction, recorded in every statement that carries one.
pub const READER_VIEW_ALGORITHM: &str = "makoto-delta-reader-view/1";

/// One live file as readers see it: the leaf value of the reader-view tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderFile {
    key: Sha256Digest,
    size: u64,
    /// The canonical JSON of the normalized object: the leaf value. Kept as bytes, not as a
    /// parsed value, since a tree may hold a whole table of these; the path, needed only for
    /// messages, is read back from them.
    canonical: Box<[u8]>,
}

/// `stats` as a JSON value: the parsed object when the string is JSON, else the string.
pub fn stats_value(raw: Option<&str>) -> Value {
    match raw {
        None => Value::Null,
        Some(s) => serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_owned())),
    }
}

fn string_map(m: &BTreeMap<String, Option<String>>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map_or(Value::Null, |s| json!(s))))
            .collect(),
    )
}

impl ReaderFile {
    /// The reader view of an `add` action (from a commit, a checkpoint or a log compaction).
    pub fn from_add(add: &AddFile) -> Self {
        let tags = match add.tags() {
            Some(t) if !t.is_empty() => string_map(t),
            _ => Value::Null,
        };
        let value = json!({
            "path": add.path().as_str(),
            "size": add.size(),
            "partitionValues": string_map(add.partition_values()),
            "deletionVector": add.deletion_vector().map(DeletionVector::descriptor_json),
            "stats": stats_value(add.stats()),
            "tags": tags,
            "baseRowId": add.base_row_id(),
            "defaultRowCommitVersion": add.default_row_commit_version(),
            "clusteringProvider": add.clustering_provider(),
        });
        let dv = add.deletion_vector().map(DeletionVector::unique_id);
        ReaderFile {
            key: leaf_key(add.path().as_str(), dv.as_deref()),
            size: add.size(),
            canonical: canonical::to_vec(&value).into_boxed_slice(),
        }
    }

    /// The decoded path (borrowed from the leaf bytes unless it has escapes).
    pub fn path(&self) -> Cow<'_, str> {
        #[derive(serde::Deserialize)]
        struct Path<'a> {
            #[serde(borrow)]
            path: Cow<'a, str>,
        }
        // The bytes were written or checked with a string path when this file was built.
        serde_json::from_slice::<Path<'_>>(&self.canonical).map_or(Cow::Borrowed(""), |p| p.path)
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn key(&self) -> Sha256Digest {
        self.key
    }
    /// The normalized entry (`path`, `size`, `partitionValues`, `deletionVector`, `stats`,
    /// `tags`, `baseRowId`, `defaultRowCommitVersion`, `clusteringProvider`).
    pub fn to_json(&self) -> Value {
        // The bytes were written from a `Value` (or checked to be canonical JSON) when this
        // file was built, so they parse.
        serde_json::from_slice(&self.canonical).unwrap_or(Value::Null)
    }
    /// The leaf value: the canonical JSON of [`ReaderFile::to_json`].
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }
    /// One field of [`ReaderFile::to_json`] (`null` when absent).
    pub fn field(&self, name: &str) -> Value {
        match self.to_json() {
            Value::Object(mut m) => m.remove(name).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

impl Leaf for ReaderFile {
    fn key(&self) -> Sha256Digest {
        self.key
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn path(&self) -> Cow<'_, str> {
        ReaderFile::path(self)
    }
    fn value_bytes(&self) -> Vec<u8> {
        self.canonical.to_vec()
    }
    fn from_value_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidStatePage {
            reason: format!("reader leaf: {reason}"),
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?;
        let path = value
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing path"))?
            .to_owned();
        let size = value
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("missing size"))?;
        let dv = match value.get("deletionVector") {
            Some(Value::Null) => None,
            Some(d) => Some(DeletionVector::from_json(d).map_err(|_| bad("bad deletion vector"))?),
            None => return Err(bad("missing deletionVector")),
        };
        let key = leaf_key(&path, dv.as_ref().map(DeletionVector::unique_id).as_deref());
        if canonical::to_vec(&value) != bytes {
            return Err(bad("not in canonical form"));
        }
        Ok(ReaderFile {
            key,
            size,
            canonical: bytes.into(),
        })
    }
}

/// The normalized `protocol` action.
pub fn protocol_json(p: &Protocol) -> Value {
    let features = |f: &[String]| {
        let mut f: Vec<&String> = f.iter().collect();
        f.sort();
        f.dedup();
        if f.is_empty() { Value::Null } else { json!(f) }
    };
    json!({
        "minReaderVersion": p.min_reader_version(),
        "minWriterVersion": p.min_writer_version(),
        "readerFeatures": features(p.reader_features()),
        "writerFeatures": features(p.writer_features()),
    })
}

/// The normalized `metaData` action. The schema is compared as parsed JSON.
pub fn metadata_json(m: &Metadata) -> Value {
    let schema = serde_json::from_str::<Value>(m.schema_string())
        .unwrap_or_else(|_| Value::String(m.schema_string().to_owned()));
    json!({
        "id": m.id(),
        "name": m.name(),
        "description": m.description(),
        "format": {"provider": m.format_provider(), "options": string_map(m.format_options())},
        "schema": schema,
        "partitionColumns": m.partition_columns(),
        "configuration": string_map(m.configuration()),
        "createdTime": m.created_time(),
    })
}

/// A set transaction as readers and writers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTransaction {
    pub version: i64,
    pub last_updated: Option<i64>,
}

/// Protocol, metadata, live domain metadata and set transactions of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    protocol: Option<Value>,
    metadata: Option<Value>,
    domains: BTreeMap<String, String>,
    txns: BTreeMap<String, SetTransaction>,
    /// Kept up to date by [`TableFacts::apply`], so a digest per version costs nothing when
    /// the facts did not change (a wide schema is hashed once, not once per commit).
    digests: FactsDigests,
}

impl Default for TableFacts {
    fn default() -> Self {
        let mut facts = TableFacts {
            protocol: None,
            metadata: None,
            domains: BTreeMap::new(),
            txns: BTreeMap::new(),
            digests: FactsDigests {
                protocol: Sha256Digest::ZERO,
                metadata: Sha256Digest::ZERO,
                domain_metadata: Sha256Digest::ZERO,
                set_transactions: Sha256Digest::ZERO,
            },
        };
        facts.refresh_all();
        facts
    }
}

fn json_digest(v: &Value) -> Sha256Digest {
    Sha256Digest::of(&canonical::to_vec(v))
}

/// The component digests of [`TableFacts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactsDigests {
    pub protocol: Sha256Digest,
    pub metadata: Sha256Digest,
    pub domain_metadata: Sha256Digest,
    pub set_transactions: Sha256Digest,
}

impl TableFacts {
    /// Applies a `protocol`, `metaData`, `txn` or `domainMetadata` action; others are ignored.
    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::Protocol(p) => {
                self.protocol = Some(protocol_json(p));
                self.digests.protocol = json_digest(self.protocol());
            }
            Action::Metadata(m) => {
                self.metadata = Some(metadata_json(m));
                self.digests.metadata = json_digest(self.metadata());
            }
            Action::Txn(t) => {
                self.txns.insert(
                    t.app_id().to_owned(),
                    SetTransaction {
                        version: t.version(),
                        last_updated: t.last_updated(),
                    },
                );
                self.digests.set_transactions = json_digest(&self.set_transactions_json());
            }
            Action::DomainMetadata(d) => {
                if d.removed() {
                    self.domains.remove(d.domain());
                } else {
                    self.domains
                        .insert(d.domain().to_owned(), d.configuration().to_owned());
                }
                self.digests.domain_metadata = json_digest(&self.domain_metadata_json());
            }
            _ => {}
        }
    }

    fn refresh_all(&mut self) {
        self.digests = FactsDigests {
            protocol: json_digest(self.protocol()),
            metadata: json_digest(self.metadata()),
            domain_metadata: json_digest(&self.domain_metadata_json()),
            set_transactions: json_digest(&self.set_transactions_json()),
        };
    }

    pub fn protocol(&self) -> &Value {
        self.protocol.as_ref().unwrap_or(&Value::Null)
    }
    pub fn metadata(&self) -> &Value {
        self.metadata.as_ref().unwrap_or(&Value::Null)
    }
    pub fn domains(&self) -> &BTreeMap<String, String> {
        &self.domains
    }
    pub fn txns(&self) -> &BTreeMap<String, SetTransaction> {
        &self.txns
    }

    /// `[{"domain", "configuration"}, …]` sorted by domain.
    pub fn domain_metadata_json(&self) -> Value {
        Value::Array(
            self.domains
                .iter()
                .map(|(d, c)| json!({"domain": d, "configuration": c}))
                .collect(),
        )
    }

    /// `[{"appId", "version", "lastUpdated"}, …]` sorted by application id.
    pub fn set_transactions_json(&self) -> Value {
        Value::Array(
            self.txns
                .iter()
                .map(|(a, t)| json!({"appId": a, "version": t.version, "lastUpdated": t.last_updated}))
                .collect(),
        )
    }

    pub fn digests(&self) -> FactsDigests {
        self.digests
    }

    /// The whole as one JSON object (stored by the attestor so a later run can resume).
    pub fn to_json(&self) -> Value {
        json!({
            "protocol": self.protocol(),
            "metaData": self.metadata(),
            "domainMetadata": self.domain_metadata_json(),
            "setTransactions": self.set_transactions_json(),
        })
    }

    /// Parses [`TableFacts::to_json`].
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        let bad = |what: &str| Error::InvalidStatement {
            reason: format!("table facts: {what}"),
        };
        let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
        let opt = |k: &str| match obj.get(k) {
            None | Some(Value::Null) => None,
            Some(x) => Some(x.clone()),
        };
        let mut facts = TableFacts {
            protocol: opt("protocol"),
            metadata: opt("metaData"),
            ..TableFacts::default()
        };
        for d in obj
            .get("domainMetadata")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("domainMetadata"))?
        {
            let (Some(domain), Some(conf)) = (
                d.get("domain").and_then(Value::as_str),
                d.get("configuration").and_then(Value::as_str),
            ) else {
                return Err(bad("domainMetadata entry"));
            };
            facts.domains.insert(domain.to_owned(), conf.to_owned());
        }
        for t in obj
            .get("setTransactions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("setTransactions"))?
        {
            let (Some(app), Some(version)) = (
                t.get("appId").and_then(Value::as_str),
                t.get("version").and_then(Value::as_i64),
            ) else {
                return Err(bad("setTransactions entry"));
            };
            facts.txns.insert(
                app.to_owned(),
                SetTransaction {
                    version,
                    last_updated: t.get("lastUpdated").and_then(Value::as_i64),
                },
            );
        }
        facts.refresh_all();
        Ok(facts)
    }
}

/// The signed commitment to a reader view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderViewDigest {
    pub files_root: Sha256Digest,
    pub files: u64,
    pub facts: FactsDigests,
}

/// Which component of a reader view differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViewComponent {
    Files,
    Protocol,
    Metadata,
    DomainMetadata,
    SetTransactions,
}

impl ViewComponent {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewComponent::Files => "files",
            ViewComponent::Protocol => "protocol",
            ViewComponent::Metadata => "metadata",
            ViewComponent::DomainMetadata => "domainMetadata",
            ViewComponent::SetTransactions => "setTransactions",
        }
    }
}

impl ReaderViewDigest {
    /// `SHA-256` of the canonical JSON object of the five component digests (hex).
    pub fn digest(&self) -> Sha256Digest {
        Sha256Digest::of(&canonical::to_vec(&json!({
            "algorithm": READER_VIEW_ALGORITHM,
            "files": self.files_root.to_hex(),
            "protocol": self.facts.protocol.to_hex(),
            "metadata": self.facts.metadata.to_hex(),
            "domainMetadata": self.facts.domain_metadata.to_hex(),
            "setTransactions": self.facts.set_transactions.to_hex(),
        })))
    }

    /// The components that differ between two views.
    pub fn differences(&self, other: &ReaderViewDigest) -> Vec<ViewComponent> {
        let mut out = Vec::new();
        if self.files_root != other.files_root {
            out.push(ViewComponent::Files);
        }
        if self.facts.protocol != other.facts.protocol {
            out.push(ViewComponent::Protocol);
        }
        if self.facts.metadata != other.facts.metadata {
            out.push(ViewComponent::Metadata);
        }
        if self.facts.domain_metadata != other.facts.domain_metadata {
            out.push(ViewComponent::DomainMetadata);
        }
        if self.facts.set_transactions != other.facts.set_transactions {
            out.push(ViewComponent::SetTransactions);
        }
        out
    }

    /// `predicate.delta.readerView` of a statement.
    pub fn to_json(&self) -> Value {
        json!({
            "algorithm": READER_VIEW_ALGORITHM,
            "digest": {"sha256": self.digest().to_hex()},
            "files": {"root": self.files_root.to_hex(), "count": self.files},
            "protocol": {"sha256": self.facts.protocol.to_hex()},
            "metadata": {"sha256": self.facts.metadata.to_hex()},
            "domainMetadata": {"sha256": self.facts.domain_metadata.to_hex()},
            "setTransactions": {"sha256": self.facts.set_transactions.to_hex()},
        })
    }

    /// Parses [`ReaderViewDigest::to_json`], checking the combined digest.
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        let bad = |what: &str| Error::InvalidStatement {
            reason: format!("predicate.delta.readerView: {what}"),
        };
        if v.get("algorithm").and_then(Value::as_str) != Some(READER_VIEW_ALGORITHM) {
            return Err(bad("unknown algorithm"));
        }
        let hex = |path: &[&str]| -> Result<Sha256Digest, Error> {
            let mut cur = v;
            for p in path {
                cur = cur
                    .get(p)
                    .ok_or_else(|| bad(&format!("missing {}", path.join("."))))?;
            }
            cur.as_str()
                .ok_or_else(|| bad(&format!("{} is not a string", path.join("."))))?
                .parse()
                .map_err(|_| bad(&format!("{} is not a SHA-256 digest", path.join("."))))
        };
        let view = ReaderViewDigest {
            files_root: hex(&["files", "root"])?,
            files: v
                .get("files")
                .and_then(|f| f.get("count"))
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("missing files.count"))?,
            facts: FactsDigests {
                protocol: hex(&["protocol", "sha256"])?,
                metadata: hex(&["metadata", "sha256"])?,
                domain_metadata: hex(&["domainMetadata", "sha256"])?,
                set_transactions: hex(&["setTransactions", "sha256"])?,
            },
        };
        if hex(&["digest", "sha256"])? != view.digest() {
            return Err(bad("digest.sha256 is not the digest of its components"));
        }
        Ok(view)
    }
}

/// A complete reader view held in memory (verification, checkpoints, `.crc` files).
#[derive(Debug, Default)]
pub struct ReaderView {
    pub facts: TableFacts,
    pub files: StateTree<ReaderFile>,
}

impl ReaderView {
    /// Applies one commit (or a log compaction, or a checkpoint read as a commit): removes
    /// first, then adds, then the other actions in order. The tree must have the pages of the
    /// keys it touches loaded.
    pub fn apply(&mut self, commit: &Commit) -> Result<(), Error> {
        apply_actions(&mut self.facts, &mut self.files, commit.actions())
    }

    pub fn digest(&self) -> ReaderViewDigest {
        ReaderViewDigest {
            files_root: self.files.root(),
            files: self.files.files(),
            facts: self.facts.digests(),
        }
    }

    /// A copy of a fully loaded view.
    pub fn snapshot(&self) -> Result<ReaderView, Error> {
        Ok(ReaderView {
            facts: self.facts.clone(),
            files: StateTree::from_entries(self.files.loaded_entries().into_iter().cloned())?,
        })
    }
}

/// Applies actions to a reader view's parts (shared by the in-memory view and the attestor's
/// paged tree).
pub fn apply_actions(
    facts: &mut TableFacts,
    files: &mut StateTree<ReaderFile>,
    actions: &[Action],
) -> Result<(), Error> {
    let mut files = files.batch();
    for a in actions {
        if let Action::Remove(r) = a {
            let dv = r.deletion_vector().map(DeletionVector::unique_id);
            files.remove(&leaf_key(r.path().as_str(), dv.as_deref()))?;
        }
    }
    for a in actions {
        match a {
            Action::Add(add) => {
                files.insert(ReaderFile::from_add(add))?;
            }
            Action::Remove(_) => {}
            other => facts.apply(other),
        }
    }
    Ok(())
}

/// Applies a log compaction file's actions (`<x>.<y>.compacted.json`), which readers take
/// newest first: for each file key, each set-transaction application and each metadata
/// domain, and for `metaData` and `protocol`, the first action in the file wins; keys the
/// file does not name keep their state from version `x - 1`.
pub fn apply_reconciled(view: &mut ReaderView, actions: &[Action]) -> Result<(), Error> {
    use std::collections::HashSet;
    let mut keys: HashSet<Sha256Digest> = HashSet::new();
    let (mut metadata, mut protocol) = (false, false);
    let mut txns: HashSet<String> = HashSet::new();
    let mut domains: HashSet<String> = HashSet::new();
    for a in actions {
        match a {
            Action::Add(x) => {
                let dv = x.deletion_vector().map(DeletionVector::unique_id);
                let key = leaf_key(x.path().as_str(), dv.as_deref());
                if keys.insert(key) {
                    view.files.remove(&key)?;
                    view.files.insert(ReaderFile::from_add(x))?;
                }
            }
            Action::Remove(x) => {
                let dv = x.deletion_vector().map(DeletionVector::unique_id);
                let key = leaf_key(x.path().as_str(), dv.as_deref());
                if keys.insert(key) {
                    view.files.remove(&key)?;
                }
            }
            Action::Metadata(_) if !metadata => {
                metadata = true;
                view.facts.apply(a);
            }
            Action::Protocol(_) if !protocol => {
                protocol = true;
                view.facts.apply(a);
            }
            Action::Txn(t) if txns.insert(t.app_id().to_owned()) => view.facts.apply(a),
            Action::DomainMetadata(d) if domains.insert(d.domain().to_owned()) => {
                view.facts.apply(a)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keys an action list touches in the reader tree (to load their pages first).
pub fn touched_keys(actions: &[Action]) -> Vec<Sha256Digest> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Add(x) => Some(leaf_key(
                x.path().as_str(),
                x.deletion_vector()
                    .map(DeletionVector::unique_id)
                    .as_deref(),
            )),
            Action::Remove(x) => Some(leaf_key(
                x.path().as_str(),
                x.deletion_vector()
                    .map(DeletionVector::unique_id)
                    .as_deref(),
            )),
            _ => None,
        })
        .collect()
}

/// Whether a value of a typed (`_parsed`) checkpoint column says the same as the JSON value
/// written by the commit: objects member by member (a missing member equals `null`), numbers
/// by value, strings equal or naming the same number, date or instant (to the millisecond).
pub fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Object(x), Value::Object(y)) => {
            let null = Value::Null;
            x.keys()
                .chain(y.keys())
                .all(|k| loosely_equal(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loosely_equal(a, b))
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!((instant_ms(x), instant_ms(y)), (Some(i), Some(j)) if i == j)
                || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(i), Ok(j)) if i == j)
        }
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        (Value::String(s), Value::Bool(b)) | (Value::Bool(b), Value::String(s)) => {
            s.eq_ignore_ascii_case(if *b { "true" } else { "false" })
        }
        _ => false,
    }
}

/// Milliseconds since the epoch of a date or timestamp as Delta writes them in statistics
/// and partition values (RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]`, `YYYY-MM-DD`), read as UTC
/// when no offset is given.
fn instant_ms(s: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(lines: &[&str]) -> Commit {
        Commit::parse(1, lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn leaf_is_normalized_and_round_trips() {
        let c = commit(&[
            r#"{"add":{"path":"a%3D1/p.parquet","size":10,"partitionValues":{"a":"1"},"modificationTime":5,"dataChange":true,"stats":"{\"numRecords\": 3, \"minValues\": {\"x\": 1.50}}","tags":{}}}"#,
        ]);
        let Action::Add(add) = &c.actions()[0] else {
            unreachable!()
        };
        let f = ReaderFile::from_add(add);
        let bytes = f.value_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"baseRowId":null,"clusteringProvider":null,"defaultRowCommitVersion":null,"deletionVector":null,"partitionValues":{"a":"1"},"path":"a=1/p.parquet","size":10,"stats":{"minValues":{"x":1.5},"numRecords":3},"tags":null}"#
        );
        assert_eq!(ReaderFile::from_value_bytes(&bytes).unwrap(), f);
        assert_eq!(f.key(), leaf_key("a=1/p.parquet", None));
    }

    /// The path is read back from the leaf bytes: decoded, escapes and all.
    #[test]
    fn path_is_read_from_the_leaf_bytes() {
        let c = commit(&[
            r#"{"add":{"path":"d%3D%22x%5C%22/caf%C3%A9.parquet","size":1,"partitionValues":{},"modificationTime":5,"dataChange":true}}"#,
            r#"{"add":{"path":"plain.parquet","size":1,"partitionValues":{},"modificationTime":5,"dataChange":true}}"#,
        ]);
        let paths: Vec<(String, bool)> = c
            .actions()
            .iter()
            .map(|a| {
                let Action::Add(add) = a else { unreachable!() };
                let f = ReaderFile::from_add(add);
                let back = ReaderFile::from_value_bytes(&f.value_bytes()).unwrap();
                assert_eq!(back.path(), f.path());
                (f.path().into_owned(), matches!(f.path(), Cow::Borrowed(_)))
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("d=\"x\\\"/café.parquet".to_owned(), false),
                ("plain.parquet".to_owned(), true)
            ]
        );
    }

    #[test]
    fn view_follows_removes_adds_and_facts() {
        let mut view = ReaderView::default();
        view.apply(&commit(&[
            r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#,
            r#"{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":[],"configuration":{},"createdTime":1}}"#,
            r#"{"add":{"path":"p1","size":1,"partitionValues":{},"modificationTime":1,"dataChange":true}}"#,
            r#"{"txn":{"appId":"job","version":3}}"#,
            r#"{"domainMetadata":{"domain":"d","configuration":"{}","removed":false}}"#,
        ]))
        .unwrap();
        let first = view.digest();
        assert_eq!(first.files, 1);
        view.apply(&commit(&[
            r#"{"remove":{"path":"p1","dataChange":true}}"#,
            r#"{"add":{"path":"p2","size":2,"partitionValues":{},"modificationTime":1,"dataChange":true}}"#,
            r#"{"domainMetadata":{"domain":"d","configuration":"{}","removed":true}}"#,
        ]))
        .unwrap();
        let second = view.digest();
        assert_eq!(
            second.differences(&first),
            vec![ViewComponent::Files, ViewComponent::DomainMetadata]
        );
        let parsed = ReaderViewDigest::from_json(&second.to_json()).unwrap();
        assert_eq!(parsed, second);
        let facts = TableFacts::from_json(&view.facts.to_json()).unwrap();
        assert_eq!(facts.digests(), view.facts.digests());
    }

    #[test]
    fn parsed_columns_compare_by_value() {
        let json_stats = json!({"numRecords": 2, "minValues": {"ts": "2021-01-01T00:00:00.000Z", "d": "2021-01-01", "x": 1.5}, "nullCount": {"x": 0}});
        let parsed = json!({"numRecords": 2, "minValues": {"ts": "2021-01-01T00:00:00", "d": "2021-01-01", "x": 1.5, "y": null}, "nullCount": {"x": 0}});
        assert!(loosely_equal(&json_stats, &parsed));
        let forged = json!({"numRecords": 2, "minValues": {"ts": "2021-01-01T00:00:00", "d": "2021-01-01", "x": 9.5}, "nullCount": {"x": 0}});
        assert!(!loosely_equal(&json_stats, &forged));
        assert!(loosely_equal(&json!("12"), &json!(12)));
        assert!(!loosely_equal(&json!("eu"), &json!("us")));
    }

    #[test]
    fn protocol_features_are_a_set() {
        let a = commit(&[
            r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors","columnMapping"],"writerFeatures":[]}}"#,
        ]);
        let b = commit(&[
            r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["columnMapping","deletionVectors"]}}"#,
        ]);
        let (Action::Protocol(a), Action::Protocol(b)) = (&a.actions()[0], &b.actions()[0]) else {
            unreachable!()
        };
        assert_eq!(protocol_json(a), protocol_json(b));
    }
}
