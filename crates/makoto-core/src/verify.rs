//! Signature verification against keys the verifier was given. [`Verified`] values can only
//! be made here.

use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, pae};
use crate::keys::{KeyId, PublicKey};
use crate::statement::Statement;
use crate::{Error, Sha256Digest};

/// The keys a verifier trusts. A signature's `keyid` only selects among these; a key the
/// verifier was not given is never used.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        TrustedKeys { keys }
    }
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A value whose signature was checked against a trusted key.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    keyid: KeyId,
    payload_digest: Sha256Digest,
}

impl<T> Verified<T> {
    pub fn value(&self) -> &T {
        &self.value
    }
    pub fn into_inner(self) -> T {
        self.value
    }
    /// The trusted key that verified the signature.
    pub fn keyid(&self) -> &KeyId {
        &self.keyid
    }
    /// SHA-256 of the signed payload.
    pub fn payload_digest(&self) -> Sha256Digest {
        self.payload_digest
    }
}

/// Verifies a DSSE envelope holding an in-toto statement: at least one signature must verify
/// under a trusted key over the PAE of the payload.
pub fn verify_statement(
    envelope: &Envelope,
    trusted: &TrustedKeys,
) -> Result<Verified<Statement>, Error> {
    if envelope.payload_type() != IN_TOTO_PAYLOAD_TYPE {
        return Err(Error::SignatureInvalid {
            reason: format!(
                "payloadType is {:?}, expected {IN_TOTO_PAYLOAD_TYPE}",
                envelope.payload_type()
            ),
        });
    }
    if !envelope.is_signed() {
        return Err(Error::SignatureInvalid {
            reason: "the envelope is unsigned".into(),
        });
    }
    let message = pae(envelope.payload_type(), envelope.payload());
    for sig in envelope.signatures() {
        let hinted: Vec<&PublicKey> = trusted
            .keys
            .iter()
            .filter(|k| sig.keyid() == Some(k.keyid().as_str()))
            .collect();
        let candidates = if hinted.is_empty() {
            trusted.keys.iter().collect()
        } else {
            hinted
        };
        for key in candidates {
            if key.verify(&message, sig.sig()).is_ok() {
                let statement = Statement::from_payload(envelope.payload())?;
                return Ok(Verified {
                    value: statement,
                    keyid: key.keyid().clone(),
                    payload_digest: Sha256Digest::of(envelope.payload()),
                });
            }
        }
    }
    let named: Vec<&str> = envelope
        .signatures()
        .iter()
        .filter_map(|s| s.keyid())
        .collect();
    Err(Error::SignatureInvalid {
        reason: format!(
            "no signature verifies under a trusted key (signatures name {})",
            if named.is_empty() {
                "no key".to_owned()
            } else {
                named.join(", ")
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Signer, SigningKeyPair};
    use crate::statement::Subject;
    use serde_json::json;

    fn statement() -> Statement {
        Statement::new(
            vec![Subject::new("t@v0", Default::default())],
            "p",
            json!({}),
        )
    }

    #[test]
    fn verifies_with_trusted_key_only() {
        let k = SigningKeyPair::from_seed(&[4u8; 32]);
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement().to_payload(), &k).unwrap();
        let ok = verify_statement(&env, &TrustedKeys::new(vec![k.public_key().clone()])).unwrap();
        assert_eq!(ok.keyid(), k.keyid());
        let other = SigningKeyPair::from_seed(&[5u8; 32]);
        assert!(
            verify_statement(&env, &TrustedKeys::new(vec![other.public_key().clone()])).is_err()
        );
        assert!(
            verify_statement(
                &Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, statement().to_payload()),
                &TrustedKeys::new(vec![k.public_key().clone()])
            )
            .is_err()
        );
    }

    #[test]
    fn a_keyid_that_names_a_trusted_key_does_not_help_a_forged_signature() {
        let trusted = SigningKeyPair::from_seed(&[6u8; 32]);
        let attacker = SigningKeyPair::from_seed(&[7u8; 32]);
        let env =
            Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement().to_payload(), &attacker).unwrap();
        // Rewrite the keyid to the trusted key's id.
        let forged = env
            .to_json()
            .replace(attacker.keyid().as_str(), trusted.keyid().as_str());
        let forged = Envelope::from_json(forged.as_bytes()).unwrap();
        assert!(
            verify_statement(
                &forged,
                &TrustedKeys::new(vec![trusted.public_key().clone()])
            )
            .is_err()
        );
    }
}
