//! The table-state commitment: a sparse Merkle tree over the live files of a table version.
//!
//! Every live file (an `add` not yet removed) is a leaf. Its key is
//! `SHA-256(path ‖ 0x00 ‖ dvUniqueId)` (the protocol's reconciliation key, with the decoded
//! path and the empty string when there is no deletion vector); its hash is
//! `SHA-256(0x00 ‖ canonical JSON of the entry)`. The root of a set `S` at depth `d` is
//! `0³²` for no leaf, the leaf hash for one leaf, otherwise
//! `SHA-256(0x01 ‖ root(S₀, d+1) ‖ root(S₁, d+1))`, splitting on bit `d` of the key (most
//! significant bit first). The root depends only on the set of live files, never on the order
//! of commits or on checkpoints, and changes in `O(log n)` hashes per file added or removed.
//! See `docs/digests.md` for the full specification.

mod apply;
mod entry;
mod page;
mod proof;
mod tree;

pub use apply::{AppliedCommit, Digest, Hashed, apply_commit, needed_digests};
pub use entry::{DvEntry, FileEntry, leaf_key};
pub use page::{PAGE_STRIDE, PageRequest, UnstoredPages};
pub use proof::{MembershipProof, verify_membership};
pub use tree::{Batch, StateTree, root_of, root_of_leaves};

/// Name of the state-tree construction, recorded in every statement.
pub const STATE_ALGORITHM: &str = "makoto-delta-state-smt/1";

pub(crate) const LEAF_PREFIX: u8 = 0x00;
pub(crate) const NODE_PREFIX: u8 = 0x01;

use crate::Sha256Digest;

/// A leaf of a sparse Merkle tree: the live files of the state tree ([`FileEntry`]) and of
/// the reader view ([`crate::reader_view::ReaderFile`]) share the construction.
pub trait Leaf: Clone + PartialEq + std::fmt::Debug + Sized {
    /// `SHA-256(path ‖ 0x00 ‖ dvUniqueId)`.
    fn key(&self) -> Sha256Digest;
    /// Bytes of the file (summed into the tree's byte total).
    fn size(&self) -> u64;
    /// Decoded path, for messages.
    fn path(&self) -> std::borrow::Cow<'_, str>;
    /// The canonical JSON the leaf hash covers.
    fn value_bytes(&self) -> Vec<u8>;
    /// Parses [`Leaf::value_bytes`], refusing anything not in canonical form.
    fn from_value_bytes(bytes: &[u8]) -> Result<Self, crate::Error>;
    /// `SHA-256(0x00 ‖ value_bytes)`.
    fn leaf_hash(&self) -> Sha256Digest {
        Sha256Digest::of_parts(&[&[LEAF_PREFIX], &self.value_bytes()])
    }
}

pub(crate) fn node_hash(left: &Sha256Digest, right: &Sha256Digest) -> Sha256Digest {
    Sha256Digest::of_parts(&[&[NODE_PREFIX], left.as_bytes(), right.as_bytes()])
}
