//! `makoto aibom`: the AI bill of materials of a model version, built from a warehouse.
//!
//! Nothing goes in unverified: each training table version must pass the DBOM's gate (the
//! version and its lineage verify under the trusted keys), and each inference-log table must
//! verify at its latest attested version (which, deep, recomputes every window's records)
//! before its windows are listed. The document itself is [`makoto_core::aibom`].

use chrono::{DateTime, SecondsFormat, Utc};
use makoto_core::Sha256Digest;
use makoto_core::aibom::{
    AibomPredicate, BuildCheck, Generator, InferenceEntry, ModelEntry, TrainingEntry, WindowEntry,
};
use makoto_core::attestation::MakotoLevel;
use makoto_core::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use makoto_core::keys::Signer;
use makoto_core::verify::{TrustedKeys, verify_statement};
use makoto_core::window::RecordPos;
use serde_json::Value;

use crate::dbom::{self, DbomVerification};
use crate::gate::{self, GateOptions, Upstream};
use crate::store::{AttestationStore, WindowRow};
use crate::verify::{VerifyMode, VersionSpec};
use crate::{Error, SourceTable};

/// The model version the AIBOM is about.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub version: String,
    /// SHA-256 of the model artifact.
    pub digest: Sha256Digest,
    pub mlflow_run_id: Option<String>,
}

/// A training table, at a version (default: its latest attested one).
#[derive(Debug, Clone)]
pub struct Training {
    pub source: SourceTable,
    pub version: Option<u64>,
}

/// An inference-log table whose windows of `spec` (default: its only spec) in `[from, to)`
/// are listed.
#[derive(Debug, Clone)]
pub struct Inference {
    pub source: SourceTable,
    pub spec: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Builds the predicate, verifying everything it lists under `trust` with `mode`.
pub async fn build(
    store: &AttestationStore,
    trust: &TrustedKeys,
    model: Model,
    training: &[Training],
    inference: &[Inference],
    options: &GateOptions,
) -> Result<AibomPredicate, Error> {
    let options = GateOptions {
        min_level: MakotoLevel::L1,
        ..options.clone()
    };
    let mut train = Vec::new();
    for t in training {
        train.push(training_entry(store, trust, t, &options).await?);
    }
    let mut infer = Vec::new();
    for i in inference {
        infer.push(inference_entry(store, trust, i, &options).await?);
    }
    Ok(AibomPredicate {
        model: ModelEntry {
            name: model.name,
            version: model.version,
            digest: model.digest,
            mlflow_run_id: model.mlflow_run_id,
        },
        training: train,
        inference: infer,
        verification: BuildCheck {
            mode: match options.mode {
                VerifyMode::Deep => "deep",
                VerifyMode::LogOnly => "log-only",
            }
            .to_owned(),
            trusted_keyids: trust.keyids().iter().map(|k| k.to_string()).collect(),
        },
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        generator: Generator {
            tool: "makoto".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    })
}

/// Signs the AIBOM statement as a DSSE envelope.
pub fn sign(predicate: &AibomPredicate, signer: &dyn Signer) -> Result<Envelope, Error> {
    let statement = predicate
        .statement()
        .map_err(|e| Error::core("building the AIBOM statement", e))?;
    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement.to_payload(), signer)
        .map_err(|e| Error::core("signing the AIBOM", e))
}

fn refused(table: &str, reason: impl Into<String>) -> Error {
    Error::AibomRefused {
        table: table.to_owned(),
        reason: reason.into(),
    }
}

fn envelope_value(table: &str, text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| refused(table, format!("stored envelope: {e}")))
}

async fn training_entry(
    store: &AttestationStore,
    trust: &TrustedKeys,
    t: &Training,
    options: &GateOptions,
) -> Result<TrainingEntry, Error> {
    let uri = t.source.uri();
    let doc = dbom::build(
        store,
        &t.source,
        t.version,
        DbomVerification::Trusted(trust, options.clone()),
    )
    .await?;
    let verification = &doc["verification"];
    if verification["chainVerified"] != Value::Bool(true) {
        let reasons: Vec<&str> = verification["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        return Err(refused(
            uri,
            format!("its DBOM does not verify: {}", reasons.join("; ")),
        ));
    }
    let version: u64 = doc["dataset"]["version"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| refused(uri, "the DBOM names no version"))?;
    let table = store.load_attestations().await?;
    let row = store
        .attestation_row(&table, uri, version)
        .await?
        .ok_or_else(|| Error::NotAttested {
            table: uri.to_owned(),
            version: Some(version),
        })?;
    Ok(TrainingEntry {
        table: uri.to_owned(),
        version,
        subject: row.subject.clone(),
        state_digest: row.state_digest,
        attestation_digest: row.attestation_digest,
        makoto_level: row.level.to_string(),
        attestation: envelope_value(uri, &row.envelope)?,
        dbom: doc,
    })
}

