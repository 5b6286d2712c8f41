//! Signature verification against keys the verifier was given, with validity windows.
//! [`Verified`] values can only be made here.
//!
//! A trust file lists keys and when each may sign:
//!
//! ```json
//! {"keys": [
//!   {"name": "attestor-2026", "publicKey": "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n",
//!    "validFrom": "2026-01-01T00:00:00Z", "validUntil": "2027-01-01T00:00:00Z",
//!    "revokedAt": null, "keyid": "<optional; checked when present>"}
//! ],
//!  "timestampAuthorities": [
//!   {"name": "corp-tsa", "certificate": "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n"}
//! ]}
//! ```
//!
//! `timestampAuthorities` (optional) lists the RFC 3161 time-stamp authorities whose tokens
//! count: a TSA certificate, or a CA certificate that issued the TSA's certificate directly
//! ([`crate::timestamp`]).
//!
//! A signature counts only if it verifies under one of these keys and the statement's signed
//! time ([`signing_time`]: `predicate.delta.attestor.attestedAt` of commit attestations,
//! `predicate.delta.attestedAt` of stream windows, or `predicate.createdAt`) lies in
//! `[validFrom, min(validUntil, revokedAt))`. A signature's `keyid` only chooses which trusted
//! key to try first; it never makes a key trusted.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::attestation::STREAM_WINDOW_V1;
use crate::dsse::{Envelope, pae};
use crate::keys::{KeyId, PublicKey};
use crate::statement::Statement;
use crate::timestamp::{TimestampAuthorities, TrustedAuthority};
use crate::{Error, Sha256Digest};

/// A key the verifier trusts, and when.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: PublicKey,
    name: Option<String>,
    valid_from: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    identity: Option<String>,
    tables: Option<Vec<String>>,
}

impl TrustedKey {
    pub fn new(key: PublicKey) -> Self {
        TrustedKey {
            key,
            name: None,
            valid_from: None,
            valid_until: None,
            revoked_at: None,
            identity: None,
            tables: None,
        }
    }
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The identity the key is bound to (`identity` in the trust file): statements it signs
    /// must name it as their collector or executor.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Whether the key may attest the table at `table_uri`: always without a `tables` list,
    /// else when the URI is one of the listed prefixes or lies under one (`s3://lake/sales`
    /// allows `s3://lake/sales` and `s3://lake/sales/x`, not `s3://lake/salesforce`).
    pub fn allows_table(&self, table_uri: &str) -> bool {
        let Some(prefixes) = &self.tables else {
            return true;
        };
        prefixes.iter().any(|p| {
            let p = p.trim_end_matches('/');
            table_uri == p
                || table_uri
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// What is wrong with `statement` of `table_uri` signed by this key, by its identity and
    /// role binding: `None` when nothing is bound or all holds.
    pub fn binding_problem(&self, statement: &Statement, table_uri: &str) -> Option<Binding> {
        if !self.allows_table(table_uri) {
            return Some(Binding::OutOfScope(format!(
                "key {} may attest only {}, not {table_uri}",
                self.label(),
                self.tables.as_deref().unwrap_or_default().join(", ")
            )));
        }
        let want = self.identity.as_deref()?;
        let named = statement_producer(statement);
        if named.as_deref() == Some(want) {
            return None;
        }
        Some(Binding::IdentityMismatch(format!(
            "key {} is bound to {want}, but the statement names {}",
            self.label(),
            named.map_or("no collector or executor".to_owned(), |n| format!("{n:?}"))
        )))
    }

    fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.key.keyid().to_string())
    }

    /// When the key was revoked, if it was.
    pub fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.revoked_at
    }

    fn has_window(&self) -> bool {
        self.valid_from.is_some() || self.valid_until.is_some() || self.revoked_at.is_some()
    }

