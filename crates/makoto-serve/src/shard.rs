//! Splitting tables between replicas: `--shard I/N` owns the tables whose URI hashes to `I`
//! modulo `N` (the first 8 bytes of SHA-256 of the URI, big-endian). Stable across processes,
//! machines and versions, so replicas agree without talking to each other.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Error;

/// One replica's part of the tables: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Default for Shard {
    /// Every table (`0/1`).
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// How many shards the tables are split into.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this shard attests `table_uri`.
    pub fn owns(&self, table_uri: &str) -> bool {
        Self::of(table_uri, self.count) == self.index
    }

    /// The shard of `table_uri` among `count`.
    pub fn of(table_uri: &str, count: u32) -> u32 {
        let digest = Sha256::digest(table_uri.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Config {
            what: format!("--shard {s:?}"),
            reason: reason.into(),
        };
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/3"))?;
        let index: u32 = i.parse().map_err(|_| bad("I is not a number"))?;
        let count: u32 = n.parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("needs 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn every_table_has_exactly_one_shard() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        let mut counts = [0usize; 3];
        for t in 0..300 {
            let uri = format!("s3://lake/table-{t}");
            let owners: Vec<usize> = (0..3).filter(|i| shards[*i].owns(&uri)).collect();
            assert_eq!(owners.len(), 1, "{uri}");
            counts[owners[0]] += 1;
        }
        assert!(counts.iter().all(|c| *c > 60), "roughly even: {counts:?}");
        assert!(Shard::default().owns("s3://lake/anything"));
    }

    #[rstest]
    // Expected shards computed with Python's hashlib:
    // int.from_bytes(sha256(uri).digest()[:8], "big") % n
    #[case("file:///lake/a", 7, 5)]
    #[case("file:///lake/a", 3, 0)]
    #[case("s3://lake/sales", 7, 5)]
    #[case("s3://lake/sales", 3, 2)]
    #[case("gs://b/t", 7, 4)]
    fn the_hash_is_the_documented_one(#[case] uri: &str, #[case] n: u32, #[case] shard: u32) {
        assert_eq!(Shard::of(uri, n), shard);
    }

    #[rstest]
    #[case("3")]
    #[case("1/0")]
    #[case("2/2")]
    #[case("a/2")]
    #[case("-1/2")]
    fn bad_shards_are_refused(#[case] s: &str) {
        assert!(s.parse::<Shard>().is_err(), "{s}");
    }
}
