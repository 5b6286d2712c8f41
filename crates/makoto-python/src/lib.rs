//! `makoto._native`: the extension module of the Python package `makoto-delta`.
//!
//! Each function parses its Python arguments, calls the library (`makoto-delta`, `makoto-sql`)
//! on a shared runtime with the GIL released (see [`runtime`]), and returns the same serde
//! shapes the CLI prints with `--json`, as Python objects; `sql` returns a `pyarrow.Table`
//! through the Arrow C data interface. The typed, documented API is the pure-Python package
//! around it (`python/makoto/`).

mod errors;
mod kafka;
mod runtime;
mod transform;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_pyarrow::ToPyArrow;
use chrono::{DateTime, Utc};
use makoto_core::key_source::KeySource;
use makoto_core::keys::Signer;
use makoto_core::verify::TrustedKeys;
use makoto_delta::gate::{self, GateOptions, Upstream};
use makoto_delta::identity;
use makoto_delta::verify::{RecordSigner, UnsignedRows};
use makoto_delta::{
    AttestOptions, AttestationStore, Attestor, Location, ReaderCheck, SourceTable, StorageOptions,
    Verifier, VerifyMode, VerifyOptions, VersionSpec, keyfile,
};
use pyo3::prelude::*;
use pyo3::types::PyList;

use errors::{delta_error, internal, invalid_argument, sql_error};

type DeltaResult<T> = Result<T, makoto_delta::Error>;

fn storage(options: Option<HashMap<String, String>>) -> StorageOptions {
    StorageOptions(options.unwrap_or_default())
}

fn to_python<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    Ok(pythonize::pythonize(py, value)
        .map_err(|e| internal(format!("cannot convert the result: {e}")))?
        .unbind())
}

fn mode(log_only: bool) -> VerifyMode {
    if log_only {
        VerifyMode::LogOnly
    } else {
        VerifyMode::Deep
    }
}

/// Opens `key`: a key file path, or a `pkcs11:` URI (a key in a PKCS#11 token).
fn load_key(key: Option<PathBuf>) -> PyResult<Option<Arc<dyn Signer>>> {
    let Some(key) = key else { return Ok(None) };
    let source = match key.to_str() {
        Some(s) if s.starts_with("pkcs11:") => s.parse().map_err(|e| {
            let reason = match e {
                makoto_core::Error::InvalidKey { reason, .. } => reason,
                other => other.to_string(),
            };
            let path = s.split_once('?').map_or(s, |(path, _)| path);
            delta_error(makoto_delta::Error::Pkcs11 {
                key: path.into(),
                reason,
            })
        })?,
        _ => KeySource::File(key),
    };
    Ok(Some(
        makoto_delta::signer::open(&source)
            .map_err(delta_error)?
            .signer,
    ))
}

fn load_trust(path: &std::path::Path) -> PyResult<TrustedKeys> {
    keyfile::load_trust(path).map_err(delta_error)
}

/// The table to check, named as its attestations name it (as the CLI opens it).
async fn attested_table(
    table: &str,
    attested_as: Option<&str>,
    store: &AttestationStore,
    storage: &StorageOptions,
) -> DeltaResult<SourceTable> {
    Ok(identity::open_attested(table, attested_as, store, storage)
        .await?
        .0)
}

async fn existing_warehouse(uri: &str, storage: &StorageOptions) -> DeltaResult<AttestationStore> {
    AttestationStore::open_existing(Location::existing(uri)?, storage.clone()).await
}

/// Writes a new key pair (`algorithm` "ed25519" or "ecdsa-p256") to `prefix.key` (mode
/// 0600) and `prefix.pub`.
#[pyfunction]
#[pyo3(signature = (prefix, algorithm="ed25519"))]
fn keygen(py: Python<'_>, prefix: PathBuf, algorithm: &str) -> PyResult<Py<PyAny>> {
    let algorithm: makoto_core::keys::Algorithm = algorithm
        .parse()
        .map_err(|e: makoto_core::Error| invalid_argument(e.to_string()))?;
    let key = keyfile::generate(&prefix, algorithm).map_err(delta_error)?;
    let out = serde_json::json!({
        "keyid": key.keyid.as_str(),
        "algorithm": algorithm.name(),
        "privateKey": key.private_key.display().to_string(),
        "publicKey": key.public_key.display().to_string(),
    });
    to_python(py, &out)
}

