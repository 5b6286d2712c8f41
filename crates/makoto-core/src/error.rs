use crate::Sha256Digest;

/// Errors of the attestation model. Every message is one line and names what it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid SHA-256 digest {value:?} (expected 64 lowercase hex characters)")]
    InvalidDigest { value: String },

    #[error("invalid Delta action: {reason}")]
    InvalidAction { reason: String },

    #[error("corrupt commit at version {version}, line {line}: {reason}")]
    CorruptCommit {
        version: u64,
        line: usize,
        reason: String,
    },

    #[error("invalid state page: {reason}")]
    InvalidStatePage { reason: String },

    #[error("version {version}: {path} is {actual} bytes, the log says {expected}")]
    FileSizeMismatch {
        version: u64,
        path: String,
        expected: u64,
        actual: u64,
    },

    #[error("version {version}: no digest was computed for {path}")]
    DigestNotComputed { version: u64, path: String },

    #[error("state page {page} is not loaded")]
    StatePageNotLoaded { page: Sha256Digest },

    #[error("membership proof does not match: {reason}")]
    ProofMismatch { reason: String },

    #[error("invalid key {what}: {reason}")]
    InvalidKey { what: String, reason: String },

    #[error("signing failed for key {keyid}: {reason}")]
    Signing { keyid: String, reason: String },

    #[error("invalid DSSE envelope: {reason}")]
    InvalidEnvelope { reason: String },

    #[error("invalid in-toto statement: {reason}")]
    InvalidStatement { reason: String },

    /// A window spec (`records=N`, `commits=N`, `duration=D`) that does not parse.
    #[error("window spec {spec:?}: {reason} (use records=N, commits=N or duration=D such as 5m)")]
    InvalidWindowSpec { spec: String, reason: String },

    #[error("record position {input:?}: expected VERSION:INDEX, e.g. 12:0")]
    InvalidRecordPosition { input: String },

    #[error("signature check failed: {reason}")]
    SignatureInvalid { reason: String },

    #[error("the envelope is unsigned")]
    Unsigned,

    #[error("no signature verifies under a trusted key (signatures name {})", if keyids.is_empty() { "no key".to_owned() } else { keyids.join(", ") })]
    UntrustedSignature { keyids: Vec<String> },

    #[error("signed by trusted key {keyid}, but {reason}")]
    KeyNotValid { keyid: String, reason: String },

    #[error("invalid trust file: {reason}")]
    InvalidTrust { reason: String },

    /// A time-stamp token (or TSA reply) that does not parse or whose signature does not hold.
    #[error("invalid time-stamp token: {reason}")]
    InvalidTimestamp { reason: String },

    /// A well-formed time-stamp token from an authority the verifier was not given.
    #[error("untrusted time-stamp token: {reason}")]
    UntrustedTimestamp { reason: String },

    /// A request to `makoto serve` that does not parse.
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
}
