use std::collections::HashSet;

use super::Leaf;
use super::entry::FileEntry;
use super::page::{self, PAGE_STRIDE, PageRequest};
use super::proof::MembershipProof;
use super::{LEAF_PREFIX, node_hash};
use crate::{Error, Sha256Digest};

pub(super) enum Node<L> {
    Empty,
    Leaf(Box<LeafNode<L>>),
    Branch(Box<BranchNode<L>>),
    /// A subtree not loaded from storage; its page id is its hash. Boxed so that a node is
    /// two words: every branch holds two, and a whole tree has about two branches a leaf.
    Stub(Box<Sha256Digest>),
}

pub(super) struct LeafNode<L> {
    pub(super) key: Sha256Digest,
    pub(super) hash: Sha256Digest,
    pub(super) entry: L,
}

pub(super) struct BranchNode<L> {
    pub(super) hash: Sha256Digest,
    pub(super) left: Node<L>,
    pub(super) right: Node<L>,
}

impl<L> Node<L> {
    pub(super) fn hash(&self) -> Sha256Digest {
        match self {
            Node::Empty => Sha256Digest::ZERO,
            Node::Leaf(l) => l.hash,
            Node::Branch(b) => b.hash,
            Node::Stub(h) => **h,
        }
    }

    pub(super) fn branch(left: Node<L>, right: Node<L>) -> Node<L> {
        let hash = node_hash(&left.hash(), &right.hash());
        Node::Branch(Box::new(BranchNode { hash, left, right }))
    }
}

/// The live-file set of one table version, as a sparse Merkle tree that can be partly loaded.
///
/// Subtrees rooted at depths that are multiples of [`PAGE_STRIDE`] are stored as pages named
/// by their hash; a tree resumed from a stored root loads only the pages on the paths of the
/// keys it touches ([`StateTree::missing_page`] / [`StateTree::attach_page`]).
pub struct StateTree<L = FileEntry> {
    root: Node<L>,
    files: u64,
    bytes: u64,
    persisted: HashSet<Sha256Digest>,
}

