//! Rows of `system.makoto.attestations` and `system.makoto.files`.

use makoto_core::Sha256Digest;
use makoto_core::attestation::{ChangeKind, FileChange, MakotoLevel};
use makoto_core::canonical;
use makoto_core::delta::DeletionVector;

use super::columns::{Cell, Col, Kind, RowReader, col};
use crate::Error;

pub(crate) const ATTESTATION_COLUMNS: &[Col] = &[
    col(
        "table_uri",
        Kind::Str,
        false,
        "Canonical URI of the attested table (no trailing slash).",
    ),
    col(
        "table_id",
        Kind::Str,
        false,
        "Delta table id (metaData.id) at this version.",
    ),
    col(
        "version",
        Kind::Long,
        false,
        "Table version (commit number).",
    ),
    col(
        "commit_timestamp",
        Kind::Ts,
        false,
        "Commit time: in-commit timestamp, else commitInfo.timestamp, else the commit file's modification time.",
    ),
    col(
        "timestamp_source",
        Kind::Str,
        false,
        "Where commit_timestamp came from: inCommitTimestamp, commitInfo or fileModificationTime.",
    ),
    col(
        "operation",
        Kind::Str,
        true,
        "commitInfo.operation (WRITE, DELETE, MERGE, OPTIMIZE, …).",
    ),
    col(
        "engine",
        Kind::Str,
        true,
        "commitInfo.engineInfo or clientVersion of the writer.",
    ),
    col(
        "user_name",
        Kind::Str,
        true,
        "commitInfo.userName or userId, when the writer recorded one.",
    ),
    col(
        "predicate_type",
        Kind::Str,
        false,
        "https://makoto.dev/origin/v1 or https://makoto.dev/transform/v1.",
    ),
    col(
        "subject",
        Kind::Str,
        false,
        "Statement subject name: <table_uri>@v<version>.",
    ),
    col(
        "state_digest",
        Kind::Str,
        false,
        "Table-state digest (state-tree root) of this version; the subject's sha256.",
    ),
    col(
        "commit_digest",
        Kind::Str,
        false,
        "SHA-256 of the commit's actions in canonical form.",
    ),
    col(
        "commit_file_digest",
        Kind::Str,
        false,
        "SHA-256 of the commit file's bytes as stored.",
    ),
    col(
        "changes_digest",
        Kind::Str,
        false,
        "SHA-256 of the canonical list of files added, removed and written as change data.",
    ),
    col("files_added", Kind::Long, false, "Number of add actions."),
    col(
        "files_removed",
        Kind::Long,
        false,
        "Number of remove actions.",
    ),
    col("cdc_files", Kind::Long, false, "Number of cdc actions."),
    col(
        "bytes_added",
        Kind::Long,
        false,
        "Total size of added files.",
    ),
    col(
        "bytes_removed",
        Kind::Long,
        false,
        "Total size of removed files (as recorded).",
    ),
    col(
        "records_added",
        Kind::Long,
        true,
        "Rows in added files, from their statistics; null if a file had none.",
    ),
    col(
        "live_files",
        Kind::Long,
        false,
        "Files live after this version.",
    ),
    col(
        "live_bytes",
        Kind::Long,
        false,
        "Total size of the live files after this version.",
    ),
    col(
        "previous_attestation_digest",
        Kind::Str,
        true,
        "attestation_digest of the previous version's row (the chain); null for the first.",
    ),
    col(
        "attestation_digest",
        Kind::Str,
        false,
        "SHA-256 of the signed statement payload.",
    ),
    col(
        "keyid",
        Kind::Str,
        true,
        "Key id of the signing key (hex SHA-256 of the raw Ed25519 public key); null when unsigned.",
    ),
    col(
        "level",
        Kind::Str,
        false,
        "Makoto level: L1 (unsigned) or L2 (signed).",
    ),
    col(
        "envelope",
        Kind::Str,
        false,
        "The DSSE envelope (JSON) holding the in-toto statement.",
    ),
    col("attested_at", Kind::Ts, false, "When this row was written."),
    col(
        "attestor_version",
        Kind::Str,
        false,
        "makoto and deltalake versions that produced the row.",
    ),
    col(
        "run_id",
        Kind::Str,
        false,
        "Id of the attest run that wrote the row.",
    ),
    col(
        "data_availability",
        Kind::Str,
        false,
        "complete: every data file of the version was hashed.",
    ),
];

