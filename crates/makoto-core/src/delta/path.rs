use std::fmt;

use percent_encoding::percent_decode_str;

use crate::Error;

/// A file path as the Delta log names it (`add.path`, `remove.path`, `cdc.path`).
///
/// The log stores an RFC 2396 URI reference; the file on storage is found by percent-decoding
/// it exactly once. Relative paths are resolved against the table root; absolute ones carry a
/// scheme (`s3://…`, `file:/…`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath {
    decoded: String,
    absolute: bool,
}

impl FilePath {
    /// Parses a path exactly as it appears in the log.
    pub fn from_log(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() {
            return Err(Error::InvalidAction {
                reason: "empty file path".into(),
            });
        }
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Error::InvalidAction {
                reason: format!("file path {raw:?} is not UTF-8 after percent-decoding"),
            })?
            .into_owned();
        let absolute = has_scheme(&decoded) || decoded.starts_with('/');
        Ok(FilePath { decoded, absolute })
    }

    /// A path already decoded (the relative form of an absolute path under the table root).
    pub fn from_decoded(decoded: String) -> Self {
        let absolute = has_scheme(&decoded) || decoded.starts_with('/');
        FilePath { decoded, absolute }
    }

    /// The decoded path: relative to the table root, or an absolute URI/path.
    pub fn as_str(&self) -> &str {
        &self.decoded
    }

    pub fn is_absolute(&self) -> bool {
        self.absolute
    }
}

fn has_scheme(s: &str) -> bool {
    let Some(colon) = s.find(':') else {
        return false;
    };
    let scheme = &s[..colon];
    scheme.len() > 1
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.decoded)
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("part-0.parquet", "part-0.parquet", false)]
    #[case(
        "letter=%252F%252520%2525f/part-1.parquet",
        "letter=%2F%2520%25f/part-1.parquet",
        false
    )]
    #[case("b=%F0%9F%98%88/part-2.parquet", "b=\u{1F608}/part-2.parquet", false)]
    #[case(
        "test%25file%25prefix-part.parquet",
        "test%file%prefix-part.parquet",
        false
    )]
    #[case("s3://bucket/t/part-3.parquet", "s3://bucket/t/part-3.parquet", true)]
    #[case("file:/tmp/t/part-4.parquet", "file:/tmp/t/part-4.parquet", true)]
    #[case("a%20b/c%3Ad.parquet", "a b/c:d.parquet", false)]
    fn decodes_once(#[case] raw: &str, #[case] decoded: &str, #[case] absolute: bool) {
        let p = FilePath::from_log(raw).unwrap();
        assert_eq!(p.as_str(), decoded);
        assert_eq!(p.is_absolute(), absolute);
    }

    #[test]
    fn rejects_invalid_utf8_and_empty() {
        assert!(FilePath::from_log("%FF.parquet").is_err());
        assert!(FilePath::from_log("").is_err());
    }
}