impl<L> std::fmt::Debug for StateTree<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTree")
            .field("root", &self.root.hash())
            .field("files", &self.files)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<L: Leaf> Default for StateTree<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Leaf> StateTree<L> {
    /// The empty table.
    pub fn new() -> Self {
        StateTree {
            root: Node::Empty,
            files: 0,
            bytes: 0,
            persisted: HashSet::new(),
        }
    }

    /// A tree known only by its root, file count and byte total (from the last attestation);
    /// pages are loaded on demand.
    pub fn resume(root: Sha256Digest, files: u64, bytes: u64) -> Self {
        let mut persisted = HashSet::new();
        let node = if root == Sha256Digest::ZERO {
            Node::Empty
        } else {
            persisted.insert(root);
            Node::Stub(Box::new(root))
        };
        StateTree {
            root: node,
            files,
            bytes,
            persisted,
        }
    }

    /// Builds a fully loaded tree from a set of live files.
    pub fn from_entries(entries: impl IntoIterator<Item = L>) -> Result<Self, Error> {
        let mut t = StateTree::new();
        for e in entries {
            t.insert(e)?;
        }
        Ok(t)
    }

    /// The state digest.
    pub fn root(&self) -> Sha256Digest {
        self.root.hash()
    }

    /// Number of live files.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Total size in bytes of the live files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The first page that must be loaded before `key` can be looked up, inserted or removed.
    pub fn missing_page(&self, key: &Sha256Digest) -> Option<PageRequest> {
        let mut node = &self.root;
        let mut depth = 0usize;
        loop {
            match node {
                Node::Empty | Node::Leaf(_) => return None,
                Node::Stub(h) => return Some(PageRequest::new(**h, depth, *key)),
                Node::Branch(b) => {
                    node = if key.bit(depth) { &b.right } else { &b.left };
                    depth += 1;
                }
            }
        }
    }

    /// Every page that must be loaded before the whole tree is in memory (the pages these
    /// load can hold stubs of their own: ask again once they are attached).
    pub fn missing_pages(&self) -> Vec<PageRequest> {
        fn walk<L>(node: &Node<L>, depth: usize, path: &mut [u8; 32], out: &mut Vec<PageRequest>) {
            match node {
                Node::Empty | Node::Leaf(_) => {}
                Node::Stub(h) => out.push(PageRequest::new(
                    **h,
                    depth,
                    Sha256Digest::from_bytes(*path),
                )),
                // A branch splits on bit `depth`: there is none past the key's last bit.
                Node::Branch(_) if depth >= 256 => {}
                Node::Branch(b) => {
                    let (byte, bit) = (depth / 8, 0x80u8 >> (depth % 8));
                    walk(&b.left, depth + 1, path, out);
                    path[byte] |= bit;
                    walk(&b.right, depth + 1, path, out);
                    path[byte] &= !bit;
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, 0, &mut [0u8; 32], &mut out);
        out
    }

    /// Replaces the stub named by `request` with the page `bytes` fetched for it. The page must
    /// hash to the requested id.
    pub fn attach_page(&mut self, request: &PageRequest, bytes: &[u8]) -> Result<(), Error> {
        let node = page::decode::<L>(bytes, request)?;
        let mut slot = &mut self.root;
        let mut depth = 0usize;
        while depth < request.depth() {
            slot = match slot {
                Node::Branch(b) => {
                    if request.key().bit(depth) {
                        &mut b.right
                    } else {
                        &mut b.left
                    }
                }
                _ => {
                    return Err(Error::InvalidStatePage {
                        reason: format!(
                            "no subtree at depth {} for page {}",
                            request.depth(),
                            request.page()
                        ),
                    });
                }
            };
            depth += 1;
        }
        match slot {
            Node::Stub(h) if **h == request.page() => {
                self.persisted.insert(**h);
                *slot = node;
                Ok(())
            }
            _ => Err(Error::InvalidStatePage {
                reason: format!(
                    "page {} is not pending at depth {}",
                    request.page(),
                    request.depth()
                ),
            }),
        }
    }

    /// The live file with this key, if any. The key's path must be loaded.
    pub fn get(&self, key: &Sha256Digest) -> Result<Option<&L>, Error> {
        let mut node = &self.root;
        let mut depth = 0usize;
        loop {
            match node {
                Node::Empty => return Ok(None),
                Node::Leaf(l) => return Ok((l.key == *key).then_some(&l.entry)),
                Node::Stub(h) => return Err(Error::StatePageNotLoaded { page: **h }),
                Node::Branch(b) => {
                    node = if key.bit(depth) { &b.right } else { &b.left };
                    depth += 1;
                }
            }
        }
    }

    /// Adds a live file, replacing one with the same key; returns the replaced entry.
    pub fn insert(&mut self, entry: L) -> Result<Option<L>, Error> {
        self.insert_hashing(entry, Hashing::Now)
    }

    fn insert_hashing(&mut self, entry: L, hashing: Hashing) -> Result<Option<L>, Error> {
        let size = entry.size();
        let key = entry.key();
        let hash = Sha256Digest::of_parts(&[&[LEAF_PREFIX], &entry.value_bytes()]);
        let leaf = Box::new(LeafNode { key, hash, entry });
        let replaced = insert_at(&mut self.root, 0, leaf, hashing)?;
        self.files += 1;
        self.bytes += size;
        if let Some(old) = &replaced {
            self.files -= 1;
            self.bytes = self.bytes.saturating_sub(old.size());
        }
        Ok(replaced)
    }

    /// Removes the live file with this key; returns it, or `None` if it was not live.
    pub fn remove(&mut self, key: &Sha256Digest) -> Result<Option<L>, Error> {
        self.remove_hashing(key, Hashing::Now)
    }

    fn remove_hashing(&mut self, key: &Sha256Digest, hashing: Hashing) -> Result<Option<L>, Error> {
        let removed = remove_at(&mut self.root, 0, key, hashing)?;
        if let Some(old) = &removed {
            self.files = self.files.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(old.size());
        }
        Ok(removed)
    }

    /// Changes whose branch hashes are computed once, when the batch is dropped, rather than
    /// along the path of each insert and remove: the files of one commit share the upper
    /// branches of their paths, so each branch a commit touches is hashed once. The tree
    /// cannot be read until the batch ends.
    pub fn batch(&mut self) -> Batch<'_, L> {
        Batch { tree: self }
    }

    /// Every live file of the loaded part of the tree, in key order.
    pub fn loaded_entries(&self) -> Vec<&L> {
        fn walk<'a, L>(n: &'a Node<L>, out: &mut Vec<&'a L>) {
            match n {
                Node::Leaf(l) => out.push(&l.entry),
                Node::Branch(b) => {
                    walk(&b.left, out);
                    walk(&b.right, out);
                }
                Node::Empty | Node::Stub(_) => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Pages of the current tree that storage does not have yet, as `(page id, bytes)`.
    /// Unchanged subtrees are skipped without being visited.
    pub fn unpersisted_pages(&self) -> Vec<(Sha256Digest, Vec<u8>)> {
        self.unstored_pages().collect()
    }

    /// The same pages as [`StateTree::unpersisted_pages`], in the same order, encoded as they
    /// are taken.
    pub fn unstored_pages(&self) -> page::UnstoredPages<'_, L> {
        page::UnstoredPages::new(&self.root, 0, &self.persisted, page::LAYOUT)
    }

    /// The pages as versions before inlining wrote them.
    #[cfg(test)]
    fn unpersisted_pages_v1(&self) -> Vec<(Sha256Digest, Vec<u8>)> {
        page::UnstoredPages::new(&self.root, 0, &self.persisted, page::LAYOUT_V1).collect()
    }

    /// Records that these pages are now in storage.
    pub fn mark_persisted(&mut self, pages: impl IntoIterator<Item = Sha256Digest>) {
        self.persisted.extend(pages);
    }

    /// Drops from memory every subtree below the root page that storage already holds,
    /// leaving a reference to its page; later lookups load it again on demand. Keeps the
    /// memory of a long run bounded by what one batch touches, not by the table's size.
    /// Returns the number of subtrees dropped.
    pub fn evict_persisted(&mut self) -> usize {
        fn evict<L>(
            node: &mut Node<L>,
            depth: usize,
            persisted: &HashSet<Sha256Digest>,
            kept: &mut HashSet<Sha256Digest>,
        ) -> usize {
            let Node::Branch(b) = node else { return 0 };
            if depth.is_multiple_of(PAGE_STRIDE) && persisted.contains(&b.hash) {
                if depth > 0 {
                    *node = Node::Stub(Box::new(b.hash));
                    return 1;
                }
                kept.insert(b.hash);
            }
            evict(&mut b.left, depth + 1, persisted, kept)
                + evict(&mut b.right, depth + 1, persisted, kept)
        }
        // What storage holds is remembered only for the pages still loaded: the set would
        // otherwise grow with every page a long run ever wrote.
        let mut kept = HashSet::new();
        let dropped = evict(&mut self.root, 0, &self.persisted, &mut kept);
        if let Node::Leaf(l) = &self.root
            && self.persisted.contains(&l.hash)
        {
            kept.insert(l.hash);
        }
        self.persisted = kept;
        dropped
    }
}

impl StateTree<FileEntry> {
    /// A proof that the file with `key` is live in this version (its path must be loaded).
    pub fn prove(&self, key: &Sha256Digest) -> Result<Option<MembershipProof>, Error> {
        let mut siblings = Vec::new();
        let mut node = &self.root;
        let mut depth = 0usize;
        loop {
            match node {
                Node::Empty => return Ok(None),
                Node::Stub(h) => return Err(Error::StatePageNotLoaded { page: **h }),
                Node::Leaf(l) => {
                    return Ok(
                        (l.key == *key).then(|| MembershipProof::new(l.entry.clone(), siblings))
                    );
                }
                Node::Branch(b) => {
                    let (next, sibling) = if key.bit(depth) {
                        (&b.right, &b.left)
                    } else {
                        (&b.left, &b.right)
                    };
                    siblings.push(sibling.hash());
                    node = next;
                    depth += 1;
                }
            }
        }
    }
}

/// When the branches on a changed path get their hashes.
#[derive(Clone, Copy)]
enum Hashing {
    /// Along the path, as each change is made.
    Now,
    /// Marked [`STALE`]; [`settle`] computes them when the [`Batch`] ends.
    Deferred,
}

/// The hash of a branch whose subtree changed in a [`Batch`]. No branch hashes to it (it is the
/// empty subtree's digest, and a branch is never empty).
const STALE: Sha256Digest = Sha256Digest::ZERO;

/// Changes to a [`StateTree`] whose branch hashes wait for the end of the batch
/// ([`StateTree::batch`]).
pub struct Batch<'a, L: Leaf> {
    tree: &'a mut StateTree<L>,
}

impl<L: Leaf> std::fmt::Debug for Batch<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("files", &self.tree.files)
            .finish_non_exhaustive()
    }
}

