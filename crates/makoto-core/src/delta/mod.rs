//! The parts of the Delta Lake protocol that attestation depends on: commit files, their actions,
//! file paths and deletion-vector descriptors. Parsing only; reading bytes is the caller's job.

mod action;
mod commit;
mod dv;
mod path;
mod protocol;

pub use action::{
    Action, AddFile, CdcFile, CommitInfo, DomainMetadata, Metadata, Protocol, RemoveFile, Txn,
};
pub use commit::{ActionCounts, Commit, TimestampSource};
pub use dv::{DeletionVector, DvStorage};
pub use path::FilePath;
pub use protocol::{ReaderFeatureSupport, check_reader_features};

/// Name of the commit file for `version` inside `_delta_log/`.
pub fn commit_file_name(version: u64) -> String {
    format!("{version:020}.json")
}
