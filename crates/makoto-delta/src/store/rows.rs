//! Rows of the system tables, each declared once: the declaration is the column list (name,
//! type, nullability, documentation), the writer and the reader.

use makoto_core::Sha256Digest;
use makoto_core::attestation::{
    AvailabilityStatus, ChangeKind, CommitFacts, FileChange, MakotoLevel, Prepared, changes_digest,
};
use makoto_core::canonical;
use makoto_core::delta::{DeletionVector, TimestampSource};
use makoto_core::keys::KeyId;

use super::columns::system_row;
use crate::Error;

system_row! {
    /// One row of `system.makoto.attestations`.
    pub struct AttestationRow: ATTESTATION_COLUMNS, "row for" {
        table_uri: String => "Canonical URI of the attested table (no trailing slash).",
        table_id: String => "Delta table id (metaData.id) at this version.",
        version: u64 => "Table version (commit number).",
        #[column = "commit_timestamp"]
        commit_timestamp_ms: i64 as Millis => "Commit time: in-commit timestamp, else commitInfo.timestamp, else the commit file's modification time.",
        timestamp_source: TimestampSource => "Where commit_timestamp came from: inCommitTimestamp, commitInfo or fileModificationTime.",
        operation: Option<String> => "commitInfo.operation (WRITE, DELETE, MERGE, OPTIMIZE, …).",
        engine: Option<String> => "commitInfo.engineInfo or clientVersion of the writer.",
        user_name: Option<String> => "commitInfo.userName or userId, when the writer recorded one.",
        predicate_type: String => "https://makoto.dev/origin/v1 or https://makoto.dev/transform/v1.",
        subject: String => "Statement subject name: <table_uri>@v<version>.",
        state_digest: Sha256Digest => "Table-state digest (state-tree root) of this version; the subject's sha256.",
        commit_digest: Sha256Digest => "SHA-256 of the commit's actions in canonical form.",
        commit_file_digest: Sha256Digest => "SHA-256 of the commit file's bytes as stored.",
        changes_digest: Sha256Digest => "SHA-256 of the canonical list of files added, removed and written as change data.",
        files_added: u64 => "Number of add actions.",
        files_removed: u64 => "Number of remove actions.",
        cdc_files: u64 => "Number of cdc actions.",
        bytes_added: u64 => "Total size of added files.",
        bytes_removed: u64 => "Total size of removed files (as recorded).",
        records_added: Option<u64> => "Rows in added files, from their statistics; null if a file had none.",
        live_files: u64 => "Files live after this version.",
        live_bytes: u64 => "Total size of the live files after this version.",
        previous_attestation_digest: Option<Sha256Digest> => "attestation_digest of the previous version's row (the chain); null for the first.",
        attestation_digest: Sha256Digest => "SHA-256 of the signed statement payload.",
        keyid: Option<KeyId> => "Key id of the signing key (hex SHA-256 of the raw public key); null when unsigned.",
        level: MakotoLevel => "Makoto level the attestor claims: L2 only when it signed, time-stamped (--tsa) and named its identity (--identity), else L1. Verification computes the level earned (docs/levels.md).",
        envelope: String => "The DSSE envelope (JSON) holding the in-toto statement.",
        #[column = "attested_at"]
        attested_at_us: i64 as Micros => "When this row was written.",
        attestor_version: String => "makoto and deltalake versions that produced the row.",
        run_id: String => "Id of the attest run that wrote the row.",
        data_availability: AvailabilityStatus => "complete: every data file of the version was hashed.",
        #[column = "timestamp_gen_time"]
        timestamp_gen_time_us: Option<i64> as Micros => "genTime of the RFC 3161 token that covers this row, as the attestor received it (attest --tsa); null without one. The token is on the envelope of the row at timestamp_version; verify checks both.",
        timestamp_version: Option<u64> => "The version whose envelope carries that token: the last of the attest batch, whose statement chains back to this one; null without a token.",
    }
}