async fn inference_entry(
    store: &AttestationStore,
    trust: &TrustedKeys,
    i: &Inference,
    options: &GateOptions,
) -> Result<InferenceEntry, Error> {
    let uri = i.source.uri();
    let gate_options = GateOptions {
        at: VersionSpec::Latest,
        upstream: Upstream::Ignore,
        ..options.clone()
    };
    let report = gate::check(store, trust, &i.source, &gate_options).await?;
    if !report.passed {
        return Err(refused(
            uri,
            format!(
                "version {} does not verify: {}",
                report.version,
                report.reasons.join("; ")
            ),
        ));
    }
    let rows = store.window_rows(uri).await?;
    let spec = choose_spec(uri, &rows, i.spec.as_deref())?;
    let windows = select(&rows, &spec, report.version, i.from, i.to);
    if windows.is_empty() {
        return Err(refused(
            uri,
            format!(
                "no attested {spec} window through version {} lies in the range",
                report.version
            ),
        ));
    }
    let mut entries = Vec::with_capacity(windows.len());
    for w in windows {
        let envelope = Envelope::from_json(w.envelope.as_bytes())
            .map_err(|e| refused(uri, format!("window {}: {e}", w.window_id)))?;
        let verified = verify_statement(&envelope, trust)
            .map_err(|e| refused(uri, format!("window {}: {e}", w.window_id)))?;
        if verified.payload_digest() != w.attestation_digest {
            return Err(refused(
                uri,
                format!("window {}: row and statement differ", w.window_id),
            ));
        }
        entries.push(window_entry(uri, w)?);
    }
    let at = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    Ok(InferenceEntry {
        table: uri.to_owned(),
        spec,
        from: at(i.from),
        to: at(i.to),
        verified_version: report.version,
        windows: entries,
    })
}

fn window_entry(uri: &str, w: &WindowRow) -> Result<WindowEntry, Error> {
    Ok(WindowEntry {
        window_id: w.window_id.clone(),
        sequence: w.sequence,
        first: RecordPos {
            version: w.first_version,
            index: w.first_index,
        }
        .into(),
        last: RecordPos {
            version: w.last_version,
            index: w.last_index,
        }
        .into(),
        first_timestamp_ms: w.first_timestamp_ms,
        last_timestamp_ms: w.last_timestamp_ms,
        leaf_count: w.leaf_count,
        merkle_root: w.merkle_root,
        attestation_digest: w.attestation_digest,
        envelope: envelope_value(uri, &w.envelope)?,
    })
}

/// The spec asked for, or the table's only one.
fn choose_spec(uri: &str, rows: &[WindowRow], asked: Option<&str>) -> Result<String, Error> {
    let mut specs: Vec<&str> = rows.iter().map(|r| r.spec.as_str()).collect();
    specs.sort_unstable();
    specs.dedup();
    match (asked, specs.as_slice()) {
        (Some(s), _) if specs.contains(&s) => Ok(s.to_owned()),
        (Some(s), _) => Err(refused(uri, format!("no {s} windows are attested"))),
        (None, [one]) => Ok((*one).to_owned()),
        (None, []) => Err(refused(uri, "no stream windows are attested")),
        (None, many) => Err(refused(
            uri,
            format!("windows of several specs ({}): choose one", many.join(", ")),
        )),
    }
}

/// The windows of `spec` that end at or before `through` and whose records lie in
/// `[from, to)`, in chain order.
fn select<'a>(
    rows: &'a [WindowRow],
    spec: &str,
    through: u64,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Vec<&'a WindowRow> {
    let mut out: Vec<&WindowRow> = rows
        .iter()
        .filter(|r| r.spec == spec && r.last_version <= through)
        .filter(|r| from.is_none_or(|f| r.first_timestamp_ms >= f.timestamp_millis()))
        .filter(|r| to.is_none_or(|t| r.last_timestamp_ms < t.timestamp_millis()))
        .collect();
    out.sort_by_key(|r| r.sequence);
    out
}
