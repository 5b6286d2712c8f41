//! Transforms written by Python code (`makoto.transform`): the inputs are pinned at their
//! latest attested versions and verified when the block begins; on a clean exit the output's
//! new commits are attested as `transform/v1` statements whose inputs are those versions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use makoto_core::attestation::InputPolicy;
use makoto_core::keys::Signer;
use makoto_delta::store::has_delta_log;
use makoto_delta::{
    AttestOptions, AttestationStore, Location, SourceTable, StorageOptions, keyfile,
};
use makoto_sql::UserTable;
use makoto_sql::transform::{PinnedInputs, attest_outputs};
use pyo3::prelude::*;

use crate::errors::{delta_error, internal, sql_error};
use crate::{load_key, mode, runtime, storage, to_python};

/// The latest version of `output`, or `None` when it is not a Delta table yet.
async fn output_version(
    output: &str,
    storage: &StorageOptions,
) -> Result<Option<u64>, makoto_delta::Error> {
    let Ok(location) = Location::existing(output) else {
        return Ok(None);
    };
    if !has_delta_log(&location, storage).await? {
        return Ok(None);
    }
    let source = SourceTable::open(location, storage)?;
    Ok(source.list_log(0).await?.latest_commit())
}

/// A transform in progress: its pinned inputs and the output's version when it began.
#[pyclass(module = "makoto._native", frozen)]
pub(crate) struct PendingTransform {
    name: String,
    description: String,
    output: String,
    output_before: Option<u64>,
    started_ms: i64,
    pinned: PinnedInputs,
    store: AttestationStore,
    signer: Arc<dyn Signer>,
    storage: StorageOptions,
}

#[pymethods]
impl PendingTransform {
    /// The pinned inputs: name, tableUri, version, check, level, stateDigest,
    /// attestationDigest, problems.
    fn inputs(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.pinned.inputs())
    }

    /// The output's latest version when the transform began (`None`: no table yet).
    #[getter]
    fn output_before(&self) -> Option<u64> {
        self.output_before
    }

    /// The output's latest version now (`None`: still no table).
    fn output_now(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        let (output, storage) = (self.output.clone(), self.storage.clone());
        runtime::run(py, async move { output_version(&output, &storage).await })?
            .map_err(delta_error)
    }

    /// Attests the output's commits made since the transform began, with the pinned inputs;
    /// returns the attest summary. Fails when the output has no new commit.
    fn commit(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let first = self.output_before.map_or(0, |v| v + 1);
        let Some(last) = self.output_now(py)?.filter(|v| *v >= first) else {
            return Err(sql_error(makoto_sql::Error::TransformNotRecorded {
                table: self.output.clone(),
                reason: "the block wrote no commit to the output, so there is nothing to attest"
                    .into(),
            }));
        };
        let transform = self
            .pinned
            .pipeline(&self.name, &self.description, self.started_ms);
        let options = AttestOptions {
            storage: self.storage.clone(),
            ..AttestOptions::default()
        };
        let (store, signer, output) =
            (self.store.clone(), self.signer.clone(), self.output.clone());
        let summary = runtime::run(py, async move {
            let location = Location::existing(&output)?;
            attest_outputs(
                &store,
                &location,
                first..=last,
                transform,
                Some(signer),
                options,
            )
            .await
        })?
        .map_err(sql_error)?;
        to_python(py, &summary)
    }
}

/// Pins and verifies the inputs, notes the output's version: the start of a transform.
#[pyfunction]
#[pyo3(signature = (name, *, inputs, output, warehouse, key, trust=None, description=None, log_only=false, allow_unattested=false, storage_options=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn begin_transform(
    py: Python<'_>,
    name: String,
    inputs: BTreeMap<String, String>,
    output: String,
    warehouse: String,
    key: PathBuf,
    trust: Option<PathBuf>,
    description: Option<String>,
    log_only: bool,
    allow_unattested: bool,
    storage_options: Option<std::collections::HashMap<String, String>>,
) -> PyResult<PendingTransform> {
    let signer = load_key(Some(key))?.ok_or_else(|| internal("no signing key"))?;
    let trust = keyfile::trust_or_own(trust.as_deref(), Some(signer.public_key()))
        .map_err(delta_error)?
        .unwrap_or_default();
    let tables = inputs
        .iter()
        .map(|(name, uri)| UserTable::parse(&format!("{name}={uri}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    makoto_sql::transform::SqlTransform::check_inputs(&tables).map_err(sql_error)?;
    let policy = if allow_unattested {
        InputPolicy::AllowUnattested
    } else {
        InputPolicy::RequireVerified
    };
    let storage = storage(storage_options);
    let started_ms = Utc::now().timestamp_millis();
    let (store, pinned, output_before) = {
        let (storage, output) = (storage.clone(), output.clone());
        runtime::run(py, async move {
            let store =
                AttestationStore::create(Location::create(&warehouse)?, storage.clone()).await?;
            let pinned =
                PinnedInputs::pin(&store, &trust, &tables, mode(log_only), policy, &storage)
                    .await?;
            let before = output_version(&output, &storage).await?;
            Ok::<_, makoto_sql::Error>((store, pinned, before))
        })?
        .map_err(sql_error)?
    };
    Ok(PendingTransform {
        description: description.unwrap_or_else(|| format!("Python transform {name}")),
        name,
        output,
        output_before,
        started_ms,
        pinned,
        store,
        signer,
        storage,
    })
}
