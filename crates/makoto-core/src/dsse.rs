//! DSSE envelopes (Dead Simple Signing Envelope, v1) with the standard pre-authentication
//! encoding.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::Deserialize;
use serde_json::json;

use crate::keys::Signer;
use crate::{Error, canonical};

/// `payloadType` of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The bytes that are signed: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, with
/// lengths as ASCII decimal. This is the only function that builds signed bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope. The key id is only a hint for choosing a key.
///
/// `timestamp` is an RFC 3161 time-stamp token (DER) whose message imprint is the SHA-256 of
/// this signature's bytes, kept beside `sig` as the base64 member `"timestamp"`. It is outside
/// what is signed; verifiers that do not know it ignore it (DSSE allows extra members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    keyid: Option<String>,
    sig: Vec<u8>,
    timestamp: Option<Vec<u8>>,
}

impl EnvelopeSignature {
    pub fn keyid(&self) -> Option<&str> {
        self.keyid.as_deref()
    }
    pub fn sig(&self) -> &[u8] {
        &self.sig
    }
    /// The time-stamp token over this signature, if one was attached.
    pub fn timestamp(&self) -> Option<&[u8]> {
        self.timestamp.as_deref()
    }
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    payload_type: String,
    payload: Vec<u8>,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize)]
struct RawSignature {
    keyid: Option<String>,
    sig: String,
    timestamp: Option<String>,
}

fn b64_decode(what: &str, s: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|_| Error::InvalidEnvelope {
            reason: format!("{what} is not base64"),
        })
}

impl Envelope {
    /// Signs `payload` with `signer`.
    pub fn sign(payload_type: &str, payload: Vec<u8>, signer: &dyn Signer) -> Result<Self, Error> {
        let sig = signer.sign(&pae(payload_type, &payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_owned(),
            payload,
            signatures: vec![EnvelopeSignature {
                keyid: Some(signer.keyid().as_str().to_owned()),
                sig,
                timestamp: None,
            }],
        })
    }

    /// An envelope with no signature (Makoto level L1).
    pub fn unsigned(payload_type: &str, payload: Vec<u8>) -> Self {
        Envelope {
            payload_type: payload_type.to_owned(),
            payload,
            signatures: Vec::new(),
        }
    }

    /// Parses envelope JSON. Accepts standard and URL-safe base64.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let raw: RawEnvelope =
            serde_json::from_slice(bytes).map_err(|e| Error::InvalidEnvelope {
                reason: e.to_string(),
            })?;
        let payload = b64_decode("payload", &raw.payload)?;
        let signatures = raw
            .signatures
            .into_iter()
            .map(|s| {
                Ok(EnvelopeSignature {
                    keyid: s.keyid.filter(|k| !k.is_empty()),
                    sig: b64_decode("signature", &s.sig)?,
                    timestamp: s
                        .timestamp
                        .map(|t| b64_decode("time-stamp token", &t))
                        .transpose()?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Envelope {
            payload_type: raw.payload_type,
            payload,
            signatures,
        })
    }

    /// Canonical JSON of the envelope (standard base64).
    pub fn to_json(&self) -> String {
        let v = json!({
            "payloadType": self.payload_type,
            "payload": STANDARD.encode(&self.payload),
            "signatures": self.signatures.iter().map(|s| {
                let mut o = json!({
                    "keyid": s.keyid.clone().unwrap_or_default(),
                    "sig": STANDARD.encode(&s.sig),
                });
                if let (Some(t), Some(m)) = (&s.timestamp, o.as_object_mut()) {
                    m.insert("timestamp".into(), STANDARD.encode(t).into());
                }
                o
            }).collect::<Vec<_>>(),
        });
        canonical::to_string(&v)
    }

    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    pub fn signatures(&self) -> &[EnvelopeSignature] {
        &self.signatures
    }
    pub fn is_signed(&self) -> bool {
        !self.signatures.is_empty()
    }

    /// SHA-256 of the first signature's bytes: the message imprint a time-stamp of this
    /// envelope covers. `None` for an unsigned envelope.
    pub fn timestamp_imprint(&self) -> Option<crate::Sha256Digest> {
        self.signatures
            .first()
            .map(|s| crate::Sha256Digest::of(&s.sig))
    }

    /// Attaches `token` to the first signature (see [`EnvelopeSignature::timestamp`]).
    pub fn attach_timestamp(&mut self, token: Vec<u8>) -> Result<(), Error> {
        let first = self.signatures.first_mut().ok_or(Error::Unsigned)?;
        first.timestamp = Some(token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeyPair;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn round_trip_and_signature_over_pae() {
        let k = SigningKeyPair::from_seed(&[3u8; 32]);
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}".to_vec(), &k).unwrap();
        let back = Envelope::from_json(env.to_json().as_bytes()).unwrap();
        assert_eq!(back, env);
        let sig = &back.signatures()[0];
        assert_eq!(sig.keyid(), Some(k.keyid().as_str()));
        k.public_key()
            .verify(&pae(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}"), sig.sig())
            .unwrap();
        assert!(Envelope::from_json(b"{\"payload\":\"***\",\"payloadType\":\"x\"}").is_err());
        assert!(!env.to_json().contains("timestamp"));

        let mut stamped = env.clone();
        stamped.attach_timestamp(b"token".to_vec()).unwrap();
        let json = stamped.to_json();
        assert!(json.contains(r#""timestamp":"dG9rZW4=""#), "{json}");
        let back = Envelope::from_json(json.as_bytes()).unwrap();
        assert_eq!(back.signatures()[0].timestamp(), Some(&b"token"[..]));
        assert_eq!(
            back.timestamp_imprint(),
            Some(crate::Sha256Digest::of(sig.sig()))
        );
        assert!(
            Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, vec![])
                .attach_timestamp(vec![])
                .is_err()
        );
    }
}
