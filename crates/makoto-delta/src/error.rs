use makoto_core::Sha256Digest;

/// Errors of reading tables, hashing and keeping the attestation store. One line each, naming
/// the table, version, file or key concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid location {input:?}: {reason}")]
    InvalidLocation { input: String, reason: String },

    #[error("{table} is not a Delta table (no commit files under _delta_log/)")]
    NotADeltaTable { table: String },

    #[error(
        "{table}: commit file for version {version} is missing from _delta_log/ although later versions exist"
    )]
    LogGap { table: String, version: u64 },

    #[error(
        "{table}: commits before version {first} were removed by log cleanup and no checkpoint at or after version {first} (with its commit file) is left to start the chain from"
    )]
    LogCleaned { table: String, first: u64 },

    #[error("{table}: version {requested} does not exist (latest is {latest})")]
    VersionNotFound {
        table: String,
        requested: u64,
        latest: u64,
    },

    #[error("{table}: {source}")]
    CorruptCommit {
        table: String,
        #[source]
        source: makoto_core::Error,
    },

    #[error("{table} version {version}: {reason}")]
    InvalidLog {
        table: String,
        version: u64,
        reason: String,
    },

    #[error(
        "{table} version {version}: requires reader feature {feature:?}, which makoto does not support"
    )]
    UnsupportedReaderFeature {
        table: String,
        version: u64,
        feature: String,
    },

    #[error("{table} version {version}: file {path} is missing{}", explain_missing(*.removed_at))]
    FileMissing {
        table: String,
        version: u64,
        path: String,
        removed_at: Option<u64>,
    },

    #[error("{table} version {version}: file {path} is {actual} bytes but the log says {expected}")]
    FileSizeMismatch {
        table: String,
        version: u64,
        path: String,
        expected: u64,
        actual: u64,
    },

    #[error("storage error on {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: Box<object_store::Error>,
    },

    #[error("Delta error on {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },

    #[error("query on {table} failed: {source}")]
    Query {
        table: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },

    #[error(
        "{table} has been replaced: the attestations are for table id {attested_id}, the log now has {found_id}"
    )]
    TableReplaced {
        table: String,
        attested_id: String,
        found_id: String,
    },

    #[error(
        "{table}: version {attested} is attested but the log ends at version {latest}; the table was rewritten or replaced"
    )]
    LogBehindAttestations {
        table: String,
        attested: u64,
        latest: u64,
    },

    #[error("attestation store {store}: {reason}")]
    StoreCorrupt { store: String, reason: String },

    #[error("state page {page} is missing from {store}")]
    StatePageMissing { store: String, page: Sha256Digest },

    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },

    /// A key in a PKCS#11 token that cannot be used: module, token, PIN, object or signature.
    #[error("PKCS#11 key {key}: {reason}")]
    Pkcs11 { key: String, reason: String },

    #[error("trust file {path}: {reason}")]
    TrustFile { path: String, reason: String },

    /// The time-stamp authority could not be reached, refused, or answered with something that
    /// is not a token for the request.
    #[error("time-stamp authority {url}: {reason}")]
    Tsa { url: String, reason: String },

    #[error("{context}: {source}")]
    Core {
        context: String,
        #[source]
        source: makoto_core::Error,
    },

    #[error("another run attested {table} at the same time; gave up after {attempts} attempts")]
    TooManyConflicts { table: String, attempts: u32 },

    #[error("run interrupted at {phase}")]
    Interrupted { phase: String },

    #[error("internal task failed: {reason}")]
    Task { reason: String },

    #[error("{table}{}: not attested in the warehouse", .version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotAttested { table: String, version: Option<u64> },

    /// An attestation cannot be exported in the format asked for.
    #[error("{table} version {version}: cannot export: {reason}")]
    Export {
        table: String,
        version: u64,
        reason: String,
    },

    #[error("{table}{}: no attestation in the warehouse verifies with the trusted keys ({reason})", .version.map(|v| format!(" version {v}")).unwrap_or_default())]
    AttestationUntrusted {
        table: String,
        version: Option<u64>,
        reason: String,
    },

    /// A table the AI bill of materials would list does not verify, or has nothing to list.
    #[error("{table}: not put in the AI bill of materials: {reason}")]
    AibomRefused { table: String, reason: String },

    #[error("{table} version {version}: record {index} is in no attested window")]
    RecordNotInWindow {
        table: String,
        version: u64,
        index: u64,
    },

    #[error("record proof: {reason}")]
    ProofInvalid { reason: String },

    /// A proof file that is not JSON at all: it could not be read, as opposed to not holding.
    #[error("not JSON: {reason}")]
    ProofNotJson { reason: String },

    #[error(
        "{warehouse}: not a Makoto warehouse (no system/makoto/attestations table); give the warehouse `makoto attest` wrote to"
    )]
    WarehouseNotFound { warehouse: String },

    #[error(
        "{table}: no attestations under this URI, and its table id {table_id} was attested under several: {} — choose one with --as",
        .candidates.join(", ")
    )]
    AmbiguousTable {
        table: String,
        table_id: String,
        candidates: Vec<String>,
    },
}

