//! Signing keys (Ed25519, ECDSA P-256), key ids, and the [`Signer`] trait.
//!
//! A key id is the lowercase hex SHA-256 of the raw public key: the 32-byte Ed25519 key, or
//! the 65-byte uncompressed SEC1 point of a P-256 key. Private keys are PKCS#8 PEM, public keys
//! SubjectPublicKeyInfo PEM (both readable by `openssl pkey`). Ed25519 signatures are the 64
//! raw bytes; ECDSA P-256 signatures are SHA-256 (ES256), low-S, ASN.1 DER encoded, as
//! cosign, OpenSSL and securesystemslib write them. Private key material is zeroized on drop
//! and never formatted by `Debug`.

use std::fmt;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use p256::ecdsa::signature::Verifier as _;
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

/// The signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256 (ES256), DER-encoded low-S signatures.
    EcdsaP256Sha256,
}

impl Algorithm {
    /// The name `makoto keygen --algorithm` takes and reports print.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "ed25519" => Ok(Algorithm::Ed25519),
            "ecdsa-p256" | "es256" | "p256" => Ok(Algorithm::EcdsaP256Sha256),
            other => Err(Error::InvalidKey {
                what: "algorithm".into(),
                reason: format!("{other:?}: expected ed25519 or ecdsa-p256"),
            }),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Verifying {
    Ed25519(VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// A public key (Ed25519 or ECDSA P-256) and its id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: Verifying,
    id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm(), self.id)
    }
}

impl PublicKey {
    fn new(key: Verifying) -> Self {
        let raw = raw_of(&key);
        PublicKey {
            id: KeyId(Sha256Digest::of(&raw).to_hex()),
            key,
        }
    }

    /// Parses a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`) of an Ed25519 or a
    /// P-256 key.
    pub fn from_spki_pem(pem: &str) -> Result<Self, Error> {
        if let Ok(key) = VerifyingKey::from_public_key_pem(pem) {
            return Ok(Self::new(Verifying::Ed25519(key)));
        }
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(|k| Self::new(Verifying::P256(k)))
            .map_err(|e| Error::InvalidKey {
                what: "public key".into(),
                reason: format!("not an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo PEM ({e})"),
            })
    }

    /// An Ed25519 public key from its 32 raw bytes.
    pub fn from_raw(bytes: &[u8; 32]) -> Result<Self, Error> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|e| Error::InvalidKey {
            what: "public key".into(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(Verifying::Ed25519(key)))
    }

    /// A public key of `algorithm` from its raw bytes, as hardware tokens hold them: the
    /// 32-byte Ed25519 key, or a SEC1 P-256 point (uncompressed or compressed).
    pub fn from_raw_parts(algorithm: Algorithm, bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidKey {
            what: format!("{algorithm} public key"),
            reason,
        };
        match algorithm {
            Algorithm::Ed25519 => {
                let raw: &[u8; 32] = bytes
                    .try_into()
                    .map_err(|_| bad(format!("{} bytes, expected 32", bytes.len())))?;
                Self::from_raw(raw)
            }
            Algorithm::EcdsaP256Sha256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(|k| Self::new(Verifying::P256(k)))
                .map_err(|_| bad("not a SEC1-encoded P-256 point".into())),
        }
    }

    pub fn to_spki_pem(&self) -> Result<String, Error> {
        match &self.key {
            Verifying::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
            Verifying::P256(k) => k.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|e| Error::InvalidKey {
            what: format!("public key {}", self.id),
            reason: e.to_string(),
        })
    }

    pub fn keyid(&self) -> &KeyId {
        &self.id
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            Verifying::Ed25519(_) => Algorithm::Ed25519,
            Verifying::P256(_) => Algorithm::EcdsaP256Sha256,
        }
    }

    /// The raw public key the key id hashes: 32 bytes (Ed25519) or the 65-byte uncompressed
    /// SEC1 point (P-256).
    pub fn raw(&self) -> Vec<u8> {
        raw_of(&self.key)
    }

    /// Verifies `signature` over `message`: strict Ed25519 (rejects non-canonical and
    /// small-order encodings), or ES256 with a DER signature whose S is in the lower half.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let fail = |what: &str| Error::SignatureInvalid {
            reason: format!("{what} under key {}", self.id),
        };
        match &self.key {
            Verifying::Ed25519(k) => {
                let sig = Signature::from_slice(signature)
                    .map_err(|_| fail("Ed25519 signature is not 64 bytes"))?;
                k.verify_strict(message, &sig)
                    .map_err(|_| fail("Ed25519 signature does not verify"))
            }
            Verifying::P256(k) => {
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|_| fail("ECDSA signature is not a DER-encoded P-256 signature"))?;
                if sig.normalize_s() != sig {
                    return Err(fail("ECDSA signature is not low-S"));
                }
                k.verify(message, &sig)
                    .map_err(|_| fail("ECDSA P-256 signature does not verify"))
            }
        }
    }
}

