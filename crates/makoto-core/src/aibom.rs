//! The AI bill of materials (`https://makoto.dev/aibom/v1`): one signed in-toto statement
//! about a model version that carries, verifiable offline, the attestations of the table
//! versions it was trained on (with their DBOMs) and the stream windows of its serving
//! endpoint's inference logs. [`AibomPredicate`] is the one declaration used to write it and
//! to read it back; [`verify_aibom`] checks a document with nothing but the trusted keys.
//!
//! The format is documented in `docs/ai-controls.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Sha256Digest;
use crate::dsse::Envelope;
use crate::statement::{Statement, Subject};
use crate::verify::{TrustedKeys, verify_statement};
use crate::window::{AttestedWindow, RecordPos};

/// Predicate type of an AI bill of materials.
pub const AIBOM_V1: &str = "https://makoto.dev/aibom/v1";

/// Subject name of a model version: `urn:makoto:model:<name>@<version>`.
pub fn model_subject(name: &str, version: &str) -> String {
    format!("urn:makoto:model:{name}@{version}")
}

/// The predicate of an AIBOM statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AibomPredicate {
    pub model: ModelEntry,
    /// The table versions the model was trained on.
    pub training: Vec<TrainingEntry>,
    /// The inference logs of the model's serving endpoints, as attested stream windows.
    pub inference: Vec<InferenceEntry>,
    /// What the generator checked before signing.
    pub verification: BuildCheck,
    /// When the AIBOM was signed (RFC 3339); trust-file key windows are checked against it.
    pub created_at: String,
    pub generator: Generator,
}

/// The model version the AIBOM is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub version: String,
    /// SHA-256 of the model artifact (the statement subject's digest).
    pub digest: Sha256Digest,
    /// The MLflow run that trained it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
}

/// A training table version: its signed attestation and its DBOM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingEntry {
    pub table: String,
    pub version: u64,
    /// `<table>@v<version>`, the attestation's subject.
    pub subject: String,
    pub state_digest: Sha256Digest,
    /// SHA-256 of the attestation's statement (its envelope payload).
    pub attestation_digest: Sha256Digest,
    pub makoto_level: String,
    /// The attestation of that version, as its DSSE envelope (JSON object).
    pub attestation: Value,
    /// The DBOM of that version (`dbomVersion` 1.0.0), built and verified by the generator.
    pub dbom: Value,
}

/// The windows of one inference-log table and window spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceEntry {
    pub table: String,
    pub spec: String,
    /// Windows whose records lie in `[from, to)` (RFC 3339; absent: unbounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The table version the generator verified; every listed window ends at or before it.
    pub verified_version: u64,
    /// In chain order, consecutive.
    pub windows: Vec<WindowEntry>,
}

/// One attested stream window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowEntry {
    pub window_id: String,
    pub sequence: u64,
    pub first: RecordRef,
    pub last: RecordRef,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
    pub leaf_count: u64,
    pub merkle_root: Sha256Digest,
    pub attestation_digest: Sha256Digest,
    /// The window's `stream-window/v1` statement as its DSSE envelope (JSON object).
    pub envelope: Value,
}

/// A record position `version:index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    pub version: u64,
    pub index: u64,
}

impl From<RecordPos> for RecordRef {
    fn from(p: RecordPos) -> Self {
        RecordRef {
            version: p.version,
            index: p.index,
        }
    }
}

/// What the generator verified before it signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildCheck {
    /// `deep` (data files rehashed, window records recomputed) or `log-only`.
    pub mode: String,
    pub trusted_keyids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    pub tool: String,
    pub version: String,
}

impl AibomPredicate {
    /// The statement: one subject, the model version, with the model artifact's digest.
    pub fn statement(&self) -> Result<Statement, crate::Error> {
        let predicate = serde_json::to_value(self).map_err(|e| crate::Error::InvalidStatement {
            reason: format!("AIBOM predicate: {e}"),
        })?;
        Ok(Statement::new(
            vec![Subject::new(
                model_subject(&self.model.name, &self.model.version),
                BTreeMap::from([("sha256".to_owned(), self.model.digest.to_hex())]),
            )],
            AIBOM_V1,
            predicate,
        ))
    }
}