/// Attests the table's new commits into the warehouse; returns the run summary.
#[pyfunction]
#[pyo3(signature = (table, *, warehouse, key=None, to_version=None, storage_options=None, batch_size=None, batch_mib=None, parallelism=None, tsa=None, identity=None))]
#[allow(clippy::too_many_arguments)]
fn attest(
    py: Python<'_>,
    table: String,
    warehouse: String,
    key: Option<PathBuf>,
    to_version: Option<u64>,
    storage_options: Option<HashMap<String, String>>,
    batch_size: Option<usize>,
    batch_mib: Option<u64>,
    parallelism: Option<usize>,
    tsa: Option<String>,
    identity: Option<String>,
) -> PyResult<Py<PyAny>> {
    let signer = load_key(key)?;
    let storage = storage(storage_options);
    let mut options = AttestOptions {
        to_version,
        identity,
        storage: storage.clone(),
        ..AttestOptions::default()
    };
    if let Some(n) = batch_size {
        options.batch_size = n.max(1);
    }
    if let Some(mib) = batch_mib {
        options.batch_bytes = mib.saturating_mul(1 << 20);
    }
    if let Some(p) = parallelism {
        options.parallelism = p.max(1);
    }
    let summary = runtime::run(py, async move {
        let source = SourceTable::open(Location::existing(&table)?, &storage)?;
        options.tsa =
            makoto_delta::tsa::TsaClient::for_run(tsa.as_deref(), signer.is_some()).await?;
        let store = AttestationStore::create(Location::create(&warehouse)?, storage).await?;
        Attestor::new(source, store, signer, options).run().await
    })?
    .map_err(delta_error)?;
    to_python(py, &summary)
}

fn parse_time(s: &str) -> PyResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid_argument(format!(
                "timestamp {s:?} is not an RFC 3339 time such as 2026-11-21T12:00:00Z"
            ))
        })
}

fn reader_check(name: &str) -> PyResult<ReaderCheck> {
    match name {
        "delta-rs" => Ok(ReaderCheck::DeltaRs),
        "skip" => Ok(ReaderCheck::Skip),
        other => Err(invalid_argument(format!(
            "reader_check {other:?}: expected \"delta-rs\" or \"skip\""
        ))),
    }
}

/// Verifies a version of the table against the warehouse's signed attestations.
#[pyfunction]
#[pyo3(signature = (table, *, warehouse, trust, version=None, timestamp=None, log_only=false, allow_unsigned=false, since_last=false, key=None, record=true, reader_check="delta-rs", attested_as=None, storage_options=None, parallelism=None))]
#[allow(clippy::too_many_arguments)]
fn verify(
    py: Python<'_>,
    table: String,
    warehouse: String,
    trust: PathBuf,
    version: Option<u64>,
    timestamp: Option<String>,
    log_only: bool,
    allow_unsigned: bool,
    since_last: bool,
    key: Option<PathBuf>,
    record: bool,
    reader_check: &str,
    attested_as: Option<String>,
    storage_options: Option<HashMap<String, String>>,
    parallelism: Option<usize>,
) -> PyResult<Py<PyAny>> {
    let trust = load_trust(&trust)?;
    let at = match (version, timestamp.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(invalid_argument(
                "give version or timestamp, not both".to_owned(),
            ));
        }
        (Some(v), None) => VersionSpec::Version(v),
        (None, Some(t)) => VersionSpec::Timestamp(parse_time(t)?),
        (None, None) => VersionSpec::Latest,
    };
    let storage = storage(storage_options);
    let mut options = VerifyOptions {
        at,
        mode: mode(log_only),
        unsigned: if allow_unsigned {
            UnsignedRows::Warn
        } else {
            UnsignedRows::Fail
        },
        storage: storage.clone(),
        reader_check: self::reader_check(reader_check)?,
        since_last,
        ..VerifyOptions::default()
    };
    if let Some(p) = parallelism {
        options.parallelism = p.max(1);
    }
    options.record = match (record, load_key(key)?) {
        (false, _) => None,
        (true, Some(k)) => Some(RecordSigner::Signed(k)),
        (true, None) => Some(RecordSigner::Unsigned),
    };
    let report = runtime::run(py, async move {
        let store = existing_warehouse(&warehouse, &storage).await?;
        let source = attested_table(&table, attested_as.as_deref(), &store, &storage).await?;
        Verifier::new(&source, &store, &trust, options).run().await
    })?
    .map_err(delta_error)?;
    to_python(py, &report)
}