pub(crate) const FILE_COLUMNS: &[Col] = &[
    col("table_uri", Kind::Str, false, "Canonical URI of the table."),
    col("table_id", Kind::Str, false, "Delta table id."),
    col(
        "version",
        Kind::Long,
        false,
        "Version whose commit holds the action.",
    ),
    col(
        "ordinal",
        Kind::Long,
        false,
        "Position of the action among the commit's add, remove and cdc actions (from 0).",
    ),
    col(
        "commit_timestamp",
        Kind::Ts,
        false,
        "Commit time of that version.",
    ),
    col("action", Kind::Str, false, "add, remove or cdc."),
    col(
        "path",
        Kind::Str,
        false,
        "File path relative to the table root, percent-decoded once.",
    ),
    col(
        "size",
        Kind::Long,
        true,
        "Size in bytes (for add and cdc: the size hashed; for remove: as recorded).",
    ),
    col(
        "sha256",
        Kind::Str,
        true,
        "SHA-256 of the file's bytes (for remove: of the file when it was added; null if it was not live).",
    ),
    col(
        "data_change",
        Kind::Bool,
        false,
        "The action's dataChange flag.",
    ),
    col(
        "partition_values",
        Kind::Str,
        false,
        "Partition values as canonical JSON.",
    ),
    col(
        "num_records",
        Kind::Long,
        true,
        "Rows in the file from its statistics.",
    ),
    col(
        "dv_unique_id",
        Kind::Str,
        true,
        "Deletion vector unique id (storage type, path or inline data, @offset).",
    ),
    col(
        "dv_storage_type",
        Kind::Str,
        true,
        "u (relative file), i (inline) or p (absolute path).",
    ),
    col(
        "dv_path_or_inline",
        Kind::Str,
        true,
        "pathOrInlineDv as in the log.",
    ),
    col(
        "dv_offset",
        Kind::Long,
        true,
        "Offset of the vector in its file.",
    ),
    col(
        "dv_size_in_bytes",
        Kind::Long,
        true,
        "Size of the serialized vector.",
    ),
    col(
        "dv_cardinality",
        Kind::Long,
        true,
        "Rows deleted by the vector.",
    ),
    col(
        "dv_file",
        Kind::Str,
        true,
        "The deletion-vector file (relative for u, absolute for p).",
    ),
    col(
        "dv_sha256",
        Kind::Str,
        true,
        "SHA-256 of the whole deletion-vector file.",
    ),
    col(
        "run_id",
        Kind::Str,
        false,
        "Id of the attest run that wrote the row.",
    ),
];

/// One row of `system.makoto.attestations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRow {
    pub table_uri: String,
    pub table_id: String,
    pub version: u64,
    pub commit_timestamp_ms: i64,
    pub timestamp_source: String,
    pub operation: Option<String>,
    pub engine: Option<String>,
    pub user_name: Option<String>,
    pub predicate_type: String,
    pub subject: String,
    pub state_digest: Sha256Digest,
    pub commit_digest: Sha256Digest,
    pub commit_file_digest: Sha256Digest,
    pub changes_digest: Sha256Digest,
    pub files_added: u64,
    pub files_removed: u64,
    pub cdc_files: u64,
    pub bytes_added: u64,
    pub bytes_removed: u64,
    pub records_added: Option<u64>,
    pub live_files: u64,
    pub live_bytes: u64,
    pub previous_attestation_digest: Option<Sha256Digest>,
    pub attestation_digest: Sha256Digest,
    pub keyid: Option<String>,
    pub level: MakotoLevel,
    pub envelope: String,
    pub attested_at_us: i64,
    pub attestor_version: String,
    pub run_id: String,
    pub data_availability: String,
}

