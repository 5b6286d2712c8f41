//! What an artifact a reader may use besides commit files (a checkpoint's actions, a `.crc`
//! version checksum file) claims a version looks like, compared with the reader view attested
//! for that version: field by field against a view replayed from attested commits, or by
//! digest against a signed reader view when the commits are not available. Pure: the caller
//! reads the bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{
    ReaderFile, ReaderView, ReaderViewDigest, SetTransaction, TableFacts, loosely_equal,
    metadata_json, protocol_json,
};
use crate::delta::{Action, DeletionVector};
use crate::state::{Leaf, leaf_key, root_of};
use crate::{Sha256Digest, canonical};

/// The `_parsed` columns of a checkpoint `add`, when present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedColumns {
    pub stats: Option<Value>,
    pub partition_values: Option<Value>,
}

/// What an artifact is checked against.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// The view replayed from attested commits (compared field by field).
    Replayed(&'a ReaderView),
    /// Only the signed reader-view digest of the version and its attested byte total.
    Signed {
        view: &'a ReaderViewDigest,
        live_bytes: u64,
    },
}

/// What an artifact says a version looks like; components it does not carry are `None`.
#[derive(Debug, Default)]
pub struct Claimed {
    pub protocol: Option<Value>,
    pub metadata: Option<Value>,
    pub domains: Option<BTreeMap<String, String>>,
    pub txns: Option<BTreeMap<String, SetTransaction>>,
    pub files: Option<BTreeMap<Sha256Digest, ReaderFile>>,
    pub count: Option<u64>,
    pub bytes: Option<u64>,
    /// `_parsed` columns by leaf key.
    pub parsed: BTreeMap<Sha256Digest, ParsedColumns>,
    /// Files whose statistics exist only as `stats_parsed` (no JSON string to compare exactly).
    pub stats_from_parsed: BTreeSet<Sha256Digest>,
}

/// The outcome of one comparison.
#[derive(Debug, Default)]
pub struct Check {
    pub differences: Vec<String>,
    /// Could not be compared exactly (statistics only in typed columns, checked against a
    /// digest): not contradicted, not confirmed.
    pub uncertain: Option<String>,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }
    pub fn detail(&self) -> String {
        summarize(&self.differences)
    }
}