impl<L: Leaf> Batch<'_, L> {
    /// [`StateTree::insert`], with the hashes of the branches above deferred.
    pub fn insert(&mut self, entry: L) -> Result<Option<L>, Error> {
        self.tree.insert_hashing(entry, Hashing::Deferred)
    }

    /// [`StateTree::remove`], with the hashes of the branches above deferred.
    pub fn remove(&mut self, key: &Sha256Digest) -> Result<Option<L>, Error> {
        self.tree.remove_hashing(key, Hashing::Deferred)
    }
}

impl<L: Leaf> Drop for Batch<'_, L> {
    fn drop(&mut self) {
        settle(&mut self.tree.root);
    }
}

/// Computes the hash of every [`STALE`] branch, children first. A branch that is not stale has
/// no stale branch below it: a change marks every branch on its path.
fn settle<L>(node: &mut Node<L>) {
    if let Node::Branch(b) = node
        && b.hash == STALE
    {
        settle(&mut b.left);
        settle(&mut b.right);
        b.hash = node_hash(&b.left.hash(), &b.right.hash());
    }
}

impl<L> BranchNode<L> {
    fn rehash(&mut self, hashing: Hashing) {
        self.hash = match hashing {
            Hashing::Now => node_hash(&self.left.hash(), &self.right.hash()),
            Hashing::Deferred => STALE,
        };
    }
}