fn raw_of(key: &Verifying) -> Vec<u8> {
    match key {
        Verifying::Ed25519(k) => k.as_bytes().to_vec(),
        Verifying::P256(k) => k.to_sec1_bytes().into_vec(),
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

enum Signing {
    Ed25519(SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A private key (Ed25519 or ECDSA P-256) held in memory.
pub struct SigningKeyPair {
    key: Signing,
    public: PublicKey,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKeyPair({} {}, private key redacted)",
            self.public.algorithm(),
            self.public.id
        )
    }
}

fn random_32() -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| Error::InvalidKey {
        what: "new key".into(),
        reason: format!("no randomness available: {e}"),
    })?;
    Ok(seed)
}

impl SigningKeyPair {
    /// A new Ed25519 key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Error> {
        Self::generate_with(Algorithm::Ed25519)
    }

    /// A new key of `algorithm` from the operating system's random number generator.
    pub fn generate_with(algorithm: Algorithm) -> Result<Self, Error> {
        match algorithm {
            Algorithm::Ed25519 => Ok(Self::from_seed(&*random_32()?)),
            Algorithm::EcdsaP256Sha256 => loop {
                // A random 32-byte string is a valid scalar except with probability ~2^-32.
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(random_32()?.as_ref()) {
                    return Ok(Self::p256(key));
                }
            },
        }
    }

    /// The Ed25519 key of a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey::new(Verifying::Ed25519(key.verifying_key()));
        SigningKeyPair {
            key: Signing::Ed25519(key),
            public,
        }
    }

    /// The P-256 key of a 32-byte scalar (tests, fixtures).
    pub fn p256_from_scalar(scalar: &[u8; 32]) -> Result<Self, Error> {
        p256::ecdsa::SigningKey::from_slice(scalar)
            .map(Self::p256)
            .map_err(|_| Error::InvalidKey {
                what: "private key".into(),
                reason: "not a valid P-256 scalar".into(),
            })
    }

    fn p256(key: p256::ecdsa::SigningKey) -> Self {
        let public = PublicKey::new(Verifying::P256(*key.verifying_key()));
        SigningKeyPair {
            key: Signing::P256(key),
            public,
        }
    }

    /// Parses an unencrypted PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), Ed25519
    /// or P-256. The error never contains key material.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
            let public = PublicKey::new(Verifying::Ed25519(key.verifying_key()));
            return Ok(SigningKeyPair {
                key: Signing::Ed25519(key),
                public,
            });
        }
        p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(Self::p256)
            .map_err(|_| Error::InvalidKey {
                what: "private key".into(),
                reason: "not an unencrypted Ed25519 or ECDSA P-256 PKCS#8 PEM private key".into(),
            })
    }

    /// PKCS#8 PEM, as OpenSSL writes it (v1, private key only, for Ed25519).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        let err = |e: String| Error::InvalidKey {
            what: format!("private key {}", self.public.id),
            reason: e,
        };
        match &self.key {
            Signing::Ed25519(k) => {
                let bytes = ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: k.to_bytes(),
                    public_key: None,
                };
                let pem = bytes
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| err(e.to_string()))?;
                Ok(Zeroizing::new(pem.as_str().to_owned()))
            }
            Signing::P256(k) => {
                let pem = k
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| err(e.to_string()))?;
                Ok(Zeroizing::new(pem.as_str().to_owned()))
            }
        }
    }
}

/// The DSSE signature bytes of an ES256 signature given as the fixed 64-byte `r || s` (what
/// PKCS#11 `CKM_ECDSA` and cloud KMS "raw" formats return): low-S, ASN.1 DER, as
/// [`SigningKeyPair`] writes them.
pub fn es256_der_from_fixed(fixed: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = p256::ecdsa::Signature::from_slice(fixed).map_err(|_| Error::SignatureInvalid {
        reason: format!(
            "ECDSA P-256 signature of {} bytes is not r || s (64 bytes, both in range)",
            fixed.len()
        ),
    })?;
    Ok(sig.normalize_s().to_der().as_bytes().to_vec())
}