pub fn summarize(items: &[String]) -> String {
    let more = items.len().saturating_sub(3);
    let mut shown: Vec<String> = items.iter().take(3).cloned().collect();
    if more > 0 {
        shown.push(format!("and {more} more"));
    }
    shown.join("; ")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

fn same(a: &Value, b: &Value) -> bool {
    canonical::to_vec(a) == canonical::to_vec(b)
}

fn digest_of(v: &Value) -> Sha256Digest {
    Sha256Digest::of(&canonical::to_vec(v))
}

impl Claimed {
    /// The view an action list (a checkpoint) gives.
    pub fn from_actions(
        actions: &[Action],
        parsed: &BTreeMap<(String, Option<String>), ParsedColumns>,
    ) -> Claimed {
        let mut facts = TableFacts::default();
        let mut files = BTreeMap::new();
        let mut claimed = Claimed::default();
        for a in actions {
            match a {
                Action::Add(add) => {
                    let dv = add.deletion_vector().map(DeletionVector::unique_id);
                    let key = leaf_key(add.path().as_str(), dv.as_deref());
                    let p = parsed.get(&(add.path().as_str().to_owned(), dv));
                    // The leaf is what the `add` says (as an attestor signs it); statistics
                    // only in `stats_parsed` are compared by value where a replayed view
                    // allows it.
                    if add.stats().is_none() && p.is_some_and(|p| p.stats.is_some()) {
                        claimed.stats_from_parsed.insert(key);
                    }
                    if let Some(p) = p {
                        claimed.parsed.insert(key, p.clone());
                    }
                    files.insert(key, ReaderFile::from_add(add));
                }
                other => facts.apply(other),
            }
        }
        claimed.count = Some(files.len() as u64);
        claimed.bytes = Some(files.values().map(Leaf::size).sum());
        claimed.files = Some(files);
        claimed.protocol = Some(facts.protocol().clone());
        claimed.metadata = Some(facts.metadata().clone());
        claimed.domains = Some(facts.domains().clone());
        claimed.txns = Some(facts.txns().clone());
        claimed
    }

    /// The components this artifact claims that differ from `expected`.
    pub fn compare(&self, expected: Expected<'_>) -> Check {
        let mut check = Check::default();
        self.check_parsed_columns(&mut check.differences);
        match expected {
            Expected::Replayed(view) => self.compare_replayed(view, &mut check),
            Expected::Signed { view, live_bytes } => {
                self.compare_signed(view, live_bytes, &mut check)
            }
        }
        check
    }

    fn retention(&self, metadata: &Value) -> bool {
        metadata
            .get("configuration")
            .and_then(|c| c.get("delta.setTransactionRetentionDuration"))
            .is_some_and(|v| !v.is_null())
    }

    fn compare_replayed(&self, view: &ReaderView, check: &mut Check) {
        let out = &mut check.differences;
        if let Some(p) = &self.protocol
            && !same(p, view.facts.protocol())
        {
            out.push(format!(
                "protocol is {} here, {} attested",
                short(p),
                short(view.facts.protocol())
            ));
        }
        if let Some(m) = &self.metadata {
            let att = view.facts.metadata();
            let empty = serde_json::Map::new();
            let (mo, ao) = (
                m.as_object().unwrap_or(&empty),
                att.as_object().unwrap_or(&empty),
            );
            let keys: BTreeSet<&String> = mo.keys().chain(ao.keys()).collect();
            for k in keys {
                let (x, y) = (
                    mo.get(k).unwrap_or(&Value::Null),
                    ao.get(k).unwrap_or(&Value::Null),
                );
                if !same(x, y) {
                    out.push(format!(
                        "metaData.{k} is {} here, {} attested",
                        short(x),
                        short(y)
                    ));
                }
            }
        }
        if let Some(d) = &self.domains {
            for (k, v) in d {
                if view.facts.domains().get(k) != Some(v) {
                    out.push(format!("domain metadata {k:?} is not the attested one"));
                }
            }
            for k in view.facts.domains().keys() {
                if !d.contains_key(k) {
                    out.push(format!("attested domain metadata {k:?} is missing"));
                }
            }
        }
        if let Some(t) = &self.txns {
            let lenient = self.retention(view.facts.metadata());
            for (app, x) in t {
                if view.facts.txns().get(app) != Some(x) {
                    out.push(format!(
                        "set transaction {app:?} is version {} here, {} attested",
                        x.version,
                        view.facts
                            .txns()
                            .get(app)
                            .map_or("none".to_owned(), |y| y.version.to_string())
                    ));
                }
            }
            if !lenient {
                for app in view.facts.txns().keys() {
                    if !t.contains_key(app) {
                        out.push(format!("attested set transaction {app:?} is missing"));
                    }
                }
            }
        }
        if let Some(c) = self.count
            && c != view.files.files()
        {
            out.push(format!(
                "{c} live files here, {} attested",
                view.files.files()
            ));
        }
        if let Some(b) = self.bytes
            && b != view.files.bytes()
        {
            out.push(format!(
                "{b} bytes of live files here, {} attested",
                view.files.bytes()
            ));
        }
        if let Some(files) = &self.files {
            let attested: BTreeMap<Sha256Digest, &ReaderFile> = view
                .files
                .loaded_entries()
                .into_iter()
                .map(|f| (f.key(), f))
                .collect();
            for (k, f) in files {
                match attested.get(k) {
                    None => out.push(format!(
                        "{} is live here but not in the attested view",
                        f.path()
                    )),
                    Some(a) => self.compare_file(f, a, out),
                }
            }
            for (k, a) in &attested {
                if !files.contains_key(k) {
                    out.push(format!("attested live file {} is missing", a.path()));
                }
            }
        }
    }

    fn compare_file(&self, f: &ReaderFile, a: &ReaderFile, out: &mut Vec<String>) {
        let parsed_stats = self
            .stats_from_parsed
            .contains(&f.key())
            .then(|| self.parsed.get(&f.key()).and_then(|p| p.stats.as_ref()))
            .flatten();
        if parsed_stats.is_none() && f.canonical_bytes() == a.canonical_bytes() {
            return;
        }
        let (fj, aj) = (f.to_json(), a.to_json());
        let get = |v: &'_ Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        for field in [
            "size",
            "partitionValues",
            "deletionVector",
            "stats",
            "tags",
            "baseRowId",
            "defaultRowCommitVersion",
            "clusteringProvider",
        ] {
            let (x, y) = (get(&fj, field), get(&aj, field));
            let (x, equal) = match parsed_stats {
                Some(p) if field == "stats" => (p, loosely_equal(p, &y)),
                _ => (&x, same(&x, &y)),
            };
            if !equal {
                out.push(format!(
                    "{field} of {} is {} here, {} attested",
                    f.path(),
                    short(x),
                    short(&y)
                ));
            }
        }
    }

    fn compare_signed(&self, view: &ReaderViewDigest, live_bytes: u64, check: &mut Check) {
        let out = &mut check.differences;
        let mut component = |name: &str, v: &Option<Value>, d: Sha256Digest| {
            if let Some(v) = v
                && digest_of(v) != d
            {
                out.push(format!("{name} differs from the attested one"));
            }
        };
        component("protocol", &self.protocol, view.facts.protocol);
        component("metaData", &self.metadata, view.facts.metadata);
        if let Some(d) = &self.domains {
            let mut facts = TableFacts::default();
            for (k, v) in d {
                facts.apply(&domain_action(k, v));
            }
            if digest_of(&facts.domain_metadata_json()) != view.facts.domain_metadata {
                out.push("domain metadata differs from the attested one".into());
            }
        }
        if let Some(t) = &self.txns {
            let v = Value::Array(
                t.iter()
                    .map(|(a, t)| json!({"appId": a, "version": t.version, "lastUpdated": t.last_updated}))
                    .collect(),
            );
            if digest_of(&v) != view.facts.set_transactions {
                let lenient = self.metadata.as_ref().is_some_and(|m| self.retention(m));
                if lenient {
                    check.uncertain.get_or_insert_with(|| {
                        "set transactions differ, which transaction retention may explain".into()
                    });
                } else {
                    out.push("set transactions differ from the attested ones".into());
                }
            }
        }
        if let Some(c) = self.count
            && c != view.files
        {
            out.push(format!("{c} live files here, {} attested", view.files));
        }
        if let Some(b) = self.bytes
            && b != live_bytes
        {
            out.push(format!(
                "{b} bytes of live files here, {live_bytes} attested"
            ));
        }
        if let Some(files) = &self.files {
            let leaves: Vec<ReaderFile> = files.values().cloned().collect();
            if root_of(&leaves) != view.files_root {
                if self.stats_from_parsed.is_empty() {
                    out.push("the live files (paths, sizes, partition values, deletion vectors, statistics or tags) differ from the attested ones".into());
                } else {
                    check.uncertain.get_or_insert_with(|| format!(
                        "{} files have statistics only as stats_parsed, which cannot be compared exactly with the attested digest",
                        self.stats_from_parsed.len()
                    ));
                }
            }
        }
    }

    /// `stats_parsed` and `partitionValues_parsed` must say what `stats` and
    /// `partitionValues` say: readers use either.
    fn check_parsed_columns(&self, out: &mut Vec<String>) {
        let Some(files) = &self.files else { return };
        for (k, p) in &self.parsed {
            let Some(f) = files.get(k) else { continue };
            let entry = f.to_json();
            let stats = entry.get("stats").unwrap_or(&Value::Null);
            if let Some(s) = &p.stats
                && !self.stats_from_parsed.contains(k)
                && !stats.is_null()
                && !loosely_equal(s, stats)
            {
                out.push(format!(
                    "stats_parsed of {} is {}, its stats say {}",
                    f.path(),
                    short(s),
                    short(stats)
                ));
            }
            if let Some(Value::Object(pv)) = &p.partition_values {
                let strings = entry.get("partitionValues").unwrap_or(&Value::Null);
                for (col, v) in pv {
                    let s = strings.get(col).unwrap_or(&Value::Null);
                    if !loosely_equal(v, s) {
                        out.push(format!(
                            "partitionValues_parsed.{col} of {} is {}, partitionValues says {}",
                            f.path(),
                            short(v),
                            short(s)
                        ));
                    }
                }
            }
        }
    }
}