fn long(v: u64) -> Cell {
    Cell::Long(Some(i64::try_from(v).unwrap_or(i64::MAX)))
}
fn opt_long(v: Option<u64>) -> Cell {
    Cell::Long(v.map(|x| i64::try_from(x).unwrap_or(i64::MAX)))
}
fn s(v: &str) -> Cell {
    Cell::Str(Some(v.to_owned()))
}
fn opt_s(v: Option<&str>) -> Cell {
    Cell::Str(v.map(str::to_owned))
}

struct Reader<'a> {
    inner: RowReader<'a>,
    store: &'a str,
    what: String,
}

impl Reader<'_> {
    fn bad(&self, column: &str, problem: &str) -> Error {
        Error::StoreCorrupt {
            store: self.store.to_owned(),
            reason: format!("{}: column {column} {problem}", self.what),
        }
    }
    fn req_str(&self, c: &str) -> Result<String, Error> {
        self.inner.str(c).ok_or_else(|| self.bad(c, "is null"))
    }
    fn req_u64(&self, c: &str) -> Result<u64, Error> {
        let v = self.inner.long(c).ok_or_else(|| self.bad(c, "is null"))?;
        u64::try_from(v).map_err(|_| self.bad(c, "is negative"))
    }
    fn opt_u64(&self, c: &str) -> Result<Option<u64>, Error> {
        self.inner
            .long(c)
            .map(|v| u64::try_from(v).map_err(|_| self.bad(c, "is negative")))
            .transpose()
    }
    fn digest(&self, c: &str) -> Result<Sha256Digest, Error> {
        self.req_str(c)?
            .parse()
            .map_err(|_| self.bad(c, "is not a SHA-256 hex digest"))
    }
    fn opt_digest(&self, c: &str) -> Result<Option<Sha256Digest>, Error> {
        self.inner
            .str(c)
            .map(|v| {
                v.parse()
                    .map_err(|_| self.bad(c, "is not a SHA-256 hex digest"))
            })
            .transpose()
    }
    fn ts(&self, c: &str) -> Result<i64, Error> {
        self.inner.ts(c).ok_or_else(|| self.bad(c, "is null"))
    }
}

impl AttestationRow {
    pub(crate) fn to_cells(&self) -> Vec<Cell> {
        vec![
            s(&self.table_uri),
            s(&self.table_id),
            long(self.version),
            Cell::Ts(Some(self.commit_timestamp_ms.saturating_mul(1000))),
            s(&self.timestamp_source),
            opt_s(self.operation.as_deref()),
            opt_s(self.engine.as_deref()),
            opt_s(self.user_name.as_deref()),
            s(&self.predicate_type),
            s(&self.subject),
            s(&self.state_digest.to_hex()),
            s(&self.commit_digest.to_hex()),
            s(&self.commit_file_digest.to_hex()),
            s(&self.changes_digest.to_hex()),
            long(self.files_added),
            long(self.files_removed),
            long(self.cdc_files),
            long(self.bytes_added),
            long(self.bytes_removed),
            opt_long(self.records_added),
            long(self.live_files),
            long(self.live_bytes),
            opt_s(
                self.previous_attestation_digest
                    .map(|d| d.to_hex())
                    .as_deref(),
            ),
            s(&self.attestation_digest.to_hex()),
            opt_s(self.keyid.as_deref()),
            s(self.level.as_str()),
            s(&self.envelope),
            Cell::Ts(Some(self.attested_at_us)),
            s(&self.attestor_version),
            s(&self.run_id),
            s(&self.data_availability),
        ]
    }