/// The outcome of [`verify_aibom`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AibomReport {
    /// `urn:makoto:model:<name>@<version>`, when the statement could be read.
    pub model: Option<String>,
    /// Key that signed the AIBOM, when a trusted one did.
    pub signed_by: Option<String>,
    pub training_checked: usize,
    pub windows_checked: usize,
    /// Every problem found, each naming the entry it is about. Empty: verified.
    pub problems: Vec<String>,
}

impl AibomReport {
    pub fn verified(&self) -> bool {
        self.problems.is_empty() && self.signed_by.is_some()
    }
}

/// Checks an AIBOM envelope offline: its signature and every attestation and window envelope
/// it carries under `trusted`, and that what the AIBOM lists is what those statements sign
/// (subjects, digests, window ids, roots, positions, times, the window chain). `Err` only when
/// `bytes` is not a DSSE envelope at all.
pub fn verify_aibom(bytes: &[u8], trusted: &TrustedKeys) -> Result<AibomReport, crate::Error> {
    let envelope = Envelope::from_json(bytes)?;
    let mut report = AibomReport {
        model: None,
        signed_by: None,
        training_checked: 0,
        windows_checked: 0,
        problems: Vec::new(),
    };
    let statement = match verify_statement(&envelope, trusted) {
        Ok(v) => {
            report.signed_by = Some(v.keyid().to_string());
            v.into_inner()
        }
        Err(e) => {
            report.problems.push(format!("the AIBOM's signature: {e}"));
            return Ok(report);
        }
    };
    let predicate = match read_predicate(&statement) {
        Ok(p) => p,
        Err(problem) => {
            report.problems.push(problem);
            return Ok(report);
        }
    };
    report.model = Some(model_subject(
        &predicate.model.name,
        &predicate.model.version,
    ));
    for t in &predicate.training {
        report.problems.extend(check_training(t, trusted));
        report.training_checked += 1;
    }
    for i in &predicate.inference {
        report.problems.extend(check_inference(i, trusted));
        report.windows_checked += i.windows.len();
    }
    Ok(report)
}

/// The predicate of a verified statement, with its subject checked against it.
fn read_predicate(statement: &Statement) -> Result<AibomPredicate, String> {
    if statement.predicate_type() != AIBOM_V1 {
        return Err(format!(
            "predicate type is {}, not {AIBOM_V1}",
            statement.predicate_type()
        ));
    }
    let predicate: AibomPredicate = serde_json::from_value(statement.predicate().clone())
        .map_err(|e| format!("the AIBOM predicate is malformed: {e}"))?;
    let name = model_subject(&predicate.model.name, &predicate.model.version);
    match statement.subject() {
        [s] if s.name() == name && s.sha256() == Some(&predicate.model.digest.to_hex()) => {
            Ok(predicate)
        }
        _ => Err(format!(
            "the statement's subject is not exactly {name} with the model digest {}",
            predicate.model.digest
        )),
    }
}

/// Decodes an envelope carried as a JSON object and verifies its statement.
fn verified_statement(
    envelope: &Value,
    trusted: &TrustedKeys,
) -> Result<(Statement, Sha256Digest), String> {
    let bytes = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
    let env = Envelope::from_json(&bytes).map_err(|e| e.to_string())?;
    let v = verify_statement(&env, trusted).map_err(|e| e.to_string())?;
    let digest = v.payload_digest();
    Ok((v.into_inner(), digest))
}

