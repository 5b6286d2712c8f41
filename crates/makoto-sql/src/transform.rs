//! Cross-table transforms: read input Delta tables pinned to their current versions, write the
//! result to an output table, and attest the new output version with a `transform/v1`
//! statement whose inputs are the input tables' attested subjects.
//!
//! The steps are public so that a Rust pipeline can wrap its own writes:
//! [`PinnedInputs::pin`] → register [`PinnedInputs::tables`] and compute → write → [`attest_output`].

use std::ops::RangeInclusive;
use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::RecordBatch;
use deltalake::protocol::SaveMode;
use makoto_core::Sha256Digest;
use makoto_core::attestation::{
    CrossTableTransform, InputAttestation, InputCheck, InputPolicy, TransformInput, TransformKind,
};
use makoto_core::keys::Signer;
use makoto_core::verify::TrustedKeys;
use makoto_delta::store::has_delta_log;
use makoto_delta::{
    AttestOptions, AttestSummary, AttestationStore, Attestor, Location, SourceTable,
    StorageOptions, Verifier, VerifyMode, VerifyOptions, VersionSpec,
};
use serde::Serialize;

use crate::{Error, MakotoSession, SessionOptions, UserTable};

/// How the output table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    Overwrite,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Overwrite => "overwrite",
        }
    }
}

/// One input, pinned and checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedInput {
    pub name: String,
    pub table_uri: String,
    pub version: u64,
    pub check: &'static str,
    pub level: Option<String>,
    pub state_digest: Option<String>,
    pub attestation_digest: Option<String>,
    /// Why the input is not verified (empty when it is).
    pub problems: Vec<String>,
    #[serde(skip)]
    record: TransformInput,
    #[serde(skip)]
    location: Location,
}

/// The inputs of a transform, each pinned to the version current when it was checked.
#[derive(Debug, Clone)]
pub struct PinnedInputs {
    inputs: Vec<PinnedInput>,
    policy: InputPolicy,
}

impl PinnedInputs {
    /// Pins every input to its current version and verifies it against `trust` (attestation
    /// chain, log, and with [`VerifyMode::Deep`] the data files). Under
    /// [`InputPolicy::RequireVerified`] an input that is not attested or does not verify is an
    /// error; under [`InputPolicy::AllowUnattested`] it is read and recorded as unverified.
    pub async fn pin(
        store: &AttestationStore,
        trust: &TrustedKeys,
        inputs: &[UserTable],
        mode: VerifyMode,
        policy: InputPolicy,
        storage: &StorageOptions,
    ) -> Result<Self, Error> {
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            let source = SourceTable::open(input.location().clone(), storage)?;
            let uri = source.uri().to_owned();
            let log = source.list_log(0).await?;
            let latest = log
                .latest_commit()
                .ok_or_else(|| makoto_delta::Error::NotADeltaTable { table: uri.clone() })?;
            let version = input.version().unwrap_or(latest);
            let commit = source.read_commit_bytes(version).await?;
            let commit_file_digest = Sha256Digest::of(&commit);
            let report = Verifier::new(
                &source,
                store,
                trust,
                VerifyOptions {
                    at: VersionSpec::Version(version),
                    mode,
                    storage: storage.clone(),
                    ..VerifyOptions::default()
                },
            )
            .run()
            .await?;
            let table = store.load_attestations().await?;
            let row = store.attestation_row(&table, &uri, version).await?;
            let mut problems: Vec<String> = report
                .findings
                .iter()
                .filter(|f| f.severity == makoto_delta::Severity::Error)
                .map(|f| format!("{}: {}", f.kind.code(), f.detail))
                .collect();
            if row.is_none() && problems.is_empty() {
                problems.push(format!("{uri}@v{version} is not attested"));
            }
            let verified = problems.is_empty();
            if !verified && policy == InputPolicy::RequireVerified {
                return Err(Error::InputNotVerified {
                    input: input.name().to_owned(),
                    table: uri,
                    version,
                    reason: problems.join("; "),
                });
            }
            let check = match (verified, mode) {
                (false, _) => InputCheck::Unverified,
                (true, VerifyMode::Deep) => InputCheck::VerifiedDeep,
                (true, VerifyMode::LogOnly) => InputCheck::VerifiedLogOnly,
            };
            let attestation = row.as_ref().map(|r| InputAttestation {
                state_root: r.state_digest,
                digest: r.attestation_digest,
                level: r.level,
            });
            out.push(PinnedInput {
                name: input.name().to_owned(),
                table_uri: uri.clone(),
                version,
                check: check.as_str(),
                level: row.as_ref().map(|r| r.level.to_string()),
                state_digest: row.as_ref().map(|r| r.state_digest.to_hex()),
                attestation_digest: row.as_ref().map(|r| r.attestation_digest.to_hex()),
                problems,
                record: TransformInput {
                    alias: input.name().to_owned(),
                    table_uri: uri,
                    version,
                    commit_file_digest,
                    attestation,
                    check,
                },
                location: input.location().clone(),
            });
        }
        Ok(PinnedInputs {
            inputs: out,
            policy,
        })
    }

    pub fn inputs(&self) -> &[PinnedInput] {
        &self.inputs
    }

    /// The inputs as user tables pinned to their checked versions, to register in a session.
    pub fn tables(&self) -> Vec<UserTable> {
        self.inputs
            .iter()
            .map(|i| UserTable::new(i.name.clone(), i.location.clone(), Some(i.version)))
            .collect()
    }

    /// The record of a transform over these inputs, for [`attest_output`].
    pub fn transform(
        &self,
        name: &str,
        query: &str,
        mode: WriteMode,
        started_ms: i64,
    ) -> CrossTableTransform {
        CrossTableTransform {
            kind: TransformKind::Sql,
            name: name.to_owned(),
            query: query.to_owned(),
            mode: mode.as_str().to_owned(),
            inputs: self.inputs.iter().map(|i| i.record.clone()).collect(),
            policy: self.policy,
            started_ms,
            finished_ms: Utc::now().timestamp_millis(),
        }
    }
}

