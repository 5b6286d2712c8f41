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
    pub fn delta_table(&self, options: &StorageOptions) -> Result<DeltaTable, Error> {
        DeltaTableBuilder::from_url(self.url.clone())
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
