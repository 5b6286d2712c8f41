use serde::Deserialize;
use serde_json::{Value, json};

use crate::Error;

/// Where a deletion vector's bitmap lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DvStorage {
    /// `u`: a file next to the data, named by a Z85-encoded UUID with an optional prefix.
    UuidRelative,
    /// `i`: the bitmap is inline in the descriptor (Z85).
    Inline,
    /// `p`: a file at an absolute path.
    AbsolutePath,
}

impl DvStorage {
    pub fn code(self) -> &'static str {
        match self {
            DvStorage::UuidRelative => "u",
            DvStorage::Inline => "i",
            DvStorage::AbsolutePath => "p",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDeletionVector {
    storage_type: String,
    path_or_inline_dv: String,
    offset: Option<i64>,
    size_in_bytes: i64,
    cardinality: i64,
}

/// A deletion-vector descriptor from an `add` or `remove` action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeletionVector {
    storage: DvStorage,
    path_or_inline: String,
    offset: Option<u64>,
    size_in_bytes: u64,
    cardinality: u64,
    /// Relative (`u`) or absolute (`p`) location of the DV file; `None` for inline vectors.
    file: Option<String>,
}

impl TryFrom<RawDeletionVector> for DeletionVector {
    type Error = Error;

    fn try_from(raw: RawDeletionVector) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidAction {
            reason: format!("deletion vector: {reason}"),
        };
        let storage = match raw.storage_type.as_str() {
            "u" => DvStorage::UuidRelative,
            "i" => DvStorage::Inline,
            "p" => DvStorage::AbsolutePath,
            other => return Err(bad(format!("unknown storageType {other:?}"))),
        };
        let non_negative = |name: &str, v: i64| {
            u64::try_from(v).map_err(|_| bad(format!("{name} is negative ({v})")))
        };
        let size_in_bytes = non_negative("sizeInBytes", raw.size_in_bytes)?;
        let cardinality = non_negative("cardinality", raw.cardinality)?;
        let offset = raw.offset.map(|o| non_negative("offset", o)).transpose()?;
        let file = match storage {
            DvStorage::UuidRelative => {
                Some(uuid_relative_path(&raw.path_or_inline_dv).map_err(bad)?)
            }
            DvStorage::AbsolutePath => Some(raw.path_or_inline_dv.clone()),
            DvStorage::Inline => None,
        };
        Ok(DeletionVector {
            storage,
            path_or_inline: raw.path_or_inline_dv,
            offset,
            size_in_bytes,
            cardinality,
            file,
        })
    }
}

/// `<prefix>/deletion_vector_<uuid>.bin` from `pathOrInlineDv` = prefix + 20 Z85 characters.
fn uuid_relative_path(encoded: &str) -> Result<String, String> {
    if encoded.len() < 20 || !encoded.is_char_boundary(encoded.len() - 20) {
        return Err(format!(
            "pathOrInlineDv {encoded:?} is shorter than a Z85 UUID"
        ));
    }
    let (prefix, z) = encoded.split_at(encoded.len() - 20);
    let bytes = z85::decode(z).map_err(|_| format!("pathOrInlineDv {encoded:?} is not Z85"))?;
    let b: [u8; 16] = bytes
        .try_into()
        .map_err(|_| format!("pathOrInlineDv {encoded:?} does not decode to 16 bytes"))?;
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&b[0..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    );
    Ok(if prefix.is_empty() {
        format!("deletion_vector_{uuid}.bin")
    } else {
        format!("{prefix}/deletion_vector_{uuid}.bin")
    })
}

impl DeletionVector {
    /// Builds a descriptor from its protocol fields (as stored in `system.makoto.files`).
    pub fn from_fields(
        storage_type: &str,
        path_or_inline_dv: &str,
        offset: Option<i64>,
        size_in_bytes: i64,
        cardinality: i64,
    ) -> Result<Self, Error> {
        RawDeletionVector {
            storage_type: storage_type.to_owned(),
            path_or_inline_dv: path_or_inline_dv.to_owned(),
            offset,
            size_in_bytes,
            cardinality,
        }
        .try_into()
    }

    /// Parses a descriptor written with the protocol's field names (as by
    /// [`DeletionVector::descriptor_json`]).
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        RawDeletionVector::deserialize(v)
            .map_err(|e| Error::InvalidAction {
                reason: format!("deletion vector: {e}"),
            })?
            .try_into()
    }

    pub fn storage(&self) -> DvStorage {
        self.storage
    }

    pub fn path_or_inline(&self) -> &str {
        &self.path_or_inline
    }

    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    pub fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }

    /// Number of rows the vector deletes.
    pub fn cardinality(&self) -> u64 {
        self.cardinality
    }

    /// The protocol's unique id: storage type, `pathOrInlineDv`, and `@offset` when present.
    pub fn unique_id(&self) -> String {
        match self.offset {
            Some(o) => format!("{}{}@{o}", self.storage.code(), self.path_or_inline),
            None => format!("{}{}", self.storage.code(), self.path_or_inline),
        }
    }

    /// The DV file (relative to the table root for `u`, absolute for `p`); `None` when inline.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The descriptor as JSON, with the protocol's field names.
    pub fn descriptor_json(&self) -> Value {
        let mut v = json!({
            "storageType": self.storage.code(),
            "pathOrInlineDv": self.path_or_inline,
            "sizeInBytes": self.size_in_bytes,
            "cardinality": self.cardinality,
        });
        if let (Some(o), Some(m)) = (self.offset, v.as_object_mut()) {
            m.insert("offset".into(), json!(o));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(storage: &str, p: &str, offset: Option<i64>) -> RawDeletionVector {
        RawDeletionVector {
            storage_type: storage.into(),
            path_or_inline_dv: p.into(),
            offset,
            size_in_bytes: 36,
            cardinality: 2,
        }
    }

    #[test]
    fn uuid_path_from_delta_spec_example() {
        // The example from the Delta protocol: "ab^-aqEH.-t@S}K{vb[*k^" → prefix "ab" and
        // UUID d2c639aa-8816-431a-aaf6-d3fe2512ff61.
        let dv = DeletionVector::try_from(raw("u", "ab^-aqEH.-t@S}K{vb[*k^", Some(4))).unwrap();
        assert_eq!(
            dv.file(),
            Some("ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin")
        );
        assert_eq!(dv.unique_id(), "uab^-aqEH.-t@S}K{vb[*k^@4");
    }

    #[test]
    fn inline_has_no_file_and_bad_type_is_rejected() {
        let dv = DeletionVector::try_from(raw(
            "i",
            "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L",
            None,
        ))
        .unwrap();
        assert_eq!(dv.file(), None);
        assert!(DeletionVector::try_from(raw("x", "abc", None)).is_err());
        assert!(DeletionVector::try_from(raw("u", "short", None)).is_err());
    }
}