impl PinnedInputs {
    /// The record of a pipeline's own writes over these inputs (the Python `makoto.transform`
    /// block): `description` says what the code did; its writer chose the write mode.
    pub fn pipeline(&self, name: &str, description: &str, started_ms: i64) -> CrossTableTransform {
        CrossTableTransform {
            kind: TransformKind::Pipeline,
            name: name.to_owned(),
            query: description.to_owned(),
            mode: "external".to_owned(),
            inputs: self.inputs.iter().map(|i| i.record.clone()).collect(),
            policy: self.policy,
            started_ms,
            finished_ms: Utc::now().timestamp_millis(),
        }
    }
}

/// Writes `batches` to the output table (created when missing); returns the new version.
pub async fn write_output(
    output: &Location,
    batches: Vec<RecordBatch>,
    mode: WriteMode,
    storage: &StorageOptions,
) -> Result<u64, Error> {
    let mut table = output.delta_table(storage)?;
    if has_delta_log(output, storage).await? {
        table.load().await.map_err(|source| Error::Open {
            table: output.as_uri(),
            source: Box::new(source),
        })?;
    }
    let written = table
        .write(batches)
        .with_save_mode(match mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        })
        .await
        .map_err(|source| Error::Write {
            table: output.as_uri(),
            source: Box::new(source),
        })?;
    written
        .version()
        .ok_or_else(|| Error::TransformNotRecorded {
            table: output.as_uri(),
            reason: "the write returned no version".into(),
        })
}

/// Attests the output table through `version`, recording `transform` as the inputs of that
/// version. Earlier unattested versions of the output are attested too.
pub async fn attest_output(
    store: &AttestationStore,
    output: &Location,
    version: u64,
    transform: CrossTableTransform,
    signer: Option<Arc<dyn Signer>>,
    options: AttestOptions,
) -> Result<AttestSummary, Error> {
    attest_outputs(store, output, version..=version, transform, signer, options).await
}

