//! RFC 6962 Merkle trees over an ordered list of records (stream windows).
//!
//! `leaf = SHA-256(0x00 ‖ record bytes)`, `node = SHA-256(0x01 ‖ left ‖ right)`; a list of `n > 1`
//! leaves splits at `k`, the largest power of two below `n` (RFC 6962 §2.1), so an odd leaf is
//! never duplicated. The root of the empty list is `SHA-256("")`.

use crate::{Error, Sha256Digest};

/// The leaf hash of one record's bytes.
pub fn leaf_hash(record: &[u8]) -> Sha256Digest {
    Sha256Digest::of_parts(&[&[0u8], record])
}

fn node(left: &Sha256Digest, right: &Sha256Digest) -> Sha256Digest {
    Sha256Digest::of_parts(&[&[1u8], left.as_bytes(), right.as_bytes()])
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The Merkle tree hash of leaf hashes, in order.
pub fn root(leaves: &[Sha256Digest]) -> Sha256Digest {
    match leaves {
        [] => Sha256Digest::of(b""),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Height of the tree over `n` leaves (0 for one leaf).
pub fn height(n: usize) -> u32 {
    match n {
        0 | 1 => 0,
        n => usize::BITS - (n - 1).leading_zeros(),
    }
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1), bottom-up.
pub fn inclusion_proof(leaves: &[Sha256Digest], index: usize) -> Result<Vec<Sha256Digest>, Error> {
    if index >= leaves.len() {
        return Err(Error::ProofMismatch {
            reason: format!(
                "record position {index} is outside the window ({} records)",
                leaves.len()
            ),
        });
    }
    let mut path = Vec::new();
    audit(leaves, index, &mut path);
    Ok(path)
}

fn audit(leaves: &[Sha256Digest], index: usize, path: &mut Vec<Sha256Digest>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if index < k {
        audit(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        audit(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// Recomputes the root from a leaf hash, its position, the tree size and its audit path
/// (RFC 9162 §2.1.3.2).
pub fn root_from_proof(
    leaf: Sha256Digest,
    index: u64,
    size: u64,
    path: &[Sha256Digest],
) -> Result<Sha256Digest, Error> {
    let bad = |reason: &str| Error::ProofMismatch {
        reason: reason.to_owned(),
    };
    if index >= size {
        return Err(bad("the record position is outside the window"));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if sn == 0 {
            return Err(bad("the audit path is too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(bad("the audit path is too short"));
    }
    Ok(r)
}

/// How a list of leaves differs from the attested one, at its first difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafChange {
    /// A record has other bytes.
    Altered,
    /// A record not in the attested list sits at this position.
    Inserted,
    /// The attested record at this position is gone.
    Dropped,
    /// This record and the next one swapped places.
    Reordered,
}

/// The first position where `now` differs from `attested`, and how: a swap of two neighbours,
/// one record inserted or dropped (the rest shifted by one), else an altered record.
pub fn diff_leaves(attested: &[Sha256Digest], now: &[Sha256Digest]) -> Option<(LeafChange, usize)> {
    let p = attested
        .iter()
        .zip(now)
        .position(|(a, b)| a != b)
        .or_else(|| (attested.len() != now.len()).then(|| attested.len().min(now.len())))?;
    let same = |a: &[Sha256Digest], b: &[Sha256Digest]| a.iter().zip(b).all(|(x, y)| x == y);
    if p + 1 < now.len()
        && p + 1 < attested.len()
        && now[p] == attested[p + 1]
        && now[p + 1] == attested[p]
    {
        return Some((LeafChange::Reordered, p));
    }
    if let (Some(n), Some(a)) = (now.get(p..), attested.get(p..))
        && n.len() > a.len().saturating_sub(1)
        && same(a, &n[1..])
        && !a.contains(&n[0])
    {
        return Some((LeafChange::Inserted, p));
    }
    if let (Some(n), Some(a)) = (now.get(p..), attested.get(p..))
        && !a.is_empty()
        && same(&a[1..], n)
        && !n.contains(&a[0])
    {
        return Some((LeafChange::Dropped, p));
    }
    Some((LeafChange::Altered, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Sha256Digest> {
        (0..n)
            .map(|i| leaf_hash(format!("r{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn rfc6962_shape_without_duplicated_leaves() {
        let l = leaves(3);
        // n = 3 splits 2 + 1: the odd leaf is promoted, not paired with itself.
        assert_eq!(root(&l), node(&node(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&[]), Sha256Digest::of(b""));
        assert_eq!(root(&l[..1]), l[0]);
        let mut pre = vec![0u8];
        pre.extend_from_slice(b"r0");
        assert_eq!(l[0], Sha256Digest::of(&pre));
        assert_eq!(
            (height(1), height(2), height(3), height(4), height(5)),
            (0, 1, 2, 2, 3)
        );
    }

    #[test]
    fn differences_are_classified() {
        let a = leaves(6);
        let mut altered = a.clone();
        altered[2] = leaf_hash(b"x");
        assert_eq!(diff_leaves(&a, &altered), Some((LeafChange::Altered, 2)));
        let mut inserted = a.clone();
        inserted.insert(2, leaf_hash(b"x"));
        assert_eq!(diff_leaves(&a, &inserted), Some((LeafChange::Inserted, 2)));
        let mut dropped = a.clone();
        dropped.remove(2);
        assert_eq!(diff_leaves(&a, &dropped), Some((LeafChange::Dropped, 2)));
        let mut swapped = a.clone();
        swapped.swap(2, 3);
        assert_eq!(diff_leaves(&a, &swapped), Some((LeafChange::Reordered, 2)));
        let mut appended = a.clone();
        appended.push(leaf_hash(b"x"));
        assert_eq!(diff_leaves(&a, &appended), Some((LeafChange::Inserted, 6)));
        assert_eq!(diff_leaves(&a, &a[..5]), Some((LeafChange::Dropped, 5)));
        assert_eq!(diff_leaves(&a, &a), None);
    }

    #[test]
    fn every_proof_verifies_and_wrong_ones_do_not() {
        for n in 1..=17 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i).unwrap();
                assert_eq!(root_from_proof(l[i], i as u64, n as u64, &p).unwrap(), r);
                if n > 1 {
                    let other = (i + 1) % n;
                    assert_ne!(
                        root_from_proof(l[i], other as u64, n as u64, &p).ok(),
                        Some(r),
                        "n={n} i={i}"
                    );
                }
            }
        }
        assert!(inclusion_proof(&leaves(3), 3).is_err());
    }
}