system_row! {
    /// One row of `system.makoto.files`.
    pub struct FileRow: FILE_COLUMNS, "file row" {
        table_uri: String => "Canonical URI of the table.",
        table_id: String => "Delta table id.",
        version: u64 => "Version whose commit holds the action.",
        ordinal: u64 => "Position of the action among the commit's add, remove and cdc actions (from 0).",
        #[column = "commit_timestamp"]
        commit_timestamp_ms: i64 as Millis => "Commit time of that version.",
        action: ChangeKind => "add, remove or cdc.",
        path: String => "File path relative to the table root, percent-decoded once.",
        size: Option<u64> => "Size in bytes (for add and cdc: the size hashed; for remove: as recorded).",
        sha256: Option<Sha256Digest> => "SHA-256 of the file's bytes (for remove: of the file when it was added; null if it was not live).",
        data_change: bool => "The action's dataChange flag.",
        partition_values: String => "Partition values as canonical JSON.",
        num_records: Option<u64> => "Rows in the file from its statistics.",
        dv_unique_id: Option<String> => "Deletion vector unique id (storage type, path or inline data, @offset).",
        dv_storage_type: Option<String> => "u (relative file), i (inline) or p (absolute path).",
        dv_path_or_inline: Option<String> => "pathOrInlineDv as in the log.",
        dv_offset: Option<u64> => "Offset of the vector in its file.",
        dv_size_in_bytes: Option<u64> => "Size of the serialized vector.",
        dv_cardinality: Option<u64> => "Rows deleted by the vector.",
        dv_file: Option<String> => "The deletion-vector file (relative for u, absolute for p).",
        dv_sha256: Option<Sha256Digest> => "SHA-256 of the whole deletion-vector file.",
        run_id: String => "Id of the attest run that wrote the row.",
    }
}

system_row! {
    /// One row of `system.makoto.verifications`.
    pub struct VerificationRow: VERIFICATION_COLUMNS, "verification row" {
        table_uri: String => "Canonical URI of the verified table.",
        table_id: Option<String> => "Delta table id of the verified version's attestation.",
        version: u64 => "The verified version.",
        mode: String => "deep (data files rehashed) or log-only.",
        result: String => "verified, or findings.",
        errors: u64 => "Number of error findings.",
        warnings: u64 => "Number of warning findings.",
        finding_kinds: String => "Distinct finding kinds, comma-separated (empty when none).",
        state_digest: Option<Sha256Digest> => "Attested state digest of the verified version.",
        attestation_digest: Option<Sha256Digest> => "Attestation digest of the verified version.",
        since_version: Option<u64> => "With --since-last: the version of the earlier verification this one continued from.",
        #[column = "verified_at"]
        verified_at_us: i64 as Micros => "When the verification ran.",
        verifier: String => "Who ran it (user@host).",
        trusted_keyids: String => "Key ids the verification trusted, comma-separated.",
        keyid: Option<KeyId> => "Key id that signed this record; null when unsigned.",
        envelope: String => "The record as a DSSE envelope (signed when a key was given).",
        report: String => "The findings as JSON.",
        attestor_version: String => "makoto and deltalake versions.",
        run_id: String => "Id of the verification run.",
    }
}

system_row! {
    /// One row of `system.makoto.windows`.
    pub struct WindowRow: WINDOW_COLUMNS, "window row" {
        table_uri: String => "The Delta table whose appended records the window holds.",
        table_id: String => "Delta table id (metaData.id).",
        spec: String => "How records are grouped: records=N, commits=N or duration=D.",
        sequence: u64 => "Position of the window in its chain (1-based; the statement's chainLength).",
        window_id: String => "<table_uri>#window/<spec>/<sequence>: the statement's subject name.",
        first_version: u64 => "Commit of the window's first record.",
        first_index: u64 => "Index of the first record among the records that commit added.",
        last_version: u64 => "Commit of the window's last record.",
        last_index: u64 => "Index of the last record among the records that commit added.",
        #[column = "first_timestamp"]
        first_timestamp_ms: i64 as Millis => "Commit time of the first record.",
        #[column = "last_timestamp"]
        last_timestamp_ms: i64 as Millis => "Commit time of the last record.",
        leaf_count: u64 => "Number of records (Merkle leaves).",
        merkle_root: Sha256Digest => "RFC 6962 Merkle root over the records, hex.",
        previous_window_id: Option<String> => "The previous window of the chain; null for the first.",
        previous_merkle_root: Option<Sha256Digest> => "Its Merkle root.",
        attestation_digest: Sha256Digest => "SHA-256 of the signed statement (the envelope payload).",
        keyid: Option<KeyId> => "Key id of the signature; null when unsigned (L1).",
        envelope: String => "The stream-window/v1 statement as a DSSE envelope (JSON).",
        #[column = "attested_at"]
        attested_at_us: i64 as Micros => "When the window was attested.",
        run_id: String => "Id of the makoto attest run that wrote the row.",
    }
}