    pub fn read(batch: &arrow::array::RecordBatch, row: usize, store: &str) -> Result<Self, Error> {
        let r = Reader {
            inner: RowReader::new(batch, row),
            store,
            what: format!(
                "row for {}@v{}",
                RowReader::new(batch, row)
                    .str("table_uri")
                    .unwrap_or_default(),
                RowReader::new(batch, row).long("version").unwrap_or(-1)
            ),
        };
        let level = r.req_str("level")?;
        Ok(AttestationRow {
            table_uri: r.req_str("table_uri")?,
            table_id: r.req_str("table_id")?,
            version: r.req_u64("version")?,
            commit_timestamp_ms: r.ts("commit_timestamp")?.div_euclid(1000),
            timestamp_source: r.req_str("timestamp_source")?,
            operation: r.inner.str("operation"),
            engine: r.inner.str("engine"),
            user_name: r.inner.str("user_name"),
            predicate_type: r.req_str("predicate_type")?,
            subject: r.req_str("subject")?,
            state_digest: r.digest("state_digest")?,
            commit_digest: r.digest("commit_digest")?,
            commit_file_digest: r.digest("commit_file_digest")?,
            changes_digest: r.digest("changes_digest")?,
            files_added: r.req_u64("files_added")?,
            files_removed: r.req_u64("files_removed")?,
            cdc_files: r.req_u64("cdc_files")?,
            bytes_added: r.req_u64("bytes_added")?,
            bytes_removed: r.req_u64("bytes_removed")?,
            records_added: r.opt_u64("records_added")?,
            live_files: r.req_u64("live_files")?,
            live_bytes: r.req_u64("live_bytes")?,
            previous_attestation_digest: r.opt_digest("previous_attestation_digest")?,
            attestation_digest: r.digest("attestation_digest")?,
            keyid: r.inner.str("keyid"),
            level: MakotoLevel::parse(&level)
                .ok_or_else(|| r.bad("level", "is not L1, L2 or L3"))?,
            envelope: r.req_str("envelope")?,
            attested_at_us: r.ts("attested_at")?,
            attestor_version: r.req_str("attestor_version")?,
            run_id: r.req_str("run_id")?,
            data_availability: r.req_str("data_availability")?,
        })
    }
}

/// One row of `system.makoto.files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub table_uri: String,
    pub table_id: String,
    pub version: u64,
    pub ordinal: u64,
    pub commit_timestamp_ms: i64,
    pub action: String,
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<Sha256Digest>,
    pub data_change: bool,
    pub partition_values: String,
    pub num_records: Option<u64>,
    pub dv_unique_id: Option<String>,
    pub dv_storage_type: Option<String>,
    pub dv_path_or_inline: Option<String>,
    pub dv_offset: Option<u64>,
    pub dv_size_in_bytes: Option<u64>,
    pub dv_cardinality: Option<u64>,
    pub dv_file: Option<String>,
    pub dv_sha256: Option<Sha256Digest>,
    pub run_id: String,
}

impl FileRow {
    pub fn from_change(
        table_uri: &str,
        table_id: &str,
        version: u64,
        ordinal: u64,
        commit_timestamp_ms: i64,
        change: &FileChange,
        run_id: &str,
    ) -> Self {
        let dv = change.deletion_vector();
        FileRow {
            table_uri: table_uri.to_owned(),
            table_id: table_id.to_owned(),
            version,
            ordinal,
            commit_timestamp_ms,
            action: change.kind().as_str().to_owned(),
            path: change.path().to_owned(),
            size: change.size(),
            sha256: change.sha256(),
            data_change: change.data_change(),
            partition_values: String::from_utf8_lossy(&canonical::to_vec(&serde_json::json!(
                change.partition_values()
            )))
            .into_owned(),
            num_records: change.num_records(),
            dv_unique_id: dv.map(|(d, _)| d.unique_id()),
            dv_storage_type: dv.map(|(d, _)| d.storage().code().to_owned()),
            dv_path_or_inline: dv.map(|(d, _)| d.path_or_inline().to_owned()),
            dv_offset: dv.and_then(|(d, _)| d.offset()),
            dv_size_in_bytes: dv.map(|(d, _)| d.size_in_bytes()),
            dv_cardinality: dv.map(|(d, _)| d.cardinality()),
            dv_file: dv.and_then(|(d, _)| d.file().map(str::to_owned)),
            dv_sha256: dv.and_then(|(_, h)| *h),
            run_id: run_id.to_owned(),
        }
    }