fn domain_action(domain: &str, configuration: &str) -> Action {
    let v = json!({"domainMetadata": {"domain": domain, "configuration": configuration, "removed": false}});
    Action::from_json(&v).unwrap_or(Action::Other {
        name: "domainMetadata".into(),
    })
}

/// A `.crc` version checksum file, parsed.
#[derive(Debug, Default)]
pub struct Checksum {
    pub claimed: Claimed,
    pub problems: Vec<String>,
    pub deletion_vectors: Option<u64>,
    pub deleted_records: Option<u64>,
}

/// Parses a `.crc` file (`tableSizeBytes`, `numFiles`, `metadata`, `protocol`, and the optional
/// `setTransactions`, `domainMetadata`, `allFiles`, `fileSizeHistogram` and DV counts).
pub fn parse_checksum(bytes: &[u8]) -> Result<Checksum, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let mut c = Checksum::default();
    let action = |name: &str, body: &Value| {
        Action::from_json(&json!({ name: body })).map_err(|e| format!("{name}: {e}"))
    };
    match obj.get("metadata") {
        Some(m) => {
            if let Action::Metadata(m) = action("metaData", m)? {
                c.claimed.metadata = Some(metadata_json(&m));
            }
        }
        None => return Err("no metadata".into()),
    }
    match obj.get("protocol") {
        Some(p) => {
            if let Action::Protocol(p) = action("protocol", p)? {
                c.claimed.protocol = Some(protocol_json(&p));
            }
        }
        None => return Err("no protocol".into()),
    }
    let u = |k: &str| obj.get(k).and_then(Value::as_u64);
    c.claimed.count = Some(u("numFiles").ok_or("no numFiles")?);
    c.claimed.bytes = Some(u("tableSizeBytes").ok_or("no tableSizeBytes")?);
    for k in ["numMetadata", "numProtocol"] {
        if let Some(n) = u(k)
            && n != 1
        {
            c.problems.push(format!("{k} is {n}, not 1"));
        }
    }
    if let Some(Value::Array(txns)) = obj.get("setTransactions") {
        let mut facts = TableFacts::default();
        for t in txns {
            facts.apply(&action("txn", t)?);
        }
        c.claimed.txns = Some(facts.txns().clone());
    }
    if let Some(Value::Array(domains)) = obj.get("domainMetadata") {
        let mut facts = TableFacts::default();
        for d in domains {
            facts.apply(&action("domainMetadata", d)?);
        }
        c.claimed.domains = Some(facts.domains().clone());
    }
    if let Some(Value::Array(files)) = obj.get("allFiles") {
        let mut map = BTreeMap::new();
        for f in files {
            if let Action::Add(add) = action("add", f)? {
                let file = ReaderFile::from_add(&add);
                map.insert(file.key(), file);
            }
        }
        c.claimed.files = Some(map);
    }
    if let Some(h) = obj.get("fileSizeHistogram").filter(|h| !h.is_null()) {
        let sum = |k: &str| -> Option<u64> {
            h.get(k)?
                .as_array()?
                .iter()
                .map(Value::as_u64)
                .try_fold(0u64, |acc, x| acc.checked_add(x?))
        };
        if sum("fileCounts") != c.claimed.count {
            c.problems
                .push("fileSizeHistogram.fileCounts does not add up to numFiles".into());
        }
        if sum("totalBytes") != c.claimed.bytes {
            c.problems
                .push("fileSizeHistogram.totalBytes does not add up to tableSizeBytes".into());
        }
    }
    c.deletion_vectors = u("numDeletionVectorsOpt");
    c.deleted_records = u("numDeletedRecordsOpt");
    Ok(c)
}