system_row! {
    /// One row of `system.makoto.runs`: one attest run of `makoto serve` that attested
    /// something or failed (looks that found nothing new are not recorded).
    pub struct RunRow: RUN_COLUMNS, "run row" {
        table_uri: String => "The table the run attested.",
        service: String => "The makoto serve replica that ran it: <host>:<pid>, then /<i>/<N> when it serves shard i of N.",
        run_id: Option<String> => "Id of the attest run: the run_id of the rows it wrote; null when it failed before it started.",
        outcome: String => "attested, or failed.",
        #[column = "started_at"]
        started_at_us: i64 as Micros => "When the run started.",
        #[column = "finished_at"]
        finished_at_us: i64 as Micros => "When it finished.",
        previously_attested: Option<u64> => "Last attested version before the run; null when the table had none.",
        attested_version: Option<u64> => "Last attested version after the run; null when the table has none.",
        latest_version: Option<u64> => "The table's latest version when the run listed its log; null when it failed before.",
        commits_attested: u64 => "Commits the run attested.",
        lag_ms: Option<u64> => "How long the oldest commit the run found unattested had waited when the run finished (commit file's modification time to finished_at), in ms.",
        files_hashed: u64 => "Data files the run hashed.",
        bytes_hashed: u64 => "Bytes the run hashed.",
        error_kind: Option<String> => "For a failed run: the error kind (as in the makoto_attest_errors_total metric).",
        error: Option<String> => "For a failed run: the one-line error, naming table, version or file.",
        failures: u64 => "Consecutive failed runs of the table, this one included; 0 after a run that attested.",
    }
}

impl AttestationRow {
    /// The row recording the attestation `prepared` will sign, made of the commit `facts`
    /// describe. Its `envelope` is empty until the signature is made and it is set.
    pub fn of_commit(
        facts: &CommitFacts,
        prepared: &Prepared,
        attested_at_us: i64,
        run_id: &str,
    ) -> Self {
        let counts = facts.counts();
        AttestationRow {
            table_uri: facts.table_uri.clone(),
            table_id: facts.table_id.clone(),
            version: facts.version,
            commit_timestamp_ms: facts.timestamp_ms,
            timestamp_source: facts.timestamp_source,
            operation: facts.operation.clone(),
            engine: facts.engine.clone(),
            user_name: facts.user_name.clone().or(facts.user_id.clone()),
            predicate_type: facts.predicate_type().to_owned(),
            subject: facts.subject_name(),
            state_digest: facts.state_root,
            commit_digest: facts.commit_actions_digest,
            commit_file_digest: facts.commit_file_digest,
            changes_digest: changes_digest(&facts.changes),
            files_added: counts.files_added,
            files_removed: counts.files_removed,
            cdc_files: counts.cdc_files,
            bytes_added: counts.bytes_added,
            bytes_removed: counts.bytes_removed,
            records_added: counts.records_added,
            live_files: facts.live_files,
            live_bytes: facts.live_bytes,
            previous_attestation_digest: facts.previous.as_ref().map(|p| p.digest),
            attestation_digest: prepared.digest(),
            keyid: prepared.keyid().cloned(),
            level: prepared.level(),
            envelope: String::new(),
            attested_at_us,
            attestor_version: crate::attest::attestor_version(),
            run_id: run_id.to_owned(),
            data_availability: facts.availability.status(),
            timestamp_gen_time_us: None,
            timestamp_version: None,
        }
    }
}