    /// The change this row records, as the attest job built it (its JSON is what the changes
    /// digest covers).
    pub fn to_change(&self) -> Result<FileChange, Error> {
        let bad = |reason: String| Error::StoreCorrupt {
            store: "system.makoto.files".into(),
            reason: format!(
                "row {}@v{} {}: {reason}",
                self.table_uri, self.version, self.path
            ),
        };
        let kind = self
            .kind()
            .ok_or_else(|| bad(format!("unknown action {:?}", self.action)))?;
        let partition_values = serde_json::from_str(&self.partition_values)
            .map_err(|e| bad(format!("partition_values: {e}")))?;
        let dv = match (&self.dv_storage_type, &self.dv_path_or_inline) {
            (Some(t), Some(p)) => {
                let as_i64 = |v: Option<u64>| v.map(|x| i64::try_from(x).unwrap_or(i64::MAX));
                let d = DeletionVector::from_fields(
                    t,
                    p,
                    as_i64(self.dv_offset),
                    as_i64(self.dv_size_in_bytes).unwrap_or(0),
                    as_i64(self.dv_cardinality).unwrap_or(0),
                )
                .map_err(|e| bad(e.to_string()))?;
                Some((d, self.dv_sha256))
            }
            _ => None,
        };
        Ok(FileChange::new(
            kind,
            self.path.clone(),
            self.size,
            self.sha256,
            self.data_change,
            partition_values,
            self.num_records,
            dv,
        ))
    }

    pub fn kind(&self) -> Option<ChangeKind> {
        match self.action.as_str() {
            "add" => Some(ChangeKind::Add),
            "remove" => Some(ChangeKind::Remove),
            "cdc" => Some(ChangeKind::Cdc),
            _ => None,
        }
    }

    /// The fields that must agree between two runs computing the same version.
    pub fn identity(
        &self,
    ) -> (
        u64,
        &str,
        &str,
        Option<Sha256Digest>,
        Option<&str>,
        Option<Sha256Digest>,
    ) {
        (
            self.version,
            self.action.as_str(),
            self.path.as_str(),
            self.sha256,
            self.dv_unique_id.as_deref(),
            self.dv_sha256,
        )
    }

    pub(crate) fn to_cells(&self) -> Vec<Cell> {
        vec![
            s(&self.table_uri),
            s(&self.table_id),
            long(self.version),
            long(self.ordinal),
            Cell::Ts(Some(self.commit_timestamp_ms.saturating_mul(1000))),
            s(&self.action),
            s(&self.path),
            opt_long(self.size),
            opt_s(self.sha256.map(|d| d.to_hex()).as_deref()),
            Cell::Bool(Some(self.data_change)),
            s(&self.partition_values),
            opt_long(self.num_records),
            opt_s(self.dv_unique_id.as_deref()),
            opt_s(self.dv_storage_type.as_deref()),
            opt_s(self.dv_path_or_inline.as_deref()),
            opt_long(self.dv_offset),
            opt_long(self.dv_size_in_bytes),
            opt_long(self.dv_cardinality),
            opt_s(self.dv_file.as_deref()),
            opt_s(self.dv_sha256.map(|d| d.to_hex()).as_deref()),
            s(&self.run_id),
        ]
    }