impl Error {
    /// A stable snake_case name of the error's kind, for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidLocation { .. } => "invalid_location",
            Error::NotADeltaTable { .. } => "not_a_delta_table",
            Error::LogGap { .. } => "log_gap",
            Error::LogCleaned { .. } => "log_cleaned",
            Error::VersionNotFound { .. } => "version_not_found",
            Error::CorruptCommit { .. } => "corrupt_commit",
            Error::InvalidLog { .. } => "invalid_log",
            Error::UnsupportedReaderFeature { .. } => "unsupported_reader_feature",
            Error::FileMissing { .. } => "file_missing",
            Error::FileSizeMismatch { .. } => "file_size_mismatch",
            Error::Storage { .. } => "storage",
            Error::Delta { .. } => "delta",
            Error::Query { .. } => "query",
            Error::TableReplaced { .. } => "table_replaced",
            Error::LogBehindAttestations { .. } => "log_behind_attestations",
            Error::StoreCorrupt { .. } => "store_corrupt",
            Error::StatePageMissing { .. } => "state_page_missing",
            Error::KeyFile { .. } => "key_file",
            Error::Pkcs11 { .. } => "pkcs11",
            Error::TrustFile { .. } => "trust_file",
            Error::Core { .. } => "core",
            Error::Tsa { .. } => "tsa",
            Error::TooManyConflicts { .. } => "too_many_conflicts",
            Error::Interrupted { .. } => "interrupted",
            Error::Task { .. } => "task",
            Error::NotAttested { .. } => "not_attested",
            Error::Export { .. } => "export",
            Error::AttestationUntrusted { .. } => "attestation_untrusted",
            Error::RecordNotInWindow { .. } => "record_not_in_window",
            Error::AibomRefused { .. } => "aibom_refused",
            Error::ProofInvalid { .. } => "proof_invalid",
            Error::ProofNotJson { .. } => "proof_not_json",
            Error::WarehouseNotFound { .. } => "warehouse_not_found",
            Error::AmbiguousTable { .. } => "ambiguous_table",
        }
    }
}

fn explain_missing(removed_at: Option<u64>) -> String {
    match removed_at {
        Some(v) => format!(
            "; it was removed from the table at version {v} and then deleted from storage (VACUUM after the retention period), so this version can no longer be attested from its data"
        ),
        None => {
            "; no later commit removes it, so it was deleted while still part of the table".into()
        }
    }
}

impl Error {
    /// A state page that is not stored, or whose bytes are not the page its id names.
    pub fn is_unusable_page(&self) -> bool {
        matches!(
            self,
            Error::StatePageMissing { .. }
                | Error::Core {
                    source: makoto_core::Error::InvalidStatePage { .. },
                    ..
                }
        )
    }

    pub fn core(context: impl Into<String>, source: makoto_core::Error) -> Self {
        Error::Core {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn delta(table: impl Into<String>, source: deltalake::DeltaTableError) -> Self {
        Error::Delta {
            table: table.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn storage(location: impl Into<String>, source: object_store::Error) -> Self {
        Error::Storage {
            location: location.into(),
            source: Box::new(source),
        }
    }

    /// A local file read outside the object store (batched reads, `stat`s), reported as the
    /// object store's local backend reports it.
    pub(crate) fn local_io(location: impl Into<String>, source: std::io::Error) -> Self {
        Error::storage(
            location,
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            },
        )
    }
}
