//! What the reader-view code reads from untrusted storage: reader-tree leaves and pages,
//! stored table facts, `.crc` version checksum files, and readerView blocks of statements.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::Sha256Digest;
use makoto_core::reader_view::{
    Expected, ReaderFile, ReaderView, ReaderViewDigest, TableFacts, parse_checksum,
};
use makoto_core::state::{Leaf, StateTree};

fuzz_target!(|data: &[u8]| {
    if let Ok(leaf) = ReaderFile::from_value_bytes(data) {
        // Only canonical bytes are accepted: they round-trip exactly.
        assert_eq!(leaf.value_bytes(), data);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(f) = TableFacts::from_json(&v) {
            assert_eq!(
                TableFacts::from_json(&f.to_json())
                    .map(|g| g.digests())
                    .ok(),
                Some(f.digests())
            );
        }
        if let Ok(d) = ReaderViewDigest::from_json(&v) {
            assert_eq!(ReaderViewDigest::from_json(&d.to_json()).ok(), Some(d));
        }
    }
    if let Ok(crc) = parse_checksum(data) {
        let _ = crc.compare(Expected::Replayed(&ReaderView::default()));
    }
    if data.len() >= 64 {
        let mut root = [0u8; 32];
        root.copy_from_slice(&data[..32]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&data[32..64]);
        let mut tree: StateTree<ReaderFile> =
            StateTree::resume(Sha256Digest::from_bytes(root), 0, 0);
        if let Some(req) = tree.missing_page(&Sha256Digest::from_bytes(key)) {
            if tree.attach_page(&req, &data[64..]).is_ok() {
                assert_eq!(tree.root(), Sha256Digest::from_bytes(root));
            }
        }
    }
});
