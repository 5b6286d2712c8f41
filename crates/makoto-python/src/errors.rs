//! The exception hierarchy, and the one place library errors become Python exceptions.
//!
//! ```text
//! MakotoError                 every error the package raises; .kind .table .version .path
//! ├── VerificationFailed      findings, a corrupt or untrusted attestation store, a bad proof
//! ├── UnattestedInput         a table (version) with no attestation, an input that fails the gate
//! ├── StorageError            object-store I/O, a missing data file
//! └── InvalidKey              a key or trust file that cannot be used
//! ```

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    MakotoError,
    PyException,
    "Base of every error makoto raises. Attributes: kind, table, version, path (None when not known)."
);
create_exception!(
    _native,
    VerificationFailed,
    MakotoError,
    "Verification found a problem: findings, a corrupt or untrusted attestation, a bad proof."
);
create_exception!(
    _native,
    UnattestedInput,
    MakotoError,
    "A table or version is not attested (with a trusted key) in the warehouse."
);
create_exception!(
    _native,
    StorageError,
    MakotoError,
    "Storage could not be read or written, or a file the log names is missing."
);
create_exception!(
    _native,
    InvalidKey,
    MakotoError,
    "A key file or trust file is missing, unreadable or malformed."
);

#[derive(Clone, Copy)]
enum Class {
    Base,
    Verification,
    Unattested,
    Storage,
    Key,
}

/// What a Python exception carries: its class, a stable kind code and the structured fields.
struct Described<'a> {
    class: Class,
    kind: &'static str,
    table: Option<&'a str>,
    version: Option<u64>,
    path: Option<&'a str>,
}

impl<'a> Described<'a> {
    fn new(class: Class, kind: &'static str) -> Self {
        Described {
            class,
            kind,
            table: None,
            version: None,
            path: None,
        }
    }
    fn table(mut self, table: &'a str) -> Self {
        self.table = Some(table);
        self
    }
    fn version(mut self, version: impl Into<Option<u64>>) -> Self {
        self.version = version.into();
        self
    }
    fn path(mut self, path: &'a str) -> Self {
        self.path = Some(path);
        self
    }
}

fn describe_delta(e: &makoto_delta::Error) -> Described<'_> {
    use Class::*;
    use makoto_delta::Error as E;
    let d = Described::new;
    match e {
        E::InvalidLocation { input, .. } => d(Base, "invalid_location").path(input),
        E::NotADeltaTable { table } => d(Base, "not_a_delta_table").table(table),
        E::LogGap { table, version } => d(Base, "log_gap").table(table).version(*version),
        E::LogCleaned { table, first } => d(Base, "log_cleaned").table(table).version(*first),
        E::VersionNotFound {
            table, requested, ..
        } => d(Base, "version_not_found")
            .table(table)
            .version(*requested),
        E::CorruptCommit { table, .. } => d(Base, "corrupt_commit").table(table),
        E::InvalidLog { table, version, .. } => {
            d(Base, "invalid_log").table(table).version(*version)
        }
        E::UnsupportedReaderFeature { table, version, .. } => d(Base, "unsupported_reader_feature")
            .table(table)
            .version(*version),
        E::FileMissing {
            table,
            version,
            path,
            ..
        } => d(Storage, "file_missing")
            .table(table)
            .version(*version)
            .path(path),
        E::FileSizeMismatch {
            table,
            version,
            path,
            ..
        } => d(Base, "file_size_mismatch")
            .table(table)
            .version(*version)
            .path(path),
        E::Storage { location, .. } => d(Storage, "storage").path(location),
        E::Delta { table, .. } => d(Storage, "delta").table(table),
        E::Query { table, .. } => d(Base, "query").table(table),
        E::TableReplaced { table, .. } => d(Verification, "table_replaced").table(table),
        E::LogBehindAttestations {
            table, attested, ..
        } => d(Verification, "log_behind_attestations")
            .table(table)
            .version(*attested),
        E::StoreCorrupt { store, .. } => d(Verification, "store_corrupt").path(store),
        E::StatePageMissing { store, .. } => d(Verification, "state_page_missing").path(store),
        E::KeyFile { path, .. } => d(Key, "key_file").path(path),
        E::Pkcs11 { key, .. } => d(Key, "pkcs11").path(key),
        E::TrustFile { path, .. } => d(Key, "trust_file").path(path),
        E::Core { .. } => d(Base, "core"),
        E::Tsa { url, .. } => d(Storage, "tsa").path(url),
        E::TooManyConflicts { table, .. } => d(Base, "too_many_conflicts").table(table),
        E::Interrupted { .. } => d(Base, "interrupted"),
        E::Task { .. } => d(Base, "task"),
        E::NotAttested { table, version } => {
            d(Unattested, "not_attested").table(table).version(*version)
        }
        E::AttestationUntrusted { table, version, .. } => d(Verification, "attestation_untrusted")
            .table(table)
            .version(*version),
        E::RecordNotInWindow { table, version, .. } => d(Verification, "record_not_in_window")
            .table(table)
            .version(*version),
        E::ProofInvalid { .. } => d(Verification, "proof_invalid"),
        E::ProofNotJson { .. } => d(Base, "proof_not_json"),
        E::WarehouseNotFound { warehouse } => d(Base, "warehouse_not_found").path(warehouse),
        E::AmbiguousTable { table, .. } => d(Base, "ambiguous_table").table(table),
        _ => d(Base, "other"),
    }
}

