//! The fixed trim threshold, in a process of its own: the allocator's thresholds are global.

/// A freed large block no longer raises glibc's thresholds, so later large blocks are mapped
/// on their own and leave the process when freed, even below a block that pins the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn large_blocks_leave_the_process_when_freed() {
    use makoto_memory::{TRIM_THRESHOLD, TrimThreshold, fix_trim_threshold, resident_bytes};

    assert_eq!(fix_trim_threshold(), TrimThreshold::Set(TRIM_THRESHOLD));
    // With the dynamic threshold, freeing this mapped block would raise it to 8 MiB.
    drop(std::hint::black_box(vec![1u8; 8 << 20]));
    let blocks: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i | 1; 1 << 20]).collect();
    let pin = std::hint::black_box(vec![2u8; 64]);
    let before = resident_bytes().unwrap_or(0);
    drop(blocks);
    let after = resident_bytes().unwrap_or(u64::MAX);
    assert!(
        after + (48 << 20) < before,
        "resident {before} -> {after} bytes: less than 48 MiB of 64 given back"
    );
    drop(pin);
}