fn check_training(t: &TrainingEntry, trusted: &TrustedKeys) -> Vec<String> {
    let at = format!("training {}", t.subject);
    let mut problems = Vec::new();
    if t.subject != format!("{}@v{}", t.table, t.version) {
        problems.push(format!(
            "{at}: subject does not name {}@v{}",
            t.table, t.version
        ));
    }
    match verified_statement(&t.attestation, trusted) {
        Err(e) => problems.push(format!("{at}: attestation does not verify: {e}")),
        Ok((s, digest)) => {
            if digest != t.attestation_digest {
                problems.push(format!(
                    "{at}: attestation digest is {digest}, the AIBOM says {}",
                    t.attestation_digest
                ));
            }
            let state = t.state_digest.to_hex();
            if !matches!(s.subject(), [x] if x.name() == t.subject && x.sha256() == Some(&state)) {
                problems.push(format!(
                    "{at}: the attestation's subject is not {} with state digest {state}",
                    t.subject
                ));
            }
        }
    }
    let dataset = t.dbom.get("dataset");
    let field = |k: &str| dataset.and_then(|d| d.get(k)).and_then(Value::as_str);
    let dbom_state = dataset
        .and_then(|d| d.get("digest"))
        .and_then(|d| d.get("sha256"))
        .and_then(Value::as_str);
    if field("subject") != Some(t.subject.as_str()) || dbom_state != Some(&t.state_digest.to_hex())
    {
        problems.push(format!(
            "{at}: the DBOM is about another dataset ({} {})",
            field("subject").unwrap_or("no subject"),
            dbom_state.unwrap_or("no digest")
        ));
    }
    let chain = t
        .dbom
        .get("verification")
        .and_then(|v| v.get("chainVerified"))
        .and_then(Value::as_bool);
    if chain != Some(true) {
        problems.push(format!("{at}: the DBOM does not say its chain verified"));
    }
    problems
}

fn check_inference(i: &InferenceEntry, trusted: &TrustedKeys) -> Vec<String> {
    let prefix = format!("{}#window/{}/", i.table, i.spec);
    let mut problems = Vec::new();
    let mut previous: Option<&WindowEntry> = None;
    for w in &i.windows {
        let at = format!("inference window {}", w.window_id);
        if w.window_id != format!("{prefix}{}", w.sequence) {
            problems.push(format!(
                "{at}: not window {} of {} {}",
                w.sequence, i.table, i.spec
            ));
        }
        if let Some(p) = previous
            && w.sequence != p.sequence + 1
        {
            problems.push(format!(
                "{at}: follows window {} (the list must be consecutive)",
                p.sequence
            ));
        }
        if w.last.version > i.verified_version {
            problems.push(format!(
                "{at}: ends at version {}, after the verified version {}",
                w.last.version, i.verified_version
            ));
        }
        match verified_statement(&w.envelope, trusted) {
            Err(e) => problems.push(format!("{at}: window statement does not verify: {e}")),
            Ok((s, digest)) => {
                if digest != w.attestation_digest {
                    problems.push(format!(
                        "{at}: attestation digest is {digest}, the AIBOM says {}",
                        w.attestation_digest
                    ));
                }
                match AttestedWindow::from_statement(&s) {
                    Err(e) => problems.push(format!("{at}: {e}")),
                    Ok(aw) => problems.extend(window_differences(&at, w, &aw, &s, previous)),
                }
            }
        }
        previous = Some(w);
    }
    let in_range = |ms: i64, bound: &Option<String>, upper: bool| {
        bound.as_deref().is_none_or(|b| {
            chrono::DateTime::parse_from_rfc3339(b).is_ok_and(|t| {
                let t = t.timestamp_millis();
                if upper { ms < t } else { ms >= t }
            })
        })
    };
    for w in &i.windows {
        if !in_range(w.first_timestamp_ms, &i.from, false)
            || !in_range(w.last_timestamp_ms, &i.to, true)
        {
            problems.push(format!(
                "inference window {}: outside the range the AIBOM states",
                w.window_id
            ));
        }
    }
    problems
}

