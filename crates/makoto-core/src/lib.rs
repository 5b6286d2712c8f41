//! The Makoto attestation model for Delta Lake, with no I/O.
//!
//! - [`delta`]: parsing of Delta commit files into actions ([`delta::Commit`]).
//! - [`state`]: the table-state commitment, a sparse Merkle tree over live files.
//! - [`attestation`]: Makoto `origin/v1` / `transform/v1` statements for commits, sealed in
//!   [`dsse`] envelopes with [`keys`]; [`verify`] checks them against trusted keys.
//! - [`canonical`]: the canonical JSON every hashed or signed byte string uses.
//!
//! ```
//! # fn main() -> Result<(), makoto_core::Error> {
//! use makoto_core::keys::{SigningKeyPair, Signer};
//! use makoto_core::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
//! use makoto_core::verify::{verify_statement, TrustedKeys};
//! use makoto_core::statement::{Statement, Subject};
//!
//! let key = SigningKeyPair::from_seed(&[42; 32]);
//! let statement = Statement::new(
//!     vec![Subject::new("s3://lake/sales@v0", Default::default())],
//!     "https://makoto.dev/origin/v1",
//!     serde_json::json!({}),
//! );
//! let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement.to_payload(), &key)?;
//! let verified = verify_statement(&envelope, &TrustedKeys::new(vec![key.public_key().clone()]))?;
//! assert_eq!(verified.value().subject()[0].name(), "s3://lake/sales@v0");
//! # Ok(())
//! # }
//! ```

#[macro_use]
mod names;

pub mod aibom;
pub mod attestation;
pub mod attested;
pub mod canonical;
pub mod commit_predicate;
pub mod delta;
mod digest;
pub mod dsse;
mod error;
pub mod export;
pub mod head;
pub mod key_source;
pub mod keys;
pub mod merkle;
pub mod proof;
pub mod reader_view;
pub mod service;
pub mod state;
pub mod statement;
pub mod stream_window;
pub mod timestamp;
pub mod verify;
pub mod window;

pub use digest::{Sha256Digest, StreamHasher};
pub use error::Error;