fn insert_at<L>(
    node: &mut Node<L>,
    depth: usize,
    leaf: Box<LeafNode<L>>,
    hashing: Hashing,
) -> Result<Option<L>, Error> {
    match node {
        Node::Empty => {
            *node = Node::Leaf(leaf);
            Ok(None)
        }
        Node::Stub(h) => Err(Error::StatePageNotLoaded { page: **h }),
        Node::Leaf(existing) if existing.key == leaf.key => {
            let old = std::mem::replace(existing, leaf);
            Ok(Some(old.entry))
        }
        Node::Leaf(_) => {
            let Node::Leaf(existing) = std::mem::replace(node, Node::Empty) else {
                return Ok(None);
            };
            *node = split(existing, leaf, depth)?;
            Ok(None)
        }
        Node::Branch(b) => {
            let r = if leaf.key.bit(depth) {
                insert_at(&mut b.right, depth + 1, leaf, hashing)?
            } else {
                insert_at(&mut b.left, depth + 1, leaf, hashing)?
            };
            b.rehash(hashing);
            Ok(r)
        }
    }
}

/// Two leaves with different keys that meet at `depth`: branch until their keys differ.
fn split<L>(a: Box<LeafNode<L>>, b: Box<LeafNode<L>>, depth: usize) -> Result<Node<L>, Error> {
    if depth >= 256 {
        return Err(Error::InvalidStatePage {
            reason: "two leaves with the same key".into(),
        });
    }
    Ok(match (a.key.bit(depth), b.key.bit(depth)) {
        (false, true) => Node::branch(Node::Leaf(a), Node::Leaf(b)),
        (true, false) => Node::branch(Node::Leaf(b), Node::Leaf(a)),
        (false, false) => Node::branch(split(a, b, depth + 1)?, Node::Empty),
        (true, true) => Node::branch(Node::Empty, split(a, b, depth + 1)?),
    })
}