fn describe_sql(e: &makoto_sql::Error) -> Described<'_> {
    use Class::*;
    use makoto_sql::Error as E;
    let d = Described::new;
    match e {
        E::Store(inner) => describe_delta(inner),
        E::Open { table, .. } => d(Storage, "open").table(table),
        E::Sql { .. } => d(Base, "sql"),
        E::InputNotVerified {
            input,
            table,
            version,
            ..
        } => d(Unattested, "input_not_verified")
            .table(table)
            .version(*version)
            .path(input),
        E::Write { table, .. } => d(Storage, "write").table(table),
        E::TransformNotRecorded { table, .. } => d(Base, "transform_not_recorded").table(table),
        E::TableSpec { spec, .. } => d(Base, "table_spec").path(spec),
        _ => d(Base, "other"),
    }
}

fn describe_kafka(e: &makoto_kafka::Error) -> Described<'_> {
    use Class::*;
    use makoto_kafka::Error as E;
    let d = Described::new;
    match e {
        E::Warehouse(inner) => describe_delta(inner),
        E::Connect { brokers, .. } => d(Storage, "kafka_connect").path(brokers),
        E::Partition { topic, .. } => d(Storage, "kafka_partition").table(topic),
        E::NoTopic { topic, .. } => d(Base, "kafka_no_topic").table(topic),
        _ => d(Base, "kafka"),
    }
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out.replace('\n', " ")
}

fn raise(d: Described<'_>, message: String) -> PyErr {
    let err = match d.class {
        Class::Base => MakotoError::new_err(message),
        Class::Verification => VerificationFailed::new_err(message),
        Class::Unattested => UnattestedInput::new_err(message),
        Class::Storage => StorageError::new_err(message),
        Class::Key => InvalidKey::new_err(message),
    };
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("kind", d.kind);
        let _ = value.setattr("table", d.table);
        let _ = value.setattr("version", d.version);
        let _ = value.setattr("path", d.path);
    });
    err
}

pub(crate) fn delta_error(e: makoto_delta::Error) -> PyErr {
    raise(describe_delta(&e), one_line(&e))
}

pub(crate) fn sql_error(e: makoto_sql::Error) -> PyErr {
    raise(describe_sql(&e), one_line(&e))
}

pub(crate) fn kafka_error(e: makoto_kafka::Error) -> PyErr {
    raise(describe_kafka(&e), one_line(&e))
}

/// A failure of the binding itself (runtime, conversion), not of the library.
pub(crate) fn internal(message: impl Into<String>) -> PyErr {
    raise(Described::new(Class::Base, "internal"), message.into())
}

/// Bad arguments from the caller: a `ValueError`, as Python functions raise.
pub(crate) fn invalid_argument(message: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(message.into())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MakotoError", py.get_type::<MakotoError>())?;
    m.add("VerificationFailed", py.get_type::<VerificationFailed>())?;
    m.add("UnattestedInput", py.get_type::<UnattestedInput>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("InvalidKey", py.get_type::<InvalidKey>())?;
    Ok(())
}
