use serde_json::{Value, json};

use super::LEAF_PREFIX;
use crate::{Error, Sha256Digest, canonical};

/// The deletion vector attached to a live file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvEntry {
    unique_id: String,
    size_in_bytes: u64,
    cardinality: u64,
    /// SHA-256 of the whole DV file; `None` for inline vectors (their bytes are the id).
    file_sha256: Option<Sha256Digest>,
}

impl DvEntry {
    pub fn new(
        unique_id: String,
        size_in_bytes: u64,
        cardinality: u64,
        file_sha256: Option<Sha256Digest>,
    ) -> Self {
        DvEntry {
            unique_id,
            size_in_bytes,
            cardinality,
            file_sha256,
        }
    }
    pub fn unique_id(&self) -> &str {
        &self.unique_id
    }
    pub fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }
    pub fn cardinality(&self) -> u64 {
        self.cardinality
    }
    pub fn file_sha256(&self) -> Option<Sha256Digest> {
        self.file_sha256
    }
}

/// A live file of a table version: one leaf of the state tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    path: String,
    size: u64,
    /// `None`: the bytes were already gone (vacuumed) when the version that added the file
    /// was first attested, so only the log's facts about it are attested.
    sha256: Option<Sha256Digest>,
    /// Boxed: few files have one, and every leaf of a tree of a million files pays for the
    /// field's size.
    dv: Option<Box<DvEntry>>,
}

/// The leaf key of `(path, dvUniqueId)`.
pub fn leaf_key(path: &str, dv_unique_id: Option<&str>) -> Sha256Digest {
    Sha256Digest::of_parts(&[
        path.as_bytes(),
        &[0u8],
        dv_unique_id.unwrap_or("").as_bytes(),
    ])
}

impl FileEntry {
    pub fn new(path: String, size: u64, sha256: Sha256Digest, dv: Option<DvEntry>) -> Self {
        FileEntry {
            path,
            size,
            sha256: Some(sha256),
            dv: dv.map(Box::new),
        }
    }

    /// A file whose bytes were gone before it could be hashed: its leaf records `"sha256":
    /// null`.
    pub fn unavailable(path: String, size: u64, dv: Option<DvEntry>) -> Self {
        FileEntry {
            path,
            size,
            sha256: None,
            dv: dv.map(Box::new),
        }
    }
    /// Decoded path relative to the table root (or absolute URI).
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The attested SHA-256 of the bytes; `None` when they were unavailable.
    pub fn sha256(&self) -> Option<Sha256Digest> {
        self.sha256
    }
    pub fn is_available(&self) -> bool {
        self.sha256.is_some()
    }
    pub fn dv(&self) -> Option<&DvEntry> {
        self.dv.as_deref()
    }

    pub fn key(&self) -> Sha256Digest {
        leaf_key(&self.path, self.dv.as_ref().map(|d| d.unique_id.as_str()))
    }

    /// The entry as the JSON object whose canonical form is hashed into the leaf.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256.map(|h| h.to_hex()),
            "deletionVector": self.dv.as_ref().map(|d| json!({
                "uniqueId": d.unique_id,
                "sizeInBytes": d.size_in_bytes,
                "cardinality": d.cardinality,
                "sha256": d.file_sha256.map(|h| h.to_hex()),
            })),
        })
    }

    /// The canonical leaf value bytes: the canonical JSON of [`FileEntry::to_json`], written
    /// directly (members in key order) since every live file of every commit needs it.
    pub fn value_bytes(&self) -> Vec<u8> {
        fn u64_member(out: &mut Vec<u8>, name: &[u8], n: u64) {
            out.extend_from_slice(name);
            out.extend_from_slice(n.to_string().as_bytes());
        }
        fn digest_member(out: &mut Vec<u8>, name: &[u8], d: Option<Sha256Digest>) {
            out.extend_from_slice(name);
            match d {
                Some(d) => canonical::write_string(&d.to_hex(), out),
                None => out.extend_from_slice(b"null"),
            }
        }
        let mut out = Vec::with_capacity(self.path.len() + 200);
        out.extend_from_slice(b"{\"deletionVector\":");
        match &self.dv {
            None => out.extend_from_slice(b"null"),
            Some(d) => {
                u64_member(&mut out, b"{\"cardinality\":", d.cardinality);
                digest_member(&mut out, b",\"sha256\":", d.file_sha256);
                u64_member(&mut out, b",\"sizeInBytes\":", d.size_in_bytes);
                out.extend_from_slice(b",\"uniqueId\":");
                canonical::write_string(&d.unique_id, &mut out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"path\":");
        canonical::write_string(&self.path, &mut out);
        digest_member(&mut out, b",\"sha256\":", self.sha256);
        u64_member(&mut out, b",\"size\":", self.size);
        out.push(b'}');
        out
    }

    /// `SHA-256(0x00 ‖ value_bytes)`.
    pub fn leaf_hash(&self) -> Sha256Digest {
        Sha256Digest::of_parts(&[&[LEAF_PREFIX], &self.value_bytes()])
    }

    /// Parses the canonical JSON produced by [`FileEntry::value_bytes`]; rejects anything that
    /// would not re-serialize to the same bytes.
    pub fn from_value_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidStatePage {
            reason: format!("leaf value: {reason}"),
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?;
        let str_field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let u64_field = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        let dv = match v.get("deletionVector") {
            None => return Err(bad("missing deletionVector")),
            Some(Value::Null) => None,
            Some(d) => Some(DvEntry {
                unique_id: str_field(d, "uniqueId").ok_or_else(|| bad("missing uniqueId"))?,
                size_in_bytes: u64_field(d, "sizeInBytes")
                    .ok_or_else(|| bad("missing sizeInBytes"))?,
                cardinality: u64_field(d, "cardinality")
                    .ok_or_else(|| bad("missing cardinality"))?,
                file_sha256: match d.get("sha256") {
                    Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.parse()?),
                    _ => return Err(bad("bad DV sha256")),
                },
            }),
        };
        let entry = FileEntry {
            path: str_field(&v, "path").ok_or_else(|| bad("missing path"))?,
            size: u64_field(&v, "size").ok_or_else(|| bad("missing size"))?,
            sha256: match v.get("sha256") {
                Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.parse()?),
                _ => return Err(bad("missing sha256")),
            },
            dv: dv.map(Box::new),
        };
        if entry.value_bytes() != bytes {
            return Err(bad("not in canonical form"));
        }
        Ok(entry)
    }
}

