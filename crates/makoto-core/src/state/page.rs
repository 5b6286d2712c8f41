//! Storage pages of the state tree.
//!
//! A page holds the subtree below one node whose depth is a multiple of [`PAGE_STRIDE`] (the
//! root is always a page), down to the next such depth, where multi-leaf subtrees become
//! references to their own pages. A page is named by the hash of the subtree it holds, so a
//! page fetched from untrusted storage is checked by recomputing that hash.
//!
//! Encoding: `"MKP1"`, the page depth as `u16` big-endian, then the nodes in pre-order:
//! `0x00` empty; `0x01 len:u32be value` leaf (`value` = canonical leaf JSON);
//! `0x02 left right` branch; `0x03 hash[32]` reference to a child page.

use std::collections::HashSet;

use super::Leaf;
use super::tree::{LeafNode, Node};
use super::{LEAF_PREFIX, node_hash};
use crate::{Error, Sha256Digest};

/// Depth distance between page roots.
pub const PAGE_STRIDE: usize = 8;

const MAGIC: &[u8; 4] = b"MKP1";
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

pub(super) fn collect<L: Leaf>(
    node: &Node<L>,
    depth: usize,
    persisted: &HashSet<Sha256Digest>,
    out: &mut Vec<(Sha256Digest, Vec<u8>)>,
) {
    if matches!(node, Node::Stub(_) | Node::Empty) || persisted.contains(&node.hash()) {
        return;
    }
    let mut bytes = Vec::with_capacity(4096);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(depth as u16).to_be_bytes());
    let mut children: Vec<(&Node<L>, usize)> = Vec::new();
    encode(node, depth, depth, &mut bytes, &mut children);
    out.push((node.hash(), bytes));
    for (child, child_depth) in children {
        collect(child, child_depth, persisted, out);
    }
}

fn encode<'a, L: Leaf>(
    node: &'a Node<L>,
    depth: usize,
    page_depth: usize,
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
        Node::Branch(b) if boundary => {
            out.push(TAG_REF);
            out.extend_from_slice(b.hash.as_bytes());
            children.push((node, depth));
        }
        Node::Branch(b) => {
            out.push(TAG_BRANCH);
            encode(&b.left, depth + 1, page_depth, out, children);
            encode(&b.right, depth + 1, page_depth, out, children);
        }
    }
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
    if r.take(4)? != MAGIC {
        return Err(bad("not a state page (bad magic)"));
    }
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
    let node = decode_node(&mut r, depth, depth, &mut path, check_prefix)?;
    if matches!(node, Node::Stub(_)) {
        return Err(bad("page root is a reference"));
    }
    if r.pos != bytes.len() {
        return Err(bad("trailing bytes after page"));
    }
    Ok((node, depth))
}

fn decode_node<L: Leaf>(
    r: &mut Reader<'_>,
    depth: usize,
    page_depth: usize,
    path: &mut [bool; 256],
    check_prefix: bool,
) -> Result<Node<L>, Error> {
    let boundary = depth > page_depth && depth.is_multiple_of(PAGE_STRIDE);
    match r.byte()? {
        TAG_EMPTY => Ok(Node::Empty),
        TAG_LEAF => {
            let l = r.take(4)?;
            let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let value = r.take(len)?;
            let entry = L::from_value_bytes(value)?;
            let key = entry.key();
            let first = if check_prefix { 0 } else { page_depth };
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
            Ok(Node::Stub(Sha256Digest::from_bytes(b)))
        }
        TAG_BRANCH if !boundary && depth < 255 => {
            path[depth] = false;
            let left = decode_node(r, depth + 1, page_depth, path, check_prefix)?;
            path[depth] = true;
            let right = decode_node(r, depth + 1, page_depth, path, check_prefix)?;
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