/// The gate: is the table version attested at `min_level` or above and verified (and,
/// with `upstream`, every table version it was derived from)?
#[pyfunction]
#[pyo3(signature = (table, *, warehouse, trust, version=None, min_level=2, upstream=false, log_only=false, attested_as=None, storage_options=None))]
#[allow(clippy::too_many_arguments)]
fn check(
    py: Python<'_>,
    table: String,
    warehouse: String,
    trust: PathBuf,
    version: Option<u64>,
    min_level: u8,
    upstream: bool,
    log_only: bool,
    attested_as: Option<String>,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<Py<PyAny>> {
    let trust = load_trust(&trust)?;
    let min_level = match min_level {
        1 => makoto_core::attestation::MakotoLevel::L1,
        2 => makoto_core::attestation::MakotoLevel::L2,
        3 => makoto_core::attestation::MakotoLevel::L3,
        n => {
            return Err(invalid_argument(format!(
                "min_level {n}: expected 1, 2 or 3"
            )));
        }
    };
    let storage = storage(storage_options);
    let options = GateOptions {
        at: version.map_or(VersionSpec::Latest, VersionSpec::Version),
        min_level,
        upstream: if upstream {
            Upstream::Check
        } else {
            Upstream::Ignore
        },
        mode: mode(log_only),
        storage: storage.clone(),
        ..GateOptions::default()
    };
    let report = runtime::run(py, async move {
        let store = existing_warehouse(&warehouse, &storage).await?;
        let source = attested_table(&table, attested_as.as_deref(), &store, &storage).await?;
        gate::check(&store, &trust, &source, &options).await
    })?
    .map_err(delta_error)?;
    to_python(py, &report)
}

/// The DBOM of a table version: `(document, envelope_json)`; the envelope is `None` without a key.
#[pyfunction]
#[pyo3(signature = (table, *, warehouse, key=None, trust=None, version=None, log_only=false, attested_as=None, storage_options=None, tsa=None))]
#[allow(clippy::too_many_arguments)]
fn dbom(
    py: Python<'_>,
    table: String,
    warehouse: String,
    key: Option<PathBuf>,
    trust: Option<PathBuf>,
    version: Option<u64>,
    log_only: bool,
    attested_as: Option<String>,
    storage_options: Option<HashMap<String, String>>,
    tsa: Option<String>,
) -> PyResult<(Py<PyAny>, Option<String>)> {
    use makoto_delta::dbom::{self, DbomVerification};
    let key = load_key(key)?;
    let trust = keyfile::trust_or_own(trust.as_deref(), key.as_ref().map(|k| k.public_key()))
        .map_err(delta_error)?;
    let storage = storage(storage_options);
    let gate_options = GateOptions {
        mode: mode(log_only),
        storage: storage.clone(),
        ..GateOptions::default()
    };
    let (doc, envelope) = runtime::run(py, async move {
        let tsa = makoto_delta::tsa::TsaClient::for_run(tsa.as_deref(), key.is_some()).await?;
        let store = existing_warehouse(&warehouse, &storage).await?;
        let source = attested_table(&table, attested_as.as_deref(), &store, &storage).await?;
        let verification = match &trust {
            Some(t) => DbomVerification::Trusted(t, gate_options),
            None => DbomVerification::NotVerified,
        };
        let doc = dbom::build(&store, &source, version, verification).await?;
        let envelope = match &key {
            Some(k) => {
                let mut envelope = dbom::sign(&doc, k.as_ref())?;
                if let Some(tsa) = &tsa {
                    tsa.stamp(&mut envelope, "the DBOM").await?;
                }
                Some(envelope.to_json())
            }
            None => None,
        };
        Ok::<_, makoto_delta::Error>((doc, envelope))
    })?
    .map_err(delta_error)?;
    Ok((to_python(py, &doc)?, envelope))
}

/// Signs the warehouse's current head: `(envelope_json, entries)`.
#[pyfunction]
#[pyo3(signature = (*, warehouse, key, storage_options=None, tsa=None))]
fn head(
    py: Python<'_>,
    warehouse: String,
    key: PathBuf,
    storage_options: Option<HashMap<String, String>>,
    tsa: Option<String>,
) -> PyResult<(String, Py<PyAny>)> {
    let key = load_key(Some(key))?.ok_or_else(|| internal("no signing key"))?;
    let storage = storage(storage_options);
    let (envelope, entries) = runtime::run(py, async move {
        let tsa = makoto_delta::tsa::TsaClient::for_run(tsa.as_deref(), true).await?;
        let store = existing_warehouse(&warehouse, &storage).await?;
        makoto_delta::head::sign_current_head(&store, key.as_ref(), tsa.as_ref()).await
    })?
    .map_err(delta_error)?;
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "table": e.table,
                "tableId": e.table_id,
                "version": e.version,
                "attestationDigest": e.attestation_digest.to_hex(),
                "stateDigest": e.state_digest.to_hex(),
            })
        })
        .collect();
    Ok((envelope.to_json(), to_python(py, &entries)?))
}

