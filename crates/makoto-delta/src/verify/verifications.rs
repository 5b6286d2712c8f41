//! Verification records (`system.makoto.verifications`) and `--since-last`.
//!
//! Every verification can append a record: who verified which version, how, and the result,
//! with the record itself as a DSSE-signed statement (`https://makoto.dev/verification/v1`)
//! when the verifier has a key. `--since-last` continues from the newest record that is signed
//! by a trusted key, says "verified", covers the requested mode and whose state pages are
//! stored: only versions after it are checked.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use makoto_core::Sha256Digest;
use makoto_core::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use makoto_core::keys::Signer;
use makoto_core::state::StateTree;
use makoto_core::statement::{Statement, Subject};
use makoto_core::verify::{TrustedKeys, verify_statement};
use serde_json::{Value, json};

use super::chain::CheckedRow;
use super::findings::{Finding, FindingKind};
use super::{VerifyMode, VerifyReport};
use crate::Error;
use crate::store::{AttestationRow, AttestationStore, VerificationRow};

/// Predicate type of verification records.
pub const VERIFICATION_V1: &str = "https://makoto.dev/verification/v1";

/// How verification records are sealed.
#[derive(Clone)]
pub enum RecordSigner {
    /// Recorded without a signature (not usable by `--since-last`).
    Unsigned,
    Signed(Arc<dyn Signer>),
}

impl std::fmt::Debug for RecordSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordSigner::Unsigned => f.write_str("Unsigned"),
            RecordSigner::Signed(s) => write!(f, "Signed({})", s.keyid()),
        }
    }
}

/// The verified version a `--since-last` run continues from.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub version: u64,
    pub attestation_digest: Sha256Digest,
    pub state_digest: Sha256Digest,
    pub live_files: u64,
    pub live_bytes: u64,
    pub verified_at: String,
}

impl Base {
    /// The attestation that was verified must still be there.
    pub fn check_still_attested(&self, rows: &[&CheckedRow], findings: &mut Vec<Finding>) {
        let present = rows.iter().any(|c| {
            c.row.version == self.version && c.payload_digest == Some(self.attestation_digest)
        });
        if !present {
            findings.push(
                Finding::new(
                    FindingKind::AttestationAltered,
                    format!(
                        "the attestation of version {} verified at {} ({}) is no longer in the attestation table",
                        self.version, self.verified_at, self.attestation_digest
                    ),
                )
                .at(self.version),
            );
        }
    }
}

fn verifier_identity() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", host_name())
}

/// This machine's name, as recorded in verification and run records: `$HOSTNAME`, else
/// `/etc/hostname`, else `unknown`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The newest usable base for `table`, if any.
pub(crate) async fn find_base(
    store: &AttestationStore,
    table: &str,
    trust: &TrustedKeys,
    target: u64,
    mode: VerifyMode,
    rows: &[&AttestationRow],
) -> Result<Option<Base>, Error> {
    let mut records = store.verification_rows(table).await?;
    records.sort_by_key(|r| std::cmp::Reverse((r.version, r.verified_at_us)));
    for r in records {
        if r.result != "verified"
            || r.version > target
            || (mode == VerifyMode::Deep && r.mode != "deep")
        {
            continue;
        }
        let (Some(attestation_digest), Some(state_digest)) = (r.attestation_digest, r.state_digest)
        else {
            continue;
        };
        let Ok(env) = Envelope::from_json(r.envelope.as_bytes()) else {
            continue;
        };
        let Ok(verified) = verify_statement(&env, trust) else {
            continue;
        };
        let p = verified.value().predicate();
        let same = verified.value().predicate_type() == VERIFICATION_V1
            && p.get("table").and_then(Value::as_str) == Some(table)
            && p.get("version").and_then(Value::as_u64) == Some(r.version)
            && p.get("result").and_then(Value::as_str) == Some("verified")
            && p.get("mode").and_then(Value::as_str) == Some(r.mode.as_str())
            && p.get("attestationDigest").and_then(Value::as_str)
                == Some(attestation_digest.to_hex().as_str())
            && p.get("stateDigest").and_then(Value::as_str) == Some(state_digest.to_hex().as_str());
        if !same {
            continue;
        }
        if state_digest != Sha256Digest::ZERO && store.pages().get(&state_digest).await.is_err() {
            tracing::info!(
                version = r.version,
                "state pages of the recorded verification are missing; not using it"
            );
            continue;
        }
        let row = rows
            .iter()
            .find(|a| a.version == r.version && a.attestation_digest == attestation_digest);
        return Ok(Some(Base {
            version: r.version,
            attestation_digest,
            state_digest,
            live_files: row.map_or(0, |a| a.live_files),
            live_bytes: row.map_or(0, |a| a.live_bytes),
            verified_at: DateTime::<Utc>::from_timestamp_micros(r.verified_at_us)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default(),
        }));
    }
    Ok(None)
}

