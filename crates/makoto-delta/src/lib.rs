//! Delta Lake side of Makoto: reads a table's transaction log commit by commit through
//! delta-rs and `object_store`, hashes the files each commit adds, and keeps the attestation
//! store (`system.makoto.attestations`, `system.makoto.files` and the state-tree pages).
//!
//! ```no_run
//! # async fn example() -> Result<(), makoto_delta::Error> {
//! use std::sync::Arc;
//! use makoto_delta::{AttestOptions, Attestor, AttestationStore, Location, SourceTable, StorageOptions};
//!
//! let options = StorageOptions::default();
//! let table = SourceTable::open(Location::existing("data/sample/sales")?, &options)?;
//! let store = AttestationStore::create(Location::create("/tmp/warehouse")?, options).await?;
//! let key = makoto_delta::keyfile::load_signing_key("makoto.key".as_ref())?;
//! let summary = Attestor::new(table, store, Some(Arc::new(key)), AttestOptions::default())
//!     .run()
//!     .await?;
//! println!("attested through {:?}", summary.attested_through());
//! # Ok(()) }
//! ```
//!
//! Verifying a version: a read-only command opens the warehouse with
//! [`AttestationStore::open_existing`] (it creates nothing) and trusts only the keys it is
//! given. The report says what it covered; `verified` is true only when the version was
//! checked and nothing was found.
//!
//! ```no_run
//! # async fn example() -> Result<(), makoto_delta::Error> {
//! use makoto_delta::{
//!     AttestationStore, Location, SourceTable, StorageOptions, Verifier, VerifyMode,
//!     VerifyOptions, VersionSpec,
//! };
//!
//! let storage = StorageOptions::default();
//! let store =
//!     AttestationStore::open_existing(Location::existing("/tmp/warehouse")?, storage.clone())
//!         .await?;
//! let table = SourceTable::open(Location::existing("data/sample/sales")?, &storage)?;
//! let trust = makoto_delta::keyfile::load_trust("makoto.pub".as_ref())?;
//! let options = VerifyOptions {
//!     at: VersionSpec::Version(3),
//!     mode: VerifyMode::LogOnly,
//!     storage,
//!     ..VerifyOptions::default()
//! };
//! let report = Verifier::new(&table, &store, &trust, options).run().await?;
//! println!("{:?} at version {}: {:?}", report.outcome, report.version, report.coverage);
//! for f in &report.findings {
//!     println!("{} {:?} {}", f.kind.code(), f.version, f.detail);
//! }
//! # Ok(()) }
//! ```

pub mod aibom;
pub mod attest;
pub mod baseline;
pub mod checkpoint;
pub mod dbom;
mod error;
pub mod export;
pub mod gate;
pub mod hashing;
pub mod head;
pub mod identity;
pub mod keyfile;
pub mod lineage;
mod local_store;
pub mod location;
pub mod log;
pub mod pages;
pub mod proof;
pub mod signer;
pub mod store;
pub mod stream_records;
pub mod tsa;
pub mod verify;
pub mod view;
pub mod windows;

pub use attest::{
    AttestOptions, AttestSummary, AttestedVersion, Attestor, ChainHint, Event, NoObserver,
    Observer, Phase,
};
pub use error::Error;
pub use location::{Location, StorageOptions};
pub use log::SourceTable;
pub use store::{AttestationRow, AttestationStore, FileRow, WindowRow};
pub use verify::{
    Coverage, Eviction, Finding, FindingKind, Outcome, ReaderCheck, ReaderViewCoverage, Severity,
    Verifier, VerifyMode, VerifyOptions, VerifyReport, VersionSpec,
};
