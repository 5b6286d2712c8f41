//! Table and warehouse locations: a local path or a URL (`file://`, `s3://`, `az://`, `gs://`…).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::logstore::LogStoreRef;
use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::ObjectStore;
use url::Url;

use crate::Error;

/// A normalized location. Its display form (no trailing slash) is what attestations name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    url: Url,
}

impl Location {
    /// Parses an existing location. Local paths must exist.
    pub fn existing(input: &str) -> Result<Self, Error> {
        let url = deltalake::table::builder::parse_table_uri(input).map_err(|e| {
            Error::InvalidLocation {
                input: input.to_owned(),
                reason: first_line(&e.to_string()),
            }
        })?;
        Ok(Location::from_url(url))
    }

    /// Parses a location that may not exist yet; local directories are created.
    pub fn create(input: &str) -> Result<Self, Error> {
        let url = deltalake::ensure_table_uri(input).map_err(|e| Error::InvalidLocation {
            input: input.to_owned(),
            reason: first_line(&e.to_string()),
        })?;
        Ok(Location::from_url(url))
    }

    /// Parses the name of a location that need not exist here (`--as`: the URI a table was
    /// attested under, which an evidence copy no longer lives at): a URL, or an absolute local
    /// path.
    pub fn named(input: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidLocation {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let url = match Url::parse(input) {
            Ok(u) if u.scheme().len() > 1 => u,
            _ if input.starts_with('/') => {
                Url::from_directory_path(input).map_err(|()| bad("not a valid absolute path"))?
            }
            _ => {
                return Err(bad(
                    "give the URI the table was attested under (s3://…, file:///…) or an absolute path",
                ));
            }
        };
        Ok(Location::from_url(url))
    }

    pub fn from_url(url: Url) -> Self {
        Location {
            url: deltalake::table::normalize_table_url(&url),
        }
    }

    /// The URL with a trailing slash (joinable).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The canonical name: the URL without a trailing slash.
    pub fn as_uri(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }

    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// The directory a local location is, on this machine's file system.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        self.is_local()
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// A child location (`rel` like `system/makoto/attestations`).
    pub fn join(&self, rel: &str) -> Result<Location, Error> {
        let url = self
            .url
            .join(&format!("{}/", rel.trim_matches('/')))
            .map_err(|e| Error::InvalidLocation {
                input: format!("{}{rel}", self.url),
                reason: e.to_string(),
            })?;
        Ok(Location::from_url(url))
    }

    /// An unloaded delta-rs table handle for this location.
    /// Local tables are read through [`LocalStore`](crate::local_store::LocalStore), whose
    /// listings of a long `_delta_log/` cost what is after the offset, not the whole log.
    pub fn delta_table(&self, options: &StorageOptions) -> Result<DeltaTable, Error> {
        DeltaTableBuilder::from_url(self.url.clone())
            .map(|b| {
                if self.is_local() {
                    let store = Arc::new(crate::local_store::LocalStore::new());
                    b.with_storage_backend(store, self.url.clone())
                } else {
                    b
                }
            })
            .and_then(|b| b.with_storage_options(options.0.clone()).build())
            .map_err(|e| Error::delta(self.as_uri(), e))
    }

    pub fn log_store(&self, options: &StorageOptions) -> Result<LogStoreRef, Error> {
        Ok(self.delta_table(options)?.log_store())
    }

    /// An object store rooted at this location.
    pub fn object_store(&self, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>, Error> {
        Ok(self.log_store(options)?.object_store(None))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_uri())
    }
}

/// Options for object-store backends (credentials, endpoints). Backends also read the standard
/// environment variables (`AWS_*`, `AZURE_*`, `GOOGLE_*`) themselves.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions(pub HashMap<String, String>);

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_owned()
}

/// The object-store path of a data file named in the log (already percent-decoded once): the
/// decoded path is the literal object key, which `Path::parse` keeps as is.
pub fn object_path(decoded: &str) -> object_store::path::Path {
    object_store::path::Path::parse(decoded)
        .unwrap_or_else(|_| object_store::path::Path::from(decoded))
}

/// Whether a (decoded) log path is absolute: a URI with a scheme, or a path from `/`.
pub fn is_absolute(path: &str) -> bool {
    path.starts_with('/') || path.contains("://") || path.starts_with("file:")
}

/// The path relative to `root` (a directory URL with a trailing slash) of an absolute log
/// path, when it lies under the root. `path` is already percent-decoded (as every log path),
/// so it is compared with the decoded form of the root, not parsed as a URL again.
pub fn under_root(root: &Url, path: &str) -> Option<String> {
    let (scheme, host, full) = if path.starts_with('/') {
        ("file", "", path.to_owned())
    } else if let Some(rest) = path.strip_prefix("file://") {
        (
            "file",
            "",
            rest.strip_prefix("localhost").unwrap_or(rest).to_owned(),
        )
    } else if let Some(rest) = path.strip_prefix("file:") {
        ("file", "", rest.to_owned())
    } else {
        let (scheme, rest) = path.split_once("://")?;
        let (host, key) = rest.split_once('/').unwrap_or((rest, ""));
        (scheme, host, format!("/{key}"))
    };
    if scheme != root.scheme() || host != root.host_str().unwrap_or("") {
        return None;
    }
    let root_path = percent_encoding::percent_decode_str(root.path())
        .decode_utf8()
        .ok()?;
    let rel = full.strip_prefix(root_path.as_ref())?;
    (!rel.is_empty()
        && !rel
            .split('/')
            .any(|p| p.is_empty() || p == ".." || p == "."))
    .then(|| rel.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_under_the_root() {
        let root = Url::parse("s3://lake/sales/").unwrap();
        assert_eq!(
            under_root(&root, "s3://lake/sales/p=a b/part-0.parquet").as_deref(),
            Some("p=a b/part-0.parquet")
        );
        assert_eq!(under_root(&root, "s3://lake/other/part-0.parquet"), None);
        assert_eq!(under_root(&root, "s3://lake2/sales/part-0.parquet"), None);
        assert_eq!(
            under_root(&root, "s3://lake/sales/../x/part-0.parquet"),
            None
        );
        let local = Url::parse("file:///data/t/").unwrap();
        assert_eq!(
            under_root(&local, "/data/t/x%y.parquet").as_deref(),
            Some("x%y.parquet")
        );
        assert_eq!(
            under_root(&local, "file:///data/t/\u{1F608}/x.parquet").as_deref(),
            Some("\u{1F608}/x.parquet")
        );
        let spaced = Url::parse("file:///data/my%20lake%251/t/").unwrap();
        assert_eq!(
            under_root(&spaced, "file:///data/my lake%1/t/a=%2F/x.parquet").as_deref(),
            Some("a=%2F/x.parquet")
        );
        assert_eq!(
            under_root(&spaced, "file:///data/my lake/t/x.parquet"),
            None
        );
        assert!(is_absolute("/data/t/x") && is_absolute("s3://b/x") && !is_absolute("a=1/x"));
    }
}
