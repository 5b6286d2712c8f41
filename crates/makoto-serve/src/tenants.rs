//! Who may ask the service for an attestation (`POST /v1/attest`, `makoto attest --via`): a
//! tenants file names each tenant, the SHA-256 of its bearer token (the file holds no
//! secret), and the tables or table-URI prefixes it may ask about.
//!
//! ```json
//! {"tenants": [{"name": "etl-nightly",
//!               "tokenSha256": "<64 hex digits: sha256 of the token>",
//!               "tables": ["s3://lake/sales", "s3://lake/team-a/"]}]}
//! ```
//!
//! A table matches an entry equal to its URI, or an entry ending in `/` that it starts with.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Error;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TenantEntry {
    name: String,
    token_sha256: String,
    tables: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    tenants: Vec<TenantEntry>,
}

/// One tenant: its name, token digest and allowed tables.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    token_sha256: [u8; 32],
    tables: Vec<String>,
}

impl Tenant {
    /// Whether this tenant may ask about `table_uri`.
    pub fn allows(&self, table_uri: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t == table_uri || (t.ends_with('/') && table_uri.starts_with(t.as_str())))
    }
}

/// The tenants the service accepts requests from.
#[derive(Debug, Clone, Default)]
pub struct Tenants(Vec<Tenant>);

impl Tenants {
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::Config {
            what: format!("tenants file {}", path.display()),
            reason,
        };
        let file: TenantsFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::with_capacity(file.tenants.len());
        for t in file.tenants {
            let digest = hex_32(&t.token_sha256).ok_or_else(|| {
                bad(format!(
                    "tenant {}: tokenSha256 is not 64 hex digits",
                    t.name
                ))
            })?;
            if t.tables.is_empty() {
                return Err(bad(format!("tenant {}: no tables", t.name)));
            }
            out.push(Tenant {
                name: t.name,
                token_sha256: digest,
                tables: t.tables,
            });
        }
        Ok(Tenants(out))
    }

    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            what: format!("tenants file {}", path.display()),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// The tenant whose token is `token`, compared in constant time over the digests.
    pub fn authenticate(&self, token: &str) -> Option<&Tenant> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in &self.0 {
            let diff = t
                .token_sha256
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

fn hex_32(s: &str) -> Option<[u8; 32]> {
    // from_str_radix alone would take "+f" for 0x0f.
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Tenants {
        // sha256("secret-a") computed with `printf %s secret-a | sha256sum`.
        let text = r#"{"tenants": [{"name": "a",
            "tokenSha256": "8766b9cb08e6040b704f1e3ee1e186efccf2635b1d2634d6525333007e6aeae1",
            "tables": ["s3://lake/sales", "s3://lake/team/"]}]}"#;
        Tenants::parse(Path::new("t.json"), text).unwrap()
    }

    #[test]
    fn prefixes_and_exact_names_allow_tables() {
        let t = &tenants().0[0];
        assert!(t.allows("s3://lake/sales"));
        assert!(t.allows("s3://lake/team/orders"));
        assert!(!t.allows("s3://lake/sales2"));
        assert!(!t.allows("s3://lake/teamx/orders"));
    }

    #[test]
    fn the_token_whose_digest_is_listed_authenticates() {
        assert_eq!(
            tenants().authenticate("secret-a").map(|t| t.name.as_str()),
            Some("a")
        );
        assert!(tenants().authenticate("not-the-token").is_none());
        assert!(tenants().authenticate("").is_none());
    }

    #[test]
    fn bad_files_are_refused() {
        for text in [
            r#"{"tenants": [{"name": "a", "tokenSha256": "xyz", "tables": ["s3://l/t"]}]}"#,
            r#"{"tenants": [{"name": "a", "tokenSha256": "00", "tables": []}]}"#,
            r#"{"tenants": [{"name": "a", "tokenSha256": "+766b9cb08e6040b704f1e3ee1e186efccf2635b1d2634d6525333007e6aeae1", "tables": ["s3://l/t"]}]}"#,
            r#"{"tenants": [{"name": "a", "token": "plain", "tables": ["s3://l/t"]}]}"#,
        ] {
            assert!(Tenants::parse(Path::new("t.json"), text).is_err(), "{text}");
        }
    }
}
