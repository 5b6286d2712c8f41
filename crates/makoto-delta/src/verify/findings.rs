//! What verification can find, where, and how serious it is.

use serde::Serialize;

/// How a finding affects the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The table or its attestations are not what was attested: verification fails.
    Error,
    /// Something could not be checked or looks unusual without contradicting an attestation.
    Warning,
}

macro_rules! kinds {
    ($($variant:ident => ($code:literal, $severity:ident, $meaning:literal),)*) => {
        /// The kinds of finding. `code()` is the stable name used in reports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum FindingKind {
            $(#[doc = $meaning] $variant,)*
        }

        impl FindingKind {
            pub const ALL: &'static [FindingKind] = &[$(FindingKind::$variant,)*];

            pub fn code(self) -> &'static str {
                match self { $(FindingKind::$variant => $code,)* }
            }
            pub fn severity(self) -> Severity {
                match self { $(FindingKind::$variant => Severity::$severity,)* }
            }
            pub fn meaning(self) -> &'static str {
                match self { $(FindingKind::$variant => $meaning,)* }
            }
        }
    };
}

kinds! {
    DataFileChanged => ("data-file-changed", Error, "A live data file's bytes or size differ from what was attested."),
    DataFileMissing => ("data-file-missing", Error, "A data file live at the verified version is gone and no later commit removed it: it was deleted while part of the table."),
    DataFileVacuumed => ("data-file-vacuumed", Warning, "A data file of the verified (past) version is gone after a later commit removed it (VACUUM): that version's data can no longer be checked. Not tampering."),
    DataUnavailable => ("data-unavailable", Warning, "A file live at the verified version was already deleted (VACUUM) when its version was first attested, so its bytes were never hashed: the version's data cannot be checked. Not tampering."),
    DeletionVectorChanged => ("deletion-vector-changed", Error, "A deletion-vector file differs from what was attested."),
    DeletionVectorMissing => ("deletion-vector-missing", Error, "A deletion-vector file of a live file is gone."),
    UnreferencedFile => ("unreferenced-file", Warning, "A file in the table directory that no commit references appeared after the last attestation."),
    CommitRewritten => ("commit-rewritten", Error, "A commit file's actions differ from the attested ones."),
    CommitReserialized => ("commit-reserialized", Error, "A commit file's bytes differ from the attested ones although its actions are the same (re-serialized)."),
    CommitMissing => ("commit-missing", Error, "An attested commit file is gone from the log (or the log was shifted by a removed commit)."),
    CommitInserted => ("commit-inserted", Error, "The log holds a commit the attestations do not (a commit inserted into the history)."),
    CommitExpired => ("commit-expired", Warning, "An early commit file was removed by log cleanup after a checkpoint; it cannot be rechecked."),
    CheckpointMismatch => ("checkpoint-mismatch", Error, "A checkpoint's live files differ from the JSON log at its version."),
    BaselineChanged => ("baseline-changed", Error, "The checkpoint a chain starts from (its baseline) differs from the one that was attested: other live files, or other checkpoint bytes."),
    BaselineExpired => ("baseline-expired", Warning, "The checkpoint a chain starts from was removed by later log cleanup; the baseline state cannot be recomputed."),
    CheckpointUnreadable => ("checkpoint-unreadable", Error, "A checkpoint cannot be read."),
    LastCheckpointInvalid => ("last-checkpoint-invalid", Error, "_delta_log/_last_checkpoint points to a checkpoint that does not exist or beyond the log."),
    StateMismatch => ("state-mismatch", Error, "The live files recomputed from the log and the attested file digests do not give the attested state digest."),
    TableReplaced => ("table-replaced", Error, "The log's table id differs from the attested one: another table was put at this location."),
    AttestationMissing => ("attestation-missing", Error, "A version up to the verified one has no attestation row."),
    AttestationAltered => ("attestation-altered", Error, "An attestation row's columns disagree with its signed statement, or the statement is for another version or table."),
    AttestationDuplicated => ("attestation-duplicated", Error, "A version has more than one attestation row (a replayed or duplicated row)."),
    AttestationUnsigned => ("attestation-unsigned", Error, "An attestation row is unsigned (Makoto L1)."),
    ChainBroken => ("chain-broken", Error, "An attestation does not point to the previous version's attestation: rows were removed, reordered or replaced."),
    ChainFork => ("chain-fork", Error, "Two different validly signed statements exist for one version."),
    SignatureUntrusted => ("signature-untrusted", Error, "No signature of the row verifies under a trusted key (signed by another key)."),
    SignatureInvalid => ("signature-invalid", Error, "The row names a trusted key but its signature does not verify (altered statement or signature)."),
    KeyNotValid => ("key-not-valid", Error, "Signed by a trusted key outside its validity window (expired, revoked or not yet valid)."),
    StatementInvalid => ("statement-invalid", Error, "The signed statement does not have the fields the Makoto schemas require."),
    FileRowsAltered => ("file-rows-altered", Error, "The system.makoto.files rows of a version do not match the attested changes digest."),
    WindowUntrusted => ("window-untrusted", Error, "A stream-window attestation's signature does not verify under a trusted key."),
    WindowAltered => ("window-altered", Error, "A system.makoto.windows row's columns disagree with its signed stream-window statement, or the statement is malformed."),
    WindowChainBroken => ("window-chain-broken", Error, "A window does not point to the previous window of its chain (removed, reordered or replaced windows)."),
    WindowRecordAltered => ("window-record-altered", Error, "A record of an attested window has other bytes now; the finding names the window and the position."),
    WindowRecordInserted => ("window-record-inserted", Error, "A record was inserted into an attested window at the named position."),
    WindowRecordDropped => ("window-record-dropped", Error, "A record of an attested window is gone from the named position."),
    WindowRecordsPurged => ("window-records-purged", Warning, "A window's records were removed from the table by later attested commits (a redaction, a delete or a rewrite) and their files deleted since (VACUUM): the window's signature, statement and chain verify, its records can no longer be recomputed. Not tampering, and the verified version is still fully checked."),
    WindowRecordsReordered => ("window-records-reordered", Error, "Two records of an attested window swapped places, starting at the named position."),
    ReaderViewMismatch => ("reader-view-mismatch", Error, "The reader view replayed from the log (live files with partition values, deletion vectors, statistics and tags; schema, properties, protocol, domain metadata, set transactions) differs from the signed reader view of the version."),
    ReaderViewUnattested => ("reader-view-unattested", Warning, "The version's attestation predates signed reader views and its commits are gone: the live files were checked, but what readers see of them (partition values, statistics) and of the table (schema, properties) cannot be. Not tampering; the version cannot be fully verified."),
    ReaderMismatch => ("reader-mismatch", Error, "delta-rs, reading the table at the verified version as any reader would, sees other files, partition values, deletion vectors, statistics, schema, properties or protocol than the attested reader view."),
    ReaderCrossCheckFailed => ("reader-cross-check-failed", Warning, "delta-rs could not read the table at the verified version, so its view was not cross-checked."),
    CheckpointUnverifiable => ("checkpoint-unverifiable", Warning, "A checkpoint could not be compared exactly with the signed reader view (statistics only in typed stats_parsed columns, or set transactions that retention may have dropped): not contradicted, not confirmed."),
    ChecksumMismatch => ("checksum-mismatch", Error, "A .crc version checksum file disagrees with the attested view of its version (schema, properties, protocol, file count, size, set transactions, domain metadata, files, in-commit timestamp); readers that trust it see another table."),
    CompactionMismatch => ("compaction-mismatch", Error, "A log compaction file (<x>.<y>.compacted.json), applied to version x-1, does not give the attested view of version y, or cannot be read."),
    LogFileUnattested => ("log-file-unattested", Error, "A checkpoint, checksum or compaction file exists for a version after the attested ones: a reader could adopt it as a newer version of the table."),
    VersionUnverifiable => ("version-unverifiable", Warning, "The verified version could not be rebuilt from the log: its commits are gone and no checkpoint that matches its attestation lets a reader start there. Nothing was checked for it."),
    LogListingFailed => ("log-listing-failed", Warning, "Part of the log or the table directory could not be listed (a symlink loop, an unreadable entry); what is there was not checked."),
    AttestationsTruncated => ("attestations-truncated", Error, "The attestation table ends before a version recorded in a trusted anchor (head)."),
    AnchorMismatch => ("anchor-mismatch", Error, "The attestation at an anchored version differs from the one the anchor recorded."),
    TimestampInvalid => ("timestamp-invalid", Error, "An RFC 3161 time-stamp token does not hold: it does not parse or verify, is not over its attestation's signature, or its genTime is before the commit it covers or before the time the statement claims it was signed."),
    TimestampUntrusted => ("timestamp-untrusted", Error, "An RFC 3161 time-stamp token was signed by an authority the trust file does not list (nor one issued by a listed certificate)."),
    IdentityMismatch => ("identity-mismatch", Error, "The statement names another collector or executor than the identity the trust file binds to its signing key."),
    KeyOutOfScope => ("key-out-of-scope", Error, "The signing key attested a table outside the tables the trust file lets it attest."),
    TimestampMissing => ("timestamp-missing", Warning, "The verifier trusts time-stamp authorities but no valid token covers the version's attestation (directly, or through the chain to a later time-stamped one): when it was signed is only the signer's claim, so it is not Makoto L2."),
}

impl Serialize for FindingKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// The attestation-table row a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowRef {
    /// The row's `version` column.
    pub version: u64,
    /// The row's `attestation_digest` column.
    pub attestation_digest: String,
    pub run_id: String,
    /// The row's `attested_at` column, RFC 3339.
    pub attested_at: String,
}

/// One thing verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// The table version concerned.
    pub version: Option<u64>,
    /// The file concerned (relative to the table root, or `_delta_log/…`).
    pub path: Option<String>,
    /// The attestation row concerned.
    pub row: Option<RowRef>,
    pub detail: String,
}

impl Finding {
    pub fn new(kind: FindingKind, detail: impl Into<String>) -> Self {
        Finding {
            kind,
            severity: kind.severity(),
            version: None,
            path: None,
            row: None,
            detail: detail.into(),
        }
    }
    pub fn at(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }
    pub fn file(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
    pub fn row(mut self, row: RowRef) -> Self {
        self.row = Some(row);
        self
    }
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}