fn remove_at<L>(
    node: &mut Node<L>,
    depth: usize,
    key: &Sha256Digest,
    hashing: Hashing,
) -> Result<Option<L>, Error> {
    match node {
        Node::Empty => Ok(None),
        Node::Stub(h) => Err(Error::StatePageNotLoaded { page: **h }),
        Node::Leaf(l) => {
            if l.key != *key {
                return Ok(None);
            }
            match std::mem::replace(node, Node::Empty) {
                Node::Leaf(l) => Ok(Some(l.entry)),
                _ => Ok(None),
            }
        }
        Node::Branch(b) => {
            let removed = if key.bit(depth) {
                remove_at(&mut b.right, depth + 1, key, hashing)?
            } else {
                remove_at(&mut b.left, depth + 1, key, hashing)?
            };
            if removed.is_none() {
                return Ok(None);
            }
            let collapse = matches!(
                (&b.left, &b.right),
                (Node::Leaf(_) | Node::Empty, Node::Empty) | (Node::Empty, Node::Leaf(_))
            );
            if collapse {
                let left = std::mem::replace(&mut b.left, Node::Empty);
                let right = std::mem::replace(&mut b.right, Node::Empty);
                *node = match (left, right) {
                    (Node::Empty, other) | (other, Node::Empty) => other,
                    (l, r) => Node::branch(l, r),
                };
            } else {
                b.rehash(hashing);
            }
            Ok(removed)
        }
    }
}

/// The state root of a set of files, computed directly from the recursive definition (no
/// tree kept). Used to cross-check the incremental tree.
pub fn root_of<L: Leaf>(entries: &[L]) -> Sha256Digest {
    let mut leaves: Vec<(Sha256Digest, Sha256Digest)> =
        entries.iter().map(|e| (e.key(), e.leaf_hash())).collect();
    leaves.sort_by_key(|l| l.0);
    leaves.dedup_by(|a, b| a.0 == b.0);
    root_of_leaves(&leaves)
}

