//! Storage pages of the state tree.
//!
//! A page holds the subtree below one node whose depth is a multiple of [`PAGE_STRIDE`] (the
//! root is always a page), down to the next such depth, where subtrees of more than
//! [`INLINE_LEAVES`] leaves become references to their own pages; smaller ones stay inline
//! while the page is under [`INLINE_BYTES`], so that a sparse level does not cost one storage
//! object per couple of files. A page is named by
//! the hash of the subtree it holds, so a page fetched from untrusted storage is checked by
//! recomputing that hash.
//!
//! Encoding: `"MKP2"`, the page depth as `u16` big-endian, then the nodes in pre-order:
//! `0x00` empty; `0x01 len:u32be value` leaf (`value` = canonical leaf JSON);
//! `0x02 left right` branch; `0x03 hash[32]` reference to a child page (only at a
//! multiple-of-stride depth). Pages written before inlining (`"MKP1"`) reference every
//! multi-leaf subtree at those depths and are still read.

use std::collections::HashSet;

use super::Leaf;
use super::tree::{LeafNode, Node};
use super::{LEAF_PREFIX, node_hash};
use crate::{Error, Sha256Digest};

/// Depth distance between page roots.
pub const PAGE_STRIDE: usize = 8;

/// Subtrees at a page boundary with at most this many leaves are kept inside the parent page...
pub const INLINE_LEAVES: usize = 8;
/// ... while the parent page is still smaller than this; the rest become their own pages, so
/// that no page grows past about this size plus one inlined subtree.
pub const INLINE_BYTES: usize = 64 << 10;

const MAGIC: &[u8; 4] = b"MKP2";
/// Pages written before small subtrees were inlined: every multi-leaf subtree at a boundary is
/// a reference.
#[cfg_attr(not(test), allow(dead_code))]
const MAGIC_V1: &[u8; 4] = b"MKP1";
const TAG_EMPTY: u8 = 0;
const TAG_LEAF: u8 = 1;
const TAG_BRANCH: u8 = 2;
const TAG_REF: u8 = 3;

/// A page the tree needs: its id (subtree hash), the depth of its root, and the key whose path
/// leads to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    page: Sha256Digest,
    depth: usize,
    key: Sha256Digest,
}

impl PageRequest {
    pub(super) fn new(page: Sha256Digest, depth: usize, key: Sha256Digest) -> Self {
        PageRequest { page, depth, key }
    }
    /// The page id: hex of this is the storage object name.
    pub fn page(&self) -> Sha256Digest {
        self.page
    }
    pub fn depth(&self) -> usize {
        self.depth
    }
    pub fn key(&self) -> Sha256Digest {
        self.key
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidStatePage {
        reason: reason.into(),
    }
}

/// How pages are cut: the magic written and the largest subtree kept inline at a boundary.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    magic: &'static [u8; 4],
    inline_leaves: usize,
    inline_bytes: usize,
}

/// What this version writes.
pub(super) const LAYOUT: Layout = Layout {
    magic: MAGIC,
    inline_leaves: INLINE_LEAVES,
    inline_bytes: INLINE_BYTES,
};

/// What versions before inlining wrote (kept to test that such pages are still read).
#[cfg(test)]
pub(super) const LAYOUT_V1: Layout = Layout {
    magic: MAGIC_V1,
    inline_leaves: 1,
    inline_bytes: 0,
};

/// The pages below `node` that `persisted` does not hold, encoded one at a time as they are
/// taken (pre-order: a page before the pages it references), so that storing a batch's pages
/// holds a few of them at once rather than all.
pub struct UnstoredPages<'a, L> {
    stack: Vec<(&'a Node<L>, usize)>,
    persisted: &'a HashSet<Sha256Digest>,
    layout: Layout,
}

impl<'a, L: Leaf> UnstoredPages<'a, L> {
    pub(super) fn new(
        node: &'a Node<L>,
        depth: usize,
        persisted: &'a HashSet<Sha256Digest>,
        layout: Layout,
    ) -> Self {
        UnstoredPages {
            stack: vec![(node, depth)],
            persisted,
            layout,
        }
    }
}

impl<L> std::fmt::Debug for UnstoredPages<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnstoredPages")
            .field("pending", &self.stack.len())
            .finish_non_exhaustive()
    }
}

impl<L: Leaf> Iterator for UnstoredPages<'_, L> {
    type Item = (Sha256Digest, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((node, depth)) = self.stack.pop() {
            if matches!(node, Node::Stub(_) | Node::Empty) || self.persisted.contains(&node.hash())
            {
                continue;
            }
            let mut bytes = Vec::with_capacity(512);
            bytes.extend_from_slice(self.layout.magic);
            bytes.extend_from_slice(&(depth as u16).to_be_bytes());
            let mut children: Vec<(&Node<L>, usize)> = Vec::new();
            encode(node, depth, depth, self.layout, &mut bytes, &mut children);
            // Most pages are a few hundred bytes; a batch may hold tens of thousands of them.
            bytes.shrink_to_fit();
            self.stack.extend(children.into_iter().rev());
            return Some((node.hash(), bytes));
        }
        None
    }
}