    /// Why a signature made at `at` does not count, if it does not (`None`: it counts).
    pub fn outside_window(&self, at: Option<DateTime<Utc>>) -> Option<String> {
        if !self.has_window() {
            return None;
        }
        let Some(at) = at else {
            return Some(
                "the statement carries no signing time to check the key's validity window against"
                    .into(),
            );
        };
        if let Some(from) = self.valid_from.filter(|f| at < *f) {
            return Some(format!(
                "the key is valid only from {from} and the statement was signed at {at}"
            ));
        }
        if let Some(r) = self.revoked_at.filter(|r| at >= *r) {
            return Some(format!(
                "the key was revoked at {r} and the statement was signed at {at}"
            ));
        }
        if let Some(u) = self.valid_until.filter(|u| at >= *u) {
            return Some(format!(
                "the key expired at {u} and the statement was signed at {at}"
            ));
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTrustFile {
    keys: Vec<RawTrustedKey>,
    #[serde(default)]
    timestamp_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAuthority {
    name: Option<String>,
    certificate: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTrustedKey {
    name: Option<String>,
    public_key: String,
    keyid: Option<String>,
    valid_from: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    identity: Option<String>,
    tables: Option<Vec<String>>,
}

/// A statement that breaks its key's binding ([`TrustedKey::binding_problem`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The statement names another producer than the key's identity.
    IdentityMismatch(String),
    /// The key signed for a table outside its `tables`.
    OutOfScope(String),
}

/// The producer a statement names: `predicate.collector.id` (origin) or
/// `predicate.executor.id` (transform).
pub fn statement_producer(statement: &Statement) -> Option<String> {
    let p = statement.predicate();
    p.get("collector")
        .or_else(|| p.get("executor"))
        .and_then(|party| party.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The keys a verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
    authorities: TimestampAuthorities,
}

impl TrustedKeys {
    /// Keys trusted at all times.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        TrustedKeys {
            keys: keys.into_iter().map(TrustedKey::new).collect(),
            authorities: TimestampAuthorities::default(),
        }
    }

    /// Parses either a public key PEM (trusted at all times) or a trust file (JSON).
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.trim_start().starts_with('{') {
            return Self::from_trust_file(text);
        }
        Ok(Self::new(vec![PublicKey::from_spki_pem(text)?]))
    }

    /// Parses a trust file.
    pub fn from_trust_file(text: &str) -> Result<Self, Error> {
        let raw: RawTrustFile = serde_json::from_str(text).map_err(|e| Error::InvalidTrust {
            reason: e.to_string(),
        })?;
        if raw.keys.is_empty() {
            return Err(Error::InvalidTrust {
                reason: "no keys".into(),
            });
        }
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (i, k) in raw.keys.into_iter().enumerate() {
            let key = PublicKey::from_spki_pem(&k.public_key).map_err(|e| Error::InvalidTrust {
                reason: format!("keys[{i}]: {e}"),
            })?;
            if let Some(id) = &k.keyid
                && id != key.keyid().as_str()
            {
                return Err(Error::InvalidTrust {
                    reason: format!(
                        "keys[{i}]: keyid {id} does not match the public key (its id is {})",
                        key.keyid()
                    ),
                });
            }
            keys.push(TrustedKey {
                key,
                name: k.name,
                valid_from: k.valid_from,
                valid_until: k.valid_until,
                revoked_at: k.revoked_at,
                identity: k.identity.filter(|i| !i.is_empty()),
                tables: k.tables,
            });
        }
        let authorities = raw
            .timestamp_authorities
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                TrustedAuthority::from_pem(a.name, &a.certificate).map_err(|e| {
                    Error::InvalidTrust {
                        reason: format!("timestampAuthorities[{i}]: {e}"),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedKeys {
            keys,
            authorities: TimestampAuthorities::new(authorities),
        })
    }

    /// The time-stamp authorities the trust file lists (empty for a bare public key).
    pub fn timestamp_authorities(&self) -> &TimestampAuthorities {
        &self.authorities
    }

    /// The trusted key with this id.
    pub fn key(&self, keyid: &KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key.keyid() == keyid)
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn keyids(&self) -> Vec<&KeyId> {
        self.keys.iter().map(|k| k.key.keyid()).collect()
    }
}

/// A value whose signature was checked against a trusted key valid at its signing time.
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

    /// Parses the verified value into another (a statement into the facts it attests); the
    /// result keeps the key and payload digest it was verified with.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Verified<U>, E> {
        Ok(Verified {
            value: f(self.value)?,
            keyid: self.keyid,
            payload_digest: self.payload_digest,
        })
    }

    /// A value derived from the verified one keeps its verification.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Verified<U> {
        Verified {
            value: f(self.value),
            keyid: self.keyid,
            payload_digest: self.payload_digest,
        }
    }
}

/// The signing time a statement records, where its kind of statement keeps it:
/// `predicate.delta.attestedAt` for stream-window statements of Delta tables
/// (`predicate.kafka.attestedAt` for Kafka topics), `predicate.delta.attestor.attestedAt` for
/// commit attestations (origin and transform), `predicate.createdAt` for other Makoto
/// statements (heads, verification records).
pub fn signing_time(statement: &Statement) -> Option<DateTime<Utc>> {
    let p = statement.predicate();
    let at = if statement.predicate_type() == STREAM_WINDOW_V1 {
        match (p.get("delta"), p.get("kafka")) {
            (Some(d), None) => d.get("attestedAt"),
            (None, Some(k)) => k.get("attestedAt"),
            _ => None,
        }
    } else {
        p.get("delta")
            .and_then(|d| d.get("attestor"))
            .and_then(|a| a.get("attestedAt"))
            .or_else(|| p.get("createdAt"))
    };
    at.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Verifies a DSSE envelope holding an in-toto statement: a signature must verify under a
/// trusted key over the PAE of the payload, and the key must be valid at the statement's
/// signing time.
pub fn verify_statement(
    envelope: &Envelope,
    trusted: &TrustedKeys,
) -> Result<Verified<Statement>, Error> {
    if !envelope.is_signed() {
        return Err(Error::Unsigned);
    }
    let message = pae(envelope.payload_type(), envelope.payload());
    let mut window_problem = None;
    for sig in envelope.signatures() {
        let hinted: Vec<&TrustedKey> = trusted
            .keys
            .iter()
            .filter(|k| sig.keyid() == Some(k.key.keyid().as_str()))
            .collect();
        let candidates = if hinted.is_empty() {
            trusted.keys.iter().collect()
        } else {
            hinted
        };
        for key in candidates {
            if key.key.verify(&message, sig.sig()).is_err() {
                continue;
            }
            let statement = Statement::from_payload(envelope.payload())?;
            match key.outside_window(signing_time(&statement)) {
                None => {
                    return Ok(Verified {
                        value: statement,
                        keyid: key.key.keyid().clone(),
                        payload_digest: Sha256Digest::of(envelope.payload()),
                    });
                }
                Some(reason) => window_problem = Some((key.key.keyid().to_string(), reason)),
            }
        }
    }
    if let Some((keyid, reason)) = window_problem {
        return Err(Error::KeyNotValid { keyid, reason });
    }
    Err(Error::UntrustedSignature {
        keyids: envelope
            .signatures()
            .iter()
            .filter_map(|s| s.keyid().map(str::to_owned))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsse::IN_TOTO_PAYLOAD_TYPE;
    use crate::keys::{Signer, SigningKeyPair};
    use crate::statement::Subject;
    use serde_json::json;

    fn statement(at: &str) -> Statement {
        Statement::new(
            vec![Subject::new("t@v0", Default::default())],
            "p",
            json!({"delta": {"attestor": {"attestedAt": at}}}),
        )
    }

    #[test]
    fn verifies_with_trusted_key_only() {
        let k = SigningKeyPair::from_seed(&[4u8; 32]);
        let env = Envelope::sign(
            IN_TOTO_PAYLOAD_TYPE,
            statement("2026-01-01T00:00:00Z").to_payload(),
            &k,
        )
        .unwrap();
        let ok = verify_statement(&env, &TrustedKeys::new(vec![k.public_key().clone()])).unwrap();
        assert_eq!(ok.keyid(), k.keyid());
        let other = SigningKeyPair::from_seed(&[5u8; 32]);
        assert!(matches!(
            verify_statement(&env, &TrustedKeys::new(vec![other.public_key().clone()])),
            Err(Error::UntrustedSignature { .. })
        ));
        let unsigned = Envelope::unsigned(
            IN_TOTO_PAYLOAD_TYPE,
            statement("2026-01-01T00:00:00Z").to_payload(),
        );
        assert!(matches!(
            verify_statement(&unsigned, &TrustedKeys::new(vec![k.public_key().clone()])),
            Err(Error::Unsigned)
        ));
    }

    #[test]
    fn a_keyid_that_names_a_trusted_key_does_not_help_a_forged_signature() {
        let trusted = SigningKeyPair::from_seed(&[6u8; 32]);
        let attacker = SigningKeyPair::from_seed(&[7u8; 32]);
        let env = Envelope::sign(
            IN_TOTO_PAYLOAD_TYPE,
            statement("2026-01-01T00:00:00Z").to_payload(),
            &attacker,
        )
        .unwrap();
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

    #[test]
    fn validity_windows_and_revocation() {
        let k = SigningKeyPair::from_seed(&[8u8; 32]);
        let pem = k.public_key().to_spki_pem().unwrap();
        let trust = |extra: &str| {
            TrustedKeys::parse(&format!(
                r#"{{"keys":[{{"name":"k","publicKey":{},{extra}}}]}}"#,
                serde_json::to_string(&pem).unwrap()
            ))
            .unwrap()
        };
        let at =
            |t: &str| Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement(t).to_payload(), &k).unwrap();
        let window =
            trust(r#""validFrom":"2026-01-01T00:00:00Z","validUntil":"2027-01-01T00:00:00Z""#);
        assert!(verify_statement(&at("2026-06-01T00:00:00Z"), &window).is_ok());
        let err = verify_statement(&at("2027-06-01T00:00:00Z"), &window).unwrap_err();
        assert!(
            matches!(err, Error::KeyNotValid { .. }) && err.to_string().contains("expired"),
            "{err}"
        );
        assert!(
            verify_statement(&at("2025-06-01T00:00:00Z"), &window)
                .unwrap_err()
                .to_string()
                .contains("valid only from")
        );
        let revoked = trust(r#""revokedAt":"2026-03-01T00:00:00Z""#);
        assert!(verify_statement(&at("2026-02-01T00:00:00Z"), &revoked).is_ok());
        assert!(
            verify_statement(&at("2026-04-01T00:00:00Z"), &revoked)
                .unwrap_err()
                .to_string()
                .contains("revoked")
        );
    }

    #[test]
    fn window_statements_are_dated_where_they_keep_their_signing_time() {
        let k = SigningKeyPair::from_seed(&[10u8; 32]);
        let pem = serde_json::to_string(&k.public_key().to_spki_pem().unwrap()).unwrap();
        let trust = |extra: &str| {
            TrustedKeys::parse(&format!(r#"{{"keys":[{{"publicKey":{pem},{extra}}}]}}"#)).unwrap()
        };
        let window = |block: &str, at: &str| {
            let s = Statement::new(
                vec![Subject::new("t#window/records=1/1", Default::default())],
                crate::attestation::STREAM_WINDOW_V1,
                json!({ block: {"attestedAt": at} }),
            );
            Envelope::sign(IN_TOTO_PAYLOAD_TYPE, s.to_payload(), &k).unwrap()
        };
        let dated = trust(
            r#""validFrom":"2026-01-01T00:00:00Z","validUntil":"2027-01-01T00:00:00Z","revokedAt":"2026-09-01T00:00:00Z""#,
        );
        for block in ["delta", "kafka"] {
            assert!(
                verify_statement(&window(block, "2026-06-01T00:00:00Z"), &dated).is_ok(),
                "{block}"
            );
            let late = verify_statement(&window(block, "2026-10-01T00:00:00Z"), &dated)
                .unwrap_err()
                .to_string();
            assert!(late.contains("revoked"), "{block}: {late}");
            let early = verify_statement(&window(block, "2025-10-01T00:00:00Z"), &dated)
                .unwrap_err()
                .to_string();
            assert!(early.contains("valid only from"), "{block}: {early}");
        }
        // A window statement is not dated by a commit statement's field.
        let s = Statement::new(
            vec![Subject::new("t#window/records=1/1", Default::default())],
            crate::attestation::STREAM_WINDOW_V1,
            json!({"delta": {"attestor": {"attestedAt": "2026-06-01T00:00:00Z"}}}),
        );
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, s.to_payload(), &k).unwrap();
        assert!(
            verify_statement(&env, &dated)
                .unwrap_err()
                .to_string()
                .contains("no signing time")
        );
    }

    #[rstest::rstest]
    #[case::exact("s3://lake/sales", true)]
    #[case::under("s3://lake/sales/part", true)]
    #[case::sibling_with_the_same_prefix("s3://lake/salesforce", false)]
    #[case::elsewhere("s3://other/sales", false)]
    fn tables_are_prefixes_on_path_boundaries(#[case] uri: &str, #[case] allowed: bool) {
        let k = SigningKeyPair::from_seed(&[1; 32]);
        let text = json!({"keys": [{
            "publicKey": k.public_key().to_spki_pem().unwrap(),
            "tables": ["s3://lake/sales/"],
        }]})
        .to_string();
        let trust = TrustedKeys::from_trust_file(&text).unwrap();
        assert_eq!(trust.keys()[0].allows_table(uri), allowed);
        assert!(TrustedKey::new(k.public_key().clone()).allows_table(uri));
    }

    #[test]
    fn identity_binding_compares_the_named_producer() {
        let k = SigningKeyPair::from_seed(&[1; 32]);
        let text = json!({"keys": [{
            "publicKey": k.public_key().to_spki_pem().unwrap(),
            "identity": "spiffe://corp/jobs/a",
        }]})
        .to_string();
        let trust = TrustedKeys::from_trust_file(&text).unwrap();
        let key = &trust.keys()[0];
        let by = |party: &str, id: &str| {
            Statement::new(
                vec![Subject::new("t@v0", Default::default())],
                "p",
                json!({party: {"id": id}}),
            )
        };
        assert_eq!(
            key.binding_problem(&by("collector", "spiffe://corp/jobs/a"), "t"),
            None
        );
        assert_eq!(
            key.binding_problem(&by("executor", "spiffe://corp/jobs/a"), "t"),
            None
        );
        assert!(matches!(
            key.binding_problem(&by("executor", "spiffe://corp/jobs/b"), "t"),
            Some(Binding::IdentityMismatch(_))
        ));
        assert!(matches!(
            key.binding_problem(&statement("2026-01-01T00:00:00Z"), "t"),
            Some(Binding::IdentityMismatch(_))
        ));
        // Without an identity in the trust file nothing is bound, and nothing mismatches.
        let unbound = TrustedKey::new(k.public_key().clone());
        assert_eq!(unbound.binding_problem(&by("executor", "x"), "t"), None);
        assert_eq!(unbound.identity(), None);
    }

    #[test]
    fn trust_file_errors() {
        assert!(TrustedKeys::parse(r#"{"keys": []}"#).is_err());
        assert!(TrustedKeys::parse(r#"{"keys": [{"publicKey": "nope"}]}"#).is_err());
        let k = SigningKeyPair::from_seed(&[9u8; 32]);
        let pem = serde_json::to_string(&k.public_key().to_spki_pem().unwrap()).unwrap();
        let wrong_id = format!(
            r#"{{"keys":[{{"publicKey":{pem},"keyid":"{}"}}]}}"#,
            "0".repeat(64)
        );
        assert!(
            TrustedKeys::parse(&wrong_id)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        assert!(
            TrustedKeys::parse(&format!(r#"{{"keys":[{{"publicKey":{pem},"bogus":1}}]}}"#))
                .is_err()
        );
    }
}
