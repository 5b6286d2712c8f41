//! State-tree pages fetched from storage and leaf values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::Sha256Digest;
use makoto_core::state::{FileEntry, StateTree};

fuzz_target!(|data: &[u8]| {
    let _ = FileEntry::from_value_bytes(data);
    if data.len() < 64 {
        return;
    }
    let mut root = [0u8; 32];
    root.copy_from_slice(&data[..32]);
    let mut key = [0u8; 32];
    key.copy_from_slice(&data[32..64]);
    let mut tree: StateTree = StateTree::resume(Sha256Digest::from_bytes(root), 0, 0);
    if let Some(req) = tree.missing_page(&Sha256Digest::from_bytes(key)) {
        if tree.attach_page(&req, &data[64..]).is_ok() {
            // Only a page hashing to the requested root can be attached.
            assert_eq!(tree.root(), Sha256Digest::from_bytes(root));
        }
    }
});