/// Stores the pages of a verified state (nothing to do when its root page is already stored).
pub(crate) async fn persist_state(
    store: &AttestationStore,
    tree: &mut StateTree,
) -> Result<(), Error> {
    let root = tree.root();
    if root == Sha256Digest::ZERO || store.pages().get(&root).await.is_ok() {
        return Ok(());
    }
    let ids = store.pages().put_each(tree.unstored_pages()).await?;
    tree.mark_persisted(ids);
    Ok(())
}

/// Appends the record of `report`.
pub(crate) async fn write_record(
    store: &AttestationStore,
    trust: &TrustedKeys,
    report: &VerifyReport,
    signer: &RecordSigner,
) -> Result<(), Error> {
    let now = Utc::now();
    let mut kinds: Vec<&str> = report.findings.iter().map(|f| f.kind.code()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mode = match report.mode {
        VerifyMode::Deep => "deep",
        VerifyMode::LogOnly => "log-only",
    };
    let result = if report.verified {
        "verified"
    } else {
        "findings"
    };
    let trusted: Vec<String> = trust.keyids().iter().map(|k| k.to_string()).collect();
    let verifier = verifier_identity();
    let state = report
        .state_digest
        .clone()
        .unwrap_or_else(|| Sha256Digest::ZERO.to_hex());
    let statement = Statement::new(
        vec![Subject::new(
            format!("{}@v{}", report.table, report.version),
            BTreeMap::from([("sha256".to_owned(), state.clone())]),
        )],
        VERIFICATION_V1,
        json!({
            "createdAt": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "table": report.table,
            "version": report.version,
            "mode": mode,
            "result": result,
            "errors": report.errors(),
            "warnings": report.warnings(),
            "findingKinds": kinds,
            "attestationDigest": report.attestation_digest,
            "stateDigest": report.state_digest,
            "sinceVersion": report.since,
            "verifier": verifier,
            "trustedKeyids": trusted,
        }),
    );
    let (envelope, keyid) = match signer {
        RecordSigner::Unsigned => (
            Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, statement.to_payload()),
            None,
        ),
        RecordSigner::Signed(s) => (
            Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement.to_payload(), s.as_ref())
                .map_err(|e| Error::core("signing the verification record", e))?,
            Some(s.keyid().clone()),
        ),
    };
    let parse = |d: &Option<String>| d.as_deref().and_then(|s| s.parse().ok());
    let row = VerificationRow {
        table_uri: report.table.clone(),
        table_id: report.table_id.clone(),
        version: report.version,
        mode: mode.to_owned(),
        result: result.to_owned(),
        errors: report.errors() as u64,
        warnings: report.warnings() as u64,
        finding_kinds: kinds.join(","),
        state_digest: parse(&report.state_digest),
        attestation_digest: parse(&report.attestation_digest),
        since_version: report.since,
        verified_at_us: now.timestamp_micros(),
        verifier,
        trusted_keyids: trusted.join(","),
        keyid,
        envelope: envelope.to_json(),
        report: serde_json::to_string(&report.findings).unwrap_or_else(|_| "[]".into()),
        attestor_version: crate::attest::attestor_version(),
        run_id: uuid::Uuid::new_v4().to_string(),
    };
    store.append_verification(&row).await
}