    pub(crate) fn read(
        batch: &arrow::array::RecordBatch,
        row: usize,
        store: &str,
    ) -> Result<Self, Error> {
        let r = Reader {
            inner: RowReader::new(batch, row),
            store,
            what: format!(
                "file row {}@v{} {}",
                RowReader::new(batch, row)
                    .str("table_uri")
                    .unwrap_or_default(),
                RowReader::new(batch, row).long("version").unwrap_or(-1),
                RowReader::new(batch, row).str("path").unwrap_or_default()
            ),
        };
        Ok(FileRow {
            table_uri: r.req_str("table_uri")?,
            table_id: r.req_str("table_id")?,
            version: r.req_u64("version")?,
            ordinal: r.req_u64("ordinal")?,
            commit_timestamp_ms: r.ts("commit_timestamp")?.div_euclid(1000),
            action: r.req_str("action")?,
            path: r.req_str("path")?,
            size: r.opt_u64("size")?,
            sha256: r.opt_digest("sha256")?,
            data_change: r
                .inner
                .bool("data_change")
                .ok_or_else(|| r.bad("data_change", "is null"))?,
            partition_values: r.req_str("partition_values")?,
            num_records: r.opt_u64("num_records")?,
            dv_unique_id: r.inner.str("dv_unique_id"),
            dv_storage_type: r.inner.str("dv_storage_type"),
            dv_path_or_inline: r.inner.str("dv_path_or_inline"),
            dv_offset: r.opt_u64("dv_offset")?,
            dv_size_in_bytes: r.opt_u64("dv_size_in_bytes")?,
            dv_cardinality: r.opt_u64("dv_cardinality")?,
            dv_file: r.inner.str("dv_file"),
            dv_sha256: r.opt_digest("dv_sha256")?,
            run_id: r.req_str("run_id")?,
        })
    }
}

pub(crate) const VERIFICATION_COLUMNS: &[Col] = &[
    col(
        "table_uri",
        Kind::Str,
        false,
        "Canonical URI of the verified table.",
    ),
    col(
        "table_id",
        Kind::Str,
        true,
        "Delta table id of the verified version's attestation.",
    ),
    col("version", Kind::Long, false, "The verified version."),
    col(
        "mode",
        Kind::Str,
        false,
        "deep (data files rehashed) or log-only.",
    ),
    col("result", Kind::Str, false, "verified, or findings."),
    col("errors", Kind::Long, false, "Number of error findings."),
    col("warnings", Kind::Long, false, "Number of warning findings."),
    col(
        "finding_kinds",
        Kind::Str,
        false,
        "Distinct finding kinds, comma-separated (empty when none).",
    ),
    col(
        "state_digest",
        Kind::Str,
        true,
        "Attested state digest of the verified version.",
    ),
    col(
        "attestation_digest",
        Kind::Str,
        true,
        "Attestation digest of the verified version.",
    ),
    col(
        "since_version",
        Kind::Long,
        true,
        "With --since-last: the version of the earlier verification this one continued from.",
    ),
    col("verified_at", Kind::Ts, false, "When the verification ran."),
    col("verifier", Kind::Str, false, "Who ran it (user@host)."),
    col(
        "trusted_keyids",
        Kind::Str,
        false,
        "Key ids the verification trusted, comma-separated.",
    ),
    col(
        "keyid",
        Kind::Str,
        true,
        "Key id that signed this record; null when unsigned.",
    ),
    col(
        "envelope",
        Kind::Str,
        false,
        "The record as a DSSE envelope (signed when a key was given).",
    ),
    col("report", Kind::Str, false, "The findings as JSON."),
    col(
        "attestor_version",
        Kind::Str,
        false,
        "makoto and deltalake versions.",
    ),
    col("run_id", Kind::Str, false, "Id of the verification run."),
];

/// One row of `system.makoto.verifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRow {
    pub table_uri: String,
    pub table_id: Option<String>,
    pub version: u64,
    pub mode: String,
    pub result: String,
    pub errors: u64,
    pub warnings: u64,
    pub finding_kinds: String,
    pub state_digest: Option<Sha256Digest>,
    pub attestation_digest: Option<Sha256Digest>,
    pub since_version: Option<u64>,
    pub verified_at_us: i64,
    pub verifier: String,
    pub trusted_keyids: String,
    pub keyid: Option<String>,
    pub envelope: String,
    pub report: String,
    pub attestor_version: String,
    pub run_id: String,
}

