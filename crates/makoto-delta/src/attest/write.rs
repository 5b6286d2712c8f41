//! Committing a signed batch whose pages are stored: its file rows, then its attestation rows.
//!
//! These commits run on a task of their own while the run reads, hashes and signs the next
//! batch; the run waits for them before it reports the next batch signed, and so before it
//! writes anything of the next batch. Writes therefore happen in batch order, each batch's in
//! the order pages, file rows, attestation rows, exactly as when nothing overlapped: a run
//! that dies at any point leaves whole batches only.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::observer::emit;
use super::{AttestedVersion, BatchOutput, Event, Observer, Phase};
use crate::Error;
use crate::store::{
    AppendOutcome, AttestationRow, AttestationStore, FileRow, attestations_app_id, files_app_id,
};

/// Everything a batch's write needs, owned, so that it can run beside the next batch.
pub(super) struct BatchWrite {
    pub store: AttestationStore,
    pub observer: Arc<dyn Observer>,
    pub uri: String,
    pub run_id: String,
    pub output: BatchOutput,
    /// The version the attestations table's `txn` must still record for this write to land.
    pub attested_before: Option<u64>,
    pub from: u64,
    pub to: u64,
}

/// How a batch's write ended.
pub(super) enum Written {
    Committed {
        row: Option<Box<AttestationRow>>,
        attested: Vec<AttestedVersion>,
    },
    /// Another run wrote these versions first.
    Conflict,
}

/// A write in progress. Dropping it stops the write at its next await, as dropping the run
/// would have stopped a write made inline: what it leaves is what a crash there leaves.
pub(super) struct Writing(tokio::task::JoinHandle<Result<Written, Error>>);

impl Writing {
    pub fn start(write: BatchWrite) -> Self {
        Writing(tokio::spawn(write.run()))
    }

    pub async fn finish(mut self) -> Result<Written, Error> {
        self.wait().await
    }

    /// Waits for the write to end; not to be called again once it returned.
    pub async fn wait(&mut self) -> Result<Written, Error> {
        (&mut self.0).await.unwrap_or_else(|e| {
            Err(Error::Task {
                reason: format!("writing a batch: {e}"),
            })
        })
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BatchWrite {
    fn reached(&self, phase: Phase) -> Result<(), Error> {
        emit(
            self.observer.as_ref(),
            Event::Reached {
                phase,
                from: self.from,
                through: self.to,
            },
        )
    }

    async fn run(mut self) -> Result<Written, Error> {
        if let ControlFlow::Break(()) = self.write_file_rows().await? {
            return Ok(Written::Conflict);
        }
        self.reached(Phase::FilesCommitted)?;

        let att_table = self.store.load_attestations().await?;
        let att_done = self
            .store
            .read_txn(&att_table, &attestations_app_id(&self.uri))
            .await?;
        if att_done != self.attested_before {
            return Ok(Written::Conflict);
        }
        match self
            .store
            .append_attestations(
                att_table,
                &self.output.attestation_rows,
                &self.uri,
                self.to,
                &self.run_id,
            )
            .await?
        {
            AppendOutcome::Committed { .. } => {}
            AppendOutcome::Conflict => return Ok(Written::Conflict),
        }
        self.reached(Phase::AttestationsCommitted)?;
        Ok(Written::Committed {
            row: std::mem::take(&mut self.output.attestation_rows)
                .pop()
                .map(Box::new),
            attested: std::mem::take(&mut self.output.attested),
        })
    }

    /// Commits the batch's file rows, skipping versions an interrupted or concurrent run
    /// already wrote after checking that they agree with what this run computed. Breaks when
    /// another run committed first.
    async fn write_file_rows(&self) -> Result<ControlFlow<()>, Error> {
        let (uri, from, to) = (&self.uri, self.from, self.to);
        let files_table = self.store.load_files().await?;
        let files_done = self
            .store
            .read_txn(&files_table, &files_app_id(uri))
            .await?;
        let written_through = files_done.filter(|v| *v >= from);
        if let Some(done) = written_through {
            let existing = self
                .store
                .file_rows(&files_table, uri, from, done.min(to))
                .await?;
            self.check_written(&existing, done)?;
        }
        if written_through.is_some_and(|d| d >= to) {
            return Ok(ControlFlow::Continue(()));
        }
        // The rows are in version order (one commit's after another's), so the versions not
        // yet written are a tail of them: borrowed, not copied.
        let rows = &self.output.file_rows;
        let new_rows =
            &rows[written_through.map_or(0, |d| rows.partition_point(|r| r.version <= d))..];
        match self
            .store
            .append_files(files_table, new_rows, uri, to, &self.run_id)
            .await?
        {
            AppendOutcome::Committed { .. } => Ok(ControlFlow::Continue(())),
            AppendOutcome::Conflict => Ok(ControlFlow::Break(())),
        }
    }

    /// The file rows through `done` that an earlier run wrote (`existing`) must be the ones
    /// this run computed.
    fn check_written(&self, existing: &[FileRow], done: u64) -> Result<(), Error> {
        let mut ours: Vec<_> = self
            .output
            .file_rows
            .iter()
            .filter(|r| r.version <= done)
            .map(FileRow::identity)
            .collect();
        let mut theirs: Vec<_> = existing.iter().map(FileRow::identity).collect();
        ours.sort();
        theirs.sort();
        if ours == theirs {
            return Ok(());
        }
        let first = ours
            .iter()
            .zip(theirs.iter())
            .find(|(a, b)| a != b)
            .map(|(a, _)| format!("version {} file {}", a.0, a.2))
            .unwrap_or_else(|| format!("{} rows recomputed, {} stored", ours.len(), theirs.len()));
        Err(Error::StoreCorrupt {
            store: self.store.files_location().as_uri(),
            reason: format!(
                "file rows of {} written by an earlier interrupted run disagree with the table now ({first}); the data changed after it was first hashed — run `makoto verify`",
                self.uri
            ),
        })
    }
}
