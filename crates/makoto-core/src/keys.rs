//! Ed25519 keys, key ids, and the [`Signer`] trait.
//!
//! A key id is the lowercase hex SHA-256 of the raw 32-byte Ed25519 public key. Private keys
//! are PKCS#8 PEM, public keys SubjectPublicKeyInfo PEM (both readable by `openssl pkey`).
//! Private key material is zeroized on drop and never formatted by `Debug`.

use std::fmt;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::{Error, Sha256Digest};

/// Identifies a public key: hex SHA-256 of the raw public key bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = Error;

    /// A key id as written: 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(Error::InvalidKey {
                what: format!("key id {s:?}"),
                reason: "not 64 lowercase hex digits".into(),
            })
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An Ed25519 public key and its id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    fn from_verifying_key(key: VerifyingKey) -> Self {
        let id = KeyId(Sha256Digest::of(key.as_bytes()).to_hex());
        PublicKey { key, id }
    }

    /// Parses a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Result<Self, Error> {
        let key = VerifyingKey::from_public_key_pem(pem).map_err(|e| Error::InvalidKey {
            what: "public key".into(),
            reason: format!("not an Ed25519 SubjectPublicKeyInfo PEM ({e})"),
        })?;
        Ok(Self::from_verifying_key(key))
    }

    pub fn from_raw(bytes: &[u8; 32]) -> Result<Self, Error> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|e| Error::InvalidKey {
            what: "public key".into(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_verifying_key(key))
    }

    pub fn to_spki_pem(&self) -> Result<String, Error> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| Error::InvalidKey {
                what: format!("public key {}", self.id),
                reason: e.to_string(),
            })
    }

    pub fn keyid(&self) -> &KeyId {
        &self.id
    }

    pub fn raw(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Strict Ed25519 verification (rejects non-canonical and small-order encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let sig = Signature::from_slice(signature).map_err(|_| Error::SignatureInvalid {
            reason: format!("signature for key {} is not 64 bytes", self.id),
        })?;
        self.key
            .verify_strict(message, &sig)
            .map_err(|_| Error::SignatureInvalid {
                reason: format!("Ed25519 signature does not verify under key {}", self.id),
            })
    }
}

/// Produces signatures. Implemented by local key files; an external signer (KMS, HSM, a
/// signing service) implements the same trait.
pub trait Signer: Send + Sync {
    fn public_key(&self) -> &PublicKey;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
    fn keyid(&self) -> &KeyId {
        self.public_key().keyid()
    }
}

/// An Ed25519 private key held in memory.
pub struct SigningKeyPair {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKeyPair({}, private key redacted)",
            self.public.id
        )
    }
}

impl SigningKeyPair {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| Error::InvalidKey {
            what: "new key".into(),
            reason: format!("no randomness available: {e}"),
        })?;
        Ok(Self::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey::from_verifying_key(key.verifying_key());
        SigningKeyPair { key, public }
    }

    /// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`). The error never
    /// contains key material.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| Error::InvalidKey {
            what: "private key".into(),
            reason: "not an unencrypted Ed25519 PKCS#8 PEM private key".into(),
        })?;
        let public = PublicKey::from_verifying_key(key.verifying_key());
        Ok(SigningKeyPair { key, public })
    }

    /// PKCS#8 v1 PEM (private key only), as OpenSSL writes it.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        let pem = bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::InvalidKey {
                what: format!("private key {}", self.public.id),
                reason: e.to_string(),
            })?;
        Ok(Zeroizing::new(pem.as_str().to_owned()))
    }
}

impl Signer for SigningKeyPair {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.key.sign(message).to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyid_is_sha256_of_raw_public_key() {
        let k = SigningKeyPair::from_seed(&[7u8; 32]);
        let raw = k.public_key().raw();
        assert_eq!(k.keyid().as_str(), Sha256Digest::of(&raw).to_hex());
    }

    #[test]
    fn keyid_parses_only_its_written_form() {
        let k = SigningKeyPair::from_seed(&[7u8; 32]);
        assert_eq!(&k.keyid().as_str().parse::<KeyId>().unwrap(), k.keyid());
        for bad in [
            "",
            "ab",
            &k.keyid().as_str().to_uppercase(),
            &format!("{}0", k.keyid()),
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pem_round_trip_and_debug_redacts() {
        let k = SigningKeyPair::from_seed(&[9u8; 32]);
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.keyid(), k.keyid());
        let pub_pem = k.public_key().to_spki_pem().unwrap();
        assert_eq!(PublicKey::from_spki_pem(&pub_pem).unwrap(), *k.public_key());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode([9u8; 32])));
        assert!(SigningKeyPair::from_pkcs8_pem(&pub_pem).is_err());
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_message() {
        let k = SigningKeyPair::from_seed(&[1u8; 32]);
        let other = SigningKeyPair::from_seed(&[2u8; 32]);
        let sig = k.sign(b"msg").unwrap();
        assert!(k.public_key().verify(b"msg", &sig).is_ok());
        assert!(k.public_key().verify(b"msh", &sig).is_err());
        assert!(other.public_key().verify(b"msg", &sig).is_err());
        assert!(k.public_key().verify(b"msg", &sig[..63]).is_err());
    }
}