impl super::Leaf for FileEntry {
    fn key(&self) -> Sha256Digest {
        FileEntry::key(self)
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn path(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.path)
    }
    fn value_bytes(&self) -> Vec<u8> {
        FileEntry::value_bytes(self)
    }
    fn from_value_bytes(bytes: &[u8]) -> Result<Self, Error> {
        FileEntry::from_value_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes written directly are the canonical JSON of the entry's JSON value, for
    /// entries with and without a digest and a deletion vector, and paths that need escapes.
    #[test]
    fn value_bytes_are_the_canonical_json_of_to_json() {
        let dv =
            |sha: Option<Sha256Digest>| Some(DvEntry::new("u\"x\u{1}é".into(), 36, u64::MAX, sha));
        let entries = [
            FileEntry::new("a=1/part-0.parquet".into(), 0, Sha256Digest::of(b"x"), None),
            FileEntry::new(
                "p\\q/\u{7f}\u{2028}😀.parquet".into(),
                42,
                Sha256Digest::of(b"y"),
                dv(None),
            ),
            FileEntry::new(
                "b".into(),
                u64::MAX,
                Sha256Digest::of(b"z"),
                dv(Some(Sha256Digest::of(b"d"))),
            ),
            FileEntry::unavailable("gone.parquet".into(), 7, None),
            FileEntry::unavailable("gone\n.parquet".into(), 7, dv(None)),
        ];
        for e in entries {
            assert_eq!(
                String::from_utf8(e.value_bytes()).unwrap(),
                canonical::to_string(&e.to_json()),
                "{e:?}"
            );
        }
    }

    #[test]
    fn leaf_hash_is_prefix_zero_over_canonical_json() {
        let e = FileEntry::new(
            "a=1/part-0.parquet".into(),
            42,
            Sha256Digest::of(b"x"),
            None,
        );
        let json = format!(
            r#"{{"deletionVector":null,"path":"a=1/part-0.parquet","sha256":"{}","size":42}}"#,
            Sha256Digest::of(b"x")
        );
        assert_eq!(e.value_bytes(), json.as_bytes());
        let mut pre = vec![0u8];
        pre.extend_from_slice(json.as_bytes());
        assert_eq!(e.leaf_hash(), Sha256Digest::of(&pre));
        assert_eq!(e.key(), Sha256Digest::of(b"a=1/part-0.parquet\0"));
        assert_eq!(FileEntry::from_value_bytes(json.as_bytes()).unwrap(), e);
    }

    #[test]
    fn unavailable_bytes_are_a_null_digest() {
        let e = FileEntry::unavailable("p".into(), 7, None);
        let json = br#"{"deletionVector":null,"path":"p","sha256":null,"size":7}"#;
        assert_eq!(e.value_bytes(), json);
        assert_eq!(FileEntry::from_value_bytes(json).unwrap(), e);
        assert!(!e.is_available());
    }

    #[test]
    fn non_canonical_values_are_rejected() {
        let json = format!(
            r#"{{"path":"p","size":1,"sha256":"{}","deletionVector":null}}"#,
            Sha256Digest::of(b"x")
        );
        assert!(FileEntry::from_value_bytes(json.as_bytes()).is_err());
    }
}