/// Attests the output table through the end of `versions`, recording `transform` as the
/// inputs of every version in it (the commits a pipeline made between pinning and attesting).
/// Earlier unattested versions are attested as plain commits. Fails when another run attested
/// one of `versions` first, without the inputs.
pub async fn attest_outputs(
    store: &AttestationStore,
    output: &Location,
    versions: RangeInclusive<u64>,
    transform: CrossTableTransform,
    signer: Option<Arc<dyn Signer>>,
    mut options: AttestOptions,
) -> Result<AttestSummary, Error> {
    let source = SourceTable::open(output.clone(), &options.storage)?;
    let uri = source.uri().to_owned();
    options.to_version = Some(*versions.end());
    options.transforms = versions.clone().map(|v| (v, transform.clone())).collect();
    let summary = Attestor::new(source, store.clone(), signer, options)
        .run()
        .await?;
    if let Some(missed) = versions
        .clone()
        .find(|v| !summary.attested.iter().any(|a| a.version == *v))
    {
        return Err(Error::TransformNotRecorded {
            table: uri,
            reason: format!(
                "version {missed} was attested by another run before this one, without the transform's inputs"
            ),
        });
    }
    Ok(summary)
}

/// A SQL transform, as `makoto transform` runs it.
#[derive(Debug, Clone)]
pub struct SqlTransform {
    pub name: String,
    pub query: String,
    pub inputs: Vec<UserTable>,
    pub output: Location,
    pub mode: WriteMode,
    pub policy: InputPolicy,
    pub input_check: VerifyMode,
}

/// What a transform did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformOutcome {
    pub output: String,
    pub version: u64,
    pub rows_written: u64,
    pub inputs: Vec<PinnedInput>,
    pub subject: String,
    pub state_digest: String,
    pub attestation_digest: String,
    pub level: String,
    pub attested_versions: Vec<u64>,
}

impl SqlTransform {
    /// Transform inputs are read at their current version: an input pinned with `@vN` is
    /// refused. [`SqlTransform::run`] checks it too; front ends call it before opening anything.
    pub fn check_inputs(inputs: &[UserTable]) -> Result<(), Error> {
        match inputs.iter().find(|i| i.version().is_some()) {
            Some(pinned) => Err(Error::TableSpec {
                spec: pinned.name().to_owned(),
                reason: "transforms read the current version of each input; drop the @v suffix"
                    .into(),
            }),
            None => Ok(()),
        }
    }

    pub async fn run(
        &self,
        store: &AttestationStore,
        trust: &TrustedKeys,
        signer: Option<Arc<dyn Signer>>,
        options: AttestOptions,
    ) -> Result<TransformOutcome, Error> {
        Self::check_inputs(&self.inputs)?;
        let started_ms = Utc::now().timestamp_millis();
        let storage = options.storage.clone();
        let pinned = PinnedInputs::pin(
            store,
            trust,
            &self.inputs,
            self.input_check,
            self.policy,
            &storage,
        )
        .await?;
        let session = MakotoSession::open_with(
            store.warehouse(),
            SessionOptions {
                storage: storage.clone(),
                trust: trust.clone(),
                tables: pinned.tables(),
            },
        )
        .await?;
        let df = session.context().sql(&self.query).await?;
        let schema = df.schema().as_arrow().clone();
        let mut batches = df.collect().await?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(Arc::new(schema)));
        }
        let rows_written = batches.iter().map(|b| b.num_rows() as u64).sum();
        let version = write_output(&self.output, batches, self.mode, &storage).await?;
        let transform = pinned.transform(&self.name, &self.query, self.mode, started_ms);
        let summary =
            attest_output(store, &self.output, version, transform, signer, options).await?;
        let attested = summary
            .attested
            .iter()
            .find(|a| a.version == version)
            .ok_or_else(|| Error::TransformNotRecorded {
                table: summary.table_uri.clone(),
                reason: format!("version {version} missing from the attest summary"),
            })?;
        Ok(TransformOutcome {
            output: summary.table_uri.clone(),
            version,
            rows_written,
            inputs: pinned.inputs().to_vec(),
            subject: format!("{}@v{version}", summary.table_uri),
            state_digest: attested.state_digest.to_hex(),
            attestation_digest: attested.attestation_digest.to_hex(),
            level: summary.level.to_string(),
            attested_versions: summary.attested.iter().map(|a| a.version).collect(),
        })
    }
}
