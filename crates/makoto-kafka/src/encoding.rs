//! How a Kafka record becomes a Merkle leaf, and what a window says about makoto headers.
//!
//! Both are named in the signed window statement (`predicate.kafka.recordEncoding` and
//! `predicate.kafka.headers`), so a verifier follows what was signed, never a command-line
//! guess. The byte layout is specified in `docs/streams.md` ("Record encodings").

use makoto_core::{Sha256Digest, merkle};
use rskafka::record::Record;
use serde::{Deserialize, Serialize};

/// What a window's leaves are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RecordEncoding {
    /// The value only (windows of format 1): a copy that rewrites keys, timestamps or headers
    /// still verifies.
    #[serde(rename = "kafka-value/1")]
    Value1,
    /// Key, value, timestamp and headers: what consumers rely on.
    #[serde(rename = "kafka-record/2")]
    Record2,
}

impl RecordEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordEncoding::Value1 => "kafka-value/1",
            RecordEncoding::Record2 => "kafka-record/2",
        }
    }

    /// The RFC 6962 leaf hash of `record` under this encoding.
    pub fn leaf(self, record: &Record) -> Sha256Digest {
        match self {
            RecordEncoding::Value1 => {
                merkle::leaf_hash(record.value.as_deref().unwrap_or_default())
            }
            RecordEncoding::Record2 => merkle::leaf_hash(&record2_bytes(
                record.key.as_deref(),
                record.value.as_deref(),
                record.timestamp.timestamp_millis(),
                record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_slice())),
            )),
        }
    }
}

/// Whether a window's records must carry the makoto headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HeaderPolicy {
    /// Every record carries `makoto.content_hash` (it was written through a makoto producer);
    /// a record without it is a finding. Windows of format 1 are all of this policy.
    #[default]
    Required,
    /// Records come from producers nobody can change: the windows alone prove the topic has
    /// not changed since it was attested. Records without headers are counted, not findings;
    /// headers that are present are still checked.
    Optional,
}

impl HeaderPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderPolicy::Required => "required",
            HeaderPolicy::Optional => "optional",
        }
    }
}

impl std::str::FromStr for HeaderPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(HeaderPolicy::Required),
            "optional" => Ok(HeaderPolicy::Optional),
            other => Err(format!(
                "--headers {other:?}: expected \"required\" or \"optional\""
            )),
        }
    }
}

fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// The bytes a `kafka-record/2` leaf hashes: key and value each as a presence byte (0 absent,
/// 1 present) then, when present, a u64 big-endian length and the bytes; the timestamp as i64
/// big-endian milliseconds; the header count as u32 big-endian; then each header, in byte
/// order of its name, as u32 length + name + u32 length + value (all big-endian). `headers`
/// holds one value per name.
pub fn record2_bytes<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    timestamp_ms: i64,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<u8> {
    let mut headers: Vec<(&[u8], &[u8])> = headers.into_iter().collect();
    headers.sort();
    let mut out = Vec::with_capacity(
        32 + key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>(),
    );
    field(&mut out, key);
    field(&mut out, value);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    fn record(key: Option<&str>, value: Option<&str>, ms: i64, headers: &[(&str, &str)]) -> Record {
        Record {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>(),
            timestamp: chrono::DateTime::from_timestamp_millis(ms).unwrap(),
        }
    }

    /// The layout written out by hand, byte by byte, and hashed with `sha2` directly.
    #[test]
    fn a_record2_leaf_is_the_documented_bytes() {
        let r = record(
            Some("k"),
            Some("vv"),
            1_700_000_000_123,
            &[("z", ""), ("a", "1")],
        );
        let mut data = vec![0u8]; // RFC 6962 leaf prefix
        data.extend([1, 0, 0, 0, 0, 0, 0, 0, 1, b'k']);
        data.extend([1, 0, 0, 0, 0, 0, 0, 0, 2, b'v', b'v']);
        data.extend(1_700_000_000_123i64.to_be_bytes());
        data.extend([0, 0, 0, 2]);
        data.extend([0, 0, 0, 1, b'a', 0, 0, 0, 1, b'1']);
        data.extend([0, 0, 0, 1, b'z', 0, 0, 0, 0]);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(RecordEncoding::Record2.leaf(&r).as_bytes(), &expected);
    }

    #[test]
    fn absent_and_empty_differ_and_value1_ignores_all_but_the_value() {
        let none = record(None, None, 0, &[]);
        let empty = record(Some(""), Some(""), 0, &[]);
        assert_ne!(
            RecordEncoding::Record2.leaf(&none),
            RecordEncoding::Record2.leaf(&empty)
        );
        assert_eq!(
            RecordEncoding::Value1.leaf(&none),
            RecordEncoding::Value1.leaf(&empty)
        );
        let base = record(Some("k"), Some("v"), 5, &[("h", "1")]);
        for changed in [
            record(Some("K"), Some("v"), 5, &[("h", "1")]),
            record(Some("k"), Some("v"), 6, &[("h", "1")]),
            record(Some("k"), Some("v"), 5, &[("h", "2")]),
            record(Some("k"), Some("v"), 5, &[]),
        ] {
            assert_ne!(
                RecordEncoding::Record2.leaf(&base),
                RecordEncoding::Record2.leaf(&changed)
            );
            assert_eq!(
                RecordEncoding::Value1.leaf(&base),
                RecordEncoding::Value1.leaf(&changed)
            );
        }
    }

    #[test]
    fn names_parse_and_print_the_same() {
        for e in [RecordEncoding::Value1, RecordEncoding::Record2] {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<RecordEncoding>(&json).unwrap(), e);
        }
        assert!(serde_json::from_str::<RecordEncoding>("\"kafka-record/3\"").is_err());
        for p in [HeaderPolicy::Required, HeaderPolicy::Optional] {
            assert_eq!(p.as_str().parse::<HeaderPolicy>().unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!("maybe".parse::<HeaderPolicy>().is_err());
    }
}
