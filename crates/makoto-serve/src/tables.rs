//! Which tables the service watches: listed in a tables file, or discovered under storage
//! prefixes (every directory that holds a `_delta_log/`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use makoto_delta::{Location, StorageOptions};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::Error;

/// Where the set of tables comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    /// A file with one table URI (or local path) per line; `#` starts a comment. Reloaded
    /// when it changes and on SIGHUP.
    File(PathBuf),
    /// Storage prefixes searched for Delta tables, rescanned periodically.
    Discover(Vec<String>),
}

/// How deep discovery descends below a prefix looking for `_delta_log/`.
pub const DISCOVERY_DEPTH: usize = 8;

/// The tables of a tables file, as table URIs, in file order without duplicates: URLs, absolute
/// paths, or paths relative to the file's directory. A line that is not a valid location fails
/// the whole file (a typo must not silently drop a table).
pub fn parse_tables_file(path: &Path, text: &str) -> Result<Vec<String>, Error> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| Error::Config {
            what: format!("tables file {} line {}", path.display(), n + 1),
            reason,
        };
        // A relative local path is relative to the tables file's directory.
        let resolved = if line.contains("://") || line.starts_with('/') {
            line.to_owned()
        } else {
            let base = std::path::absolute(path).map_err(|e| bad(e.to_string()))?;
            let dir = base.parent().unwrap_or(Path::new("/"));
            dir.join(line).display().to_string()
        };
        let uri = Location::named(&resolved)
            .map_err(|e| bad(e.to_string()))?
            .as_uri();
        if seen.insert(uri.clone()) {
            out.push(uri);
        }
    }
    Ok(out)
}

/// Reads and parses a tables file.
pub fn read_tables_file(path: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        what: format!("tables file {}", path.display()),
        reason: format!("cannot read: {e}"),
    })?;
    parse_tables_file(path, &text)
}

/// Every Delta table under `prefix` (a directory holding `_delta_log/`), not descending into
/// tables or below [`DISCOVERY_DEPTH`] levels.
pub async fn discover(prefix: &str, storage: &StorageOptions) -> Result<Vec<String>, Error> {
    let root = Location::named(prefix).map_err(|e| Error::Config {
        what: format!("--discover {prefix}"),
        reason: e.to_string(),
    })?;
    let store = root.object_store(storage).map_err(Error::Delta)?;
    let mut found = Vec::new();
    walk(store.as_ref(), None, 0, &mut found)
        .await
        .map_err(|e| Error::Discovery {
            prefix: prefix.to_owned(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(found.len());
    for rel in found {
        let location = if rel.is_empty() {
            root.clone()
        } else {
            root.join(&rel).map_err(Error::Delta)?
        };
        out.push(location.as_uri());
    }
    out.sort();
    Ok(out)
}

fn walk<'a>(
    store: &'a dyn ObjectStore,
    dir: Option<ObjectPath>,
    depth: usize,
    found: &'a mut Vec<String>,
) -> BoxFuture<'a, Result<(), object_store::Error>> {
    Box::pin(async move {
        let listing = store.list_with_delimiter(dir.as_ref()).await?;
        let is_table = listing
            .common_prefixes
            .iter()
            .any(|p| p.filename() == Some("_delta_log"));
        if is_table {
            found.push(dir.map(|d| d.to_string()).unwrap_or_default());
            return Ok(());
        }
        if depth >= DISCOVERY_DEPTH {
            return Ok(());
        }
        for sub in listing.common_prefixes {
            let hidden = sub
                .filename()
                .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
            if !hidden {
                walk(store, Some(sub), depth + 1, found).await?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_file_lists_uris_once_and_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let text = format!(
            "# nightly tables\n{a}\n\n  {a}  # again\ns3://lake/b\n",
            a = a.display()
        );
        let tables = parse_tables_file(Path::new("t.txt"), &text).unwrap();
        assert_eq!(tables.len(), 2, "{tables:?}");
        assert!(tables[0].starts_with("file://"), "{tables:?}");
        assert_eq!(tables[1], "s3://lake/b");
    }

    #[test]
    fn a_bad_line_names_its_line() {
        let e = parse_tables_file(Path::new("t.txt"), "s3://ok/a\nhttp://[::1/x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.txt line 2"), "{e}");
    }

    #[tokio::test]
    async fn discovery_finds_tables_and_not_their_insides() {
        let dir = tempfile::tempdir().unwrap();
        for t in ["sales", "team/orders", "team/deep/x/y/events"] {
            std::fs::create_dir_all(dir.path().join(t).join("_delta_log")).unwrap();
            std::fs::write(
                dir.path()
                    .join(t)
                    .join("_delta_log/00000000000000000000.json"),
                "{}",
            )
            .unwrap();
        }
        // A table nested inside a table's directory is not a separate table.
        std::fs::create_dir_all(dir.path().join("sales/inner/_delta_log")).unwrap();
        std::fs::write(dir.path().join("sales/inner/_delta_log/x.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("empty/dir")).unwrap();
        std::fs::write(dir.path().join("empty/dir/file"), "x").unwrap();
        let found = discover(dir.path().to_str().unwrap(), &StorageOptions::default())
            .await
            .unwrap();
        let names: Vec<&str> = found
            .iter()
            .map(|u| {
                u.rsplit_once(dir.path().file_name().unwrap().to_str().unwrap())
                    .unwrap()
                    .1
            })
            .collect();
        assert_eq!(
            names,
            ["/sales", "/team/deep/x/y/events", "/team/orders"],
            "{found:?}"
        );
    }
}