impl VerificationRow {
    pub(crate) fn to_cells(&self) -> Vec<Cell> {
        vec![
            s(&self.table_uri),
            opt_s(self.table_id.as_deref()),
            long(self.version),
            s(&self.mode),
            s(&self.result),
            long(self.errors),
            long(self.warnings),
            s(&self.finding_kinds),
            opt_s(self.state_digest.map(|d| d.to_hex()).as_deref()),
            opt_s(self.attestation_digest.map(|d| d.to_hex()).as_deref()),
            opt_long(self.since_version),
            Cell::Ts(Some(self.verified_at_us)),
            s(&self.verifier),
            s(&self.trusted_keyids),
            opt_s(self.keyid.as_deref()),
            s(&self.envelope),
            s(&self.report),
            s(&self.attestor_version),
            s(&self.run_id),
        ]
    }

    pub(crate) fn read(
        batch: &arrow::array::RecordBatch,
        row: usize,
        store: &str,
    ) -> Result<Self, Error> {
        let r = Reader {
            inner: RowReader::new(batch, row),
            store,
            what: format!(
                "verification row {}@v{}",
                RowReader::new(batch, row)
                    .str("table_uri")
                    .unwrap_or_default(),
                RowReader::new(batch, row).long("version").unwrap_or(-1)
            ),
        };
        Ok(VerificationRow {
            table_uri: r.req_str("table_uri")?,
            table_id: r.inner.str("table_id"),
            version: r.req_u64("version")?,
            mode: r.req_str("mode")?,
            result: r.req_str("result")?,
            errors: r.req_u64("errors")?,
            warnings: r.req_u64("warnings")?,
            finding_kinds: r.req_str("finding_kinds")?,
            state_digest: r.opt_digest("state_digest")?,
            attestation_digest: r.opt_digest("attestation_digest")?,
            since_version: r.opt_u64("since_version")?,
            verified_at_us: r.ts("verified_at")?,
            verifier: r.req_str("verifier")?,
            trusted_keyids: r.req_str("trusted_keyids")?,
            keyid: r.inner.str("keyid"),
            envelope: r.req_str("envelope")?,
            report: r.req_str("report")?,
            attestor_version: r.req_str("attestor_version")?,
            run_id: r.req_str("run_id")?,
        })
    }
}

pub(crate) const WINDOW_COLUMNS: &[Col] = &[
    col(
        "table_uri",
        Kind::Str,
        false,
        "The Delta table whose appended records the window holds.",
    ),
    col(
        "table_id",
        Kind::Str,
        false,
        "Delta table id (metaData.id).",
    ),
    col(
        "spec",
        Kind::Str,
        false,
        "How records are grouped: records=N, commits=N or duration=D.",
    ),
    col(
        "sequence",
        Kind::Long,
        false,
        "Position of the window in its chain (1-based; the statement's chainLength).",
    ),
    col(
        "window_id",
        Kind::Str,
        false,
        "<table_uri>#window/<spec>/<sequence>: the statement's subject name.",
    ),
    col(
        "first_version",
        Kind::Long,
        false,
        "Commit of the window's first record.",
    ),
    col(
        "first_index",
        Kind::Long,
        false,
        "Index of the first record among the records that commit added.",
    ),
    col(
        "last_version",
        Kind::Long,
        false,
        "Commit of the window's last record.",
    ),
    col(
        "last_index",
        Kind::Long,
        false,
        "Index of the last record among the records that commit added.",
    ),
    col(
        "first_timestamp",
        Kind::Ts,
        false,
        "Commit time of the first record.",
    ),
    col(
        "last_timestamp",
        Kind::Ts,
        false,
        "Commit time of the last record.",
    ),
    col(
        "leaf_count",
        Kind::Long,
        false,
        "Number of records (Merkle leaves).",
    ),
    col(
        "merkle_root",
        Kind::Str,
        false,
        "RFC 6962 Merkle root over the records, hex.",
    ),
    col(
        "previous_window_id",
        Kind::Str,
        true,
        "The previous window of the chain; null for the first.",
    ),
    col("previous_merkle_root", Kind::Str, true, "Its Merkle root."),
    col(
        "attestation_digest",
        Kind::Str,
        false,
        "SHA-256 of the signed statement (the envelope payload).",
    ),
    col(
        "keyid",
        Kind::Str,
        true,
        "Key id of the signature; null when unsigned (L1).",
    ),
    col(
        "envelope",
        Kind::Str,
        false,
        "The stream-window/v1 statement as a DSSE envelope (JSON).",
    ),
    col(
        "attested_at",
        Kind::Ts,
        false,
        "When the window was attested.",
    ),
    col(
        "run_id",
        Kind::Str,
        false,
        "Id of the makoto attest run that wrote the row.",
    ),
];

