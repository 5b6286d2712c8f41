//! Attestations in formats other supply-chain tools read: Sigstore bundles (v0.3) and in-toto
//! JSON Lines. No I/O.
//!
//! A Sigstore bundle holds the DSSE envelope as it was signed, a public-key hint (the key id)
//! as verification material, no transparency-log entries, and the envelope's RFC 3161
//! time-stamp token, when it has one, under `timestampVerificationData.rfc3161Timestamps`
//! (Sigstore checks it against the signature bytes, as makoto does).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::dsse::Envelope;
use crate::timestamp::TimestampToken;

/// `mediaType` of the bundles [`sigstore_bundle`] makes.
pub const SIGSTORE_BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The Sigstore bundle (v0.3, JSON) of a signed envelope; `None` for an unsigned one, which
/// Sigstore cannot represent. Sigstore keeps a time-stamp as the TSA's whole reply
/// (`TimeStampResp`), so the token is wrapped in a granted one; a token that does not parse is
/// left out (verifiers of the bundle then see no time-stamp).
pub fn sigstore_bundle(envelope: &Envelope) -> Option<Value> {
    let first = envelope.signatures().first()?;
    let stamps: Vec<Value> = envelope
        .signatures()
        .iter()
        .filter_map(|s| s.timestamp())
        .filter_map(|t| TimestampToken::from_der(t).ok()?.to_reply_der().ok())
        .map(|t| json!({"signedTimestamp": STANDARD.encode(t)}))
        .collect();
    let mut material = json!({
        "publicKey": {"hint": first.keyid().unwrap_or_default()},
        "tlogEntries": [],
    });
    if let (false, Some(m)) = (stamps.is_empty(), material.as_object_mut()) {
        m.insert(
            "timestampVerificationData".into(),
            json!({"rfc3161Timestamps": stamps}),
        );
    }
    Some(json!({
        "mediaType": SIGSTORE_BUNDLE_V03,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": STANDARD.encode(envelope.payload()),
            "payloadType": envelope.payload_type(),
            "signatures": envelope.signatures().iter().map(|s| json!({
                "sig": STANDARD.encode(s.sig()),
                "keyid": s.keyid().unwrap_or_default(),
            })).collect::<Vec<_>>(),
        },
    }))
}

/// One line of an in-toto JSON Lines file: the DSSE envelope, without time-stamp members.
pub fn intoto_jsonl_line(envelope: &Envelope) -> String {
    json!({
        "payloadType": envelope.payload_type(),
        "payload": STANDARD.encode(envelope.payload()),
        "signatures": envelope.signatures().iter().map(|s| json!({
            "keyid": s.keyid().unwrap_or_default(),
            "sig": STANDARD.encode(s.sig()),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsse::IN_TOTO_PAYLOAD_TYPE;
    use crate::keys::{Signer, SigningKeyPair};

    #[test]
    fn bundles_carry_the_envelope_the_key_hint_and_the_token() {
        let k = SigningKeyPair::from_seed(&[9; 32]);
        let mut env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}".to_vec(), &k).unwrap();
        let plain = sigstore_bundle(&env).unwrap();
        assert_eq!(plain["mediaType"], SIGSTORE_BUNDLE_V03);
        assert_eq!(
            plain["verificationMaterial"]["publicKey"]["hint"],
            k.keyid().as_str()
        );
        assert!(
            plain["verificationMaterial"]
                .get("timestampVerificationData")
                .is_none()
        );
        assert_eq!(plain["dsseEnvelope"]["payload"], STANDARD.encode(b"{}"));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/timestamp");
        let token = std::fs::read(format!("{dir}/ec-token.der")).unwrap();
        let reply = std::fs::read(format!("{dir}/ec-reply.der")).unwrap();
        env.attach_timestamp(token).unwrap();
        let stamped = sigstore_bundle(&env).unwrap();
        assert_eq!(
            stamped["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"],
            STANDARD.encode(reply)
        );
        let line: Value = serde_json::from_str(&intoto_jsonl_line(&env)).unwrap();
        assert!(line["signatures"][0].get("timestamp").is_none());
        assert_eq!(
            Envelope::from_json(line.to_string().as_bytes())
                .unwrap()
                .payload(),
            b"{}"
        );
        assert!(sigstore_bundle(&Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, vec![])).is_none());
    }
}