impl Checksum {
    /// Compares the checksum with the view. `inCommitTimestampOpt` is not compared: it is not
    /// part of what readers read at the version, and makoto resolves timestamps through signed
    /// commit timestamps.
    pub fn compare(&self, expected: Expected<'_>) -> Check {
        let mut check = self.claimed.compare(expected);
        check.differences.extend(self.problems.iter().cloned());
        if let Expected::Replayed(view) = expected {
            let entries = view.files.loaded_entries();
            let dvs: Vec<Value> = entries
                .iter()
                .map(|f| f.field("deletionVector"))
                .filter(|d| !d.is_null())
                .collect();
            if let Some(n) = self.deletion_vectors
                && n != dvs.len() as u64
            {
                check.differences.push(format!(
                    "numDeletionVectorsOpt is {n}, the attested view has {}",
                    dvs.len()
                ));
            }
            let deleted: u64 = dvs
                .iter()
                .filter_map(|d| d.get("cardinality").and_then(Value::as_u64))
                .sum();
            if let Some(n) = self.deleted_records
                && n != deleted
            {
                check.differences.push(format!(
                    "numDeletedRecordsOpt is {n}, the attested view deletes {deleted}"
                ));
            }
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Commit;

    fn view() -> ReaderView {
        let mut v = ReaderView::default();
        v.apply(
            &Commit::parse(
                0,
                br#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}
{"metaData":{"id":"t","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":["r"],"configuration":{},"createdTime":1}}
{"add":{"path":"r=a/p1","size":10,"partitionValues":{"r":"a"},"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":2}"}}
{"add":{"path":"r=b/p2","size":5,"partitionValues":{"r":"b"},"modificationTime":1,"dataChange":true}}"#,
            )
            .unwrap(),
        )
        .unwrap();
        v
    }

    fn crc(num_files: u64, size: u64, schema: &str) -> Vec<u8> {
        json!({
            "tableSizeBytes": size, "numFiles": num_files, "numMetadata": 1, "numProtocol": 1,
            "metadata": {"id": "t", "format": {"provider": "parquet", "options": {}},
                         "schemaString": schema, "partitionColumns": ["r"],
                         "configuration": {}, "createdTime": 1},
            "protocol": {"minReaderVersion": 1, "minWriterVersion": 2},
            "fileSizeHistogram": {"sortedBinBoundaries": [0, 8192], "fileCounts": [num_files, 0], "totalBytes": [size, 0]},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_checksum_is_compared_with_the_view_and_its_digest() {
        let v = view();
        let schema = r#"{"type":"struct","fields":[]}"#;
        let good = parse_checksum(&crc(2, 15, schema)).unwrap();
        assert!(good.compare(Expected::Replayed(&v)).ok());
        let d = v.digest();
        let signed = Expected::Signed {
            view: &d,
            live_bytes: 15,
        };
        assert!(good.compare(signed).ok());

        let renamed =
            parse_checksum(&crc(2, 15, r#"{"type":"struct","fields":[{"name":"x"}]}"#)).unwrap();
        let check = renamed.compare(Expected::Replayed(&v));
        assert!(
            check
                .differences
                .iter()
                .any(|d| d.starts_with("metaData.schema"))
        );
        assert!(!renamed.compare(signed).ok());

        let miscounted = parse_checksum(&crc(3, 15, schema)).unwrap();
        assert!(!miscounted.compare(Expected::Replayed(&v)).ok());
        assert!(parse_checksum(b"{}").is_err());
        assert!(parse_checksum(b"not json").is_err());
    }

    #[test]
    fn checkpoint_actions_compare_field_by_field_and_parsed_columns_by_value() {
        let v = view();
        let actions = |pv: &str, stats: &str| {
            Commit::parse(
                0,
                format!(
                    r#"{{"protocol":{{"minReaderVersion":1,"minWriterVersion":2}}}}
{{"metaData":{{"id":"t","format":{{"provider":"parquet","options":{{}}}},"schemaString":"{{\"type\":\"struct\",\"fields\":[]}}","partitionColumns":["r"],"configuration":{{}},"createdTime":1}}}}
{{"add":{{"path":"r=a/p1","size":10,"partitionValues":{{"r":"{pv}"}},"modificationTime":9,"dataChange":false{stats}}}}}
{{"add":{{"path":"r=b/p2","size":5,"partitionValues":{{"r":"b"}},"modificationTime":9,"dataChange":false}}}}"#
                )
                .as_bytes(),
            )
            .unwrap()
            .actions()
            .to_vec()
        };
        let same = Claimed::from_actions(
            &actions("a", r#","stats":"{\"numRecords\": 2}""#),
            &BTreeMap::new(),
        );
        assert!(
            same.compare(Expected::Replayed(&v)).ok(),
            "{:?}",
            same.compare(Expected::Replayed(&v))
        );
        let forged = Claimed::from_actions(
            &actions("z", r#","stats":"{\"numRecords\":2}""#),
            &BTreeMap::new(),
        );
        let check = forged.compare(Expected::Replayed(&v));
        assert!(
            check.differences[0].starts_with("partitionValues of r=a/p1"),
            "{check:?}"
        );
        // Statistics only in stats_parsed: compared by value with the replayed view.
        let parsed = BTreeMap::from([(
            ("r=a/p1".to_owned(), None),
            ParsedColumns {
                stats: Some(json!({"numRecords": 2, "minValues": null})),
                partition_values: Some(json!({"r": "a"})),
            },
        )]);
        let only_parsed = Claimed::from_actions(&actions("a", ""), &parsed);
        assert!(only_parsed.compare(Expected::Replayed(&v)).ok());
        let d = v.digest();
        let against_digest = only_parsed.compare(Expected::Signed {
            view: &d,
            live_bytes: 15,
        });
        assert!(against_digest.ok() && against_digest.uncertain.is_some());
    }
}