/// One row of `system.makoto.windows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRow {
    pub table_uri: String,
    pub table_id: String,
    pub spec: String,
    pub sequence: u64,
    pub window_id: String,
    pub first_version: u64,
    pub first_index: u64,
    pub last_version: u64,
    pub last_index: u64,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
    pub leaf_count: u64,
    pub merkle_root: Sha256Digest,
    pub previous_window_id: Option<String>,
    pub previous_merkle_root: Option<Sha256Digest>,
    pub attestation_digest: Sha256Digest,
    pub keyid: Option<String>,
    pub envelope: String,
    pub attested_at_us: i64,
    pub run_id: String,
}

impl WindowRow {
    pub(crate) fn to_cells(&self) -> Vec<Cell> {
        vec![
            s(&self.table_uri),
            s(&self.table_id),
            s(&self.spec),
            long(self.sequence),
            s(&self.window_id),
            long(self.first_version),
            long(self.first_index),
            long(self.last_version),
            long(self.last_index),
            Cell::Ts(Some(self.first_timestamp_ms.saturating_mul(1000))),
            Cell::Ts(Some(self.last_timestamp_ms.saturating_mul(1000))),
            long(self.leaf_count),
            s(&self.merkle_root.to_hex()),
            opt_s(self.previous_window_id.as_deref()),
            opt_s(self.previous_merkle_root.map(|d| d.to_hex()).as_deref()),
            s(&self.attestation_digest.to_hex()),
            opt_s(self.keyid.as_deref()),
            s(&self.envelope),
            Cell::Ts(Some(self.attested_at_us)),
            s(&self.run_id),
        ]
    }

    pub(crate) fn read(
        batch: &arrow::array::RecordBatch,
        row: usize,
        store: &str,
    ) -> Result<Self, Error> {
        let peek = RowReader::new(batch, row);
        let r = Reader {
            inner: RowReader::new(batch, row),
            store,
            what: format!("window row {}", peek.str("window_id").unwrap_or_default()),
        };
        Ok(WindowRow {
            table_uri: r.req_str("table_uri")?,
            table_id: r.req_str("table_id")?,
            spec: r.req_str("spec")?,
            sequence: r.req_u64("sequence")?,
            window_id: r.req_str("window_id")?,
            first_version: r.req_u64("first_version")?,
            first_index: r.req_u64("first_index")?,
            last_version: r.req_u64("last_version")?,
            last_index: r.req_u64("last_index")?,
            first_timestamp_ms: r.ts("first_timestamp")?.div_euclid(1000),
            last_timestamp_ms: r.ts("last_timestamp")?.div_euclid(1000),
            leaf_count: r.req_u64("leaf_count")?,
            merkle_root: r.digest("merkle_root")?,
            previous_window_id: r.inner.str("previous_window_id"),
            previous_merkle_root: r.opt_digest("previous_merkle_root")?,
            attestation_digest: r.digest("attestation_digest")?,
            keyid: r.inner.str("keyid"),
            envelope: r.req_str("envelope")?,
            attested_at_us: r.ts("attested_at")?,
            run_id: r.req_str("run_id")?,
        })
    }
}