/// Runs a SQL query over the warehouse's `system.makoto.*` tables (and `tables`, given as
/// `NAME=URI` or `NAME=URI@vN`); returns a `pyarrow.Table`.
#[pyfunction]
#[pyo3(signature = (query, *, warehouse, tables=None, trust=None, storage_options=None))]
fn sql(
    py: Python<'_>,
    query: String,
    warehouse: String,
    tables: Option<Vec<String>>,
    trust: Option<PathBuf>,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<Py<PyAny>> {
    use makoto_sql::{MakotoSession, SessionOptions, UserTable};
    let tables = tables
        .unwrap_or_default()
        .iter()
        .map(|spec| UserTable::parse(spec))
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    let trust = match trust {
        Some(p) => load_trust(&p)?,
        None => TrustedKeys::default(),
    };
    let storage = storage(storage_options);
    let (schema, batches): (SchemaRef, Vec<RecordBatch>) = runtime::run(py, async move {
        let session = MakotoSession::open_with(
            &Location::existing(&warehouse)?,
            SessionOptions {
                storage,
                trust,
                tables,
            },
        )
        .await?;
        session.query(&query).await
    })?
    .map_err(sql_error)?;
    let pa = py.import("pyarrow")?;
    let py_batches = PyList::empty(py);
    for b in &batches {
        py_batches.append(b.to_pyarrow(py)?)?;
    }
    let py_schema = schema.as_ref().to_pyarrow(py)?;
    Ok(pa
        .getattr("Table")?
        .call_method1("from_batches", (py_batches, py_schema))?
        .unbind())
}

/// A portable proof that `file` is a live file of the table at `version` (or, with `record`
/// as `(version, index)`, that a record is in an attested stream window): the proof file's
/// bytes, canonical JSON ending in one newline, as `makoto prove` writes them.
#[pyfunction]
#[pyo3(signature = (table, *, warehouse, file=None, version=None, record=None, attested_as=None, storage_options=None))]
#[allow(clippy::too_many_arguments)]
fn prove<'py>(
    py: Python<'py>,
    table: String,
    warehouse: String,
    file: Option<String>,
    version: Option<u64>,
    record: Option<(u64, u64)>,
    attested_as: Option<String>,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let storage = storage(storage_options);
    let what = match (record, file, version) {
        (Some((version, index)), None, None) => {
            Ok(makoto_core::window::RecordPos { version, index })
        }
        (None, Some(file), Some(version)) => Err((file, version)),
        _ => {
            return Err(invalid_argument(
                "give file= and version=, or record=(version, index)",
            ));
        }
    };
    let mut bytes = runtime::run(py, async move {
        let store = existing_warehouse(&warehouse, &storage).await?;
        let source = attested_table(&table, attested_as.as_deref(), &store, &storage).await?;
        match what {
            Ok(pos) => makoto_delta::windows::prove_record(&source, &store, pos)
                .await?
                .to_json_bytes(),
            Err((file, version)) => {
                makoto_delta::proof::prove(&store, source.uri(), &file, version)
                    .await?
                    .to_json_bytes()
                    .map_err(|e| makoto_delta::Error::core("encoding the proof", e))
            }
        }
    })?
    .map_err(delta_error)?;
    bytes.push(b'\n');
    Ok(pyo3::types::PyBytes::new(py, &bytes))
}

/// Checks a proof file's bytes against the trusted keys, offline: `(True, summary, report)`
/// when it holds, `(False, reason, None)` when it does not.
#[pyfunction]
fn verify_proof(
    py: Python<'_>,
    proof: &[u8],
    trust: PathBuf,
) -> PyResult<(bool, String, Option<Py<PyAny>>)> {
    use makoto_delta::proof::ProofOutcome;
    let trust = load_trust(&trust)?;
    match makoto_delta::proof::verify_proof(proof, &trust).map_err(delta_error)? {
        ProofOutcome::Verified { summary, report } => {
            Ok((true, summary, Some(to_python(py, &report)?)))
        }
        ProofOutcome::Invalid { reason } => Ok((false, reason, None)),
    }
}

/// Runs the `makoto` command line with `argv` (argv[0] is the program name); returns the exit
/// status (0 ok, 1 findings, 2 could not run). Output goes to this process's stdout/stderr.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| makoto_cli::run_status(argv, &mut std::io::stdout().lock()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(attest, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(dbom, m)?)?;
    m.add_function(wrap_pyfunction!(head, m)?)?;
    m.add_function(wrap_pyfunction!(sql, m)?)?;
    m.add_function(wrap_pyfunction!(prove, m)?)?;
    m.add_function(wrap_pyfunction!(verify_proof, m)?)?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(transform::begin_transform, m)?)?;
    m.add_class::<transform::PendingTransform>()?;
    m.add_function(wrap_pyfunction!(kafka::kafka_headers, m)?)?;
    m.add_function(wrap_pyfunction!(kafka::kafka_next_offset, m)?)?;
    m.add_class::<kafka::KafkaWindows>()?;
    Ok(())
}
