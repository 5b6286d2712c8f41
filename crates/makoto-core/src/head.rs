//! Signed heads: a checkpoint of the latest attestation of every table in a warehouse, kept
//! outside the lakehouse (a WORM bucket, a ticket, a transparency log) so that a truncated or
//! rewritten attestation table is detectable later.
//!
//! A head is an in-toto statement with predicate type [`HEAD_V1`], one subject per table
//! (`<table>@v<N>` with the `sha256` of the attestation of version `N`), and the predicate
//! `{"warehouse", "createdAt", "tables": [{"table", "tableId", "version",
//! "attestationDigest", "stateDigest"}]}`, in a DSSE envelope.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::attestation::subject_name;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::Signer;
use crate::statement::{Statement, Subject};
use crate::timestamp::{EnvelopeTimestamp, envelope_timestamp};
use crate::verify::{TrustedKeys, Verified, verify_statement};
use crate::{Error, Sha256Digest};

pub const HEAD_V1: &str = "https://makoto.dev/head/v1";

/// The latest attestation of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadEntry {
    pub table: String,
    pub table_id: String,
    pub version: u64,
    pub attestation_digest: Sha256Digest,
    pub state_digest: Sha256Digest,
}

/// Builds and signs a head.
pub fn sign_head(
    warehouse: &str,
    created_at: DateTime<Utc>,
    entries: &[HeadEntry],
    signer: &dyn Signer,
) -> Result<Envelope, Error> {
    let subjects = entries
        .iter()
        .map(|e| {
            Subject::new(
                subject_name(&e.table, e.version),
                BTreeMap::from([("sha256".to_owned(), e.attestation_digest.to_hex())]),
            )
        })
        .collect();
    let predicate = json!({
        "warehouse": warehouse,
        "createdAt": created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "tables": entries.iter().map(|e| json!({
            "table": e.table,
            "tableId": e.table_id,
            "version": e.version,
            "attestationDigest": e.attestation_digest.to_hex(),
            "stateDigest": e.state_digest.to_hex(),
        })).collect::<Vec<_>>(),
    });
    let statement = Statement::new(subjects, HEAD_V1, predicate);
    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement.to_payload(), signer)
}

/// The entry of `table` in a verified head, still marked verified by the head's signature.
pub fn head_entry(head: Verified<Vec<HeadEntry>>, table: &str) -> Option<Verified<HeadEntry>> {
    let at = head.value().iter().position(|e| e.table == table)?;
    Some(head.map(|mut entries| entries.swap_remove(at)))
}

/// Verifies a head against trusted keys and returns its entries.
pub fn verify_head(bytes: &[u8], trusted: &TrustedKeys) -> Result<Verified<Vec<HeadEntry>>, Error> {
    verify_head_timestamped(bytes, trusted).map(|(head, _)| head)
}

/// [`verify_head`], and what the head's RFC 3161 time-stamp (`head --tsa`) shows under the
/// trusted authorities: that the head, and so every attestation it names, existed by then.
pub fn verify_head_timestamped(
    bytes: &[u8],
    trusted: &TrustedKeys,
) -> Result<(Verified<Vec<HeadEntry>>, EnvelopeTimestamp), Error> {
    let envelope = Envelope::from_json(bytes)?;
    let head = verify_head_envelope(&envelope, trusted)?;
    let time = envelope_timestamp(
        &envelope,
        trusted.timestamp_authorities(),
        trusted.key(head.keyid()),
    );
    Ok((head, time))
}

fn verify_head_envelope(
    envelope: &Envelope,
    trusted: &TrustedKeys,
) -> Result<Verified<Vec<HeadEntry>>, Error> {
    let verified = verify_statement(envelope, trusted)?;
    let statement = verified.value();
    if statement.predicate_type() != HEAD_V1 {
        return Err(Error::InvalidStatement {
            reason: format!(
                "predicateType is {:?}, not {HEAD_V1}",
                statement.predicate_type()
            ),
        });
    }
    let bad = |what: &str| Error::InvalidStatement {
        reason: format!("head: {what} is missing or malformed"),
    };
    let tables = statement
        .predicate()
        .get("tables")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("tables"))?;
    let mut entries = Vec::with_capacity(tables.len());
    for t in tables {
        let s = |k: &str| t.get(k).and_then(Value::as_str).ok_or_else(|| bad(k));
        entries.push(HeadEntry {
            table: s("table")?.to_owned(),
            table_id: s("tableId")?.to_owned(),
            version: t
                .get("version")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("version"))?,
            attestation_digest: s("attestationDigest")?.parse()?,
            state_digest: s("stateDigest")?.parse()?,
        });
    }
    // The subjects are what is signed for tools that read only subjects; they must agree.
    for e in &entries {
        let name = subject_name(&e.table, e.version);
        let ok = statement.subject().iter().any(|s| {
            s.name() == name && s.sha256() == Some(e.attestation_digest.to_hex().as_str())
        });
        if !ok {
            return Err(bad(&format!("subject for {name}")));
        }
    }
    Ok(verified.map(|_| entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeyPair;

    #[test]
    fn heads_round_trip_and_need_a_trusted_key() {
        let k = SigningKeyPair::from_seed(&[3; 32]);
        let e = HeadEntry {
            table: "s3://lake/t".into(),
            table_id: "id".into(),
            version: 7,
            attestation_digest: Sha256Digest::of(b"a"),
            state_digest: Sha256Digest::of(b"s"),
        };
        let env = sign_head("s3://lake/wh", Utc::now(), std::slice::from_ref(&e), &k).unwrap();
        let trusted = TrustedKeys::new(vec![k.public_key().clone()]);
        let got = verify_head(env.to_json().as_bytes(), &trusted).unwrap();
        assert_eq!(got.value(), &vec![e.clone()]);
        let entry = head_entry(got.clone(), "s3://lake/t").unwrap();
        assert_eq!(entry.value(), &e);
        assert_eq!(entry.keyid(), got.keyid());
        assert!(head_entry(got, "s3://lake/other").is_none());
        let other = TrustedKeys::new(vec![
            SigningKeyPair::from_seed(&[4; 32]).public_key().clone(),
        ]);
        assert!(verify_head(env.to_json().as_bytes(), &other).is_err());
        let tampered = env.to_json().replace("\"sig\":\"", "\"sig\":\"AA");
        assert!(verify_head(tampered.as_bytes(), &trusted).is_err());
    }
}
