//! The attestation service behind `makoto serve`: watches many Delta tables and attests every
//! new commit soon after it lands, holding the signing key so that the jobs writing the tables
//! never see it.
//!
//! - [`tables`]: which tables (a tables file, or discovery under storage prefixes);
//! - [`shard`]: which of them this replica owns (`--shard I/N`);
//! - [`schedule`]: when each is looked at (poll, idle stretch, failure backoff);
//! - [`service`]: the loop that looks and runs the attest job, exactly once per version;
//! - [`metrics`] and [`http`]: `/metrics`, `/healthz`, `/readyz`, `/v1/tables`.
//!
//! ```no_run
//! # async fn example() -> Result<(), makoto_serve::Error> {
//! use std::sync::Arc;
//! use makoto_serve::{ServeConfig, Shared, Service, shard::Shard, tables::TableSource};
//!
//! let config = ServeConfig {
//!     warehouse: "s3://lake/wh".into(),
//!     storage: Default::default(),
//!     signer: None,
//!     tables: TableSource::Discover(vec!["s3://lake/tables".into()]),
//!     shard: Shard::default(),
//!     concurrency: 8,
//!     timing: Default::default(),
//!     rescan: std::time::Duration::from_secs(60),
//!     tsa: None,
//!     identity: None,
//!     release_memory: Some(std::time::Duration::from_secs(10)),
//! };
//! let shared = Arc::new(Shared::default());
//! Service::open(config, shared).await?.run(std::future::pending()).await
//! # }
//! ```

pub mod client;
pub mod http;
pub mod metrics;
pub mod runs;
pub mod schedule;
pub mod service;
pub mod shard;
pub mod tables;
pub mod tenants;

pub use service::{ServeConfig, Service, Shared};

/// Why the service could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting or the tables file is not usable.
    #[error("{what}: {reason}")]
    Config { what: String, reason: String },
    /// Discovery could not list a prefix.
    #[error("discovering tables under {prefix}: {reason}")]
    Discovery { prefix: String, reason: String },
    /// The warehouse could not be opened or read.
    #[error(transparent)]
    Delta(makoto_delta::Error),
    /// The listen address could not be bound.
    #[error("listening on {address}: {reason}")]
    Listen { address: String, reason: String },
    /// A request to a running service failed or was refused.
    #[error("makoto serve at {service}: {reason}")]
    Request { service: String, reason: String },
    #[error("internal state poisoned by a panicked task")]
    Poisoned,
}