/// The root of a set given as `(key, leaf hash)` pairs sorted by key: what [`root_of`]
/// computes once it has hashed the leaves, for a caller that kept only their hashes. A set
/// holds each key once; of pairs with the same key, the first counts.
pub fn root_of_leaves(leaves: &[(Sha256Digest, Sha256Digest)]) -> Sha256Digest {
    fn rec(leaves: &[(Sha256Digest, Sha256Digest)], depth: usize) -> Sha256Digest {
        match leaves {
            [] => Sha256Digest::ZERO,
            [(_, h)] => *h,
            // Sorted: the first and last keys are equal only when every key is.
            [(first, h), .., (last, _)] if first == last => *h,
            _ => {
                let split = leaves.partition_point(|(k, _)| !k.bit(depth));
                node_hash(
                    &rec(&leaves[..split], depth + 1),
                    &rec(&leaves[split..], depth + 1),
                )
            }
        }
    }
    rec(leaves, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::verify_membership;

    fn entry(i: usize) -> FileEntry {
        FileEntry::new(
            format!("part-{i:05}.parquet"),
            100 + i as u64,
            Sha256Digest::of(format!("content {i}").as_bytes()),
            None,
        )
    }

    /// A whole tree holds about two branches per leaf, so the node layout is most of its
    /// memory: a node is two words, a branch its hash and two nodes, a leaf under 150 bytes.
    #[test]
    fn nodes_stay_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<Node<FileEntry>>(), 2 * size_of::<usize>());
        assert_eq!(
            size_of::<BranchNode<FileEntry>>(),
            32 + 4 * size_of::<usize>()
        );
        assert!(size_of::<LeafNode<FileEntry>>() <= 144);
    }

    /// Batches of inserts, replacements and removes (some of keys not live, some emptying
    /// branches so they collapse) leave the roots, pages and proofs of the same changes made
    /// one at a time, and of the definition.
    #[test]
    fn a_batch_ends_with_the_tree_of_the_same_changes_made_one_by_one() {
        let (mut batched, mut eager) = (StateTree::new(), StateTree::new());
        let mut live = std::collections::BTreeMap::new();
        for round in 0..6usize {
            let adds: Vec<FileEntry> = (round * 150..round * 150 + 400)
                .map(|i| {
                    FileEntry::new(
                        format!("part-{i:05}.parquet"),
                        1 + (round as u64),
                        Sha256Digest::of(&i.to_le_bytes()),
                        None,
                    )
                })
                .collect();
            let removes: Vec<Sha256Digest> = (0..round * 150 + 400)
                .filter(|i| (i * 7 + round) % 5 == 0)
                .map(|i| entry(i).key())
                .collect();
            {
                let mut b = batched.batch();
                for k in &removes {
                    b.remove(k).unwrap();
                }
                for e in &adds {
                    b.insert(e.clone()).unwrap();
                }
            }
            for k in &removes {
                eager.remove(k).unwrap();
                live.remove(k);
            }
            for e in &adds {
                eager.insert(e.clone()).unwrap();
                live.insert(e.key(), e.clone());
            }
            let expected: Vec<FileEntry> = live.values().cloned().collect();
            assert_eq!(batched.root(), eager.root(), "round {round}");
            assert_eq!(batched.root(), root_of(&expected), "round {round}");
            assert_eq!(
                (batched.files(), batched.bytes()),
                (eager.files(), eager.bytes())
            );
            assert_eq!(batched.unpersisted_pages(), eager.unpersisted_pages());
            let some = expected[round * 31 % expected.len()].key();
            let proof = batched.prove(&some).unwrap().unwrap();
            assert!(verify_membership(&proof, &batched.root()).is_ok());
        }
        // Removing every file collapses the tree to empty.
        {
            let mut b = batched.batch();
            for k in live.keys() {
                b.remove(k).unwrap();
            }
        }
        assert_eq!(batched.root(), Sha256Digest::ZERO);
        assert_eq!(batched.files(), 0);
    }

    #[test]
    fn empty_single_and_pair_roots_follow_the_definition() {
        let mut t = StateTree::new();
        assert_eq!(t.root(), Sha256Digest::ZERO);
        t.insert(entry(1)).unwrap();
        assert_eq!(t.root(), entry(1).leaf_hash());
        t.insert(entry(2)).unwrap();
        let (a, b) = (entry(1), entry(2));
        // Find the first differing bit and build the chain by hand.
        let (ka, kb) = (a.key(), b.key());
        let d = (0..256).find(|&i| ka.bit(i) != kb.bit(i)).unwrap();
        let mut h = if ka.bit(d) {
            node_hash(&b.leaf_hash(), &a.leaf_hash())
        } else {
            node_hash(&a.leaf_hash(), &b.leaf_hash())
        };
        for i in (0..d).rev() {
            h = if ka.bit(i) {
                node_hash(&Sha256Digest::ZERO, &h)
            } else {
                node_hash(&h, &Sha256Digest::ZERO)
            };
        }
        assert_eq!(t.root(), h);
    }

    #[test]
    fn incremental_matches_recursive_definition_under_churn() {
        let mut t = StateTree::new();
        let mut live: Vec<FileEntry> = Vec::new();
        for i in 0..400 {
            t.insert(entry(i)).unwrap();
            live.push(entry(i));
            if i % 3 == 0 {
                let victim = live.remove(i / 5 % live.len());
                assert_eq!(t.remove(&victim.key()).unwrap(), Some(victim));
            }
            if i % 37 == 0 {
                assert_eq!(t.root(), root_of(&live), "after step {i}");
            }
        }
        assert_eq!(t.root(), root_of(&live));
        assert_eq!(t.files(), live.len() as u64);
        assert_eq!(t.bytes(), live.iter().map(FileEntry::size).sum::<u64>());
        // Order independence.
        let mut rev = live.clone();
        rev.reverse();
        assert_eq!(StateTree::from_entries(rev).unwrap().root(), t.root());
        // Remove everything.
        for e in &live {
            t.remove(&e.key()).unwrap();
        }
        assert_eq!(t.root(), Sha256Digest::ZERO);
        assert_eq!(t.files(), 0);
    }

    #[test]
    fn a_root_from_leaf_hashes_is_the_tree_root_and_a_repeated_key_counts_once() {
        let t = StateTree::from_entries((0..500).map(entry)).unwrap();
        let mut leaves: Vec<_> = (0..500)
            .map(|i| (entry(i).key(), entry(i).leaf_hash()))
            .collect();
        leaves.sort_unstable();
        assert_eq!(root_of_leaves(&leaves), t.root());
        let twice = leaves[3];
        leaves.insert(3, twice);
        assert_eq!(root_of_leaves(&leaves), t.root());
        assert_eq!(root_of_leaves(&[twice, twice]), twice.1);
        assert_eq!(root_of_leaves(&[]), Sha256Digest::ZERO);
        leaves.remove(9);
        assert_ne!(root_of_leaves(&leaves), t.root());
    }

    #[test]
    fn removing_an_absent_key_changes_nothing() {
        let mut t = StateTree::from_entries((0..10).map(entry)).unwrap();
        let before = t.root();
        assert_eq!(t.remove(&entry(99).key()).unwrap(), None);
        assert_eq!(t.root(), before);
    }

    #[test]
    fn proofs_verify_and_fail_on_change() {
        let t = StateTree::from_entries((0..50).map(entry)).unwrap();
        let p = t.prove(&entry(7).key()).unwrap().unwrap();
        assert!(verify_membership(&p, &t.root()).is_ok());
        assert!(t.prove(&entry(70).key()).unwrap().is_none());
        let other = StateTree::from_entries((0..49).map(entry)).unwrap();
        assert!(verify_membership(&p, &other.root()).is_err());
    }

    #[test]
    fn pages_round_trip_and_load_lazily() {
        let mut full = StateTree::from_entries((0..3000).map(entry)).unwrap();
        let pages = full.unpersisted_pages();
        assert!(pages.len() > 1, "a 3000-file tree spans several pages");
        full.mark_persisted(pages.iter().map(|(id, _)| *id));
        assert!(full.unpersisted_pages().is_empty());
        let store: std::collections::HashMap<_, _> = pages.into_iter().collect();
        for (id, bytes) in &store {
            assert_eq!(*id, crate::state::page::decode_root_hash(bytes).unwrap());
        }

        let original_root = full.root();
        let mut lazy = StateTree::resume(original_root, full.files(), full.bytes());
        let victim = entry(1234);
        while let Some(req) = lazy.missing_page(&victim.key()) {
            lazy.attach_page(&req, &store[&req.page()]).unwrap();
        }
        assert_eq!(lazy.get(&victim.key()).unwrap(), Some(&victim));
        lazy.remove(&victim.key()).unwrap();
        full.remove(&victim.key()).unwrap();
        assert_eq!(lazy.root(), full.root());
        // Only the pages along one path changed.
        let changed = lazy.unpersisted_pages();
        assert!(
            !changed.is_empty() && changed.len() <= 3,
            "{} pages",
            changed.len()
        );

        // A tampered page is refused.
        let mut again: StateTree = StateTree::resume(original_root, 0, 0);
        let req = again.missing_page(&victim.key()).unwrap();
        let mut bad = store[&req.page()].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(again.attach_page(&req, &bad).is_err());
    }

    #[test]
    fn evicted_subtrees_load_again_and_give_the_same_roots() {
        let mut t = StateTree::from_entries((0..3000).map(entry)).unwrap();
        let mut reference = StateTree::from_entries((0..3000).map(entry)).unwrap();
        // Nothing is dropped before it is stored.
        assert_eq!(t.evict_persisted(), 0);
        let mut store: std::collections::HashMap<_, _> =
            t.unpersisted_pages().into_iter().collect();
        t.mark_persisted(store.keys().copied());
        let dropped = t.evict_persisted();
        assert!(dropped > 100, "{dropped} subtrees dropped");
        // Only the subtrees kept inline in the root page stay loaded.
        assert!(
            t.loaded_entries().len() < 600,
            "{}",
            t.loaded_entries().len()
        );
        assert_eq!(t.root(), reference.root());
        // Changes after eviction load the pages they touch and land on the same roots.
        for i in (0..3000).step_by(7) {
            let key = entry(i).key();
            while let Some(req) = t.missing_page(&key) {
                t.attach_page(&req, &store[&req.page()]).unwrap();
            }
            t.remove(&key).unwrap();
            reference.remove(&key).unwrap();
        }
        for i in 3000..3100 {
            let key = entry(i).key();
            while let Some(req) = t.missing_page(&key) {
                t.attach_page(&req, &store[&req.page()]).unwrap();
            }
            t.insert(entry(i)).unwrap();
            reference.insert(entry(i)).unwrap();
        }
        assert_eq!(t.root(), reference.root());
        assert_eq!(
            (t.files(), t.bytes()),
            (reference.files(), reference.bytes())
        );
        // Only the changed pages are new; after storing them the tree can be dropped again.
        let changed = t.unpersisted_pages();
        assert!(!changed.is_empty());
        t.mark_persisted(changed.iter().map(|(id, _)| *id));
        store.extend(changed);
        assert!(t.evict_persisted() > 0);
        assert_eq!(t.root(), reference.root());
    }

    #[rstest::rstest]
    #[case::current(false)]
    #[case::before_inlining(true)]
    fn pages_of_either_layout_load_to_the_same_tree(#[case] v1: bool) {
        let full = StateTree::from_entries((0..3000).map(entry)).unwrap();
        let pages = if v1 {
            full.unpersisted_pages_v1()
        } else {
            full.unpersisted_pages()
        };
        let store: std::collections::HashMap<_, _> = pages.into_iter().collect();
        let mut lazy: StateTree = StateTree::resume(full.root(), full.files(), full.bytes());
        for i in 0..3000 {
            let key = entry(i).key();
            while let Some(req) = lazy.missing_page(&key) {
                lazy.attach_page(&req, &store[&req.page()]).unwrap();
            }
        }
        assert_eq!(lazy.loaded_entries().len(), 3000);
        let rebuilt = StateTree::from_entries(lazy.loaded_entries().into_iter().cloned()).unwrap();
        assert_eq!(rebuilt.root(), full.root());
    }

    #[test]
    fn sparse_subtrees_stay_inline_instead_of_a_page_each() {
        // 3000 files: about 12 per depth-8 subtree, so most depth-8 subtrees are pages but
        // nothing below them is.
        let t = StateTree::from_entries((0..3000).map(entry)).unwrap();
        let (now, before) = (t.unpersisted_pages().len(), t.unpersisted_pages_v1().len());
        assert!(now <= 257, "{now} pages");
        assert!(
            before > now + 100,
            "{before} pages before inlining, {now} now"
        );
    }
}
