//! Portable proofs that a file is part of an attested table version, checkable offline with
//! only the proof and a trusted public key.
//!
//! A proof is canonical JSON:
//!
//! ```json
//! {"format": "makoto-membership-proof/1",
//!  "table": "s3://lake/sales", "version": 42, "stateDigest": "<hex>",
//!  "file": {"path": …, "size": …, "sha256": …, "deletionVector": …},
//!  "siblings": ["<hex>", …],
//!  "keyid": "<key id of the attestation's signing key>",
//!  "envelope": {<the DSSE envelope of the version's attestation>}}
//! ```
//!
//! Checking it (docs/verification.md#proofs): the envelope holds exactly one signature, which
//! verifies under a trusted key whose id is `keyid` (and is the key id the signature names);
//! its statement is the commit attestation of `table@v<version>` with subject digest
//! `stateDigest`; the file (which has a digest) hashed as a leaf and folded with the siblings
//! along its key gives `stateDigest`. A proof file that is not exactly the canonical form of
//! its content is rejected, so any changed byte makes it fail.

use serde_json::{Value, json};

use crate::attestation::{ORIGIN_V1, TRANSFORM_V1};
use crate::attested::AttestedCommit;
use crate::dsse::Envelope;
use crate::state::{FileEntry, MembershipProof, verify_membership};
use crate::statement::Statement;
use crate::verify::{TrustedKeys, Verified, verify_statement};
use crate::{Error, Sha256Digest, canonical};

pub const PROOF_FORMAT: &str = "makoto-membership-proof/1";

/// A membership proof bundled with the attestation it is anchored in.
#[derive(Debug, Clone)]
pub struct FileProof {
    table: String,
    version: u64,
    state_digest: Sha256Digest,
    proof: MembershipProof,
    envelope: Envelope,
}

/// What a checked proof establishes.
#[derive(Debug, Clone)]
pub struct ProvenFile {
    pub table: String,
    pub version: u64,
    pub state_digest: Sha256Digest,
    pub file: FileEntry,
    pub attestation: AttestedCommit,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::ProofMismatch {
        reason: reason.into(),
    }
}

impl FileProof {
    pub fn new(
        table: String,
        version: u64,
        state_digest: Sha256Digest,
        proof: MembershipProof,
        envelope: Envelope,
    ) -> Self {
        FileProof {
            table,
            version,
            state_digest,
            proof,
            envelope,
        }
    }

    pub fn to_json_bytes(&self) -> Result<Vec<u8>, Error> {
        let envelope: Value =
            serde_json::from_str(&self.envelope.to_json()).map_err(|e| bad(e.to_string()))?;
        let v = json!({
            "format": PROOF_FORMAT,
            "table": self.table,
            "version": self.version,
            "stateDigest": self.state_digest.to_hex(),
            "file": self.proof.entry().to_json(),
            "siblings": self.proof.siblings().iter().map(Sha256Digest::to_hex).collect::<Vec<_>>(),
            "keyid": self.keyid(),
            "envelope": envelope,
        });
        Ok(canonical::to_vec(&v))
    }

    /// Parses a proof; it must be exactly in canonical form.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if canonical::to_vec(&v) != bytes {
            return Err(bad("the proof is not in canonical form (it was edited)"));
        }
        if v.get("format").and_then(Value::as_str) != Some(PROOF_FORMAT) {
            return Err(bad(format!("format is not {PROOF_FORMAT}")));
        }
        let table = v
            .get("table")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no table"))?
            .to_owned();
        let version = v
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no version"))?;
        let state_digest: Sha256Digest = v
            .get("stateDigest")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no stateDigest"))?
            .parse()?;
        let file = v.get("file").ok_or_else(|| bad("no file"))?;
        let entry = FileEntry::from_value_bytes(&canonical::to_vec(file))?;
        if !entry.is_available() {
            return Err(bad(format!(
                "{} has no digest (its bytes were gone when it was attested): there is nothing to prove its bytes by",
                entry.path()
            )));
        }
        let siblings = v
            .get("siblings")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no siblings"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| bad("sibling is not a string"))?
                    .parse()
            })
            .collect::<Result<Vec<Sha256Digest>, Error>>()?;
        let keyid = v
            .get("keyid")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no keyid"))?;
        let envelope = v.get("envelope").ok_or_else(|| bad("no envelope"))?;
        let envelope = Envelope::from_json(&canonical::to_vec(envelope))?;
        if envelope.signatures().len() != 1 {
            return Err(bad(format!(
                "the envelope holds {} signatures; makoto writes exactly one",
                envelope.signatures().len()
            )));
        }
        let proof = FileProof {
            table,
            version,
            state_digest,
            proof: MembershipProof::new(entry, siblings),
            envelope,
        };
        if proof.keyid() != keyid {
            return Err(bad("keyid differs from the key id the signature names"));
        }
        // Only exactly what makoto writes is accepted: no extra, renamed or reformatted field.
        if proof.to_json_bytes()? != bytes {
            return Err(bad(
                "the proof holds fields or encodings makoto does not write (it was edited)",
            ));
        }
        Ok(proof)
    }

    /// The key id the attestation's signature names.
    pub fn keyid(&self) -> String {
        self.envelope
            .signatures()
            .first()
            .and_then(|s| s.keyid())
            .unwrap_or_default()
            .to_owned()
    }

    /// Checks the proof against trusted keys, offline.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<Verified<ProvenFile>, Error> {
        let verified = verify_statement(&self.envelope, trusted)?;
        if verified.keyid().as_str() != self.keyid()
            || self
                .envelope
                .signatures()
                .iter()
                .any(|s| s.keyid() != Some(self.keyid().as_str()))
        {
            return Err(bad(format!(
                "the attestation verifies under key {}, but the proof names key {}",
                verified.keyid(),
                self.keyid()
            )));
        }
        let statement: &Statement = verified.value();
        if ![ORIGIN_V1, TRANSFORM_V1].contains(&statement.predicate_type()) {
            return Err(bad(format!(
                "the envelope holds a {} statement, not a commit attestation",
                statement.predicate_type()
            )));
        }
        let attested = AttestedCommit::from_statement(statement)?;
        let expected_subject = format!("{}@v{}", self.table, self.version);
        if attested.subject_name() != expected_subject {
            return Err(bad(format!(
                "the attestation is for {}, the proof claims {expected_subject}",
                attested.subject_name()
            )));
        }
        if attested.state_root() != self.state_digest {
            return Err(bad(format!(
                "the attestation's state digest is {}, the proof claims {}",
                attested.state_root(),
                self.state_digest
            )));
        }
        verify_membership(&self.proof, &self.state_digest)?;
        let proven = ProvenFile {
            table: self.table.clone(),
            version: self.version,
            state_digest: self.state_digest,
            file: self.proof.entry().clone(),
            attestation: attested,
        };
        Ok(verified.map(|_| proven))
    }
}