/// Where a listed window differs from what its statement signs, and from its predecessor.
fn window_differences(
    at: &str,
    w: &WindowEntry,
    aw: &AttestedWindow,
    s: &Statement,
    previous: Option<&WindowEntry>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let delta = s.predicate().get("delta");
    let ms = |k: &str| delta.and_then(|d| d.get(k)).and_then(Value::as_i64);
    let signed = (
        aw.id.as_str(),
        aw.sequence,
        aw.root,
        aw.leaf_count,
        RecordRef::from(aw.first),
        RecordRef::from(aw.last),
        ms("firstTimestampMs"),
        ms("lastTimestampMs"),
    );
    let listed = (
        w.window_id.as_str(),
        w.sequence,
        w.merkle_root,
        w.leaf_count,
        w.first,
        w.last,
        Some(w.first_timestamp_ms),
        Some(w.last_timestamp_ms),
    );
    if signed != listed {
        problems.push(format!(
            "{at}: listed as {listed:?}, its statement signs {signed:?}"
        ));
    }
    if let Some(p) = previous {
        let chained = aw.previous_id.as_deref() == Some(p.window_id.as_str())
            && aw.previous_root == Some(p.merkle_root);
        if !chained {
            problems.push(format!(
                "{at}: its statement does not chain to window {}",
                p.window_id
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsse::IN_TOTO_PAYLOAD_TYPE;
    use crate::keys::{Signer, SigningKeyPair};

    fn predicate() -> AibomPredicate {
        AibomPredicate {
            model: ModelEntry {
                name: "fraud".into(),
                version: "3".into(),
                digest: Sha256Digest::of(b"model"),
                mlflow_run_id: None,
            },
            training: vec![],
            inference: vec![],
            verification: BuildCheck {
                mode: "deep".into(),
                trusted_keyids: vec![],
            },
            created_at: "2026-12-05T00:00:00.000Z".into(),
            generator: Generator {
                tool: "makoto".into(),
                version: "test".into(),
            },
        }
    }

    fn signed(p: &AibomPredicate, key: &SigningKeyPair) -> Vec<u8> {
        let s = p.statement().unwrap();
        Envelope::sign(IN_TOTO_PAYLOAD_TYPE, s.to_payload(), key)
            .unwrap()
            .to_json()
            .into_bytes()
    }

    #[test]
    fn a_signed_aibom_verifies_and_reads_back_as_written() {
        let key = SigningKeyPair::from_seed(&[7; 32]);
        let trust = TrustedKeys::new(vec![key.public_key().clone()]);
        let report = verify_aibom(&signed(&predicate(), &key), &trust).unwrap();
        assert!(report.verified(), "{:?}", report.problems);
        assert_eq!(report.model.as_deref(), Some("urn:makoto:model:fraud@3"));
        let s = predicate().statement().unwrap();
        let back: AibomPredicate = serde_json::from_value(s.predicate().clone()).unwrap();
        assert_eq!(back, predicate());
    }

    #[test]
    fn another_key_or_an_unknown_member_is_a_problem() {
        let key = SigningKeyPair::from_seed(&[7; 32]);
        let other = SigningKeyPair::from_seed(&[8; 32]);
        let trust = TrustedKeys::new(vec![other.public_key().clone()]);
        let report = verify_aibom(&signed(&predicate(), &key), &trust).unwrap();
        assert!(!report.verified());
        assert!(
            report.problems[0].contains("signature"),
            "{:?}",
            report.problems
        );

        let mut s = predicate().statement().unwrap().to_json();
        s["predicate"]["extra"] = serde_json::json!(1);
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, serde_json::to_vec(&s).unwrap(), &key)
            .unwrap()
            .to_json();
        let trust = TrustedKeys::new(vec![key.public_key().clone()]);
        let report = verify_aibom(env.as_bytes(), &trust).unwrap();
        assert!(
            report.problems.iter().any(|p| p.contains("malformed")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn not_an_envelope_is_an_error() {
        let trust = TrustedKeys::new(vec![]);
        assert!(verify_aibom(b"{}", &trust).is_err());
        assert!(verify_aibom(b"not json", &trust).is_err());
    }
}