fn encode<'a, L: Leaf>(
    node: &'a Node<L>,
    depth: usize,
    page_depth: usize,
    layout: Layout,
    out: &mut Vec<u8>,
    children: &mut Vec<(&'a Node<L>, usize)>,
) {
    let boundary = depth > page_depth && depth.is_multiple_of(PAGE_STRIDE);
    match node {
        Node::Empty => out.push(TAG_EMPTY),
        Node::Leaf(l) => {
            let v = l.entry.value_bytes();
            out.push(TAG_LEAF);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(&v);
        }
        Node::Stub(h) => {
            out.push(TAG_REF);
            out.extend_from_slice(h.as_bytes());
        }
        Node::Branch(b)
            if boundary
                && (out.len() >= layout.inline_bytes
                    || more_leaves_than(node, layout.inline_leaves)) =>
        {
            out.push(TAG_REF);
            out.extend_from_slice(b.hash.as_bytes());
            children.push((node, depth));
        }
        Node::Branch(b) => {
            out.push(TAG_BRANCH);
            encode(&b.left, depth + 1, page_depth, layout, out, children);
            encode(&b.right, depth + 1, page_depth, layout, out, children);
        }
    }
}

/// Whether the subtree has more than `n` leaves (a subtree not loaded counts as more).
fn more_leaves_than<L>(node: &Node<L>, n: usize) -> bool {
    fn count<L>(node: &Node<L>, budget: &mut usize) -> bool {
        match node {
            Node::Empty => true,
            Node::Leaf(_) => match budget.checked_sub(1) {
                Some(b) => {
                    *budget = b;
                    true
                }
                None => false,
            },
            Node::Stub(_) => false,
            Node::Branch(b) => count(&b.left, budget) && count(&b.right, budget),
        }
    }
    let mut budget = n;
    !count(node, &mut budget)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| bad("truncated page"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
}

/// Decodes the page for `request`, checking structure, key placement and the page hash.
pub(super) fn decode<L: Leaf>(bytes: &[u8], request: &PageRequest) -> Result<Node<L>, Error> {
    let (node, depth) = decode_unchecked::<L>(bytes, Some(request.key))?;
    if depth != request.depth {
        return Err(bad(format!(
            "page {} has depth {depth}, expected {}",
            request.page, request.depth
        )));
    }
    if node.hash() != request.page {
        return Err(bad(format!(
            "page {} does not hash to its name (got {})",
            request.page,
            node.hash()
        )));
    }
    Ok(node)
}

#[cfg(test)]
pub(super) fn decode_root_hash(bytes: &[u8]) -> Result<Sha256Digest, Error> {
    Ok(decode_unchecked::<super::FileEntry>(bytes, None)?.0.hash())
}

fn decode_unchecked<L: Leaf>(
    bytes: &[u8],
    path_key: Option<Sha256Digest>,
) -> Result<(Node<L>, usize), Error> {
    let mut r = Reader { bytes, pos: 0 };
    let inline = match r.take(4)? {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err(bad("not a state page (bad magic)")),
    };
    let d = r.take(2)?;
    let depth = u16::from_be_bytes([d[0], d[1]]) as usize;
    if !depth.is_multiple_of(PAGE_STRIDE) || depth >= 256 {
        return Err(bad(format!("invalid page depth {depth}")));
    }
    let mut path = [false; 256];
    if let Some(k) = path_key {
        for (i, p) in path.iter_mut().enumerate().take(depth) {
            *p = k.bit(i);
        }
    }
    let check_prefix = path_key.is_some();
    let format = Format {
        page_depth: depth,
        inline,
        check_prefix,
    };
    let node = decode_node(&mut r, depth, &format, &mut path)?;
    if matches!(node, Node::Stub(_)) {
        return Err(bad("page root is a reference"));
    }
    if r.pos != bytes.len() {
        return Err(bad("trailing bytes after page"));
    }
    Ok((node, depth))
}

/// How a page's nodes are read.
struct Format {
    page_depth: usize,
    /// Small subtrees at a boundary may be inline (`MKP2`) instead of references.
    inline: bool,
    /// The key path above the page is known and leaves are checked against it.
    check_prefix: bool,
}

fn decode_node<L: Leaf>(
    r: &mut Reader<'_>,
    depth: usize,
    format: &Format,
    path: &mut [bool; 256],
) -> Result<Node<L>, Error> {
    let page_depth = format.page_depth;
    let boundary = depth > page_depth && depth.is_multiple_of(PAGE_STRIDE);
    match r.byte()? {
        TAG_EMPTY => Ok(Node::Empty),
        TAG_LEAF => {
            let l = r.take(4)?;
            let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let value = r.take(len)?;
            let entry = L::from_value_bytes(value)?;
            let key = entry.key();
            let first = if format.check_prefix { 0 } else { page_depth };
            if (first..depth).any(|i| key.bit(i) != path[i]) {
                return Err(bad(format!(
                    "leaf {:?} is not on its key path",
                    entry.path()
                )));
            }
            let hash = Sha256Digest::of_parts(&[&[LEAF_PREFIX], value]);
            Ok(Node::Leaf(Box::new(LeafNode { key, hash, entry })))
        }
        TAG_REF if boundary => {
            let h = r.take(32)?;
            let mut b = [0u8; 32];
            b.copy_from_slice(h);
            Ok(Node::Stub(Box::new(Sha256Digest::from_bytes(b))))
        }
        TAG_BRANCH if (!boundary || format.inline) && depth < 255 => {
            path[depth] = false;
            let left = decode_node(r, depth + 1, format, path)?;
            path[depth] = true;
            let right = decode_node(r, depth + 1, format, path)?;
            if matches!(
                (&left, &right),
                (Node::Empty | Node::Leaf(_), Node::Empty) | (Node::Empty, Node::Leaf(_))
            ) {
                return Err(bad("branch with fewer than two leaves"));
            }
            let hash = node_hash(&left.hash(), &right.hash());
            Ok(Node::Branch(Box::new(super::tree::BranchNode {
                hash,
                left,
                right,
            })))
        }
        tag => Err(bad(format!("unexpected node tag {tag} at depth {depth}"))),
    }
}
