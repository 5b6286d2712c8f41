//! Memory the process no longer uses, given back.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena and returns pages to the
//! system only from the top of a heap. A long-running process whose transient peaks are large
//! (a service that runs many attest jobs at once, each reading Parquet and JSON) therefore
//! stays resident at the sum of its arenas' high-water marks, and its RSS climbs over hours
//! while what it holds stays small (measured in `docs/performance.md`, section (i)).
//! [`release_freed`] asks glibc to return every whole free page of every arena
//! (`malloc_trim(0)`); [`resident_bytes`] reads the resident set size to show the effect.
//!
//! ```
//! let before = makoto_memory::resident_bytes();
//! let outcome = makoto_memory::release_freed();
//! println!("{before:?} bytes resident; trim: {outcome:?}");
//! ```

/// What asking the allocator to give back freed memory came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// The allocator returned some memory to the system.
    Some,
    /// It had nothing whole to return.
    Nothing,
    /// The allocator has no such call (not glibc): allocators such as musl's, macOS's and
    /// Windows' return large free blocks themselves.
    Unsupported,
}

/// Asks the C allocator to return the free pages of all its arenas to the system. Live
/// allocations are not moved or touched. glibc locks each arena while it walks it, so other
/// threads' allocations wait for that arena meanwhile: call it from a thread that may block
/// (a blocking task), every few seconds at most.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed() -> Released {
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes no pointer and touches only the allocator's own free lists,
    // under the same arena locks as malloc and free; any argument is valid (0: keep no slack).
    let released = unsafe { libc::malloc_trim(0) };
    if released == 1 {
        Released::Some
    } else {
        Released::Nothing
    }
}

/// Asks the C allocator to return freed memory: nothing to ask outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() -> Released {
    Released::Unsupported
}

/// The process's resident set size in bytes (`VmRSS` of `/proc/self/status`); `None` where
/// the system does not say.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss(&status)
}

/// `VmRSS:   123456 kB` in a `/proc/PID/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_reads_kilobytes() {
        let status = "Name:\tmakoto\nVmHWM:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(vm_rss(status), Some(2048 * 1024));
        assert_eq!(vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss("VmHWM:\t12 kB\n"), None);
        assert_eq!(vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_system() {
        // 64 MiB in blocks below the mmap threshold, so they come from the arena, then all but
        // the last freed: the last one pins the heap's top, so only a trim returns the rest.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 32 * 1024]).collect();
        let pin = blocks.pop();
        let before = resident_bytes().unwrap_or(0);
        drop(blocks);
        let outcome = release_freed();
        let after = resident_bytes().unwrap_or(u64::MAX);
        assert_eq!(outcome, Released::Some);
        assert!(
            after + 32 * 1024 * 1024 < before,
            "resident {before} -> {after} bytes: less than 32 MiB given back"
        );
        drop(pin);
    }
}