impl Signer for SigningKeyPair {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.key {
            Signing::Ed25519(k) => Ok(k.sign(message).to_bytes().to_vec()),
            Signing::P256(k) => {
                let sig: p256::ecdsa::Signature =
                    k.try_sign(message).map_err(|_| Error::SignatureInvalid {
                        reason: format!("ECDSA signing with key {} failed", self.public.id),
                    })?;
                Ok(sig.normalize_s().to_der().as_bytes().to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_parts_give_the_same_key_and_fixed_signatures_become_low_s_der() {
        let e = SigningKeyPair::from_seed(&[5u8; 32]);
        let raw = e.public_key().raw();
        assert_eq!(
            PublicKey::from_raw_parts(Algorithm::Ed25519, &raw).unwrap(),
            *e.public_key()
        );
        assert!(PublicKey::from_raw_parts(Algorithm::Ed25519, &raw[1..]).is_err());
        let p = SigningKeyPair::p256_from_scalar(&[5u8; 32]).unwrap();
        let raw = p.public_key().raw();
        let back = PublicKey::from_raw_parts(Algorithm::EcdsaP256Sha256, &raw).unwrap();
        assert_eq!(back, *p.public_key());
        assert!(PublicKey::from_raw_parts(Algorithm::EcdsaP256Sha256, &raw[..64]).is_err());

        let der = p.sign(b"m").unwrap();
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        // The high-S twin of a valid signature is valid ECDSA; the conversion lowers it.
        let high = p256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        assert_ne!(high, sig);
        let lowered = es256_der_from_fixed(&high.to_bytes()).unwrap();
        assert_eq!(lowered, der);
        assert!(p.public_key().verify(b"m", &lowered).is_ok());
        assert!(es256_der_from_fixed(&[0u8; 64]).is_err());
        assert!(es256_der_from_fixed(&[1u8; 63]).is_err());
    }

    #[test]
    fn keyid_is_sha256_of_raw_public_key() {
        let k = SigningKeyPair::from_seed(&[7u8; 32]);
        let raw = k.public_key().raw();
        assert_eq!(raw.len(), 32);
        assert_eq!(k.keyid().as_str(), Sha256Digest::of(&raw).to_hex());
        let p = SigningKeyPair::p256_from_scalar(&[7u8; 32]).unwrap();
        let raw = p.public_key().raw();
        assert_eq!((raw.len(), raw[0]), (65, 0x04), "uncompressed SEC1 point");
        assert_eq!(p.keyid().as_str(), Sha256Digest::of(&raw).to_hex());
        assert_eq!(p.public_key().algorithm(), Algorithm::EcdsaP256Sha256);
    }

    #[test]
    fn p256_keys_round_trip_and_sign_low_s_der() {
        let k = SigningKeyPair::generate_with(Algorithm::EcdsaP256Sha256).unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.keyid(), k.keyid());
        let pub_pem = k.public_key().to_spki_pem().unwrap();
        assert_eq!(PublicKey::from_spki_pem(&pub_pem).unwrap(), *k.public_key());
        assert!(format!("{k:?}").contains("ecdsa-p256"));
        for msg in [&b"msg"[..], b"another message", b""] {
            let sig = k.sign(msg).unwrap();
            assert_eq!(sig[0], 0x30, "DER SEQUENCE");
            assert!(k.public_key().verify(msg, &sig).is_ok());
            assert!(k.public_key().verify(b"other", &sig).is_err());
            let parsed = p256::ecdsa::Signature::from_der(&sig).unwrap();
            assert_eq!(parsed.normalize_s(), parsed, "low-S");
            // The same signature with S replaced by n - S verifies mathematically but is refused.
            let (r, s) = parsed.split_scalars();
            let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
            let high_der = high.to_der();
            assert!(k.public_key().verify(msg, high_der.as_bytes()).is_err());
            // Raw r||s (not DER) is refused.
            assert!(k.public_key().verify(msg, &parsed.to_bytes()).is_err());
        }
        let ed = SigningKeyPair::from_seed(&[3u8; 32]);
        let sig = k.sign(b"msg").unwrap();
        assert!(ed.public_key().verify(b"msg", &sig).is_err());
        assert!(
            k.public_key()
                .verify(b"msg", &ed.sign(b"msg").unwrap())
                .is_err()
        );
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
