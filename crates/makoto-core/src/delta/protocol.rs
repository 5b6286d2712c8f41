use super::action::Protocol;

/// Whether attestation understands a table's reader features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderFeatureSupport {
    Supported,
    /// A reader feature that changes which bytes make up the table in a way Makoto does not
    /// model (or does not know at all).
    Unsupported {
        feature: String,
    },
    /// A reader version newer than the protocol defines.
    UnsupportedReaderVersion {
        version: u32,
    },
}

/// Reader features whose tables Makoto attests correctly: they change how rows are decoded
/// (schemas, types, column names) or where the log lives, not which files and bytes form the
/// table. `deletionVectors` is modeled explicitly.
const SUPPORTED_READER_FEATURES: &[&str] = &[
    "columnMapping",
    "deletionVectors",
    "timestampNtz",
    "v2Checkpoint",
    "typeWidening",
    "typeWidening-preview",
    "variantType",
    "variantType-preview",
    "variantShredding",
    "variantShredding-preview",
    "vacuumProtocolCheck",
];

/// Checks the reader side of a protocol action.
pub fn check_reader_features(protocol: &Protocol) -> ReaderFeatureSupport {
    match protocol.min_reader_version() {
        0..=2 => ReaderFeatureSupport::Supported,
        3 => protocol
            .reader_features()
            .iter()
            .find(|f| !SUPPORTED_READER_FEATURES.contains(&f.as_str()))
            .map_or(ReaderFeatureSupport::Supported, |f| {
                ReaderFeatureSupport::Unsupported { feature: f.clone() }
            }),
        v => ReaderFeatureSupport::UnsupportedReaderVersion { version: v },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_features() {
        let p =
            |r, f: &[&str]| Protocol::new(r, 7, f.iter().map(|s| s.to_string()).collect(), vec![]);
        assert_eq!(
            check_reader_features(&p(1, &[])),
            ReaderFeatureSupport::Supported
        );
        assert_eq!(
            check_reader_features(&p(3, &["deletionVectors", "columnMapping"])),
            ReaderFeatureSupport::Supported
        );
        assert_eq!(
            check_reader_features(&p(3, &["catalogManaged"])),
            ReaderFeatureSupport::Unsupported {
                feature: "catalogManaged".into()
            }
        );
        assert_eq!(
            check_reader_features(&p(4, &[])),
            ReaderFeatureSupport::UnsupportedReaderVersion { version: 4 }
        );
    }
}
