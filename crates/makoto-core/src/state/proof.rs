use super::entry::FileEntry;
use super::node_hash;
use crate::{Error, Sha256Digest};

/// A proof that a file is live in a table version: the entry and the sibling hashes from the
/// root down to the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipProof {
    entry: FileEntry,
    siblings: Vec<Sha256Digest>,
}

impl MembershipProof {
    pub fn new(entry: FileEntry, siblings: Vec<Sha256Digest>) -> Self {
        MembershipProof { entry, siblings }
    }
    pub fn entry(&self) -> &FileEntry {
        &self.entry
    }
    /// Sibling hashes, root first.
    pub fn siblings(&self) -> &[Sha256Digest] {
        &self.siblings
    }
}

/// Recomputes the root from the proof and compares it with `root`.
pub fn verify_membership(proof: &MembershipProof, root: &Sha256Digest) -> Result<(), Error> {
    if proof.siblings.len() > 256 {
        return Err(Error::ProofMismatch {
            reason: "proof deeper than 256 levels".into(),
        });
    }
    let key = proof.entry.key();
    let mut h = proof.entry.leaf_hash();
    for (depth, sibling) in proof.siblings.iter().enumerate().rev() {
        h = if key.bit(depth) {
            node_hash(sibling, &h)
        } else {
            node_hash(&h, sibling)
        };
    }
    if h == *root {
        Ok(())
    } else {
        Err(Error::ProofMismatch {
            reason: format!(
                "proof for {:?} gives root {h}, expected {root}",
                proof.entry.path()
            ),
        })
    }
}
