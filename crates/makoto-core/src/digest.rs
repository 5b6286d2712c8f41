//! SHA-256 digests as a value type, and the streaming hasher used everywhere.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::Error;

/// A SHA-256 digest. Displays and parses as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The all-zero value; the hash of an empty state tree.
    pub const ZERO: Sha256Digest = Sha256Digest([0u8; 32]);

    /// Hashes `bytes` in one call.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Hashes the concatenation of `parts` without building it.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        Sha256Digest(h.finalize().into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        // Called for every file and page of a run: a table lookup instead of `hex::encode`'s
        // iterator of chars.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Bit `i` of the digest, most significant bit of byte 0 first.
    pub fn bit(&self, i: usize) -> bool {
        (self.0[i / 8] >> (7 - (i % 8))) & 1 == 1
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidDigest {
            value: s.chars().take(80).collect(),
        };
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| invalid())?;
        Ok(Sha256Digest(out))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256 over a byte stream that also counts the bytes it saw.
#[derive(Clone, Default)]
pub struct StreamHasher {
    inner: Sha256,
    len: u64,
}

impl fmt::Debug for StreamHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamHasher")
            .field("len", &self.len)
            .finish()
    }
}

impl StreamHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.inner.update(chunk);
        self.len += chunk.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.inner.finalize().into()), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_abc() {
        assert_eq!(
            Sha256Digest::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_is_lowercase_and_round_trips_for_every_byte_value() {
        for b in 0..=255u8 {
            let d = Sha256Digest::from_bytes([b; 32]);
            assert_eq!(d.to_hex(), hex::encode([b; 32]));
            assert_eq!(d.to_hex().parse::<Sha256Digest>().unwrap(), d);
        }
    }

    #[test]
    fn parts_equal_concatenation() {
        assert_eq!(
            Sha256Digest::of_parts(&[b"ab", b"c"]),
            Sha256Digest::of(b"abc")
        );
    }

    #[test]
    fn parse_rejects_uppercase_and_wrong_length() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(hex.parse::<Sha256Digest>().is_ok());
        assert!(hex.to_uppercase().parse::<Sha256Digest>().is_err());
        assert!(hex[..62].parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn bits_are_msb_first() {
        let mut b = [0u8; 32];
        b[0] = 0b1000_0000;
        b[1] = 0b0000_0001;
        let d = Sha256Digest::from_bytes(b);
        assert!(d.bit(0));
        assert!(!d.bit(1));
        assert!(d.bit(15));
    }

    #[test]
    fn stream_hasher_counts_and_matches() {
        let mut h = StreamHasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), (Sha256Digest::of(b"abc"), 3));
    }
}