impl FileRow {
    /// The rows of every file the commit `facts` describe adds, removes or writes as change
    /// data, in log order.
    pub fn of_commit<'a>(
        facts: &'a CommitFacts,
        run_id: &'a str,
    ) -> impl Iterator<Item = FileRow> + 'a {
        facts.changes.iter().enumerate().map(move |(ordinal, ch)| {
            FileRow::from_change(
                &facts.table_uri,
                &facts.table_id,
                facts.version,
                ordinal as u64,
                facts.timestamp_ms,
                ch,
                run_id,
            )
        })
    }

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
            action: change.kind(),
            path: change.path().to_owned(),
            size: change.size(),
            sha256: change.sha256(),
            data_change: change.data_change(),
            partition_values: canonical::to_string(&serde_json::json!(change.partition_values())),
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
            self.action,
            self.path.clone(),
            self.size,
            self.sha256,
            self.data_change,
            partition_values,
            self.num_records,
            dv,
        ))
    }

    /// The fields that must agree between two runs computing the same version.
    pub fn identity(
        &self,
    ) -> (
        u64,
        ChangeKind,
        &str,
        Option<Sha256Digest>,
        Option<&str>,
        Option<Sha256Digest>,
    ) {
        (
            self.version,
            self.action,
            self.path.as_str(),
            self.sha256,
            self.dv_unique_id.as_deref(),
            self.dv_sha256,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::{Col, Kind};
    use super::*;

    /// The schemas of the system tables. Columns are only ever appended, nullable: a table
    /// written by an earlier version gains them on the next `create` (AttestationStore::migrate).
    fn shape(cols: &[Col]) -> String {
        cols.iter()
            .map(|c| {
                let kind = match c.kind {
                    Kind::Str => "Str",
                    Kind::Long => "Long",
                    Kind::Bool => "Bool",
                    Kind::Ts => "Ts",
                };
                format!("{}:{kind}{}", c.name, if c.nullable { "?" } else { "" })
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn table_schemas_are_unchanged() {
        assert_eq!(
            shape(ATTESTATION_COLUMNS),
            "table_uri:Str table_id:Str version:Long commit_timestamp:Ts timestamp_source:Str operation:Str? engine:Str? user_name:Str? predicate_type:Str subject:Str state_digest:Str commit_digest:Str commit_file_digest:Str changes_digest:Str files_added:Long files_removed:Long cdc_files:Long bytes_added:Long bytes_removed:Long records_added:Long? live_files:Long live_bytes:Long previous_attestation_digest:Str? attestation_digest:Str keyid:Str? level:Str envelope:Str attested_at:Ts attestor_version:Str run_id:Str data_availability:Str timestamp_gen_time:Ts? timestamp_version:Long?"
        );
        assert_eq!(
            shape(FILE_COLUMNS),
            "table_uri:Str table_id:Str version:Long ordinal:Long commit_timestamp:Ts action:Str path:Str size:Long? sha256:Str? data_change:Bool partition_values:Str num_records:Long? dv_unique_id:Str? dv_storage_type:Str? dv_path_or_inline:Str? dv_offset:Long? dv_size_in_bytes:Long? dv_cardinality:Long? dv_file:Str? dv_sha256:Str? run_id:Str"
        );
        assert_eq!(
            shape(VERIFICATION_COLUMNS),
            "table_uri:Str table_id:Str? version:Long mode:Str result:Str errors:Long warnings:Long finding_kinds:Str state_digest:Str? attestation_digest:Str? since_version:Long? verified_at:Ts verifier:Str trusted_keyids:Str keyid:Str? envelope:Str report:Str attestor_version:Str run_id:Str"
        );
        assert_eq!(
            shape(RUN_COLUMNS),
            "table_uri:Str service:Str run_id:Str? outcome:Str started_at:Ts finished_at:Ts previously_attested:Long? attested_version:Long? latest_version:Long? commits_attested:Long lag_ms:Long? files_hashed:Long bytes_hashed:Long error_kind:Str? error:Str? failures:Long"
        );
        assert_eq!(
            shape(WINDOW_COLUMNS),
            "table_uri:Str table_id:Str spec:Str sequence:Long window_id:Str first_version:Long first_index:Long last_version:Long last_index:Long first_timestamp:Ts last_timestamp:Ts leaf_count:Long merkle_root:Str previous_window_id:Str? previous_merkle_root:Str? attestation_digest:Str keyid:Str? envelope:Str attested_at:Ts run_id:Str"
        );
    }
}
